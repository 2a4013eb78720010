"""ECG-JEPA (Kim et al., 2024): a ViT over per-lead patches of 8 leads, pretrained as a JEPA.

Registry data only; the model, converter and recipe are imported lazily
through the ``"module:attr"`` strings of :data:`ENTRY`.
"""

from __future__ import annotations

from .._base import BackboneCard, FamilyEntry, InputContract

__all__ = ["ENTRY"]

#: The model's lead order: the authors keep leads 0, 1 and 6..11 of the standard 12.
_LEADS_8 = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
_DRIVE = "https://github.com/sehunfromdaegu/ECG_JEPA#pretrained-checkpoints"

ENTRY = FamilyEntry(
    family="ecg-jepa",
    module="ecgsoup.backbones.ecg_jepa.model:ECGJEPA",
    config="ecgsoup.backbones.ecg_jepa.model:ECGJEPAConfig",
    convert="ecgsoup.backbones.ecg_jepa.convert:convert",
    sizes={
        "base": {"embed_dim": 768, "depth": 12, "num_heads": 16, "mlp_dim": 3072,
                 "n_leads": 8, "n_patches": 50, "patch_size": 50},
    },
    contracts={
        # The authors' PTB-XL linear evaluation: 10 s brought to exactly 2,500 samples
        # (250 Hz) by FFT resampling, leads I, II, V1-V6, no filter, no scaling.
        "linear-eval": InputContract(
            sampling_rate=250.0,
            window=2500,
            lead_names=_LEADS_8,
            layout="leads",
            recipe="ecg-jepa-fft@1",
            window_norm="none",
            stride=2500,
        ),
    },
    default_contract="linear-eval",
    card=BackboneCard(
        name="ECG-JEPA",
        family="ecg-jepa",
        license="unstated",
        source="https://github.com/sehunfromdaegu/ECG_JEPA",
        citation=(
            "Kim S. Learning General Representation of 12-Lead Electrocardiogram with a Joint-Embedding "
            "Predictive Architecture. arXiv:2410.08559, 2024."
        ),
        download=f"{_DRIVE} (Google Drive: multiblock_epoch100.pth, multi-block masking; and random masking)",
        notice=(
            "ECG-JEPA: the code is MIT-licensed, but the weights carry no stated licence; they were "
            "pretrained on the Chapman-Shaoxing-Ningbo and CODE-15 data sets, whose data-use terms may "
            "apply. Ask the author before any commercial use."
        ),
    ),
    layer_meaning=(
        "layer00 is the token stream before the first block: each lead cut into 50 patches of 50 samples "
        "(400 tokens for 8 leads), each patch linearly projected, without positions. layer01..layer12 are "
        "the outputs of the 12 pre-norm blocks; every block adds the fixed 2-D sine-cosine position table "
        "to its input, and attends only within a lead and across leads at the same patch index. All "
        "layers are one residual stream. Every layer is pooled as the authors pool the last one: the "
        "final LayerNorm is applied to each token, then the tokens are averaged. The norm acts per token, "
        "before the mean, so it is part of the pooling and the readout is the identity; the pooled "
        "layer12 is the authors' 768-d representation exactly."
    ),
    tiny={
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 4,
        "mlp_dim": 64,
        "n_leads": 8,
        "n_patches": 50,
        "patch_size": 50,
    },
    weights=(
        ("multiblock", "base", "multiblock_epoch100.pth", _DRIVE),
    ),
    recipes={"ecg-jepa-fft@1": "ecgsoup.backbones.ecg_jepa.recipes:fft_recipe"},
)
