"""HuBERT-ECG (Coppola et al., 2024): a HuBERT encoder over the concatenated 12 leads.

This package holds the family's registry entry as data only; importing it
loads neither the model code nor any third-party model library.  The module is
:class:`ecgsoup.backbones.hubert_ecg.model.HubertECG`, the converter
:func:`ecgsoup.backbones.hubert_ecg.convert.convert`, and the two published
preprocessing pipelines are in :mod:`ecgsoup.backbones.hubert_ecg.recipes`.
"""

from __future__ import annotations

from .._base import BackboneCard, FamilyEntry, InputContract

__all__ = ["ENTRY"]

_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_HF = "https://huggingface.co/Edoardo-BS"

ENTRY = FamilyEntry(
    family="hubert-ecg",
    module="ecgsoup.backbones.hubert_ecg.model:HubertECG",
    config="ecgsoup.backbones.hubert_ecg.model:HubertECGConfig",
    convert="ecgsoup.backbones.hubert_ecg.convert:convert",
    sizes={
        "small": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8,
                  "intermediate_size": 2048},
        "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072},
        "large": {"hidden_size": 960, "num_hidden_layers": 16, "num_attention_heads": 12,
                  "intermediate_size": 3840},
    },
    contracts={
        # The authors' pipeline: FIR + FFT resampling to 500 Hz + min-max per
        # lead over the record; each 5 s window is then concatenated and
        # decimated by 5 to the 6,000 samples the model takes.
        "repo": InputContract(
            sampling_rate=500.0,
            window=2500,
            lead_names=_LEADS,
            layout="concatenated",
            recipe="hubert-ecg-repo@1",
            window_norm="none",
            stride=2500,
            window_transform="ecgsoup.backbones.hubert_ecg.recipes:flatten_decimate",
        ),
        # The ICLR 2026 foundation-model benchmark: 5 s windows at 100 Hz,
        # each filtered (FIR at 100 Hz) and min-max scaled per lead, no
        # overlap between windows.
        "benchmark": InputContract(
            sampling_rate=100.0,
            window=500,
            lead_names=_LEADS,
            layout="concatenated",
            recipe="hubert-ecg-benchmark@1",
            window_norm="none",
            stride=500,
            window_transform="ecgsoup.backbones.hubert_ecg.recipes:benchmark_window",
        ),
    },
    default_contract="repo",
    card=BackboneCard(
        name="HuBERT-ECG",
        family="hubert-ecg",
        license="CC-BY-NC-4.0",
        source="https://github.com/Edoar-do/HuBERT-ECG",
        citation=(
            "Coppola E, Savardi M, Massussi M, et al. HuBERT-ECG as a self-supervised foundation "
            "model for broad and scalable cardiac applications. medRxiv 2024.11.14.24317328."
        ),
        download=f"{_HF}/hubert-ecg-small (also -base, -large): config.json + model.safetensors",
        notice=(
            "HuBERT-ECG weights are licensed CC BY-NC 4.0: non-commercial use only, with "
            "attribution (Coppola et al., 2024)."
        ),
    ),
    layer_meaning=(
        "layer00 is the frame embedding after the positional convolution and its LayerNorm; "
        "layer01... are the outputs of the post-LN transformer layers (9 / 13 / 17 layers in "
        "all for small / base / large). Frames straddle lead boundaries (the 12 leads are "
        "concatenated and each frame covers 64 samples), so no layer has a lead identity. Each "
        "layer is pooled by the mean over its frames, as the authors' classifier pools the last "
        "one; the readout is the identity."
    ),
    tiny={
        "conv_dim": (16, 16, 16, 16, 16),
        "conv_kernel": (10, 3, 3, 2, 2),
        "conv_stride": (4, 2, 2, 2, 2),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
    },
    weights=(
        ("small", "small", "model.safetensors", f"{_HF}/hubert-ecg-small"),
        ("base", "base", "model.safetensors", f"{_HF}/hubert-ecg-base"),
        ("large", "large", "model.safetensors", f"{_HF}/hubert-ecg-large"),
    ),
    recipes={
        "hubert-ecg-repo@1": "ecgsoup.backbones.hubert_ecg.recipes:repo_recipe",
        "hubert-ecg-benchmark@1": "ecgsoup.backbones.hubert_ecg.recipes:benchmark_recipe",
    },
)
