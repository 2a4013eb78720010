"""Every registered backbone family has the same shape and honours the same contract.

Each family is built at a tiny geometry with seeded random weights (no
download needed), so these checks run everywhere in seconds.
"""

import warnings

import numpy as np
import pytest
import torch

from ecgsoup.backbones import (
    Backbone,
    LicenceNotice,
    WeightsError,
    families,
    forget_licence_notices,
    list_backbones,
    load_backbone,
    load_strict,
    random_backbone,
    resolve_contract,
    save_backbone,
)

FAMILIES = sorted(families())
TINY = {family: ("ecgsoup-100hz-tiny" if family == "stmem" else f"{family}-tiny") for family in FAMILIES}


def _input(module, n=3, seed=0):
    contract = module.contract
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=(n, contract.n_leads, contract.window)).astype(np.float32))


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    return random_backbone(TINY[request.param], seed=3)


def test_every_family_is_registered_with_a_card_and_contracts():
    assert {"stmem", "ecgfounder"} <= set(FAMILIES)
    for entry in families().values():
        assert entry.card.license and entry.card.citation and entry.card.download
        assert entry.default_contract in entry.contracts
        assert entry.layer_meaning


def test_layers_and_pooling_agree(tiny):
    assert isinstance(tiny, Backbone)
    x = _input(tiny)
    with torch.inference_mode():
        hidden = tiny.forward_layers(x)
        pooled = tiny.pooled_layers(x).reshape(len(x), -1)
        by_layer = torch.cat([tiny.pool(h, i) for i, h in enumerate(hidden)], dim=1)
    assert len(hidden) == len(tiny.layers)
    assert pooled.shape[1] == sum(layer.width for layer in tiny.layers)
    # pooling each layer as it is computed gives what pooling the hidden maps afterwards gives
    torch.testing.assert_close(pooled, by_layer, rtol=1e-5, atol=1e-6)


def test_batch_size_does_not_change_a_record(tiny):
    x = _input(tiny, n=4)
    with torch.inference_mode():
        together = tiny.pooled_layers(x).reshape(4, -1)
        alone = tiny.pooled_layers(x[2:3]).reshape(1, -1)
    torch.testing.assert_close(together[2:3], alone, rtol=1e-4, atol=1e-5)


def test_random_models_leave_the_global_rng_alone_and_differ_by_seed():
    for family in FAMILIES:
        torch.manual_seed(123)
        before = torch.rand(1)
        torch.manual_seed(123)
        a = random_backbone(TINY[family], seed=0)
        after = torch.rand(1)
        assert torch.equal(before, after), family
        b = random_backbone(TINY[family], seed=1)
        assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_strict_loading_refuses_a_missing_and_an_unexpected_key(tiny):
    state = dict(tiny.state_dict())
    fresh = type(tiny)(tiny.config)
    missing = dict(state)
    missing.pop(next(iter(missing)))
    with pytest.raises(WeightsError, match="missing keys"):
        load_strict(fresh, missing, "test")
    with pytest.raises(WeightsError, match="unexpected keys"):
        load_strict(fresh, {**state, "head.weight": torch.zeros(1)}, "test")


def test_model_folder_round_trip_and_licence_notice_once(tiny, tmp_path):
    folder = save_backbone(tiny, tmp_path / "model")
    forget_licence_notices()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = load_backbone(str(folder))
        load_backbone(str(folder))
    assert first.family == tiny.family and first.layers == tiny.layers
    assert first.metadata["sha256"]
    for a, b in zip(first.state_dict().values(), tiny.state_dict().values()):
        torch.testing.assert_close(a, b.float())
    notices = [w for w in caught if issubclass(w.category, LicenceNotice)]
    # random models carry no licence notice; a pretrained family's card would show it once
    assert len(notices) <= 1
    assert resolve_contract(str(folder)) == first.contract


def test_resolve_contract_reads_no_weights(tmp_path):
    for family, entry in families().items():
        fake = tmp_path / f"{family}.pth"
        fake.write_bytes(b"not a checkpoint")
        if family == "stmem":
            continue  # an original ST-MEM window is only known from its tensor shapes
        assert resolve_contract(f"{family}:{fake}") == entry.contracts[entry.default_contract]
        with pytest.raises(WeightsError):
            load_backbone(f"{family}:{fake}")


def test_unknown_models_get_one_line_naming_the_forms():
    with pytest.raises(WeightsError, match="<family>:<path>"):
        load_backbone("no-such-model")
    with pytest.raises(WeightsError, match="never downloads"):
        load_backbone("ecgfounder-12lead")


def test_list_backbones_names_families_licences_and_downloads():
    table = list_backbones()
    assert {"name", "family", "layers", "widths", "contract", "license", "download", "present"} <= set(table)
    assert set(FAMILIES) <= set(table["family"])
    assert table.loc[table["name"] == "stmem-tiny.ecgsoup-ipa", "present"].item()


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_refuses_absurd_sizes_before_building(family):
    """A config beyond any ECG encoder fails naming the field; the real geometry builds on the meta device."""
    import dataclasses
    import importlib
    import numbers

    entry = families()[family]
    if family == "stmem":
        pytest.skip("ST-MEM's configurations are checked by its own loader (tests/test_hostile_models.py)")
    def load(spec):  # "module:attribute", as the registry declares config and module classes
        module, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module), attr)

    config_type = load(entry.config)
    tiny = dict(entry.tiny)
    sized = [f.name for f in dataclasses.fields(config_type)
             if isinstance(tiny.get(f.name, f.default), numbers.Integral) and not isinstance(tiny.get(f.name, f.default), bool)]
    assert sized, f"{family}: no integer size in its config"
    for name in sized:
        with pytest.raises(ValueError, match=rf"{name}=1000000000 is larger than any ECG encoder"):
            config_type(**{**tiny, name: 10**9})
        with pytest.raises(ValueError, match=rf"{name}=0 is not a positive whole number"):
            config_type(**{**tiny, name: 0})
    # The comparison with a weights file builds the full-size model on the meta device: no memory.
    size = next(iter(entry.sizes))
    with torch.device("meta"):
        skeleton = load(entry.module)(config_type(**entry.sizes[size]))
    assert all(t.is_meta for t in [*skeleton.parameters(), *skeleton.buffers()])
