"""The ST-MEM encoder (spec 2.2) and its weight formats."""

import json

import numpy as np
import pytest
import torch

from ecgsoup.backbones.stmem import (
    WeightsError,
    get_config,
    load_config,
    load_model,
    load_stmem_checkpoint,
    random_model,
    save_model,
    sincos_positions,
)


def test_named_configs():
    soup = get_config("ecgsoup-100hz", size="tiny")
    assert (soup.sampling_rate, soup.n_samples, soup.patch_size, soup.n_patches) == (100, 1000, 50, 20)
    assert soup.lead_names[:3] == ("I", "II", "V1") and soup.width == 192
    orig = get_config("st-mem-250hz-base")
    assert (orig.sampling_rate, orig.n_samples, orig.patch_size, orig.width) == (250, 2250, 75, 768)
    with pytest.raises(ValueError, match="Unknown model configuration"):
        get_config("resnet")


def test_base_parameter_count_matches_spec():
    encoder = random_model("ecgsoup-100hz-base")
    assert sum(p.numel() for p in encoder.parameters()) == 85_123_684  # spec 2.2: ~85.12 M
    assert encoder.patch_embedding.proj.weight.numel() + 50 * 2 + 768 * 3 == 40_804


def test_positions_have_zero_sep_rows_and_concatenated_halves():
    table = sincos_positions(20, 8)[0]
    assert table.shape == (22, 8)
    assert torch.all(table[0] == 0) and torch.all(table[-1] == 0)
    assert torch.allclose(table[1, :4], torch.zeros(4)) and torch.allclose(table[1, 4:], torch.ones(4))


def test_every_layer_from_one_pass(tiny_model):
    x = torch.randn(2, 12, 1000)
    with torch.inference_mode():
        tokens = tiny_model.forward_layers(x)
        pooled = tiny_model.pooled_layers(x)
    assert len(tokens) == 13 and tokens[0].shape == (2, 12 * 22, 192)
    assert pooled.shape == (2, 13, 192)
    # pooling = mean over patch tokens, SEP excluded
    patch = tokens[5].reshape(2, 12, 22, 192)[:, :, 1:-1]
    assert torch.allclose(pooled[:, 5], patch.mean(dim=(1, 2)), atol=1e-6)


def test_fewer_leads_allowed_more_rejected(tiny_model):
    with torch.inference_mode():
        assert tiny_model.pooled_layers(torch.randn(1, 3, 1000)).shape == (1, 13, 192)
        with pytest.raises(ValueError, match="13 leads but the model has 12"):
            tiny_model.pooled_layers(torch.randn(1, 13, 1000))
        with pytest.raises(ValueError, match="expects 1000"):
            tiny_model.pooled_layers(torch.randn(1, 12, 900))


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_model(seed=1)
    after = torch.rand(1)
    b = random_model(seed=1)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.metadata["pretrained"] is False


def test_save_load_roundtrip_and_hash_check(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.randn(1, 12, 1000)
    with torch.inference_mode():
        assert torch.equal(loaded.pooled_layers(x), tiny_model.pooled_layers(x))
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    assert info["config"]["lead_names"][2] == "V1" and info["config"]["sampling_rate"] == 100
    # corrupt one byte: the hash check must refuse it
    weights = tmp_path / "m" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(tmp_path / "m")


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no config.json"):
        load_model(tmp_path / "empty")


def _original_layout_state(encoder):
    """Re-express an encoder's weights with the original ST-MEM key names."""
    ours = encoder.state_dict()
    state = {
        "to_patch_embedding.1.weight": ours["patch_embedding.norm_in.weight"],
        "to_patch_embedding.1.bias": ours["patch_embedding.norm_in.bias"],
        "to_patch_embedding.2.weight": ours["patch_embedding.proj.weight"],
        "to_patch_embedding.2.bias": ours["patch_embedding.proj.bias"],
        "to_patch_embedding.3.weight": ours["patch_embedding.norm_out.weight"],
        "to_patch_embedding.3.bias": ours["patch_embedding.norm_out.bias"],
        "pos_embedding": ours["pos_embedding"],
        "sep_embedding": ours["sep_embedding"],
        "norm.weight": ours["norm.weight"],
        "norm.bias": ours["norm.bias"],
        "head.weight": torch.zeros(5, encoder.config.width),
        "head.bias": torch.zeros(5),
    }
    for k in range(encoder.config.n_leads):
        state[f"lead_embeddings.{k}"] = ours["lead_embeddings"][k]
    names = {"attn.norm": "attn_norm", "attn.fn.to_qkv": "qkv", "attn.fn.to_out.0": "proj",
             "ff.norm": "mlp_norm", "ff.fn.net.0": "fc1", "ff.fn.net.3": "fc2"}
    for i in range(encoder.config.depth):
        for orig, mine in names.items():
            for p in ("weight", "bias"):
                state[f"block{i}.{orig}.{p}"] = ours[f"blocks.{i}.{mine}.{p}"]
    return state


def test_original_stmem_checkpoint_layout_loads(tmp_path):
    source = random_model("st-mem-250hz-tiny", seed=3)
    state = {f"encoder.{k}": v for k, v in _original_layout_state(source).items()}
    torch.save({"model": state, "epoch": 7}, tmp_path / "st_mem.pth")
    loaded = load_model(tmp_path / "st_mem.pth")
    assert loaded.config.n_samples == 2250 and loaded.config.patch_size == 75
    assert loaded.config.heads == 3 and loaded.config.sampling_rate == 250
    assert "stripped prefix 'encoder.'" in loaded.metadata["notes"]
    x = torch.randn(1, 12, 2250)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded.pooled_layers(x), source.pooled_layers(x), atol=1e-6)


