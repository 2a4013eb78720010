"""The frozen backbone: ST-MEM encoder, named configurations and weight formats."""

from ecgsoup.models.config import SIZES, EncoderConfig, get_config, list_configs
from ecgsoup.models.encoder import STMEMEncoder, sincos_positions
from ecgsoup.models.weights import (
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
