"""ECG-JEPA (Kim) port: golden parity, reference parity, and controls that can fail.

The golden files in ``golden/`` come from the authors' code at the commit
they record (``scripts/make_golden_ecg_jepa.py``): a tiny-geometry encoder
in the original ``{"encoder": state_dict}`` layout, one input, the
reference's per-layer pooled outputs (final LayerNorm per token, then the
mean) and its ``representation`` embedding, and one record through the
authors' FFT resampling.  The ``parity`` tests import the authors' code from
the checkout named by ``ECGSOUP_REFERENCE_ECG_JEPA`` and skip without it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgsoup import ECGPreprocessor, LayerwiseEmbedder, load_sample
from ecgsoup.backbones import (
    Backbone,
    InputContract,
    LayerInfo,
    WeightsError,
    load_backbone,
    save_backbone,
    sha256_file,
)
from ecgsoup.backbones.ecg_jepa import ENTRY
from ecgsoup.backbones.ecg_jepa.convert import convert
from ecgsoup.backbones.ecg_jepa.model import (
    ECGJEPA,
    ECGJEPAConfig,
    cross_pattern_mask,
    sincos_positions,
)
from ecgsoup.backbones.ecg_jepa.recipes import fft_recipe

GOLDEN = Path(__file__).resolve().parent / "golden"
CHECKPOINT = GOLDEN / "ecg-jepa-tiny.pth"
REFERENCE_ENV = "ECGSOUP_REFERENCE_ECG_JEPA"
TOLERANCE = 1e-5  # max |ours - reference| / max |reference|, per layer, fp32
TINY_HEADS = {"num_heads": ENTRY.tiny["num_heads"]}


def relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN / "ecg-jepa-tiny.npz") as data:
        return {key: data[key] for key in data.files}


def load_tiny(path=CHECKPOINT, **options) -> ECGJEPA:
    return load_backbone(f"ecg-jepa:{path}", **{**TINY_HEADS, **options})


def pooled_by_layer(model: ECGJEPA, x) -> list[np.ndarray]:
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    with torch.no_grad():
        pooled = model.pooled_layers(x).numpy()
    edges = np.cumsum((0, *model.widths))
    return [pooled[:, a:b] for a, b in itertools.pairwise(edges)]


def worst_layer_error(model: ECGJEPA, golden) -> float:
    layers = pooled_by_layer(model, golden["input"])
    return max(relative_error(ours, golden[f"pooled_{i}"]) for i, ours in enumerate(layers))


def save_encoder(path, state: dict) -> Path:
    torch.save({"encoder": state, "epoch": 100}, path)
    return path


def original_state() -> dict:
    return dict(torch.load(CHECKPOINT, weights_only=True)["encoder"])


# -- golden parity (always runs) ---------------------------------------------------


def test_golden_records_the_reference(golden):
    assert len(str(golden["reference_commit"])) == 40
    assert json.loads(str(golden["geometry"])) == ENTRY.tiny
    assert sha256_file(CHECKPOINT) == str(golden["checkpoint_sha256"])
    assert sum(path.stat().st_size for path in GOLDEN.glob("ecg-jepa-*")) < 300_000


def test_golden_parity_every_layer_and_the_authors_embedding(golden):
    model = load_tiny()
    assert model.config == ECGJEPAConfig(**ENTRY.tiny)
    assert model.metadata["sha256"] == sha256_file(CHECKPOINT)
    x = torch.from_numpy(golden["input"].astype(np.float32))
    layers = pooled_by_layer(model, x)
    assert len(layers) == ENTRY.tiny["depth"] + 1
    errors = [relative_error(ours, golden[f"pooled_{i}"]) for i, ours in enumerate(layers)]
    assert max(errors) <= TOLERANCE, f"per-layer relative errors {errors}"
    # readout(pool(last layer)) is the authors' representation(x).
    assert model.readout().kind == "identity"
    assert relative_error(model.readout()(layers[-1]), golden["embedding"]) <= TOLERANCE
    with torch.no_grad():
        assert relative_error(model.embedding(x).numpy(), golden["embedding"]) <= TOLERANCE
        hidden = model.forward_layers(x)
        from_maps = torch.cat([model.pool(h, i) for i, h in enumerate(hidden)], dim=1)
        torch.testing.assert_close(from_maps, model.pooled_layers(x), rtol=0, atol=0)


def test_the_norm_acts_per_token_before_the_mean(golden):
    """A LayerNorm after the mean (ST-MEM's readout) is not the authors' embedding."""
    model = load_tiny()
    x = torch.from_numpy(golden["input"].astype(np.float32))
    with torch.no_grad():
        last = model.forward_layers(x)[-1]
        norm = model.norm
        after_mean = torch.nn.functional.layer_norm(last.mean(1), norm.normalized_shape, norm.weight, norm.bias,
                                                    norm.eps)
    assert relative_error(after_mean.numpy(), golden["embedding"]) > 100 * TOLERANCE


def test_converter_reads_the_geometry_and_records_the_heads():
    converted = convert(CHECKPOINT, **TINY_HEADS)
    assert converted.config == ECGJEPAConfig(**ENTRY.tiny)
    assert "unwrapped 'encoder'" in converted.notes
    assert any("not recorded in the weights" in note for note in converted.notes)
    assert convert(CHECKPOINT).config.num_heads == 16  # the authors' loader's value


def test_converter_options_are_checked():
    with pytest.raises(WeightsError, match="invalid ECG-JEPA geometry.*num_heads=5"):
        convert(CHECKPOINT, num_heads=5)
    with pytest.raises(TypeError, match="takes only num_heads"):
        convert(CHECKPOINT, sampling_rate=500)


@pytest.mark.parametrize("layout", ["bare", "data-parallel", "whole-module"])
def test_converter_accepts_the_other_layouts(tmp_path, golden, layout):
    state = original_state()
    if layout == "bare":
        obj = state
    elif layout == "data-parallel":
        obj = {"encoder": {f"module.{k}": v for k, v in state.items()}}
    else:  # an ecg_jepa module's state dict: context encoder, target encoder and predictor
        obj = {f"encoder.{k}": v for k, v in state.items()}
        obj.update({f"target_encoder.{k}": torch.zeros_like(v) for k, v in state.items()})
        obj["predictor.mask_token"] = torch.zeros(1, 1, 8)
    path = tmp_path / "other.pth"
    torch.save(obj, path)
    assert worst_layer_error(load_tiny(path), golden) <= TOLERANCE


def test_converted_folder_keeps_the_head_count_and_parity(tmp_path, golden):
    folder = save_backbone(load_tiny(), tmp_path / "tiny")
    again = load_backbone(str(folder))
    assert again.config.num_heads == ENTRY.tiny["num_heads"]
    assert again.contract == ENTRY.contracts["linear-eval"]
    assert worst_layer_error(again, golden) <= TOLERANCE


def test_fft_recipe_matches_the_authors_resampling(golden):
    record = golden["recipe_input"]  # (leads, samples) at 500 Hz, as the authors hold PTB-XL
    contract = ENTRY.contracts["linear-eval"]
    ours = fft_recipe(record.T[None], float(golden["recipe_fs"]), contract)[0].T
    assert ours.shape == golden["recipe_output"].shape == (record.shape[0], 2500)
    assert relative_error(ours, golden["recipe_output"]) <= 1e-6  # float32 output


def test_twelve_lead_records_keep_eight_leads_by_name_with_one_log_line(caplog):
    """Real LUDB records (bundled sample, 100 Hz, 12 leads) into the 8-lead contract and the model."""
    sample = load_sample()
    X = sample.X[:3]
    pre = ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names,
                          model="random:ecg-jepa-tiny")
    with caplog.at_level(logging.INFO, logger="ecgsoup"):
        flat = pre.fit_transform(X)
    lines = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert lines == ["The model reads 8 of the 12 leads (I, II, V1, V2, V3, V4, V5, V6); not used: "
                     "III, aVR, aVL, aVF."]
    assert flat.shape == (3, 8 * 2500)
    by_lead = flat.reshape(3, 8, 2500)
    v1 = list(sample.lead_names).index("V1")
    expected = fft_recipe(X[:, :, [v1]], sample.sampling_rate, ENTRY.contracts["linear-eval"])[:, :, 0]
    np.testing.assert_allclose(by_lead[:, 2], expected, rtol=1e-6, atol=1e-7)  # V1 is the third model lead
    embedder = LayerwiseEmbedder(model="random:ecg-jepa-tiny").fit(flat)
    Z = embedder.transform(flat)
    assert Z.shape == (3, 3 * ENTRY.tiny["embed_dim"]) and np.isfinite(Z).all()


# -- controls: the check can fail --------------------------------------------------


def test_control_wrong_lead_order_fails_the_check(golden):
    model = load_tiny()
    swapped = golden["input"][:, [0, 2, 1, 3, 4, 5, 6, 7]]  # V1 where II belongs
    layers = pooled_by_layer(model, swapped)
    assert relative_error(layers[-1], golden["embedding"]) > 100 * TOLERANCE


def test_control_wrong_head_count_loads_but_fails_the_check(golden):
    model = load_backbone(f"ecg-jepa:{CHECKPOINT}")  # 16 heads: shapes fit, attention differs
    assert model.config.num_heads == 16
    assert worst_layer_error(model, golden) > 100 * TOLERANCE


def test_control_swapped_blocks_load_but_fail_the_check(tmp_path, golden):
    state = original_state()
    a, b = "encoder_blocks.blocks.0.mlp.fc1.weight", "encoder_blocks.blocks.1.mlp.fc1.weight"
    state[a], state[b] = state[b], state[a]
    model = load_tiny(save_encoder(tmp_path / "swapped.pth", state))
    assert worst_layer_error(model, golden) > 100 * TOLERANCE


def test_control_recomputed_positions_fail_the_check(golden):
    """The position table is loaded from the file: the golden file's is off the sine-cosine values."""
    model = load_tiny()
    with torch.no_grad():
        model.pos_embed.copy_(sincos_positions(model.config.embed_dim, 8, 50))
    assert worst_layer_error(model, golden) > 100 * TOLERANCE


def test_control_no_cross_pattern_mask_fails_the_check(golden):
    model = load_tiny()
    model.attn_mask.fill_(True)
    assert worst_layer_error(model, golden) > 100 * TOLERANCE


@pytest.mark.parametrize("key", ["encoder_blocks.blocks.1.attn.proj.bias", "norm.weight", "pos_embed"])
def test_control_missing_key_is_refused(tmp_path, key):
    state = original_state()
    del state[key]
    with pytest.raises(WeightsError, match="missing|not a complete"):
        load_tiny(save_encoder(tmp_path / "missing.pth", state))


def test_control_unknown_key_is_refused(tmp_path):
    state = original_state()
    state["predictor_blocks.blocks.0.attn.qkv.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError, match="predictor_blocks"):
        convert(save_encoder(tmp_path / "unknown.pth", state))


def test_control_wrong_shape_is_refused(tmp_path):
    state = original_state()
    state["encoder_blocks.blocks.0.mlp.fc2.weight"] = torch.zeros(32, 63)
    with pytest.raises(WeightsError, match="wrong shapes"):
        load_tiny(save_encoder(tmp_path / "shape.pth", state))


def test_control_a_patch_that_does_not_tile_the_window_is_refused(tmp_path):
    state = original_state()
    state["W_P.weight"] = torch.zeros(32, 48)
    with pytest.raises(WeightsError, match="do not tile"):
        convert(save_encoder(tmp_path / "patch.pth", state))


# -- the released geometry, layers and input ------------------------------------------


def test_released_parameter_count_and_layers():
    model = ECGJEPA(ECGJEPAConfig(**ENTRY.sizes["base"]))
    assert isinstance(model, Backbone) and model.family == "ecg-jepa"
    count = sum(p.numel() for name, p in model.named_parameters() if name != "pos_embed")
    assert count == 85_067_520  # "85.07 M" trained parameters
    assert model.pos_embed.numel() == 400 * 768  # the fixed table, stored beside them
    assert model.layers == tuple(LayerInfo(f"layer{i:02d}", 768, "residual") for i in range(13))
    assert model.readout().kind == "identity"


def test_cross_pattern_mask_is_own_lead_or_same_patch():
    mask = cross_pattern_mask(3, 4)
    for i, j in itertools.product(range(12), repeat=2):
        assert bool(mask[i, j]) == (i // 4 == j // 4 or i % 4 == j % 4)


def test_input_must_be_eight_leads_of_2500_samples():
    model = ECGJEPA(ECGJEPAConfig(**ENTRY.tiny))
    for shape in ((1, 12, 2500), (1, 8, 2000)):
        with pytest.raises(ValueError, match=r"\(batch, 8 leads, 2500 samples\) exactly"):
            model.pooled_layers(torch.zeros(shape))


def test_init_weights_is_seeded_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    first = ECGJEPA(ECGJEPAConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(3))
    second = ECGJEPA(ECGJEPAConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(3))
    assert torch.equal(before, torch.get_rng_state())
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_config_round_trips_and_refuses_bad_geometry():
    config = ECGJEPAConfig(**ENTRY.sizes["base"])
    assert ECGJEPAConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    with pytest.raises(ValueError, match="num_heads"):
        ECGJEPAConfig(**{**ENTRY.tiny, "num_heads": 5})


def test_entry_resolves():
    for spec in (ENTRY.module, ENTRY.config, ENTRY.convert, *ENTRY.recipes.values()):
        module, attr = spec.split(":")
        assert callable(getattr(importlib.import_module(module), attr))
    contract = ENTRY.contracts[ENTRY.default_contract]
    assert isinstance(contract, InputContract)
    assert (contract.sampling_rate, contract.window, contract.window_norm, contract.recipe) == (
        250.0, 2500, "none", "ecg-jepa-fft@1")
    assert contract.lead_names == ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    assert ENTRY.card.license == "unstated" and "MIT" in ENTRY.card.notice
    assert {size for _, size, _, _ in ENTRY.weights} <= set(ENTRY.sizes)


# -- random-weight parity against the authors' code (marker: parity) -------------


def _reference():
    path = os.environ.get(REFERENCE_ENV)
    if not path:
        pytest.skip(f"{REFERENCE_ENV} is not set (a checkout of sehunfromdaegu/ECG_JEPA)")
    if not (Path(path) / "ecg_jepa.py").is_file():
        pytest.skip(f"{REFERENCE_ENV}={path} holds no ecg_jepa.py")
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_golden_ecg_jepa.py"
    spec = importlib.util.spec_from_file_location("_ecgsoup_make_golden_ecg_jepa", script)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers, helpers.import_reference(Path(path))


@pytest.mark.parity
@pytest.mark.parametrize("size", ["tiny", "base"])
def test_parity_with_the_reference_encoder(tmp_path, size):
    helpers, ecg_jepa = _reference()
    geometry = ENTRY.tiny if size == "tiny" else ENTRY.sizes[size]
    generator = torch.Generator().manual_seed(17)
    encoder = helpers.seeded_encoder(ecg_jepa, geometry, generator)
    path = save_encoder(tmp_path / "reference.pth", encoder.state_dict())
    model = load_backbone(f"ecg-jepa:{path}", num_heads=geometry["num_heads"])
    assert model.config == ECGJEPAConfig(**geometry)
    x = torch.randn(2, 8, 2500, generator=generator)
    reference_layers, embedding = helpers.reference_layers(encoder, x)
    ours = pooled_by_layer(model, x)
    errors = [relative_error(o, r) for o, r in zip(ours, reference_layers, strict=True)]
    assert max(errors) <= TOLERANCE, f"per-layer relative errors {errors}"
    assert relative_error(model.readout()(ours[-1]), embedding) <= TOLERANCE


@pytest.mark.parity
def test_parity_positions_and_mask_with_the_reference():
    _, ecg_jepa = _reference()
    pos_encoding = sys.modules["pos_encoding"]
    expected = torch.from_numpy(pos_encoding.get_2d_sincos_pos_embed(768, 8, 50)).float()
    torch.testing.assert_close(sincos_positions(768, 8, 50), expected, rtol=0, atol=0)
    reference = ecg_jepa.MaskTransformer(embed_dim=32, depth=1, num_heads=4, c=8, p=50, t=50)
    assert torch.equal(reference._cross_attention_mask().bool(), cross_pattern_mask(8, 50))
