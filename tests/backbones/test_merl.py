"""MERL's ResNet-18-1D port: golden parity, reference parity, lead order, and controls that can fail.

The golden files in ``golden/`` come from the authors' code at the commit
they record (``scripts/make_golden_merl.py``): a tiny-geometry encoder
checkpoint in the layout of the authors' ``*_encoder.pth``, one input, the
reference's per-layer pooled outputs and ``avgpool`` embedding, and the same
for two real PTB-XL records read and scaled by the authors' downstream
data-set class (which swaps them into MIMIC lead order).  The ``parity``
tests import the authors' code from the checkout named by
``ECGSOUP_REFERENCE_MERL`` and skip without it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgsoup import ECGPreprocessor, LayerwiseEmbedder
from ecgsoup.backbones import (
    Backbone,
    InputContract,
    LayerInfo,
    LicenceNotice,
    WeightsError,
    load_backbone,
    load_strict,
    random_backbone,
    resolve_contract,
    sha256_file,
)
from ecgsoup.backbones.merl import ENTRY, MIMIC_LEADS
from ecgsoup.backbones.merl.convert import convert
from ecgsoup.backbones.merl.model import ResNet1D, ResNet1DConfig
from ecgsoup.backbones.merl.recipes import minmax_unit
from ecgsoup.recipes import apply_window_norm

GOLDEN = Path(__file__).resolve().parent / "golden"
CHECKPOINT = GOLDEN / "merl-tiny.pth"
MODEL = f"merl:{CHECKPOINT}"
REFERENCE_ENV = "ECGSOUP_REFERENCE_MERL"
TOLERANCE = 1e-6  # max |ours - reference| / max |reference|, per layer, fp32
N_LAYERS = 5
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run fastest on one thread; on a busy machine two threads thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN / "merl-tiny.npz") as data:
        return {key: data[key] for key in data.files}


def load_converted(path) -> ResNet1D:
    converted = convert(path)
    model = ResNet1D(converted.config)
    load_strict(model, converted.state_dict, path)
    return model.eval()


def split_layers(pooled: np.ndarray, widths) -> list[np.ndarray]:
    edges = np.cumsum((0, *widths))
    return [pooled[:, a:b] for a, b in itertools.pairwise(edges)]


def pooled_by_layer(model: ResNet1D, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        pooled = model.pooled_layers(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return split_layers(pooled, model.widths)


def worst_layer_error(model: ResNet1D, golden) -> float:
    layers = pooled_by_layer(model, golden["input"])
    return max(relative_error(ours, golden[f"pooled_{i}"]) for i, ours in enumerate(layers))


def original_state() -> dict:
    return dict(torch.load(CHECKPOINT, weights_only=True))


# -- golden parity (always runs) ---------------------------------------------------


def test_golden_records_the_reference(golden):
    assert len(str(golden["reference_commit"])) == 40
    assert str(golden["reference_repo"]).endswith("cheliu-computation/MERL-ICML2024")
    assert json.loads(str(golden["geometry"])) == ENTRY.tiny
    assert sha256_file(CHECKPOINT) == str(golden["checkpoint_sha256"])
    for path in GOLDEN.glob("merl-*"):
        assert path.stat().st_size < 300_000, f"{path.name} is too large for a committed fixture"


def test_golden_parity_every_layer_and_embedding(golden):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        model = load_backbone(MODEL)
    assert isinstance(model, ResNet1D) and model.config == ResNet1DConfig(**ENTRY.tiny)
    x = torch.from_numpy(golden["input"])
    layers = pooled_by_layer(model, golden["input"])
    assert len(layers) == N_LAYERS
    errors = [relative_error(ours, golden[f"pooled_{i}"]) for i, ours in enumerate(layers)]
    assert max(errors) <= TOLERANCE, f"per-layer relative errors {errors}"
    # readout(pool(last layer)) is the reference's avgpool embedding.
    assert relative_error(model.readout()(layers[-1]), golden["embedding"]) <= TOLERANCE
    with torch.no_grad():
        assert relative_error(model.embedding(x).numpy(), golden["embedding"]) <= TOLERANCE
        hidden = model.forward_layers(x)
        from_maps = torch.cat([model.pool(h, i) for i, h in enumerate(hidden)], dim=1)
        torch.testing.assert_close(from_maps, model.pooled_layers(x), rtol=0, atol=0)


def test_converter_ignores_head_and_counters_with_one_log_line(caplog):
    with caplog.at_level("WARNING", logger="ecgsoup"):
        converted = convert(CHECKPOINT)
    records = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(records) == 1
    original = original_state()
    n_counters = sum(1 for key in original if key.endswith("num_batches_tracked"))
    n_head = sum(1 for key in original if key.startswith("linear."))
    assert n_counters == 20 and n_head == 2  # 1 stem + 16 block + 3 shortcut BatchNorms
    assert f"ignored {n_counters + n_head} tensors" in records[0].getMessage()
    assert len(converted.state_dict) == len(original) - n_counters - n_head
    assert any("geometry from shapes" in note for note in converted.notes)


def _whole_model_state() -> dict:
    """The encoder inside the layout of the authors' ``*_ckpt.pth`` (the whole pretraining model)."""
    state = {f"ecg_encoder.{k}": v for k, v in original_state().items()}
    generator = torch.Generator().manual_seed(0)
    heads = {  # one tensor of each head MERL's pretraining model holds beside its encoder
        "downconv.weight": (16, 24, 1),
        "att_pool_head.positional_embedding": (1, 314, 16),
        "att_pool_head.mhsa.in_proj_weight": (48, 16),
        "att_pool_head.c_proj.bias": (16,),
        "linear1.weight": (16, 16),
        "linear2.weight": (16, 16),
        "lm_model.embeddings.word_embeddings.weight": (30, 8),
        "proj_t.0.weight": (8, 8),
    }
    state.update({k: torch.randn(shape, generator=generator) for k, shape in heads.items()})
    return state


