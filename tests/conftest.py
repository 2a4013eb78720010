"""Shared fixtures: the real ECG data beside the checkout, and tiny models.

Real records live in ``../shared/data`` (or wherever ``ECGSOUP_SHARED_DATA``
points).  A user's clone has no ``../shared``: tests that need it skip with the
reason; under CI (``CI`` set) a missing folder is an error instead, because CI
always has it.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

SHARED_DATA_ENV = "ECGSOUP_SHARED_DATA"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def docs_build_command(out) -> list[str]:
    """The command of `make docs` (-W --keep-going -n: any warning fails), writing into ``out``."""
    return [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", str(DOCS), str(out)]


@pytest.fixture(scope="session")
def docs_html(tmp_path_factory) -> Path:
    """The documentation, built once per session into a temporary folder (gallery executed)."""
    missing = [name for name in ("sphinx", "sphinx_gallery") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (pip install -e '.[docs]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(docs_build_command(out), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"sphinx failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared real-ECG folder (see ../shared/data/README.md)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get(SHARED_DATA_ENV, default))
    if not (path / "README.md").exists():
        message = (
            f"real ECG data not found at {path}; set {SHARED_DATA_ENV} to the "
            "folder holding ludb/, ptbxl_sample/, ... to run these tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def ludb(shared_data):
    """LUDB: 200 real 12-lead records, 500 Hz, 10 s, microvolts, time-major."""
    data = np.load(shared_data / "ludb" / "ludb_12lead_500hz.npz")
    return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def tiny_model():
    """A randomly initialised ecgsoup-100hz-tiny encoder (never pretrained)."""
    from ecgsoup.backbones.stmem import random_model

    return random_model("ecgsoup-100hz-tiny", seed=0)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (tiny networks only spin on a shared CPU); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _layerwise_embeddings(ludb, model, cache_dir):
    """``[h_0 | ... | h_12]`` of every LUDB record, as LayerwiseEmbedder lays them out.

    A stand-in for LayerwiseEmbedder built from the encoder alone, so that the
    fusion tests do not depend on the embedder: 500 -> 100 Hz, model lead
    order, per-lead z-score, pooled layers.
    Cached on disk by model fingerprint (the tiny model is slow on a busy CPU).
    """
    from ecgsoup.backbones.stmem import model_fingerprint
    from ecgsoup.signal import lead_indices, resample, zscore

    path = cache_dir / f"ludb_layers_v2_{model_fingerprint(model)[:16]}.npy"
    if path.exists():
        return np.load(path)
    cfg = model.config
    x = resample(ludb["x"].astype(np.float32) / 1000.0, float(ludb["fs"]), cfg.sampling_rate)
    x = zscore(x[:, : cfg.n_samples, lead_indices(ludb["lead_names"], cfg.lead_names)])
    with torch.inference_mode():
        pooled = torch.cat(
            [
                model.pooled_layers(torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 2, 1))))
                for chunk in np.array_split(x, 8)
            ]
        ).numpy()
    X = pooled.reshape(len(x), -1).astype(np.float32)
    np.save(path, X)
    return X


@pytest.fixture(scope="session")
def X_layers(ludb, tiny_model, pytestconfig):
    """Layer-wise embeddings of the 200 LUDB records from the tiny random model."""
    return _layerwise_embeddings(ludb, tiny_model, pytestconfig.cache.mkdir("ecgsoup_ludb_layers"))


@pytest.fixture(scope="session")
def tiny_spec(tiny_model):
    """The layer specification of the tiny model's embeddings (what ``layer_spec_`` holds)."""
    from ecgsoup.backbones.stmem import model_fingerprint
    from ecgsoup.layers import LayerSpec

    return LayerSpec(model_fingerprint(tiny_model), tiny_model.layers, tiny_model.readout(), "tiny")


@pytest.fixture(scope="session")
def labels(shared_data, ludb):
    """LUDB labels in the order of the ``ludb`` arrays."""
    table = pd.read_csv(shared_data / "ludb" / "ludb_labels.csv").set_index("record_id")
    return table.loc[ludb["record_id"]].reset_index()