def test_original_checkpoint_with_missing_block_is_refused(tmp_path):
    state = _original_layout_state(random_model("st-mem-250hz-tiny"))
    del state["block3.ff.fn.net.0.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match=r"missing keys: blocks\.3\.fc1\.weight"):
        load_stmem_checkpoint(tmp_path / "broken.pth")


# -- checkpoints as users have them ----------------------------------------------------------


def _assert_same_encoder(loaded, source, n_samples=2250):
    x = torch.randn(1, 12, n_samples)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded.pooled_layers(x), source.pooled_layers(x), atol=1e-6)


def test_full_stmem_file_with_decoder_gives_its_encoder(tmp_path):
    source = random_model("st-mem-250hz-tiny", seed=4)
    encoder = _original_layout_state(source)
    del encoder["head.weight"], encoder["head.bias"]
    state = {f"encoder.{k}": v for k, v in encoder.items()}
    # the MAE's own tensors, and the duplicate top-level patch embedding of the published file
    state.update({k: v for k, v in encoder.items() if k.startswith("to_patch_embedding.")})
    state.update({"to_decoder_embedding.weight": torch.zeros(8, 192), "mask_embedding": torch.zeros(1, 1, 8),
                  "decoder_blocks.0.attn.norm.weight": torch.ones(8), "decoder_head.weight": torch.zeros(75, 8)})  # fmt: skip
    torch.save({"model": state}, tmp_path / "st_mem_full.pth")
    loaded = load_model(tmp_path / "st_mem_full.pth")
    assert any("left out 10 other tensors" in note for note in loaded.metadata["notes"])
    _assert_same_encoder(loaded, source)


def test_lightning_ckpt_with_model_encoder_prefix(tmp_path):
    source = random_model("st-mem-250hz-tiny", seed=5)
    state = {f"model.encoder.{k}": v for k, v in _original_layout_state(source).items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "last.ckpt")
    loaded = load_model(tmp_path / "last.ckpt")
    _assert_same_encoder(loaded, source)
    assert load_config(tmp_path / "last.ckpt").n_samples == 2250


def test_fine_tuned_head_and_gate_are_ignored_and_said(tmp_path, caplog):
    source = random_model("st-mem-250hz-tiny", seed=6)
    state = _original_layout_state(source)
    del state["head.weight"], state["head.bias"]
    state.update({"head.0.weight": torch.ones(192), "head.0.running_mean": torch.zeros(192),
                  "head.2.weight": torch.zeros(256, 192), "gating.1.weight": torch.zeros(64, 192)})  # fmt: skip
    torch.save(state, tmp_path / "ecg_soup_finetuned.pth")
    with caplog.at_level("WARNING", logger="ecgsoup"):
        loaded = load_model(tmp_path / "ecg_soup_finetuned.pth")
    _assert_same_encoder(loaded, source)
    assert len(caplog.records) == 1 and "ignored 4 tensors of a fine-tuned gating and head" in caplog.text


def test_ambiguous_sampling_rate_is_refused(tmp_path):
    source = random_model("ecgsoup-100hz-tiny", seed=1)  # 1,000 samples in patches of 50
    torch.save(_original_layout_state(source), tmp_path / "st_mem_100hz.pth")
    with pytest.raises(WeightsError, match=r"does not settle the sampling rate \(10 s at 100 Hz, 4 s at 250 Hz"):
        load_model(tmp_path / "st_mem_100hz.pth")
    loaded = load_model(tmp_path / "st_mem_100hz.pth", sampling_rate=100, lead_names=source.config.lead_names)
    assert loaded.config.sampling_rate == 100 and loaded.config.n_samples == 1000


def test_wrong_lead_embedding_and_config_without_weights_are_weights_errors(tmp_path):
    state = _original_layout_state(random_model("st-mem-250hz-tiny"))
    state["lead_embeddings.3"] = torch.zeros(1, 1, 7)
    torch.save(state, tmp_path / "bad_leads.pth")
    with pytest.raises(WeightsError, match="bad_leads.pth"):
        load_model(tmp_path / "bad_leads.pth")
    save_model(random_model("ecgsoup-100hz-tiny"), tmp_path / "m")
    info = json.loads((tmp_path / "m" / "config.json").read_text())
    del info["weights"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(info))
    with pytest.raises(WeightsError, match="lacks its 'weights' entry"):
        load_model(tmp_path / "m")


def test_cli_reports_weights_errors_in_one_line(tmp_path, capsys):
    from ecgsoup.cli import main

    torch.save(_original_layout_state(random_model("ecgsoup-100hz-tiny")), tmp_path / "x.pth")
    assert main(["info", "--model", str(tmp_path / "x.pth")]) == 2
    err = capsys.readouterr().err
    assert "does not settle the sampling rate" in err and err.count("\n") == 1
