"""ECGFounder (Li et al., NEJM AI 2025): a supervised Net1D CNN trained on HEEDB.

Registry data only; the model, converter and recipes are imported lazily
through the ``"module:attr"`` strings of :data:`ENTRY`.
"""

from ecgsoup.backbones._base import BackboneCard, FamilyEntry, InputContract

__all__ = ["ENTRY"]

_STANDARD_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_NET1D = {
    "base_filters": 64,
    "ratio": 1.0,
    "filter_list": [64, 160, 160, 400, 400, 1024, 1024],
    "m_blocks_list": [2, 2, 2, 3, 3, 4, 4],
    "kernel_size": 16,
    "stride": 2,
    "groups_width": 16,
}


def _contract(leads, recipe):
    return InputContract(
        sampling_rate=500.0,
        window=5000,
        lead_names=leads,
        layout="leads",
        recipe=recipe,
        window_norm="zscore_whole",
        units="mV",
    )


ENTRY = FamilyEntry(
    family="ecgfounder",
    module="ecgsoup.backbones.ecgfounder.model:Net1D",
    config="ecgsoup.backbones.ecgfounder.model:Net1DConfig",
    convert="ecgsoup.backbones.ecgfounder.convert:convert",
    sizes={
        "12lead": {"in_channels": 12, **_NET1D},
        "1lead": {"in_channels": 1, **_NET1D},
    },
    contracts={
        # The authors' PTB-XL evaluation: no filtering, one z-score over the whole 12 x 5000 window.
        "ptbxl-eval": _contract(_STANDARD_12, "resample@1"),
        # The authors' fine-tuning data sets: notch, band-pass, median baseline, then the same z-score.
        "finetune": _contract(_STANDARD_12, "ecgfounder-finetune@1"),
        # The single-lead model reads lead I (the authors' 1-lead data sets select it).
        "1lead-eval": _contract(("I",), "resample@1"),
        "1lead-finetune": _contract(("I",), "ecgfounder-finetune@1"),
    },
    default_contract="ptbxl-eval",
    card=BackboneCard(
        name="ecgfounder",
        family="ecgfounder",
        license="unstated",
        source="https://github.com/PKUDigitalHealth/ECGFounder",
        citation=(
            "Li J, Aguirre AD, Moura Junior V, Jin J, Liu C, Zhong L, Sun C, Clifford G, Westover MB, Hong S. "
            "An Electrocardiogram Foundation Model Built on over 10 Million Recordings. "
            "NEJM AI 2025;2(7):AIoa2401033. arXiv:2410.04133."
        ),
        download="https://huggingface.co/PKUDigitalHealth/ECGFounder",
        notice=(
            "ECGFounder: the code is MIT-licensed, but the weights carry no stated licence; they were "
            "trained on the Harvard-Emory ECG Database (HEEDB), whose data-use terms may apply. Ask the "
            "authors before any commercial use."
        ),
    ),
    layer_meaning=(
        "Layer 0 'stem' is the stride-2 stem convolution after its Swish (64 wide); layers 'stage1'.."
        "'stage7' are the outputs of the seven stages of pre-activation bottleneck blocks (grouped "
        "convolution + squeeze-excitation), 64, 160, 160, 400, 400, 1024 and 1024 wide, each halving the "
        "time axis. Every layer is pooled by a global average over time; the pooled last stage is the "
        "authors' 1024-d embedding (readout: identity). Shortcuts are identities (max-pool, centred "
        "zero-padding of new channels), so consecutive layers of equal width share a stream: stem+stage1, "
        "stage2+3, stage4+5, stage6+7."
    ),
    tiny={
        "in_channels": 12,
        "base_filters": 6,
        "ratio": 1.0,
        "filter_list": [6, 9, 9, 15, 15, 24, 24],
        "m_blocks_list": [2, 1, 2, 1, 2, 1, 2],
        "kernel_size": 6,
        "stride": 2,
        "groups_width": 3,
    },
    weights=(
        (
            "12lead",
            "12lead",
            "12_lead_ECGFounder.pth",
            "https://huggingface.co/PKUDigitalHealth/ECGFounder",
        ),
        (
            "1lead",
            "1lead",
            "1_lead_ECGFounder.pth",
            "https://huggingface.co/PKUDigitalHealth/ECGFounder",
        ),
    ),
    recipes={"ecgfounder-finetune@1": "ecgsoup.backbones.ecgfounder.recipes:finetune_recipe"},
)
