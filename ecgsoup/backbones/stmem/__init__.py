"""ST-MEM: a ViT with per-lead patches and SEP tokens, pretrained by masked modelling.

The family of ecgsoup's bundled default model (a tiny ViT pretrained by ecgsoup
with the IPA objective) and of the original ST-MEM release (Na et al., ICLR
2024), whose ``.pth`` files load as ``"stmem:<path>"``.
"""

from ecgsoup.backbones._base import BackboneCard, FamilyEntry, InputContract
from ecgsoup.backbones.stmem.config import SIZES, EncoderConfig, get_config, list_configs
from ecgsoup.backbones.stmem.model import STMEMEncoder, sincos_positions
from ecgsoup.backbones.stmem.weights import (
    DEFAULT_MODEL,
    WeightsError,
    default_model_path,
    load_config,
    load_model,
    load_stmem_checkpoint,
    model_fingerprint,
    new_encoder,
    random_model,
    save_model,
)

__all__ = [
    "SIZES",
    "EncoderConfig",
    "get_config",
    "list_configs",
    "STMEMEncoder",
    "sincos_positions",
    "DEFAULT_MODEL",
    "WeightsError",
    "default_model_path",
    "load_config",
    "load_model",
    "load_stmem_checkpoint",
    "model_fingerprint",
    "new_encoder",
    "random_model",
    "save_model",
]


ENTRY = FamilyEntry(
    family="stmem",
    module="ecgsoup.backbones.stmem.model:STMEMEncoder",
    config="ecgsoup.backbones.stmem.config:EncoderConfig",
    convert="ecgsoup.backbones.stmem.weights:convert",
    sizes={name: {"config": name} for name in list_configs()},
    contracts={
        "ecgsoup-100hz": InputContract(
            sampling_rate=100.0, window=1000, lead_names=get_config("ecgsoup-100hz-tiny").lead_names,
        ),
        "original": InputContract(
            sampling_rate=250.0, window=2250, lead_names=get_config("st-mem-250hz-base").lead_names,
            bandpass=(0.67, 40.0),
        ),
    },
    default_contract="original",
    card=BackboneCard(
        name="stmem",
        family="stmem",
        license="CC-BY-NC-4.0",
        source="Na et al., ICLR 2024; code and weights at github.com/bakqui/ST-MEM",
        citation=(
            "Na Y, Park M, Tae Y, Joo S. Guiding Masked Representation Learning to Capture "
            "Spatio-Temporal Relationship of Electrocardiogram. ICLR 2024."
        ),
        download="https://github.com/bakqui/ST-MEM (the README links the pretrained encoder)",
        notice="ST-MEM's original code and weights are licensed CC BY-NC 4.0: non-commercial use only.",
    ),
    layer_meaning=(
        "Layer 0 is the token embedding (patch embedding, position, lead and SEP embeddings); "
        "layers 1-12 are the transformer blocks, one residual stream. Each layer is pooled as "
        "the mean over patch tokens of all leads (SEP tokens excluded); the readout is the "
        "encoder's final LayerNorm, applied after pooling."
    ),
    tiny={"config": "ecgsoup-100hz-tiny"},
    weights=(("base.original", "base", "st_mem_vit_base.pth", "https://github.com/bakqui/ST-MEM"),),
)
