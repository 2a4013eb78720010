"""ECG-FM: parity with the authors' fairseq-signals code, strict conversion, controls, the recipe.

* Golden parity (always): a committed tiny checkpoint in the published
  fairseq-signals layout (``{'model', 'cfg', ...}``, legacy weight-norm
  spelling, pretraining heads included), loaded through
  ``load_backbone("ecg-fm:<path>")``, reproduces the reference's per-layer
  pooled hidden states and the authors' embedding stored beside it
  (``scripts/make_golden_ecg_fm.py``).
* Live parity (marker ``parity``): the same against the authors' classes
  imported from the checkout named by ``ECGSOUP_REFERENCE_ECG_FM``, for the
  tiny post-LN and pre-LN geometries, both weight-norm spellings, and the
  released geometry; skipped without the checkout.
* Controls: a wrong lead order, swapped tensors, a flipped
  ``layer_norm_first`` and a skipped weight-norm fold change the outputs;
  missing, unknown and disagreeing keys, code in the configuration, a
  pickled object and a file without ``cfg`` are refused.
* Recipe: linear resampling and the per-lead z-score against the authors'
  functions on a real PTB-XL record.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgsoup.backbones import (
    Backbone,
    LayerInfo,
    LicenceNotice,
    WeightsError,
    forget_licence_notices,
    load_backbone,
    load_strict,
    sha256_file,
)
from ecgsoup.backbones.ecg_fm import ENTRY
from ecgsoup.backbones.ecg_fm.convert import convert, parse_conv_layers
from ecgsoup.backbones.ecg_fm.model import ECGFM, ECGFMConfig
from ecgsoup.backbones.ecg_fm.recipes import ecg_fm_recipe, linear_resample, record_zscore

GOLDEN = Path(__file__).resolve().parent / "golden"
CHECKPOINT = GOLDEN / "ecg-fm-tiny.pt"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_golden_ecg_fm.py"
RTOL = 1e-5  # max |ours - reference| / max |reference|, per layer, float32


def _script():
    if "make_golden_ecg_fm" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_golden_ecg_fm", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["make_golden_ecg_fm"] = module
    return sys.modules["make_golden_ecg_fm"]


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN / "ecg-fm-tiny.npz") as data:
        out = {key: data[key] for key in data.files}
    out["input"] = out["input"].astype(np.float32)
    return out


def _load(path, **options) -> ECGFM:
    converted = convert(path, **options)
    module = ECGFM(converted.config)
    load_strict(module, converted.state_dict, path)
    return module.eval()


def _pooled(module: ECGFM, x: np.ndarray) -> np.ndarray:
    """(layers, records, width) float64."""
    with torch.inference_mode():
        flat = module.pooled_layers(torch.from_numpy(x)).double().numpy()
    return flat.reshape(len(x), module.n_layers, -1).transpose(1, 0, 2)


def _errors(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(ours - ref).max(axis=(1, 2)) / np.abs(ref).max(axis=(1, 2))


def _matches(module, golden) -> bool:
    return bool((_errors(_pooled(module, golden["input"]), golden["pooled"]) <= RTOL).all())


def _original():
    return torch.load(CHECKPOINT, weights_only=True)


def _save(tmp_path, checkpoint, name="edited.pt") -> Path:
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


# -- golden parity -------------------------------------------------------------------


def test_golden_fixture_records_its_reference(golden):
    assert str(golden["reference_repo"]) == "https://github.com/Jwoo5/fairseq-signals"
    assert len(str(golden["reference_commit"])) == 40
    geometry = json.loads(str(golden["geometry"]))
    assert geometry == _script().TINY
    assert _original()["cfg"]["model"]["conv_feature_layers"] == geometry["conv_feature_layers"]
    for path in GOLDEN.glob("ecg-fm-*"):
        assert path.stat().st_size < 300_000, f"{path.name} is too large for a committed fixture"


def test_golden_parity_every_layer_and_the_authors_embedding(golden):
    forget_licence_notices()
    with pytest.warns(LicenceNotice, match="MIT"):
        module = load_backbone(f"ecg-fm:{CHECKPOINT}")
    assert module.config == ECGFMConfig(**ENTRY.tiny)
    assert module.metadata["sha256"] == sha256_file(CHECKPOINT)
    assert module.contract == ENTRY.contracts["repo"]
    ours = _pooled(module, golden["input"])
    assert ours.shape == golden["pooled"].shape == (3, 2, 32)
    errors = _errors(ours, golden["pooled"])
    assert errors.max() <= RTOL, f"per-layer relative errors {errors}"
    # readout(pool(last layer)) is the authors' embedding of the encoder output.
    x = torch.from_numpy(golden["input"])
    last = module.readout()(ours[-1])
    embedding = golden["embedding"].astype(np.float64)
    assert np.abs(last - embedding).max() <= RTOL * np.abs(embedding).max()
    with torch.inference_mode():
        assert np.abs(module.embedding(x).numpy() - embedding).max() <= RTOL * np.abs(embedding).max()
        hidden = module.forward_layers(x)
        assert [tuple(h.shape) for h in hidden] == [(2, 156, 32)] * 3
        from_maps = torch.cat([module.pool(h, i) for i, h in enumerate(hidden)], dim=1)
        torch.testing.assert_close(from_maps, module.pooled_layers(x), rtol=0, atol=0)


def test_heads_ignored_with_one_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="ecgsoup"):
        converted = convert(CHECKPOINT)
    records = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(records) == 1
    heads = [k for k in _original()["model"]
             if k == "mask_emb" or k.split(".")[0] in ("quantizer", "project_q", "final_proj")]
    assert {k.split(".")[0] for k in heads} == {"mask_emb", "quantizer", "project_q", "final_proj"}
    assert f"ignored {len(heads)} tensors" in records[0].getMessage()
    assert set(converted.state_dict) == set(ECGFM(converted.config).state_dict())
    assert any("folded the weight norm" in note for note in converted.notes)
    assert any("2 post-LN layers of 32, 4 heads" in note for note in converted.notes)


def test_both_weight_norm_spellings_and_a_finetuned_layout_load(golden, tmp_path):
    checkpoint = _original()
    state = dict(checkpoint["model"])
    prefix = "conv_pos.pos_conv.0."
    state[prefix + "parametrizations.weight.original0"] = state.pop(prefix + "weight_g")
    state[prefix + "parametrizations.weight.original1"] = state.pop(prefix + "weight_v")
    assert _matches(_load(_save(tmp_path, {**checkpoint, "model": state}, "new.pt")), golden)
    # A fine-tuned classifier holds the encoder under `encoder.` beside its head `proj`.
    finetuned = {f"encoder.{k}": v for k, v in checkpoint["model"].items()}
    finetuned["proj.weight"], finetuned["proj.bias"] = torch.ones(17, 32), torch.zeros(17)
    converted = convert(_save(tmp_path, {**checkpoint, "model": finetuned}, "finetuned.pt"))
    module = ECGFM(converted.config)
    load_strict(module, converted.state_dict, "finetuned")
    assert _matches(module, golden)
    assert any("fine-tuned" in note for note in converted.notes)


def test_bfloat16_copy_runs_close_to_float32(golden):
    module = _load(CHECKPOINT)
    copy = ECGFM(module.config)
    copy.load_state_dict(module.state_dict())
    copy = copy.to(torch.bfloat16)
    for sub in copy.modules():  # as the embedder's bf16 copy: LayerNorms stay float32
        if isinstance(sub, torch.nn.LayerNorm):
            sub.float()
    x = torch.from_numpy(golden["input"])
    with torch.inference_mode():
        low = copy.pooled_layers(x.to(torch.bfloat16))
        high = module.pooled_layers(x)
    assert low.dtype == torch.float32
    assert (low - high).abs().max() < 0.1 * high.abs().max()


# -- controls: the checks can fail ---------------------------------------------------


def test_control_wrong_lead_order_fails(golden):
    module = _load(CHECKPOINT)
    mimic_order = golden["input"][:, [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]]
    errors = _errors(_pooled(module, mimic_order), golden["pooled"])
    assert errors.min() > 100 * RTOL


def test_control_swapped_tensors_load_but_fail(golden, tmp_path):
    checkpoint = _original()
    state = dict(checkpoint["model"])
    a, b = "encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.k_proj.weight"
    state[a], state[b] = state[b], state[a]
    module = _load(_save(tmp_path, {**checkpoint, "model": state}))  # same shapes: strict loading cannot tell
    assert _errors(_pooled(module, golden["input"]), golden["pooled"])[-1] > 100 * RTOL


def test_layer_norm_first_is_read_from_cfg_and_each_reading_matches_its_reference(golden, tmp_path):
    """The pre-LN reading of post-LN weights fits every key and shape, and computes another function.

    Only ``cfg['model']['layer_norm_first']`` tells them apart; each reading
    matches the authors' encoder built that way.
    """
    checkpoint = _original()
    cfg = {**checkpoint["cfg"], "model": {**checkpoint["cfg"]["model"], "layer_norm_first": True}}
    module = _load(_save(tmp_path, {**checkpoint, "cfg": cfg}))
    assert module.config.layer_norm_first
    ours = _pooled(module, golden["input"])
    assert _errors(ours, golden["pooled"]).min() > 100 * RTOL  # not the post-LN reference
    errors = _errors(ours, golden["pooled_pre_ln"])
    assert errors.max() <= RTOL, f"per-layer relative errors {errors}"
    embedding = golden["embedding_pre_ln"].astype(np.float64)
    assert np.abs(ours[-1] - embedding).max() <= RTOL * np.abs(embedding).max()


def test_control_skipped_weight_norm_fold_fails(golden, tmp_path):
    converted = convert(CHECKPOINT)
    state = dict(converted.state_dict)
    state["pos_conv.weight"] = _original()["model"]["conv_pos.pos_conv.0.weight_v"].float()  # v without g
    module = ECGFM(converted.config)
    load_strict(module, state, "unfolded")
    assert not _matches(module, golden)


@pytest.mark.parametrize("key", ["encoder.layers.1.fc2.bias", "feature_extractor.conv_layers.0.2.weight",
                                 "encoder.layers.0.self_attn.v_proj.weight"])
def test_missing_key_refused(tmp_path, key):
    checkpoint = _original()
    state = {k: v for k, v in checkpoint["model"].items() if k != key}
    with pytest.raises(WeightsError, match="missing"):
        load_backbone(f"ecg-fm:{_save(tmp_path, {**checkpoint, 'model': state})}")


def test_unknown_key_refused(tmp_path):
    checkpoint = _original()
    state = {**checkpoint["model"], "encoder.layers.0.adapter.weight": torch.zeros(3)}
    with pytest.raises(WeightsError, match="adapter.weight"):
        convert(_save(tmp_path, {**checkpoint, "model": state}))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("encoder_layers", 24, "encoder_layers: cfg 24, tensors 2"),  # as the stale published .yaml says
    ("encoder_embed_dim", 1024, "encoder_embed_dim: cfg 1024, tensors 32"),
    ("conv_feature_layers", "[(16, 3, 2)] * 4", "conv kernels"),
    ("extractor_mode", "layer_norm", "extractor_mode='layer_norm'"),
])
def test_cfg_and_tensors_must_agree(tmp_path, field, value, message):
    checkpoint = _original()
    cfg = {**checkpoint["cfg"], "model": {**checkpoint["cfg"]["model"], field: value}}
    with pytest.raises(WeightsError, match=message):
        convert(_save(tmp_path, {**checkpoint, "cfg": cfg}))


def test_checkpoint_without_cfg_needs_the_settings_named(golden, tmp_path):
    bare = _save(tmp_path, {"model": _original()["model"]}, "bare.pt")
    with pytest.raises(WeightsError, match="holds no cfg.*layer_norm_first"):
        convert(bare)
    settings = {k: _script().TINY[k] for k in ("conv_feature_layers", "encoder_attention_heads",
                                                "layer_norm_first")}
    assert _matches(_load(bare, model_cfg=settings), golden)


def test_conv_layers_are_parsed_without_running_code(tmp_path):
    assert parse_conv_layers("[(256, 2, 2)] * 4") == [(256, 2, 2)] * 4
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    marker = tmp_path / "ran"
    for hostile in (f"__import__('pathlib').Path('{marker}').touch()", "[(1, 2, 2)] * 10**9", "[('a', 2, 2)]"):
        with pytest.raises(WeightsError, match="conv_feature_layers"):
            parse_conv_layers(hostile)
    assert not marker.exists()


class _NotATensor:
    pass


def test_pickled_objects_refused(tmp_path):
    checkpoint = _original()
    path = _save(tmp_path, {**checkpoint, "cfg": {"model": _NotATensor()}})
    with pytest.raises(WeightsError, match="weights_only=True"):
        convert(path)


# -- the released geometry, layers and contract --------------------------------------


def test_released_parameter_count():
    module = ECGFM(ECGFMConfig(**ENTRY.sizes["base"]))
    # The analytic count of the fairseq-signals encoder, 90,373,248, holds the
    # weight-norm magnitude (1 x 1 x 128) that folding removes.
    assert sum(p.numel() for p in module.parameters()) == 90_373_248 - 128
    assert module.config.n_frames(2500) == 156
    assert module.layers == tuple(LayerInfo(f"layer{i:02d}", 768, "residual") for i in range(13))
    assert module.readout().kind == "identity"
    assert isinstance(module, Backbone) and module.family == "ecg-fm"


def test_input_must_have_the_model_lead_count():
    module = ECGFM(ECGFMConfig(**ENTRY.tiny))
    with pytest.raises(ValueError, match="12 leads"):
        module.pooled_layers(torch.zeros(1, 8, 2500))
    with pytest.raises(ValueError, match="too few"):
        module.pooled_layers(torch.zeros(1, 12, 10))


def test_init_weights_is_seeded_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    first = ECGFM(ECGFMConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(3))
    second = ECGFM(ECGFMConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(3))
    assert torch.equal(before, torch.get_rng_state())
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_package_import_loads_no_model_code():
    code = (
        "import sys; import ecgsoup.backbones.ecg_fm; "
        "assert 'ecgsoup.backbones.ecg_fm.model' not in sys.modules; "
        "assert not any(m.startswith('fairseq') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_entry_contract_and_card():
    contract = ENTRY.contracts[ENTRY.default_contract]
    assert (contract.sampling_rate, contract.window, contract.stride) == (500.0, 2500, 2500)
    assert (contract.layout, contract.window_norm, contract.recipe) == ("leads", "none", "ecg-fm@1")
    assert contract.lead_names == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert ENTRY.card.license == "MIT" and "MIT" in ENTRY.card.notice
    for target in (ENTRY.module, ENTRY.config, ENTRY.convert, *ENTRY.recipes.values()):
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    assert ECGFMConfig(**ENTRY.sizes["base"]) == ECGFMConfig()


# -- the recipe ----------------------------------------------------------------------


def test_recipe_matches_the_authors_preprocessing(golden):
    record = golden["recipe_input"]  # (leads, time) at 100 Hz, lead V2 made constant
    out = ecg_fm_recipe(record.T[None].astype(np.float64), float(golden["recipe_fs"]), ENTRY.contracts["repo"])
    ours = out[0].T
    assert ours.shape == golden["recipe_output"].shape == (12, 1000)
    assert np.abs(ours - golden["recipe_output"]).max() < 1e-5
    assert (ours[7] == 0).all() and np.allclose(ours[[0, 8]].std(axis=1), 1.0, atol=1e-5)


def test_recipe_on_a_real_record_through_the_preprocessor(shared_data):
    from ecgsoup import ECGPreprocessor

    data = np.load(shared_data / "ptbxl_sample" / "ptbxl_sample_500hz.npz")
    x = data["x"][:2].astype(np.float32) / 1000.0  # (records, time, leads) mV, standard order
    leads = list(ENTRY.contracts["repo"].lead_names)
    prep = ECGPreprocessor(sampling_rate=500, lead_names=leads, model=f"ecg-fm:{CHECKPOINT}")
    out = prep.fit_transform(x).reshape(len(x), 12, -1).transpose(0, 2, 1)  # lead-major -> time-major
    expected = record_zscore(x)
    assert out.shape == expected.shape == (2, 5000, 12)
    assert np.abs(out - expected).max() < 1e-5
    # Linear resampling keeps the first and last samples and interpolates between them.
    ramp = np.arange(11, dtype=np.float64)[None, :, None]
    assert np.allclose(linear_resample(ramp, 100.0, 500.0)[0, :, 0], np.linspace(0, 10, 55))


# -- live parity against the authors' code -------------------------------------------


def _reference_root():
    script = _script()
    root = script.reference_root()
    if root is None:
        pytest.skip(f"{script.REFERENCE_ENV} is not set to a checkout of {script.REFERENCE_REPO}")
    return root


@pytest.mark.parity
@pytest.mark.parametrize(("geometry", "spelling", "layer_norm_first"), [
    ("TINY", "legacy", False),
    ("TINY", "parametrizations", False),
    ("TINY", "legacy", True),
    ("BASE", "legacy", False),
])
def test_parity_with_fairseq_signals(tmp_path, geometry, spelling, layer_norm_first):
    root = _reference_root()
    script = _script()
    seed = 7 + layer_norm_first
    reference, cfg = script.build_reference(
        root, {**getattr(script, geometry), "layer_norm_first": layer_norm_first}, seed)
    path = _save(tmp_path, script.original_checkpoint(reference, cfg, spelling=spelling), "reference.pt")
    module = load_backbone(f"ecg-fm:{path}")
    assert module.config.layer_norm_first is layer_norm_first
    x = script.make_input(seed, n_records=2 if geometry == "TINY" else 1)
    expected = script.reference_outputs(reference, x)
    ours = _pooled(module, x)
    errors = _errors(ours, expected["pooled"])
    assert errors.max() <= RTOL, f"per-layer relative errors {errors}"
    embedding = expected["embedding"]
    assert np.abs(module.readout()(ours[-1]) - embedding).max() <= RTOL * np.abs(embedding).max()


# -- end to end ----------------------------------------------------------------------


@pytest.mark.slow
def test_embed_real_records_with_an_original_checkpoint(shared_data, tmp_path, capsys):
    from ecgsoup.cli import main
    from ecgsoup.store import open_store

    store = tmp_path / "emb.zarr"
    assert main(["embed", str(shared_data / "ptbxl_sample"), "--model", f"ecg-fm:{CHECKPOINT}",
                 "--out", str(store), "--quiet"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "30 of 30 records embedded" in out
    stored = open_store(store)
    assert stored.attrs["model_family"] == "ecg-fm"
    assert stored.attrs["model_sha256"] == sha256_file(CHECKPOINT)
    assert stored.X.shape == (30, 3 * 32) and np.isfinite(stored.X).all()


@pytest.mark.parity
def test_parity_recipe_with_the_authors_preprocessing(shared_data):
    root = _reference_root()
    expected = _script().recipe_reference(root, shared_data)
    ours = ecg_fm_recipe(expected["recipe_input"].T[None].astype(np.float64), 100.0, ENTRY.contracts["repo"])
    assert np.abs(ours[0].T - expected["recipe_output"]).max() < 1e-5
