"""ECGFounder's Net1D port: golden parity, reference parity, and controls that can fail.

The golden files in ``golden/`` come from the authors' code at the commit
they record (``scripts/make_golden_ecgfounder.py``): a tiny-geometry
checkpoint in the original layout and key names, one input, the reference's
per-layer pooled outputs and its ``return_features=True`` embedding, and one
record passed through the authors' fine-tuning filter.  The ``parity`` tests
import the authors' code from the checkout named by
``ECGSOUP_REFERENCE_ECGFOUNDER`` and skip without it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ecgsoup.backbones import (
    Backbone,
    InputContract,
    LayerInfo,
    WeightsError,
    load_strict,
    sha256_file,
)
from ecgsoup.backbones.ecgfounder import ENTRY
from ecgsoup.backbones.ecgfounder.convert import convert
from ecgsoup.backbones.ecgfounder.model import Net1D, Net1DConfig
from ecgsoup.backbones.ecgfounder.recipes import finetune_recipe

GOLDEN = Path(__file__).resolve().parent / "golden"
CHECKPOINT = GOLDEN / "ecgfounder-tiny.pth"
REFERENCE_ENV = "ECGSOUP_REFERENCE_ECGFOUNDER"
TOLERANCE = 1e-5  # max |ours - reference| / max |reference|, per layer, fp32
N_LAYERS = 8


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
    with np.load(GOLDEN / "ecgfounder-tiny.npz") as data:
        return {key: data[key] for key in data.files}


def load_converted(path) -> Net1D:
    converted = convert(path)
    model = Net1D(converted.config)
    load_strict(model, converted.state_dict, path)
    return model.eval()


def pooled_by_layer(model: Net1D, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        pooled = model.pooled_layers(torch.from_numpy(x)).numpy()
    edges = np.cumsum((0, *model.widths))
    return [pooled[:, a:b] for a, b in itertools.pairwise(edges)]


def worst_layer_error(model: Net1D, golden) -> float:
    layers = pooled_by_layer(model, golden["input"])
    return max(relative_error(ours, golden[f"pooled_{i}"]) for i, ours in enumerate(layers))


# -- golden parity (always runs) ---------------------------------------------------


def test_golden_records_the_reference(golden):
    assert len(str(golden["reference_commit"])) == 40
    assert json.loads(str(golden["geometry"])) == ENTRY.tiny
    assert sha256_file(CHECKPOINT) == str(golden["checkpoint_sha256"])
    for path in GOLDEN.glob("ecgfounder-*"):
        assert path.stat().st_size < 400_000, f"{path.name} is too large for a committed fixture"


def test_golden_parity_every_layer_and_embedding(golden):
    model = load_converted(CHECKPOINT)
    assert model.config == Net1DConfig(**ENTRY.tiny)
    x = torch.from_numpy(golden["input"])
    layers = pooled_by_layer(model, golden["input"])
    assert len(layers) == N_LAYERS
    errors = [relative_error(ours, golden[f"pooled_{i}"]) for i, ours in enumerate(layers)]
    assert max(errors) <= TOLERANCE, f"per-layer relative errors {errors}"
    # readout(pool(last layer)) is the reference's return_features=True embedding.
    last = model.readout()(layers[-1])
    assert relative_error(last, golden["features"]) <= TOLERANCE
    with torch.no_grad():
        assert relative_error(model.embedding(x).numpy(), golden["features"]) <= TOLERANCE
        # pooled_layers is the pooled forward_layers, computed in one pass.
        hidden = model.forward_layers(x)
        from_maps = torch.cat([model.pool(h, i) for i, h in enumerate(hidden)], dim=1)
        torch.testing.assert_close(from_maps, model.pooled_layers(x), rtol=0, atol=0)


def test_converter_ignores_bn_and_head_with_one_log_line(caplog):
    with caplog.at_level("WARNING", logger="ecgsoup"):
        converted = convert(CHECKPOINT)
    records = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(records) == 1
    original = torch.load(CHECKPOINT, weights_only=True)["state_dict"]
    n_bn = sum(1 for key in original if "bn" in key.split(".")[-2])
    n_dense = sum(1 for key in original if key.startswith("dense."))
    assert n_bn > 0 and n_dense == 2
    assert f"ignored {n_bn + n_dense} tensors" in records[0].getMessage()
    assert len(converted.state_dict) == len(original) - n_bn - n_dense
    assert any("geometry from shapes" in note for note in converted.notes)


def test_converter_strips_data_parallel_prefix(tmp_path, golden):
    state = torch.load(CHECKPOINT, weights_only=True)["state_dict"]
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert worst_layer_error(load_converted(path), golden) <= TOLERANCE


def test_finetune_recipe_matches_the_reference_filter(golden):
    record = golden["recipe_input"]  # (leads, samples), as the authors filter it
    fs = float(golden["recipe_fs"])
    contract = ENTRY.contracts["finetune"]
    assert contract.sampling_rate == fs
    ours = finetune_recipe(record.T[None], fs, contract)[0].T
    assert ours.shape == record.shape
    assert relative_error(ours, golden["recipe_output"]) <= 1e-9


def test_finetune_recipe_resamples_to_the_contract_rate():
    contract = ENTRY.contracts["finetune"]
    x = np.random.default_rng(0).standard_normal((2, 2500, 12))
    out = finetune_recipe(x, 250.0, contract)
    assert out.shape == (2, 5000, 12) and out.dtype == np.float64 and np.isfinite(out).all()


# -- controls: the check can fail --------------------------------------------------


def test_control_wrong_lead_order_fails_the_check(golden):
    model = load_converted(CHECKPOINT)
    swapped = golden["input"][
        :, [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]
    ]  # aVF before aVL (MIMIC order)
    layers = pooled_by_layer(model, swapped)
    assert relative_error(layers[-1], golden["features"]) > 100 * TOLERANCE


def test_control_swapped_blocks_load_but_fail_the_check(tmp_path, golden):
    state = dict(torch.load(CHECKPOINT, weights_only=True)["state_dict"])
    a, b = (
        "stage_list.0.block_list.0.conv2.conv.weight",
        "stage_list.0.block_list.1.conv2.conv.weight",
    )
    assert state[a].shape == state[b].shape
    state[a], state[b] = state[b], state[a]
    path = tmp_path / "swapped.pth"
    torch.save({"state_dict": state}, path)
    model = load_converted(path)  # same shapes: a strict load cannot notice
    assert worst_layer_error(model, golden) > 100 * TOLERANCE


@pytest.mark.parametrize("key", ["stage_list.3.block_list.0.se_fc2.bias", "first_conv.conv.weight"])
def test_control_missing_key_is_refused(tmp_path, key):
    state = dict(torch.load(CHECKPOINT, weights_only=True)["state_dict"])
    del state[key]
    path = tmp_path / "missing.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError, match="missing|not a complete"):
        load_converted(path)


def test_control_unknown_key_is_refused(tmp_path):
    state = dict(torch.load(CHECKPOINT, weights_only=True)["state_dict"])
    state["stage_list.0.block_list.0.attention.weight"] = torch.zeros(3)
    path = tmp_path / "unknown.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsError, match="attention.weight"):
        convert(path)


def test_control_wrong_geometry_is_refused(golden):
    converted = convert(CHECKPOINT)
    other = Net1DConfig(**{**ENTRY.tiny, "m_blocks_list": [2, 2, 2, 1, 2, 1, 2]})
    with pytest.raises(WeightsError, match="missing keys"):
        load_strict(Net1D(other), converted.state_dict, CHECKPOINT)


# -- the released geometry, layers and streams -------------------------------------


def test_released_parameter_count():
    model = Net1D(Net1DConfig(**ENTRY.sizes["12lead"]))
    encoder = sum(p.numel() for p in model.parameters())
    dense = 1024 * 150 + 150  # the 150-label head the original module also holds
    assert encoder == 30_598_896
    assert encoder + dense == 30_752_646  # "30.8 M": the original module without its BatchNorms
    single = sum(p.numel() for p in Net1D(Net1DConfig(**ENTRY.sizes["1lead"])).parameters())
    assert encoder - single == 64 * 11 * 16  # only the stem sees the lead count


def test_layers_widths_and_streams_are_pinned():
    model = Net1D(Net1DConfig(**ENTRY.sizes["12lead"]))
    assert isinstance(model, Backbone) and model.family == "ecgfounder"
    assert model.layers == (
        LayerInfo("stem", 64, "residual64"),
        LayerInfo("stage1", 64, "residual64"),
        LayerInfo("stage2", 160, "residual160"),
        LayerInfo("stage3", 160, "residual160"),
        LayerInfo("stage4", 400, "residual400"),
        LayerInfo("stage5", 400, "residual400"),
        LayerInfo("stage6", 1024, "residual1024"),
        LayerInfo("stage7", 1024, "residual1024"),
    )
    assert model.readout().kind == "identity"


def test_streams_follow_the_identity_shortcuts():
    """With every residual branch silenced, each layer is its predecessor's shortcut image.

    That is why consecutive layers of equal width share one stream: their
    channels are the same coordinates, only max-pooled in time.
    """
    model = Net1D(Net1DConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(1)).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if ".pointwise_out." in name:
                tensor.zero_()
        hidden = model.forward_layers(
            torch.randn(2, 12, 997, generator=torch.Generator().manual_seed(2))
        )

    def pool_time(h):
        return F.max_pool1d(F.pad(h, (0, 1)), 2)

    for index in range(1, N_LAYERS):
        previous, current = hidden[index - 1], hidden[index]
        expected = pool_time(previous)
        extra = current.shape[1] - previous.shape[1]
        expected = F.pad(expected, (0, 0, extra // 2, extra - extra // 2))
        torch.testing.assert_close(current, expected, rtol=0, atol=0)
        same_stream = model.layers[index].stream == model.layers[index - 1].stream
        assert same_stream == (extra == 0)


def test_stage_lengths_for_ten_seconds():
    model = Net1D(Net1DConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = model.forward_layers(torch.zeros(1, 12, 5000))
    assert [h.shape[-1] for h in hidden] == [2500, 1250, 625, 313, 157, 79, 40, 20]
    with torch.no_grad():  # fully convolutional: the benchmark's 2.5 s windows run too
        assert model.pooled_layers(torch.zeros(3, 12, 1250)).shape == (3, sum(model.widths))


def test_input_must_have_the_model_lead_count():
    model = Net1D(Net1DConfig(**ENTRY.tiny))
    with pytest.raises(ValueError, match="12 leads"):
        model.pooled_layers(torch.zeros(1, 8, 500))


def test_init_weights_is_seeded_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    first = Net1D(Net1DConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(3))
    second = Net1D(Net1DConfig(**ENTRY.tiny)).init_weights(torch.Generator().manual_seed(3))
    assert torch.equal(before, torch.get_rng_state())
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert all(t.abs().sum() > 0 for t in first.state_dict().values())


def test_config_round_trips_through_json():
    config = Net1DConfig(**ENTRY.sizes["12lead"])
    again = Net1DConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config and hash(again) == hash(config)
    with pytest.raises(ValueError, match="groups"):
        Net1DConfig(**{**ENTRY.tiny, "groups_width": 4})


def test_entry_resolves():
    for spec in (ENTRY.module, ENTRY.config, ENTRY.convert, *ENTRY.recipes.values()):
        module, attr = spec.split(":")
        assert callable(getattr(importlib.import_module(module), attr))
    for contract in ENTRY.contracts.values():
        assert isinstance(contract, InputContract)
        assert (contract.sampling_rate, contract.window, contract.window_norm) == (
            500.0,
            5000,
            "zscore_whole",
        )
        assert contract.recipe in ("resample@1", *ENTRY.recipes)
    assert ENTRY.contracts[ENTRY.default_contract].lead_names == (
        "I",
        "II",
        "III",
        "aVR",
        "aVL",
        "aVF",
        "V1",
        "V2",
        "V3",
        "V4",
        "V5",
        "V6",
    )
    assert ENTRY.contracts["1lead-eval"].lead_names == ("I",)
    assert ENTRY.card.license == "unstated" and "HEEDB" in ENTRY.card.notice
    assert {size for _, size, _, _ in ENTRY.weights} == set(ENTRY.sizes)


# -- random-weight parity against the authors' code (marker: parity) -------------


def _reference_module(name: str) -> types.ModuleType:
    path = os.environ.get(REFERENCE_ENV)
    if not path:
        pytest.skip(f"{REFERENCE_ENV} is not set (a checkout of PKUDigitalHealth/ECGFounder)")
    source = Path(path) / f"{name}.py"
    if not source.is_file():
        pytest.skip(f"{REFERENCE_ENV}={path} holds no {name}.py")
    if name == "util" and importlib.util.find_spec("h5py") is None:
        # util.py imports h5py for functions these tests never call.
        sys.modules.setdefault("h5py", types.ModuleType("h5py"))
    unique = f"_ecgsoup_reference_ecgfounder_{name}"
    if unique not in sys.modules:
        spec = importlib.util.spec_from_file_location(unique, source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[unique] = module
    return sys.modules[unique]


@pytest.mark.parity
@pytest.mark.parametrize("size", ["tiny", "12lead", "1lead"])
def test_parity_with_the_reference_net1d(tmp_path, size):
    net1d = _reference_module("net1d")
    geometry = ENTRY.tiny if size == "tiny" else ENTRY.sizes[size]
    generator = torch.Generator().manual_seed(11)
    reference = net1d.Net1D(
        n_classes=150, use_bn=False, use_do=False, return_features=True, **geometry
    )
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if tensor.ndim == 1:  # biases and BN tensors off their defaults
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator) + 0.05)
            else:
                bound = 1.0 / np.sqrt(tensor[0].numel())
                tensor.uniform_(-bound, bound, generator=generator)
            if name.endswith("running_var"):
                tensor.abs_().add_(0.5)
    reference.eval()
    path = tmp_path / "reference.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model = load_converted(path)
    assert model.config == Net1DConfig(**geometry)

    captured = []
    hook = lambda module, inputs, output: captured.append(output.mean(-1))
    reference.first_activation.register_forward_hook(hook)
    for stage in reference.stage_list:
        stage.register_forward_hook(hook)
    x = torch.randn(
        2, geometry["in_channels"], 3001 if size != "tiny" else 1001, generator=generator
    )
    with torch.no_grad():
        _, features = reference(x)
        ours = pooled_by_layer(model, x.numpy())
    assert len(captured) == len(ours) == N_LAYERS
    errors = [relative_error(o, r.numpy()) for o, r in zip(ours, captured)]
    assert max(errors) <= TOLERANCE, f"per-layer relative errors {errors}"
    assert relative_error(model.readout()(ours[-1]), features.numpy()) <= TOLERANCE


@pytest.mark.parity
def test_parity_finetune_recipe_with_the_reference_filter():
    util = _reference_module("util")
    record = np.random.default_rng(5).standard_normal((12, 5000)).cumsum(axis=1) * 0.01
    expected = util.filter_bandpass(record, 500)
    ours = finetune_recipe(record.T[None], 500.0, ENTRY.contracts["finetune"])[0].T
    assert relative_error(ours, expected) <= 1e-9