def test_whole_pretraining_model_layout_loads_the_encoder(tmp_path, golden, caplog):
    path = tmp_path / "merl_ckpt.pth"
    torch.save(_whole_model_state(), path)
    with caplog.at_level("WARNING", logger="ecgsoup"):
        model = load_converted(path)
    assert worst_layer_error(model, golden) <= TOLERANCE
    records = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(records) == 1 and "ignored 30 tensors" in records[0].getMessage()


def test_trainer_checkpoint_wrapper_and_data_parallel_prefix(tmp_path, golden):
    path = tmp_path / "merl_10_ckpt.pth"
    model_state = {f"module.{k}": v for k, v in _whole_model_state().items()}
    torch.save({"epoch": 10, "model_state_dict": model_state, "optimizer_state_dict": {"state": {}}}, path)
    assert worst_layer_error(load_converted(path), golden) <= TOLERANCE


# -- lead order and the authors' scaling, end to end on real PTB-XL records ---------


def _ptbxl(shared_data, golden) -> np.ndarray:
    with np.load(shared_data / "ptbxl_sample" / "ptbxl_sample_500hz.npz") as data:
        assert tuple(data["lead_names"]) == STANDARD_LEADS
        rows = [list(data["ecg_id"]).index(i) for i in golden["ptbxl_ecg_id"]]
        return data["x"][rows].astype(np.float64) / 1000.0  # microvolts -> mV, as WFDB reads them


def _embed(x: np.ndarray, lead_names) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        prep = ECGPreprocessor(sampling_rate=500, lead_names=list(lead_names), model=MODEL)
        return LayerwiseEmbedder(model=MODEL).fit_transform(prep.fit_transform(x))


def test_standard_order_input_matches_the_authors_pipeline(shared_data, golden):
    """Standard-order PTB-XL through ecgsoup == the authors' data-set class (MIMIC swap) + model."""
    z = _embed(_ptbxl(shared_data, golden), STANDARD_LEADS)
    reference = np.concatenate([golden[f"ptbxl_pooled_{i}"] for i in range(N_LAYERS)], axis=1)
    assert relative_error(z, reference) <= TOLERANCE
    assert relative_error(z[:, -ENTRY.tiny["widths"][-1]:], golden["ptbxl_embedding"]) <= TOLERANCE


