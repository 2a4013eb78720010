"""MERL (Liu et al., ICML 2024): an ECG encoder pretrained against clinical reports on MIMIC-IV-ECG.

Registry data only; the model and converter are imported lazily through the
``"module:attr"`` strings of :data:`ENTRY`.
"""

from ecgsoup.backbones._base import BackboneCard, FamilyEntry, InputContract

__all__ = ["ENTRY", "MIMIC_LEADS"]

#: The lead order MERL was pretrained on (MIMIC-IV-ECG): aVF comes before aVL.
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")

ENTRY = FamilyEntry(
    family="merl",
    module="ecgsoup.backbones.merl.model:ResNet1D",
    config="ecgsoup.backbones.merl.model:ResNet1DConfig",
    convert="ecgsoup.backbones.merl.convert:convert",
    sizes={
        "resnet18": {
            "in_channels": 12,
            "stem_width": 64,
            "widths": [64, 128, 256, 512],
            "blocks": [2, 2, 2, 2],
        },
    },
    contracts={
        # The authors' downstream data sets (linear probing and fine-tuning): 10 s at 500 Hz, no
        # filtering, the whole record scaled to [0, 1] with all leads together, leads in MIMIC order.
        "downstream": InputContract(
            sampling_rate=500.0,
            window=5000,
            lead_names=MIMIC_LEADS,
            layout="leads",
            recipe="resample@1",
            window_norm="none",
            window_transform="ecgsoup.backbones.merl.recipes:minmax_unit",
        ),
    },
    default_contract="downstream",
    card=BackboneCard(
        name="merl",
        family="merl",
        license="unstated",
        source="https://github.com/cheliu-computation/MERL-ICML2024",
        citation=(
            "Liu C, Wan Z, Ouyang C, Shah A, Bai W, Arcucci R. Zero-Shot ECG Classification with "
            "Multimodal Learning and Test-time Clinical Knowledge Enhancement. Proceedings of the 41st "
            "International Conference on Machine Learning (ICML), PMLR 235, 2024. arXiv:2403.06659."
        ),
        download="https://drive.google.com/drive/folders/13wb4DppUciMn-Y_qC2JRWTbZdz3xX0w2",
        notice=(
            "MERL: the code is MIT-licensed, but the weights carry no stated licence; they were trained "
            "on MIMIC-IV-ECG, whose PhysioNet data-use terms may apply. Ask the authors before any "
            "commercial use."
        ),
    ),
    layer_meaning=(
        "Layer 0 'stem' is the stride-2 stem convolution after its BatchNorm and ReLU (64 wide); layers "
        "'stage1'..'stage4' are the outputs of the four stages of two basic residual blocks, 64, 128, 256 "
        "and 512 wide (stage 1 keeps the stem's length, each later stage halves it). Every layer is pooled "
        "by a global average over time; the pooled last stage is the 512-d embedding the authors' linear "
        "probe reads (readout: identity). Stage 1 adds to identity shortcuts, so the stem and stage 1 share "
        "a stream; stages 2-4 start with a learned 1x1 projection shortcut, so each starts its own."
    ),
    tiny={
        "in_channels": 12,
        "stem_width": 8,
        "widths": [8, 12, 16, 24],
        "blocks": [2, 2, 2, 2],
    },
    weights=(
        (
            "resnet18",
            "resnet18",
            "res18_best_encoder.pth",
            "https://drive.google.com/drive/folders/13wb4DppUciMn-Y_qC2JRWTbZdz3xX0w2",
        ),
    ),
)
