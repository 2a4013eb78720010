"""Regenerate the ECG-JEPA golden fixtures from the authors' code.

Usage::

    ECGSOUP_REFERENCE_ECG_JEPA=/path/to/ECG_JEPA python scripts/make_golden_ecg_jepa.py

``ECGSOUP_REFERENCE_ECG_JEPA`` names a local checkout of
https://github.com/sehunfromdaegu/ECG_JEPA (MIT; the fixtures were made at
commit d937ad2c2c8a1e22856ce7e4a23a30f84a71217c, which is recorded in them:
for an exported tree without ``.git``, give it in
``ECGSOUP_REFERENCE_ECG_JEPA_COMMIT``); its ``ecg_jepa.py`` and
``pos_encoding.py`` are imported from there and nothing of it is copied.  The
authors' module imports ``DropPath`` and ``trunc_normal_`` from timm at import
time but runs neither at the settings used here (no drop path; its own
``trunc_normal_``), so without timm installed two inert stand-ins are
provided.  The script writes, under ``tests/backbones/golden/``:

* ``ecg-jepa-tiny.pth``: ``{"encoder": state_dict, "epoch": 100}`` of the
  authors' ``MaskTransformer`` at the family's tiny geometry, in the original
  key names, every tensor moved off its initial value by seeded noise
  (LayerNorm scales and shifts and the position table included);
* ``ecg-jepa-tiny.npz``: one input ``(2, 8, 2500)`` (float16 values, stored
  as float16), the reference's per-layer pooled outputs (the final LayerNorm
  applied to each token of the projected tokens and of every block's output,
  then the mean), its ``representation`` embedding, one record through the
  authors' FFT resampling, and the reference commit.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "backbones" / "golden"
ENV = "ECGSOUP_REFERENCE_ECG_JEPA"
SEED = 20261205
INPUT_SHAPE = (2, 8, 2500)
RECIPE_FS, RECIPE_SAMPLES = 500, 5000  # one PTB-XL record, (leads, samples) as the authors hold it


def reference_dir() -> Path:
    path = os.environ.get(ENV)
    if not path or not (Path(path) / "ecg_jepa.py").is_file():
        sys.exit(f"Set {ENV} to a checkout of sehunfromdaegu/ECG_JEPA.")
    return Path(path)


def import_reference(path: Path):
    """The authors' ``ecg_jepa`` module; timm's two names get inert stand-ins when timm is absent."""
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    if "timm" not in sys.modules and importlib.util.find_spec("timm") is None:
        layers = types.ModuleType("timm.models.layers")

        def unused(*args, **kwargs):
            raise RuntimeError("timm stand-in called: the reference needs timm for this setting")

        layers.DropPath, layers.trunc_normal_ = unused, unused
        models = types.ModuleType("timm.models")
        models.layers = layers
        timm = types.ModuleType("timm")
        timm.models = models
        sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})
    return importlib.import_module("ecg_jepa")


def reference_commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(f"{ENV}_COMMIT", "unknown")


def seeded_encoder(ecg_jepa, geometry: dict, generator: torch.Generator):
    """The authors' encoder (``ecg_jepa(...).encoder``) with every tensor moved off its initial value."""
    assert geometry["mlp_dim"] % geometry["embed_dim"] == 0
    model = ecg_jepa.ecg_jepa(
        encoder_embed_dim=geometry["embed_dim"],
        encoder_depth=geometry["depth"],
        encoder_num_heads=geometry["num_heads"],
        predictor_embed_dim=geometry["embed_dim"],
        predictor_depth=1,
        predictor_num_heads=geometry["num_heads"],
        mlp_ratio=geometry["mlp_dim"] / geometry["embed_dim"],
        c=geometry["n_leads"],
        p=geometry["n_patches"],
        t=geometry["patch_size"],
        pos_type="sincos",
        mask_scale=(0, 0),
    )
    encoder = model.encoder
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            if tensor.ndim == 1:
                # Biases, LayerNorm scales and shifts: far from 0 and 1, so a port that skips
                # a bias or an affine norm cannot pass.
                tensor.add_(0.2 * torch.randn(tensor.shape, generator=generator) + 0.1)
            elif name == "pos_embed":
                # The table is loaded from the file, never recomputed: noise proves it.
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
            else:
                bound = 1.0 / np.sqrt(tensor.shape[1])
                tensor.uniform_(-bound, bound, generator=generator)
    return encoder.eval()


def reference_layers(encoder, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """Pooled layers (the final norm per token, then the mean) and the ``representation`` embedding."""
    captured = []
    norm = encoder.norm
    pool = lambda h: F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps).mean(1)  # noqa: E731
    handles = [encoder.W_P.register_forward_hook(lambda m, i, out: captured.append(pool(out)))]
    handles += [block.register_forward_hook(lambda m, i, out: captured.append(pool(out)))
                for block in encoder.encoder_blocks.blocks]
    try:
        with torch.no_grad():
            embedding = encoder.representation(x)
    finally:
        for handle in handles:
            handle.remove()
    return [c.numpy() for c in captured], embedding.numpy()


def main() -> None:
    ref = reference_dir()
    ecg_jepa = import_reference(ref)
    from scipy.signal import resample  # what the authors' ecg_data.waves_ptbxl calls

    from ecgsoup.backbones.ecg_jepa import ENTRY

    geometry = dict(ENTRY.tiny)
    generator = torch.Generator().manual_seed(SEED)
    encoder = seeded_encoder(ecg_jepa, geometry, generator)
    x16 = torch.randn(INPUT_SHAPE, generator=generator).half()
    pooled, embedding = reference_layers(encoder, x16.float())

    rng = np.random.default_rng(SEED)
    record = rng.standard_normal((1, RECIPE_SAMPLES)).cumsum(axis=1) * 0.01
    resampled = resample(record, 2500, axis=1)

    GOLDEN.mkdir(parents=True, exist_ok=True)
    ckpt = GOLDEN / "ecg-jepa-tiny.pth"
    torch.save({"encoder": encoder.state_dict(), "epoch": 100}, ckpt)
    npz = GOLDEN / "ecg-jepa-tiny.npz"
    np.savez_compressed(
        npz,
        input=x16.numpy(),
        **{f"pooled_{i}": p for i, p in enumerate(pooled)},
        embedding=embedding,
        recipe_input=record,
        recipe_output=resampled,
        recipe_fs=np.float64(RECIPE_FS),
        reference_commit=np.array(reference_commit(ref)),
        geometry=np.array(json.dumps(geometry, sort_keys=True)),
        checkpoint_sha256=np.array(hashlib.sha256(ckpt.read_bytes()).hexdigest()),
        torch_version=np.array(torch.__version__),
        seed=np.int64(SEED),
    )
    for path in (ckpt, npz):
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