def test_leads_are_matched_by_name_not_position(shared_data, golden):
    x = _ptbxl(shared_data, golden)
    z = _embed(x, STANDARD_LEADS)
    swap = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]
    # The same data with aVL and aVF stored the other way round, and named so: nothing changes.
    renamed = _embed(x[..., swap], [STANDARD_LEADS[i] for i in swap])
    np.testing.assert_array_equal(renamed, z)
    # The columns swapped but the names not: the model now receives aVL where it expects aVF and
    # the reverse, which is exactly feeding the standard order by position.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        model = load_backbone(MODEL)
    mislabelled = _embed(x[..., swap], STANDARD_LEADS)
    by_position = minmax_unit(np.transpose(x, (0, 2, 1)))
    expected = np.concatenate(pooled_by_layer(model, by_position), axis=1)
    assert relative_error(mislabelled, expected) <= TOLERANCE
    assert relative_error(mislabelled, z) > 100 * TOLERANCE


def test_contract_is_mimic_order_and_unit_minmax():
    contract = resolve_contract(MODEL)
    assert contract == ENTRY.contracts["downstream"]
    assert contract.lead_names == MIMIC_LEADS
    assert contract.lead_names.index("aVF") == 4 and contract.lead_names.index("aVL") == 5
    assert (contract.sampling_rate, contract.window, contract.window_norm) == (500.0, 5000, "none")
    assert contract.window_transform == "ecgsoup.backbones.merl.recipes:minmax_unit"


def test_minmax_unit_is_the_authors_formula():
    rng = np.random.default_rng(3)
    batch = rng.normal(size=(3, 12, 500)) * [[[0.1]], [[2.0]], [[50.0]]]
    out = minmax_unit(batch)
    assert out.dtype == np.float32 and out.shape == batch.shape
    low, high = batch.min(axis=(1, 2), keepdims=True), batch.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, (batch - low) / (high - low + 1e-8), rtol=1e-6)
    assert out.min() == 0.0 and 0.999 < out.max() <= 1.0
    # All leads share one range: a lead with a small amplitude stays small.
    assert np.ptp(out[:, 0], axis=-1).max() <= 1.0
    flat = minmax_unit(np.full((1, 12, 10), 7.0))  # the epsilon keeps a flat record finite
    assert np.array_equal(flat, np.zeros((1, 12, 10), np.float32))
    # The generic minmax_whole maps to [-1, 1]: not MERL's scaling.
    assert apply_window_norm(batch, "minmax_whole").min() < -0.99
    with pytest.raises(ValueError, match="n_windows"):
        minmax_unit(np.zeros((12, 500)))


# -- controls: the check can fail --------------------------------------------------


def test_control_wrong_lead_order_fails_the_check(golden):
    model = load_converted(CHECKPOINT)
    swapped = {**golden, "input": golden["input"][:, [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]]}
    # On white noise two swapped leads fade with depth; the stem sees them directly.
    assert worst_layer_error(model, swapped) > 1000 * TOLERANCE


def test_control_swapped_blocks_load_but_fail_the_check(tmp_path, golden):
    state = original_state()
    a, b = "layer1.0.conv2.weight", "layer1.1.conv2.weight"
    assert state[a].shape == state[b].shape
    state[a], state[b] = state[b], state[a]
    path = tmp_path / "swapped.pth"
    torch.save(state, path)
    model = load_converted(path)  # same shapes: a strict load cannot notice
    assert worst_layer_error(model, golden) > 100 * TOLERANCE


def test_control_batch_statistics_fail_the_check(golden):
    """A port that normalised with the batch's own statistics (training mode) would not match."""
    model = load_converted(CHECKPOINT)
    x = torch.from_numpy(golden["input"])
    stem = model.stem
    with torch.no_grad():
        h = stem.conv(x)
        batch_stats = torch.nn.functional.batch_norm(h, None, None, stem.norm.weight, stem.norm.bias,
                                                     training=True, eps=stem.norm.eps).relu().mean(-1)
    assert relative_error(batch_stats.numpy(), golden["pooled_0"]) > 100 * TOLERANCE


@pytest.mark.parametrize("key", ["layer3.1.bn2.running_var", "conv1.weight", "layer2.0.shortcut.0.weight"])
def test_control_missing_key_is_refused(tmp_path, key):
    state = original_state()
    del state[key]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="missing|not a complete|shortcut"):
        load_converted(path)


