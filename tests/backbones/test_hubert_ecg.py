"""HuBERT-ECG: parity with transformers.HubertModel, strict conversion, and the two recipes.

* Golden parity (always): a committed tiny checkpoint in the published Hugging
  Face layout, converted and loaded strictly, reproduces the reference's
  per-layer pooled outputs stored beside it.
* Live parity (marker ``parity``): the same against ``transformers.HubertModel``
  built here, for the tiny and the published small geometry, both weight-norm
  spellings.
* Controls: a wrong lead order, a skipped weight-norm fold and swapped keys
  each make the comparison fail or the loading refuse.
* Recipes: the authors' and the benchmark's preprocessing of a real PTB-XL
  record against stored outputs of the original steps (biosppy's filter).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ecgsoup.backbones import WeightsError, load_strict
from ecgsoup.backbones.hubert_ecg import ENTRY, recipes
from ecgsoup.backbones.hubert_ecg.convert import convert
from ecgsoup.backbones.hubert_ecg.model import HubertECG, HubertECGConfig

GOLDEN = Path(__file__).parent / "golden"
TINY_DIR = GOLDEN / "hubert-ecg-tiny"
RTOL = 1e-5  # relative to the largest magnitude of each layer's pooled output, float32
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_golden_hubert_ecg.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_golden_hubert_ecg", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference():
    data = np.load(TINY_DIR / "reference.npz")
    return {key: data[key] for key in data.files}


def _load(path, **options) -> HubertECG:
    converted = convert(path, **options)
    module = HubertECG(converted.config)
    load_strict(module, converted.state_dict, path)
    return module


def _pooled(module: HubertECG, x: np.ndarray) -> np.ndarray:
    """(layers, records, width) float64."""
    with torch.inference_mode():
        flat = module.pooled_layers(torch.from_numpy(x)).double().numpy()
    return flat.reshape(len(x), module.n_layers, -1).transpose(1, 0, 2)


def _relative_errors(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    scale = np.abs(ref).max(axis=(1, 2))
    return np.abs(ours - ref).max(axis=(1, 2)) / scale


def _matches(ours, ref) -> bool:
    return bool((_relative_errors(ours, ref) <= RTOL).all())


def _write(folder: Path, state: dict, config_json: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_json))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


def _original(tmp_path, name="ckpt", edit=None) -> Path:
    """A copy of the golden checkpoint, its tensors optionally edited."""
    state = load_file(str(TINY_DIR / "model.safetensors"))
    config_json = json.loads((TINY_DIR / "config.json").read_text())
    if edit is not None:
        edit(state)
    return _write(tmp_path / name, state, config_json)


# -- golden parity ------------------------------------------------------------------


def test_golden_parity_every_layer(reference):
    module = _load(TINY_DIR)
    ours = _pooled(module, reference["x"])
    ref = reference["pooled"].astype(np.float64)
    assert ours.shape == ref.shape == (3, 2, 32)
    errors = _relative_errors(ours, ref)
    assert (errors <= RTOL).all(), f"relative error per layer: {errors}"
    # readout(pool(last layer)) is the reference's own embedding.
    readout = module.readout()
    last = readout(ours[-1].astype(np.float32))
    np.testing.assert_allclose(
        last, reference["last_hidden_state_mean"], rtol=0, atol=RTOL * np.abs(last).max()
    )


def test_golden_fixture_records_its_reference(reference):
    assert str(reference["transformers_version"]) and "HubertModel" in str(reference["reference"])
    assert int(reference["seed"]) == _script().SEED
    for path in [*TINY_DIR.iterdir(), GOLDEN / "hubert-ecg-recipes.npz"]:
        assert path.stat().st_size < 200_000, path
    # The checkpoint is in the published layout: legacy weight-norm spelling, heads present.
    keys = set(load_file(str(TINY_DIR / "model.safetensors")))
    assert {"encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v",
            "final_proj.0.weight", "label_embedding.0.weight", "masked_spec_embed"} <= keys


def test_layer_table_and_pooling(reference):
    module = _load(TINY_DIR)
    assert [layer.name for layer in module.layers] == ["layer00", "layer01", "layer02"]
    assert {layer.stream for layer in module.layers} == {"residual"}
    x = torch.from_numpy(reference["x"])
    hidden = module.forward_layers(x)
    assert [tuple(h.shape) for h in hidden] == [(2, 93, 32)] * 3
    pooled = torch.cat([module.pool(h, i) for i, h in enumerate(hidden)], dim=1)
    torch.testing.assert_close(module.pooled_layers(x), pooled, rtol=0, atol=0)
    # The concatenated layout may also be given directly.
    torch.testing.assert_close(module.pooled_layers(x.reshape(2, -1)), pooled, rtol=0, atol=0)
    assert module.readout().kind == "identity"


# -- controls: the comparison can fail ----------------------------------------------


def test_control_wrong_lead_order_fails(reference):
    module = _load(TINY_DIR)
    swapped = reference["x"][:, [1, 0, *range(2, 12)], :].copy()  # I and II exchanged
    assert not _matches(_pooled(module, swapped), reference["pooled"].astype(np.float64))


def test_control_skipped_weight_norm_fold_fails(reference, tmp_path):
    def skip_fold(state):  # use v as the weight, as a loader that ignores g would
        state.pop("encoder.pos_conv_embed.conv.weight_g")
        state["encoder.pos_conv_embed.conv.weight"] = state.pop("encoder.pos_conv_embed.conv.weight_v")

    module = _load(_original(tmp_path, edit=skip_fold))
    assert not _matches(_pooled(module, reference["x"]), reference["pooled"].astype(np.float64))


def test_control_swapped_layers_fail(reference, tmp_path):
    def swap(state):
        a, b = (f"encoder.layers.{i}.feed_forward.intermediate_dense.weight" for i in (0, 1))
        state[a], state[b] = state[b], state[a]

    module = _load(_original(tmp_path, edit=swap))  # same shapes: loads, computes another function
    assert not _matches(_pooled(module, reference["x"]), reference["pooled"].astype(np.float64))


def test_control_swapped_shapes_refused(tmp_path):
    def swap(state):
        a = "encoder.layers.0.attention.q_proj.weight"
        b = "encoder.layers.0.feed_forward.intermediate_dense.weight"
        state[a], state[b] = state[b], state[a]

    with pytest.raises(WeightsError, match="disagree|wrong shapes|do not fit"):
        _load(_original(tmp_path, edit=swap))


# -- conversion rules ----------------------------------------------------------------


def test_both_weight_norm_spellings_load(reference, tmp_path):
    def new_spelling(state):
        prefix = "encoder.pos_conv_embed.conv."
        state[prefix + "parametrizations.weight.original0"] = state.pop(prefix + "weight_g")
        state[prefix + "parametrizations.weight.original1"] = state.pop(prefix + "weight_v")

    legacy = _pooled(_load(TINY_DIR), reference["x"])
    modern = _pooled(_load(_original(tmp_path, edit=new_spelling)), reference["x"])
    np.testing.assert_array_equal(legacy, modern)


def test_heads_ignored_with_one_log_line(caplog):
    with caplog.at_level(logging.INFO, logger="ecgsoup"):
        converted = convert(TINY_DIR)
    lines = [r.getMessage() for r in caplog.records if r.name == "ecgsoup"]
    assert len(lines) == 1, lines
    assert "final_proj" in lines[0] and "label_embedding" in lines[0] and "masked_spec_embed" in lines[0]
    assert not any(k.startswith(("final_proj", "label_embedding", "masked")) for k in converted.state_dict)


def test_converted_keys_equal_module_keys():
    converted = convert(TINY_DIR / "model.safetensors")  # the file, config.json beside it
    assert set(converted.state_dict) == set(HubertECG(converted.config).state_dict())
    assert converted.config == HubertECGConfig(**ENTRY.tiny)
    as_json = json.loads(json.dumps(converted.config.to_dict()))
    assert HubertECGConfig.from_dict(as_json) == converted.config


def test_pickle_refused_with_instructions(tmp_path):
    path = tmp_path / "hubert_ecg_small.pt"
    torch.save({"model_state_dict": {}}, path)
    with pytest.raises(WeightsError, match=r"pickled.*model\.safetensors.*save_pretrained") as info:
        convert(path)
    assert "\n" not in str(info.value)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "hubert_ecg_small.pt").write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="pickled"):
        convert(folder)


def test_missing_key_refused(tmp_path):
    def drop(state):
        state.pop("encoder.layers.1.final_layer_norm.bias")

    converted = convert(_original(tmp_path, edit=drop))
    with pytest.raises(WeightsError, match=r"missing keys: blocks\.1\.norm2\.bias"):
        load_strict(HubertECG(converted.config), converted.state_dict, "ckpt")


def test_unknown_key_refused(tmp_path):
    def extra(state):
        state["classifier.weight"] = torch.zeros(3, 32)

    with pytest.raises(WeightsError, match="classifier.weight"):
        convert(_original(tmp_path, edit=extra))


def test_config_and_shapes_must_agree(tmp_path):
    folder = _original(tmp_path)
    config_json = json.loads((folder / "config.json").read_text())
    config_json["intermediate_size"] = 128
    (folder / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(WeightsError, match="intermediate_size: config.json 128, tensors 64"):
        convert(folder)
    config_json.update(intermediate_size=64, do_stable_layer_norm=True)
    (folder / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(WeightsError, match="do_stable_layer_norm"):
        convert(folder)
    (folder / "config.json").unlink()
    with pytest.raises(WeightsError, match="No config.json"):
        convert(folder)


# -- module behaviour ----------------------------------------------------------------


def test_init_weights_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    config = HubertECGConfig(**ENTRY.tiny)
    a = HubertECG(config).init_weights(torch.Generator().manual_seed(3))
    b = HubertECG(config).init_weights(torch.Generator().manual_seed(3))
    c = HubertECG(config).init_weights(torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), state)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 12, 500)).astype(np.float32))
    torch.testing.assert_close(a.pooled_layers(x), b.pooled_layers(x), rtol=0, atol=0)
    assert not torch.allclose(a.pooled_layers(x), c.pooled_layers(x))
    assert torch.isfinite(a.pooled_layers(x)).all()


def test_sizes_match_published_parameter_counts():
    # transformers.HubertModel's parameter counts for the published configs; they
    # include the mask vector (width) and the weight-norm magnitude (128), which
    # the port does not hold (the first is unused, the second is folded).
    hf_counts = {"small": 30_209_664, "base": 92_798_848, "large": 187_644_736}
    for size, count in hf_counts.items():
        with torch.device("meta"):
            module = HubertECG(HubertECGConfig(**ENTRY.sizes[size]))
        width = ENTRY.sizes[size]["hidden_size"]
        assert sum(p.numel() for p in module.parameters()) == count - width - 128, size
        assert module.n_layers == ENTRY.sizes[size]["num_hidden_layers"] + 1


def test_bfloat16_copy_runs_close_to_float32(reference):
    module = _load(TINY_DIR)
    copy = HubertECG(module.config)
    copy.load_state_dict(module.state_dict())
    copy = copy.to(torch.bfloat16)
    for sub in copy.modules():  # as the embedder's bf16 copy: LayerNorms stay float32
        if isinstance(sub, torch.nn.LayerNorm):
            sub.float()
    x = torch.from_numpy(reference["x"])
    with torch.inference_mode():
        low = copy.pooled_layers(x.to(torch.bfloat16))
        high = module.pooled_layers(x)
    assert low.dtype == torch.float32
    assert (low - high).abs().max() < 0.1 * high.abs().max()


def test_package_import_loads_no_model_library():
    code = (
        "import sys; import ecgsoup.backbones.hubert_ecg as h; "
        "assert 'transformers' not in sys.modules; "
        "assert 'ecgsoup.backbones.hubert_ecg.model' not in sys.modules; "
        "import ecgsoup.backbones.hubert_ecg.model, ecgsoup.backbones.hubert_ecg.convert, "
        "ecgsoup.backbones.hubert_ecg.recipes; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_entry_contracts():
    repo, bench = ENTRY.contracts["repo"], ENTRY.contracts["benchmark"]
    assert ENTRY.default_contract == "repo"
    assert (repo.sampling_rate, repo.window, repo.layout) == (500.0, 2500, "concatenated")
    assert (bench.sampling_rate, bench.window, bench.layout) == (100.0, 500, "concatenated")
    assert "non-commercial" in ENTRY.card.notice and ENTRY.card.license == "CC-BY-NC-4.0"
    for target in [ENTRY.module, ENTRY.config, ENTRY.convert, repo.window_transform,
                   bench.window_transform, *ENTRY.recipes.values()]:
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    assert set(ENTRY.recipes) == {repo.recipe, bench.recipe}


# -- live parity against transformers -----------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize(
    ("geometry", "spelling"),
    [("TINY", "legacy"), ("TINY", "parametrizations"), ("SMALL", "parametrizations")],
)
def test_parity_with_transformers_hubert(tmp_path, geometry, spelling):
    pytest.importorskip("transformers", reason="transformers is the reference (pip install -e '.[parity]')")
    script = _script()
    config_json = script.hf_config(getattr(script, geometry))
    model = script.build_reference(config_json, seed=11)
    state = script.original_state_dict(model, config_json, 11, spelling)
    folder = _write(tmp_path / "hf", state, config_json)
    module = _load(folder)
    x = script.make_input(seed=12, n_records=2)
    ref, last = script.reference_outputs(model, x)
    ours = _pooled(module, x)
    errors = _relative_errors(ours, ref)
    assert (errors <= RTOL).all(), f"relative error per layer: {errors}"
    np.testing.assert_allclose(ours[-1], last, rtol=0, atol=RTOL * np.abs(last).max())


# -- recipes on a real record --------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_reference():
    data = np.load(GOLDEN / "hubert-ecg-recipes.npz")
    return {key: data[key] for key in data.files}


def _ptbxl_record(shared_data, rate, index):
    data = np.load(shared_data / "ptbxl_sample" / f"ptbxl_sample_{rate}hz.npz")
    return data["x"][index : index + 1].astype(np.float64) / 1000.0, int(data["ecg_id"][index])


@pytest.mark.parametrize("rate", [500, 100])
def test_repo_recipe_matches_authors_pipeline(shared_data, recipe_reference, rate):
    x, ecg_id = _ptbxl_record(shared_data, rate, int(recipe_reference["record_index"]))
    assert ecg_id == int(recipe_reference["ecg_id"])
    contract = ENTRY.contracts["repo"]
    record = recipes.repo_recipe(x, rate, contract)
    assert record.shape == (1, 5000, 12) and record.dtype == np.float32
    np.testing.assert_allclose(record.min(axis=1), -1, atol=1e-6)
    np.testing.assert_allclose(record.max(axis=1), 1, atol=1e-6)
    window = record[:, : contract.window, :].transpose(0, 2, 1)  # the embedder's first window
    model_input = recipes.flatten_decimate(window)
    assert model_input.shape == (1, 12, 500)
    expected = recipe_reference[f"repo_input_{rate}hz"]
    np.testing.assert_allclose(model_input.reshape(-1), expected, rtol=0, atol=1e-6)
    # Control: decimating each lead separately (no cross-lead filtering) is not the same.
    per_lead = np.stack([recipes.flatten_decimate(window[:, i : i + 1])[:, 0] for i in range(12)], axis=1)
    assert np.abs(per_lead.reshape(-1) - expected).max() > 1e-3


def test_benchmark_recipe_matches_benchmark_pipeline(shared_data, recipe_reference):
    x, _ = _ptbxl_record(shared_data, 100, int(recipe_reference["record_index"]))
    contract = ENTRY.contracts["benchmark"]
    record = recipes.benchmark_recipe(x, 100, contract)
    np.testing.assert_array_equal(record, x.astype(np.float32))  # already at 100 Hz
    windows = np.stack([record[0, s : s + contract.window].T for s in (0, contract.stride)])
    ours = recipes.benchmark_window(windows)
    np.testing.assert_allclose(ours, recipe_reference["benchmark_windows_100hz"], rtol=0, atol=1e-6)
    # Control: filtering the record once, then scaling per window, differs at the window edges.
    filtered = recipes.fir_bandpass(x[0].T, 100, axis=-1)
    record_level = np.stack([recipes.minmax_per_lead(filtered[:, s : s + 500], axis=-1) for s in (0, 500)])
    assert np.abs(record_level - recipe_reference["benchmark_windows_100hz"]).max() > 1e-3


def test_benchmark_recipe_resamples_500hz(shared_data):
    x500, _ = _ptbxl_record(shared_data, 500, 0)
    x100, _ = _ptbxl_record(shared_data, 100, 0)
    out = recipes.benchmark_recipe(x500, 500, ENTRY.contracts["benchmark"])
    assert out.shape == (1, 1000, 12)
    # PTB-XL's own 100 Hz files are a decimation of the 500 Hz ones: close, not equal.
    core = slice(50, -50)
    assert np.abs(out[0, core] - x100[0, core]).max() < 0.1 * np.ptp(x100)


def test_filter_design_and_refusals():
    assert len(recipes.fir_taps(500)) == 151 and len(recipes.fir_taps(100)) == 31
    taps = recipes.fir_taps(500)
    assert abs(taps.sum()) ** 2 > 0.9  # the "band-pass" passes DC (zero-phase power ~0.96)
    with pytest.raises(ValueError, match="above 94 Hz"):
        recipes.fir_taps(90)
    with pytest.raises(ValueError, match="NaN"):
        recipes.repo_recipe(np.full((1, 1000, 12), np.nan), 500, ENTRY.contracts["repo"])
    with pytest.raises(ValueError, match="too few"):
        recipes.repo_recipe(np.zeros((1, 400, 12)), 500, ENTRY.contracts["repo"])
