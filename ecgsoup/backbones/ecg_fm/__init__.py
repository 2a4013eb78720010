"""ECG-FM (McKeen et al., 2024): a wav2vec 2.0 encoder over the 12 leads as channels.

Registry data only; the model, converter and recipe are imported lazily
through the ``"module:attr"`` strings of :data:`ENTRY`.
"""

from __future__ import annotations

from .._base import BackboneCard, FamilyEntry, InputContract

__all__ = ["ENTRY"]

_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_HF = "https://huggingface.co/wanglab/ecg-fm"

ENTRY = FamilyEntry(
    family="ecg-fm",
    module="ecgsoup.backbones.ecg_fm.model:ECGFM",
    config="ecgsoup.backbones.ecg_fm.model:ECGFMConfig",
    convert="ecgsoup.backbones.ecg_fm.convert:convert",
    sizes={
        # The released model (its checkpoint's own cfg and tensor shapes).
        "base": {"in_channels": 12, "conv_dim": (256,) * 4, "conv_kernel": (2,) * 4, "conv_stride": (2,) * 4,
                 "encoder_embed_dim": 768, "encoder_layers": 12, "encoder_attention_heads": 12,
                 "encoder_ffn_embed_dim": 3072, "conv_pos": 128, "conv_pos_groups": 16,
                 "layer_norm_first": False},
    },
    contracts={
        # The authors' pipeline: standard lead order, linear resampling to
        # 500 Hz, per-lead z-score over the whole record, then
        # non-overlapping 5 s segments with no further scaling.
        "repo": InputContract(
            sampling_rate=500.0,
            window=2500,
            lead_names=_LEADS,
            layout="leads",
            recipe="ecg-fm@1",
            window_norm="none",
            stride=2500,
        ),
    },
    default_contract="repo",
    card=BackboneCard(
        name="ECG-FM",
        family="ecg-fm",
        license="MIT",
        source="https://github.com/bowang-lab/ECG-FM (model code: https://github.com/Jwoo5/fairseq-signals)",
        citation=(
            "McKeen K, Masood S, Toma A, Rubin B, Wang B. ECG-FM: An Open Electrocardiogram "
            "Foundation Model. arXiv:2408.05178 (2024)."
        ),
        download=f"{_HF}: mimic_iv_ecg_physionet_pretrained.pt (the .yaml files beside it are not used)",
        notice=(
            "ECG-FM code and weights are MIT-licensed (WangLab, University of Toronto). The released "
            "weights were trained on public data (MIMIC-IV-ECG, PhysioNet 2021) and differ from the "
            "models of the arXiv paper."
        ),
    ),
    layer_meaning=(
        "layer00 is the input of the first transformer layer: the 12-channel convolutional features, "
        "LayerNorm'd, projected to the model width, with the positional convolution added and the "
        "encoder LayerNorm applied; layer01...layer12 are the outputs of the 12 post-LN transformer "
        "layers. A frame covers 16 samples of all 12 leads (156 frames per 5 s window), so no layer "
        "has a lead identity. Each layer is pooled by the mean over its frames, as the authors pool "
        "the encoder output for their embedding; the readout is the identity."
    ),
    tiny={
        "in_channels": 12,
        "conv_dim": (16, 16, 16, 16),
        "conv_kernel": (2, 2, 2, 2),
        "conv_stride": (2, 2, 2, 2),
        "encoder_embed_dim": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_embed_dim": 64,
        "conv_pos": 16,
        "conv_pos_groups": 4,
        "layer_norm_first": False,
    },
    weights=(("base", "base", "mimic_iv_ecg_physionet_pretrained.pt", _HF),),
    recipes={"ecg-fm@1": "ecgsoup.backbones.ecg_fm.recipes:ecg_fm_recipe"},
)