def test_control_missing_projection_shortcut_is_named(tmp_path):
    state = {k: v for k, v in original_state().items() if not k.startswith("layer3.0.shortcut.")}
    path = tmp_path / "no_shortcut.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="layer3 lacks a projection shortcut"):
        convert(path)


def test_control_unknown_key_is_refused(tmp_path):
    state = original_state()
    state["layer1.0.attention.weight"] = torch.zeros(3)
    path = tmp_path / "unknown.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="attention.weight"):
        convert(path)


def test_control_vit_file_is_refused_with_one_line(tmp_path):
    path = tmp_path / "vit_tiny_best_encoder.pth"
    torch.save({"to_patch_embedding.weight": torch.zeros(192, 12, 50),
                "pos_embedding": torch.zeros(1, 100, 192)}, path)
    with pytest.raises(WeightsError, match="ViT encoder; ecgsoup ports MERL's ResNet") as info:
        convert(path)
    assert "\n" not in str(info.value)


def test_control_wrong_geometry_is_refused():
    converted = convert(CHECKPOINT)
    other = ResNet1DConfig(**{**ENTRY.tiny, "blocks": [2, 2, 1, 2]})
    with pytest.raises(WeightsError, match="unexpected keys"):
        load_strict(ResNet1D(other), converted.state_dict, CHECKPOINT)


# -- the released geometry, layers and streams -------------------------------------


def test_released_parameter_count_and_shapes():
    model = ResNet1D(ResNet1DConfig(**ENTRY.sizes["resnet18"]))
    assert sum(p.numel() for p in model.parameters()) == 3_848_832
    assert model.widths == (64, 64, 128, 256, 512)
    model.init_weights(torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        hidden = model.forward_layers(torch.zeros(1, 12, 5000))
    assert [h.shape[-1] for h in hidden] == [2500, 2500, 1250, 625, 313]
    with torch.no_grad():  # fully convolutional: the benchmark's 2.5 s windows run too
        assert model.pooled_layers(torch.zeros(2, 12, 1250)).shape == (2, sum(model.widths))


def test_layers_widths_and_streams_are_pinned():
    model = ResNet1D(ResNet1DConfig(**ENTRY.sizes["resnet18"]))
    assert isinstance(model, Backbone) and model.family == "merl"
    assert model.layers == (
        LayerInfo("stem", 64, "stem"),
        LayerInfo("stage1", 64, "stem"),
        LayerInfo("stage2", 128, "stage2"),
        LayerInfo("stage3", 256, "stage3"),
        LayerInfo("stage4", 512, "stage4"),
    )
    assert model.readout().kind == "identity"


def test_streams_follow_the_shortcuts():
    """With every residual branch silenced, an identity shortcut passes its input through unchanged.

    Stage 1 then equals the stem (same coordinates: one stream); stage 2 is
    its projection shortcut's image, a learned change of basis (a new stream).
    """
    model = ResNet1D(ResNet1DConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(1)).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if ".norm2." in name:
                tensor.zero_()
        hidden = model.forward_layers(torch.randn(2, 12, 601, generator=torch.Generator().manual_seed(2)))
        torch.testing.assert_close(hidden[1], hidden[0], rtol=0, atol=0)
        shortcut = model.stages[1][0].shortcut
        torch.testing.assert_close(hidden[2], shortcut(hidden[1]).relu(), rtol=1e-6, atol=1e-6)
    assert model.layers[1].stream == model.layers[0].stream
    assert len({layer.stream for layer in model.layers[1:]}) == 4


def test_input_must_have_the_model_lead_count():
    model = ResNet1D(ResNet1DConfig(**ENTRY.tiny))
    with pytest.raises(ValueError, match="12 leads"):
        model.pooled_layers(torch.zeros(1, 8, 500))


def test_init_weights_is_seeded_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    first = random_backbone("merl-tiny", seed=3)
    second = random_backbone("merl-tiny", seed=3)
    assert torch.equal(before, torch.get_rng_state())
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert first.contract == ENTRY.contracts["downstream"]


def test_config_round_trips_through_json_and_refuses_bad_geometry():
    config = ResNet1DConfig(**ENTRY.sizes["resnet18"])
    again = ResNet1DConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config and hash(again) == hash(config)
    with pytest.raises(ValueError, match="one value per stage"):
        ResNet1DConfig(widths=[64, 128], blocks=[2, 2, 2])
    with pytest.raises(ValueError, match="odd"):
        ResNet1DConfig(kernel_size=4)


def test_entry_resolves():
    for spec in (ENTRY.module, ENTRY.config, ENTRY.convert, ENTRY.contracts["downstream"].window_transform):
        module, attr = spec.split(":")
        assert callable(getattr(importlib.import_module(module), attr))
    assert all(isinstance(c, InputContract) for c in ENTRY.contracts.values())
    assert ENTRY.card.license == "unstated" and "MIMIC-IV-ECG" in ENTRY.card.notice
    assert {size for _, size, _, _ in ENTRY.weights} == set(ENTRY.sizes)


def test_registered_name_without_weights_says_where_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGSOUP_MODEL_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="res18_best_encoder.pth.*drive.google.com"):
        load_backbone("merl-resnet18")


