"""Convert a published HuBERT-ECG checkpoint (Hugging Face folder layout) to ecgsoup's names.

The published files are ``config.json`` + ``model.safetensors`` in one folder
(``Edoardo-BS/hubert-ecg-{small,base,large}``).  The geometry is read from
``config.json`` and checked against the tensor shapes; a disagreement is an
error, never a guess.  The pretraining heads are set aside with one log line,
the weight-normalised positional convolution is folded into a plain weight
(both the legacy ``weight_g``/``weight_v`` and the newer
``parametrizations.weight.original0/1`` spellings), and the query, key and
value projections of each layer are stacked into the one fused projection of
:class:`~ecgsoup.backbones.hubert_ecg.model.HubertECG`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .._base import Converted
from .._checkpoint import (
    WeightsError,
    fold_weight_norm,
    fuse_qkv,
    map_keys,
    per_layer_keys,
    read_checkpoint,
    unwrap,
)
from .model import HubertECGConfig

__all__ = ["convert", "KEY_MAP", "IGNORED"]

FAMILY = "hubert-ecg"
POS_CONV = "encoder.pos_conv_embed.conv"

# Original (Hugging Face HubertModel) name -> ecgsoup name.  The q/k/v
# projections land on temporary names and are stacked afterwards.
KEY_MAP = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"conv.\1.\2"),
    (r"feature_extractor\.conv_layers\.0\.layer_norm\.(weight|bias)", r"conv_norm.\1"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"proj_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"proj.\1"),
    (r"encoder\.pos_conv_embed\.conv\.(weight|bias)", r"pos_conv.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"embed_norm.\1"),
    *per_layer_keys(r"encoder\.layers", [
        (r"attention\.([qkv])_proj", r"attn.\2"), (r"attention\.out_proj", "attn.out"),
        (r"layer_norm", "norm1"), (r"feed_forward\.intermediate_dense", "fc1"),
        (r"feed_forward\.output_dense", "fc2"), (r"final_layer_norm", "norm2"),
    ]),
]

# Pretraining-only tensors: the projection to the codebook space, the
# codebook embeddings and the learned mask vector.  None is used for embeddings.
IGNORED = r"final_proj\..*|label_embedding\..*|masked_spec_embed"

# Hugging Face's HubertConfig defaults, used for fields a config.json leaves out.
_HF_DEFAULTS = {
    "conv_dim": (512, 512, 512, 512, 512, 512, 512),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_bias": False,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "feat_proj_layer_norm": True,
    "layer_norm_eps": 1e-5,
}

# Settings that change the computation and that this port does not implement;
# a checkpoint asking for another value is refused rather than run wrongly.
_REQUIRED = {
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "conv_pos_batch_norm": False,
}

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def _pickle_message(path: Path) -> str:
    return (
        f"{path} is a pickled training checkpoint, which ecgsoup does not unpickle. Use the "
        "Hugging Face folder (config.json + model.safetensors, e.g. Edoardo-BS/hubert-ecg-small), "
        "or convert once in a trusted session: ckpt = torch.load(path, weights_only=False); "
        "transformers.HubertModel(transformers.HubertConfig(**ckpt['model_config'].to_dict()))"
        ".save_pretrained(out_dir) after load_state_dict(ckpt['model_state_dict'], strict=False)."
    )


def _locate(path: Path) -> tuple[Path, Path]:
    """The weights file and the config.json that describes it."""
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
            if pickles:
                raise WeightsError(_pickle_message(path / pickles[0]))
            raise WeightsError(
                f"{path} holds no model.safetensors (expected the Hugging Face folder layout)."
            )
        return weights, path / "config.json"
    if path.suffix in _PICKLE_SUFFIXES:
        raise WeightsError(_pickle_message(path))
    if path.suffix != ".safetensors":
        raise WeightsError(
            f"{path}: expected a folder with config.json + model.safetensors, or a .safetensors file."
        )
    return path, path.parent / "config.json"


def _read_config(config) -> dict:
    if isinstance(config, dict):
        return dict(config)
    config = Path(config)
    if not config.is_file():
        raise WeightsError(
            f"No config.json at {config}: HuBERT-ECG's geometry (heads in particular) is not fully "
            "recoverable from the tensors. Put the config.json of the Hugging Face folder beside "
            "the weights."
        )
    try:
        return json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"Cannot read {config} as JSON ({exc}).") from exc


def _architecture(raw: dict, origin) -> HubertECGConfig:
    for key, expected in _REQUIRED.items():
        if key in raw and raw[key] != expected:
            raise WeightsError(
                f"{origin}: config.json has {key}={raw[key]!r}; the HuBERT-ECG port implements "
                f"{key}={expected!r} only (the published models' value)."
            )
    values = {key: raw.get(key, default) for key, default in _HF_DEFAULTS.items()}
    n_conv = raw.get("num_feat_extract_layers")
    if n_conv is not None and n_conv != len(values["conv_dim"]):
        raise WeightsError(
            f"{origin}: num_feat_extract_layers={n_conv} but conv_dim has "
            f"{len(values['conv_dim'])} entries."
        )
    try:
        return HubertECGConfig(**values)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{origin}: config.json does not describe a valid encoder ({exc}).") from exc


def _check_shapes(state: dict, config: HubertECGConfig, origin) -> None:
    """Compare the geometry of config.json with the tensors; raise on any difference."""
    problems = []

    def expect(what, from_config, from_tensors):
        if from_tensors is not None and from_config != from_tensors:
            problems.append(f"{what}: config.json {from_config}, tensors {from_tensors}")

    convs = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"conv\.(\d+)\.weight", k)))
    expect("number of convolutions", len(config.conv_dim), len(convs) or None)
    if convs == list(range(len(config.conv_dim))):
        expect("conv_dim", config.conv_dim, tuple(state[f"conv.{i}.weight"].shape[0] for i in convs))
        expect("conv_kernel", config.conv_kernel, tuple(state[f"conv.{i}.weight"].shape[2] for i in convs))
    expect("conv_bias", config.conv_bias, any(re.fullmatch(r"conv\.\d+\.bias", k) for k in state))
    expect("feat_proj_layer_norm", config.feat_proj_layer_norm, "proj_norm.weight" in state)
    if "proj.weight" in state:
        expect("hidden_size", config.hidden_size, state["proj.weight"].shape[0])
    blocks = {int(m.group(1)) for k in state if (m := re.fullmatch(r"blocks\.(\d+)\..*", k))}
    expect("num_hidden_layers", config.num_hidden_layers, len(blocks))
    if "blocks.0.fc1.weight" in state:
        expect("intermediate_size", config.intermediate_size, state["blocks.0.fc1.weight"].shape[0])
    if "pos_conv.weight" in state:
        weight = state["pos_conv.weight"]
        expect("num_conv_pos_embeddings", config.num_conv_pos_embeddings, weight.shape[2])
        expect("num_conv_pos_embedding_groups", config.num_conv_pos_embedding_groups,
               weight.shape[0] // weight.shape[1] if weight.shape[1] else None)
    if problems:
        raise WeightsError(f"{origin}: config.json and the weights disagree: " + "; ".join(problems) + ".")


def convert(path, *, config=None) -> Converted:
    """Read a published HuBERT-ECG checkpoint as ecgsoup weights and geometry.

    Parameters
    ----------
    path : str or Path
        A Hugging Face folder holding ``config.json`` and ``model.safetensors``,
        or a ``.safetensors`` file with its ``config.json`` beside it.  Pickled
        training checkpoints (``.pt``) are refused with a line saying how to
        convert them once.
    config : str, Path or dict, optional
        Another ``config.json`` (path or parsed content) to read the geometry from.

    Returns
    -------
    Converted
        ``state_dict`` in the key names of
        :class:`~ecgsoup.backbones.hubert_ecg.model.HubertECG`, the
        :class:`~ecgsoup.backbones.hubert_ecg.model.HubertECGConfig`, and notes
        on what was unwrapped, folded and ignored.

    Raises
    ------
    WeightsError
        If the file is missing or pickled, if a key is not part of a HuBERT-ECG
        encoder, or if ``config.json`` and the tensor shapes disagree.
    """
    path = Path(path)
    weights, config_path = _locate(path)
    raw = _read_config(config_path if config is None else config)
    arch = _architecture(raw, config_path if config is None else "config")

    prefixes = ("module.", "model.", "hubert_ecg.", "hubert.")
    state, notes = unwrap(read_checkpoint(weights), weights, prefixes=prefixes)
    state, folded = fold_weight_norm(state, POS_CONV, dim=2)
    if folded:
        notes.append("folded the weight norm of the positional convolution")
    state, map_notes = map_keys(state, KEY_MAP, IGNORED, weights, FAMILY)
    notes.extend(map_notes)
    state = {key: tensor.float() for key, tensor in state.items()}
    _check_shapes(state, arch, weights)
    state = fuse_qkv(state, arch.num_hidden_layers, weights, "encoder.layers.{i}.attention.{p}_proj.{kind}")
    return Converted(state_dict=state, config=arch, notes=notes)
