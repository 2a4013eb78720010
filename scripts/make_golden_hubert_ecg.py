"""Regenerate the HuBERT-ECG golden fixtures from ``transformers.HubertModel``.

    .venv/bin/pip install -e '.[parity]'
    .venv/bin/python scripts/make_golden_hubert_ecg.py  [--out tests/backbones/golden]

Writes, under ``OUT/hubert-ecg-tiny/``:

* ``config.json`` + ``model.safetensors``: a tiny-geometry HuBERT encoder in
  the published Hugging Face layout and key names, with seeded random weights
  (every normalisation scale and every bias moved off its initial value), the
  positional convolution in the legacy ``weight_g``/``weight_v`` spelling, and
  the three pretraining-head tensors HuBERT-ECG's checkpoints carry;
* ``reference.npz``: one seeded input ``(records, 12, 500)``, the reference's
  mean-pooled hidden states ``(layers, records, width)``, the mean-pooled
  ``last_hidden_state``, the transformers and torch versions, the seed and a
  description of the reference.

With ``--recipes`` (needs ``biosppy``, e.g. ``pip install biosppy`` in a
scratch environment), it also writes ``OUT/hubert-ecg-recipes.npz``: the model
input that the authors' pipeline makes of one real PTB-XL record (biosppy's
FIR filter at the original rate, FFT resampling to 500 Hz, min-max per lead,
first 5 s, leads concatenated and decimated by 5), from its 500 Hz and its
100 Hz version, and the two first 5 s windows of the benchmark's per-window
steps (the same FIR at 100 Hz, min-max per lead per window).  The steps follow
the authors' ``ecg_preprocessing`` and dataset code and the benchmark's
``ecg_preprocessing``; ``biosppy`` supplies the filter.

The helpers are imported by ``tests/backbones/test_hubert_ecg.py`` for its
live parity test, so the test and the fixtures build the reference alike.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

SEED = 20240611
N_RECORDS = 2
N_LEADS, N_SAMPLES = 12, 500  # 5 s at 100 Hz, the published input

# A tiny geometry that keeps every feature of the published ones: five
# bias-free convolutions with the published kernels and strides (6,000
# samples -> 93 frames), GroupNorm after the first, projection LayerNorm,
# an even positional kernel (so the dropped last frame matters), grouped.
TINY = {
    "conv_dim": [16, 16, 16, 16, 16],
    "conv_kernel": [10, 3, 3, 2, 2],
    "conv_stride": [4, 2, 2, 2, 2],
    "conv_bias": False,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "feat_proj_layer_norm": True,
    "layer_norm_eps": 1e-5,
}

# The published small model's geometry (Edoardo-BS/hubert-ecg-small config.json).
SMALL = dict(TINY, conv_dim=[512] * 5, hidden_size=512, num_hidden_layers=8,
             num_attention_heads=8, intermediate_size=2048,
             num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)

# Fields of the published config.json that fix the computation path.
FIXED = {
    "model_type": "hubert_ecg",
    "architectures": ["HuBERTECG"],
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "hidden_act": "gelu",
    "do_stable_layer_norm": False,
    "conv_pos_batch_norm": False,
    "num_feat_extract_layers": 5,
    "mask_time_prob": 0.33,
    "classifier_proj_size": 8,
    "vocab_sizes": [10],
    "ensemble_length": 1,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "feat_proj_dropout": 0.0,
    "layerdrop": 0.1,
}


def hf_config(geometry: dict) -> dict:
    """A config.json in the published layout for ``geometry``."""
    return {**FIXED, **geometry}


def build_reference(config_json: dict, seed: int, attn_implementation: str = "eager"):
    """``transformers.HubertModel`` with seeded weights, every norm and bias moved off its init.

    Every parameter is redrawn from a local generator: matrices normal with
    standard deviation ``1 / sqrt(fan_in)``, biases normal(0, 0.1),
    normalisation scales 1 + normal(0, 0.1), the weight-norm magnitude
    uniform in [0.5, 1.5].  Returns the model in eval mode.
    """
    import transformers

    keys = set(transformers.HubertConfig().to_dict())
    config = transformers.HubertConfig(**{k: v for k, v in config_json.items() if k in keys})
    config._attn_implementation = attn_implementation
    model = transformers.HubertModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            noise = torch.empty(tensor.shape).normal_(generator=generator)
            if name.endswith("original0") or name.endswith("weight_g"):
                tensor.copy_(torch.empty(tensor.shape).uniform_(0.5, 1.5, generator=generator))
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(1 + 0.1 * noise)
            elif name.endswith("bias") or name == "masked_spec_embed":
                tensor.copy_(0.1 * noise)
            else:
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
    return model


def original_state_dict(model, config_json: dict, seed: int, spelling: str = "legacy") -> dict:
    """The reference's tensors in the published key names, plus HuBERT-ECG's pretraining heads.

    ``spelling="legacy"`` writes the positional convolution as
    ``weight_g``/``weight_v`` (older torch), ``"parametrizations"`` as
    ``parametrizations.weight.original0/1`` (newer torch).
    """
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for old_g, old_v, new_g, new_v in [(
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        "encoder.pos_conv_embed.conv.weight_g",
        "encoder.pos_conv_embed.conv.weight_v",
    )]:
        if spelling == "legacy" and old_g in state:
            state[new_g], state[new_v] = state.pop(old_g), state.pop(old_v)
        elif spelling == "parametrizations" and new_g in state:
            state[old_g], state[old_v] = state.pop(new_g), state.pop(new_v)
    generator = torch.Generator().manual_seed(seed + 1)
    width, proj = config_json["hidden_size"], config_json["classifier_proj_size"]
    vocab = config_json["vocab_sizes"][0]
    state["final_proj.0.weight"] = torch.randn(proj, width, generator=generator)
    state["final_proj.0.bias"] = torch.randn(proj, generator=generator)
    state["label_embedding.0.weight"] = torch.randn(vocab, proj, generator=generator)
    if "masked_spec_embed" not in state:
        state["masked_spec_embed"] = torch.randn(width, generator=generator)
    return state


def reference_outputs(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled hidden states ``(layers, records, width)`` and pooled last_hidden_state."""
    with torch.no_grad():
        out = model(torch.from_numpy(x).reshape(x.shape[0], -1), output_hidden_states=True)
    pooled = np.stack([h.double().mean(dim=1).numpy() for h in out.hidden_states])
    return pooled, out.last_hidden_state.double().mean(dim=1).numpy()