# -- random-weight parity against the authors' code (marker: parity) -------------


def _reference_file(relative: str):
    path = os.environ.get(REFERENCE_ENV)
    if not path:
        pytest.skip(f"{REFERENCE_ENV} is not set (a checkout of cheliu-computation/MERL-ICML2024)")
    source = Path(path) / relative
    if not source.is_file():
        pytest.skip(f"{REFERENCE_ENV}={path} holds no {relative}")
    unique = "_ecgsoup_reference_merl_" + relative.replace("/", "_").removesuffix(".py")
    if unique not in sys.modules:
        spec = importlib.util.spec_from_file_location(unique, source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[unique] = module
    return sys.modules[unique]


def _perturbed(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(3)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
            elif tensor.ndim == 1:
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=generator) + 0.1)
            else:
                bound = 1.0 / np.sqrt(tensor[0].numel())
                tensor.uniform_(-bound, bound, generator=generator)
    return model.eval()


@pytest.mark.parity
def test_parity_with_the_reference_resnet18(tmp_path):
    """The authors' linear-probe ResNet18 (finetune/models): every layer and the avgpool embedding."""
    resnet1d = _reference_file("finetune/models/resnet1d.py")
    generator = torch.Generator().manual_seed(11)
    reference = _perturbed(resnet1d.ResNet18(num_classes=10), generator)
    path = tmp_path / "res18_best_encoder.pth"
    torch.save(reference.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LicenceNotice)
        model = load_backbone(f"merl:{path}")
    assert model.config == ResNet1DConfig(**ENTRY.sizes["resnet18"])
    captured, embedding = [], []
    reference.layer1.register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0].mean(-1)))
    for index in range(1, 5):
        getattr(reference, f"layer{index}").register_forward_hook(lambda m, i, out: captured.append(out.mean(-1)))
    reference.avgpool.register_forward_hook(lambda m, i, out: embedding.append(out.flatten(1)))
    x = torch.randn(2, 12, 2501, generator=generator)
    with torch.no_grad():
        reference(x)
        ours = pooled_by_layer(model, x.numpy())
    assert len(captured) == len(ours) == N_LAYERS
    errors = [relative_error(o, r.numpy()) for o, r in zip(ours, captured)]
    assert max(errors) <= TOLERANCE, f"per-layer relative errors {errors}"
    assert relative_error(model.readout()(ours[-1]), embedding[0].numpy()) <= TOLERANCE


@pytest.mark.parity
def test_parity_with_the_pretraining_encoder(tmp_path):
    """The encoder the pretraining saves (utils/resnet1d.py): its forward returns the last stage's map."""
    resnet1d = _reference_file("utils/resnet1d.py")
    generator = torch.Generator().manual_seed(12)
    reference = _perturbed(resnet1d.ResNet18(), generator)
    path = tmp_path / "merl_final_encoder.pth"
    torch.save(reference.state_dict(), path)
    model = load_converted(path)
    x = torch.randn(2, 12, 5000, generator=generator)
    with torch.no_grad():
        last = reference(x)
        hidden = model.forward_layers(x)
    assert last.shape == hidden[-1].shape == (2, 512, 313)
    assert relative_error(hidden[-1].numpy(), last.numpy()) <= TOLERANCE