def make_input(seed: int, n_records: int = N_RECORDS) -> np.ndarray:
    """An ECG-scaled input in [-1, 1]: a seeded random walk per lead, min-max scaled."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=(n_records, N_LEADS, N_SAMPLES)), axis=-1)
    low, high = walk.min(-1, keepdims=True), walk.max(-1, keepdims=True)
    return (2 * (walk - low) / (high - low) - 1).astype(np.float32)


RECIPE_RECORD = 0  # index in ptbxl_sample_{100,500}hz.npz of the shared data folder


def _shared_data() -> Path:
    import os

    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("ECGSOUP_SHARED_DATA", default))


def recipe_references(shared: Path) -> dict:
    """The authors' and the benchmark's preprocessing of one PTB-XL record, through biosppy."""
    import biosppy
    import scipy.signal as sps
    from biosppy.signals.tools import filter_signal

    def fir(signal, fs):  # (12, time), as both pipelines call biosppy
        return filter_signal(signal=signal, ftype="FIR", band="bandpass", order=int(0.3 * fs),
                             frequency=[0.05, 47], sampling_rate=fs)[0]

    def scaling(seq, smooth=1e-8):  # per lead (rows) over time
        low, high = seq.min(axis=1)[:, None], seq.max(axis=1)[:, None]
        return 2 * (seq - low) / (high - low + smooth) - 1

    def repo_input(record, fs):  # record (12, time) at fs -> the model's (6000,) input
        signal = sps.resample(fir(record, fs), int(record.shape[-1] * (500 / fs)), axis=1)
        return sps.decimate(scaling(signal)[:, :2500].reshape(-1), 5)

    out = {"biosppy_version": np.array(biosppy.__version__), "record_index": np.array(RECIPE_RECORD)}
    for rate in (500, 100):
        data = np.load(shared / "ptbxl_sample" / f"ptbxl_sample_{rate}hz.npz")
        record = data["x"][RECIPE_RECORD].T / 1000.0  # int16 microvolts -> mV, (12, time)
        out["ecg_id"] = data["ecg_id"][RECIPE_RECORD]
        out[f"repo_input_{rate}hz"] = repo_input(record, rate).astype(np.float32)
        if rate == 100:
            windows = [scaling(fir(record[:, s : s + 500], 100)) for s in (0, 500)]
            out["benchmark_windows_100hz"] = np.stack(windows).astype(np.float32)
    return out


def main(argv=None) -> None:
    import transformers
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "tests" / "backbones" / "golden"
    parser.add_argument("--out", type=Path, default=default)
    parser.add_argument("--recipes", action="store_true",
                        help="also write hubert-ecg-recipes.npz (needs biosppy and the shared data)")
    args = parser.parse_args(argv)
    if args.recipes:
        path = args.out / "hubert-ecg-recipes.npz"
        np.savez_compressed(path, **recipe_references(_shared_data()))
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    folder = args.out / "hubert-ecg-tiny"
    folder.mkdir(parents=True, exist_ok=True)

    config_json = hf_config(TINY)
    model = build_reference(config_json, SEED)
    state = original_state_dict(model, config_json, SEED, spelling="legacy")
    (folder / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    save_file(state, str(folder / "model.safetensors"))
    x = make_input(SEED)
    pooled, last = reference_outputs(model, x)
    np.savez_compressed(
        folder / "reference.npz",
        x=x,
        pooled=pooled.astype(np.float32),
        last_hidden_state_mean=last.astype(np.float32),
        transformers_version=np.array(transformers.__version__),
        torch_version=np.array(torch.__version__),
        seed=np.array(SEED),
        reference=np.array(
            "transformers.HubertModel (eager attention, eval mode), "
            "output_hidden_states=True, each hidden state mean-pooled over frames; "
            "weights from scripts/make_golden_hubert_ecg.py:build_reference"
        ),
    )
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    print(f"wrote {folder}: {sizes}; transformers {transformers.__version__}, seed {SEED}")


if __name__ == "__main__":
    main()
