"""Convert an original ECG-FM (fairseq-signals) checkpoint to ecgsoup's names.

The published files (``mimic_iv_ecg_physionet_pretrained.pt``,
``mimic_iv_ecg_finetuned.pt`` on ``wanglab/ecg-fm``) are fairseq checkpoints:
a dict with ``model`` (the state dict), ``cfg`` (plain dicts: the training
configuration, of which ``cfg['model']`` describes the network) and the
optimizer state.  They are read with ``torch.load(weights_only=True)``.

* The geometry comes from the tensor shapes (channels, kernels, widths, layer
  count, positional kernel and groups) and from ``cfg['model']`` for what
  shapes cannot tell: the strides, the head count and ``layer_norm_first``.
  Where both speak they must agree.  The ``.yaml`` files published beside the
  weights are never read (they describe another geometry).
* The pretraining heads (``quantizer``, ``project_q``, ``final_proj``,
  ``mask_emb``, and ``project_inp``/``input_quantizer``/``target_glu`` where
  present) and a fine-tuned file's classifier (``proj``) are set aside with
  one log line.
* The weight-normalised positional convolution is folded (legacy
  ``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1``), and
  each layer's q, k and v projections are stacked into one.
"""

from __future__ import annotations

import ast
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
from .model import ECGFMConfig

__all__ = ["IGNORED", "KEY_MAP", "convert", "parse_conv_layers"]

FAMILY = "ecg-fm"
POS_CONV = "conv_pos.pos_conv.0"
_FINETUNED_MARK = "encoder.feature_extractor."

# Original (fairseq-signals) name -> ecgsoup name.  The q/k/v projections land
# on temporary names and are stacked afterwards.
KEY_MAP = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"conv.\1.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"conv_norm.\1"),
    (r"layer_norm\.(weight|bias)", r"feat_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"proj.\1"),
    (r"conv_pos\.pos_conv\.0\.(weight|bias)", r"pos_conv.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder_norm.\1"),
    *per_layer_keys(r"encoder\.layers", [
        (r"self_attn\.([qkv])_proj", r"attn.\2"), (r"self_attn\.out_proj", "attn.out"),
        (r"self_attn_layer_norm", "norm1"), (r"fc([12])", r"fc\2"), (r"final_layer_norm", "norm2"),
    ]),
]

# Pretraining-only tensors (wav2vec 2.0's quantizer, target and prediction
# projections, learned mask vector) and a fine-tuned file's classifier head.
# None is used for embeddings.
IGNORED = (
    r"mask_emb|(?:input_)?quantizer\..*|project_q\..*|project_inp\..*|final_proj\..*"
    r"|target_glu\..*|proj\.(?:weight|bias)"
)

_ALLOWED_NODES = (ast.Expression, ast.List, ast.Tuple, ast.Constant, ast.BinOp, ast.Mult, ast.Add,
                  ast.Load)


def parse_conv_layers(text, origin="cfg") -> list[tuple[int, int, int]]:
    """fairseq-signals' ``conv_feature_layers`` string, e.g. ``"[(256, 2, 2)] * 4"``, without eval.

    Only lists and tuples of integers, ``*`` and ``+`` are accepted; anything
    else is refused, so a checkpoint's configuration never runs code.
    """
    if isinstance(text, (list, tuple)):
        value = [tuple(layer) for layer in text]
    else:
        try:
            tree = ast.parse(str(text), mode="eval")
        except SyntaxError as exc:
            raise WeightsError(f"{origin}: conv_feature_layers={text!r} is not a list of (dim, kernel, stride).") from exc
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES) or (
                    isinstance(node, ast.Constant) and type(node.value) is not int):
                raise WeightsError(
                    f"{origin}: conv_feature_layers={text!r} holds {type(node).__name__}; only lists of "
                    "(dim, kernel, stride) integers, '*' and '+' are read."
                )

        def value_of(node):
            if isinstance(node, ast.Expression):
                return value_of(node.body)
            if isinstance(node, ast.Constant):
                return node.value
            if isinstance(node, ast.List):
                return [value_of(n) for n in node.elts]
            if isinstance(node, ast.Tuple):
                return tuple(value_of(n) for n in node.elts)
            left, right = value_of(node.left), value_of(node.right)
            if isinstance(node.op, ast.Mult):
                if isinstance(right, int) and isinstance(left, list) and 0 <= right <= 64:
                    return left * right
                if isinstance(left, int) and isinstance(right, list) and 0 <= left <= 64:
                    return right * left
            elif isinstance(left, list) and isinstance(right, list):
                return left + right
            raise WeightsError(f"{origin}: conv_feature_layers={text!r} is not a list of (dim, kernel, stride).")

        value = value_of(tree)
    if not isinstance(value, list) or not value or not all(
            isinstance(layer, tuple) and len(layer) == 3 and all(isinstance(v, int) for v in layer)
            for layer in value):
        raise WeightsError(f"{origin}: conv_feature_layers={text!r} is not a list of (dim, kernel, stride).")
    return [tuple(layer) for layer in value]


def _model_cfg(checkpoint, origin, model_cfg) -> dict:
    if model_cfg is not None:
        return dict(model_cfg)
    cfg = checkpoint.get("cfg") if isinstance(checkpoint, dict) else None
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict):
        raise WeightsError(
            f"{origin} holds no cfg['model'], which says what the tensor shapes cannot (strides, heads, "
            "layer_norm_first). Pass model_cfg={'conv_feature_layers': '[(256, 2, 2)] * 4', "
            "'encoder_attention_heads': 12, 'layer_norm_first': False} for the published geometry."
        )
    return model


def _required(model: dict, key: str, origin):
    if key not in model:
        raise WeightsError(f"{origin}: cfg['model'] has no {key!r}; it cannot be read from the tensors.")
    return model[key]


def _architecture(state: dict, model: dict, origin) -> ECGFMConfig:
    mode = model.get("extractor_mode", "default")
    if mode != "default":
        raise WeightsError(
            f"{origin}: cfg['model'] has extractor_mode={mode!r}; the ECG-FM port implements 'default' "
            "only (one GroupNorm after the first convolution, as in the released model)."
        )
    layers = parse_conv_layers(_required(model, "conv_feature_layers", origin), origin)
    problems = []

    def expect(what, from_cfg, from_tensors):
        if from_cfg is not None and from_cfg != from_tensors:
            problems.append(f"{what}: cfg {from_cfg}, tensors {from_tensors}")

    try:
        convs = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"conv\.(\d+)\.weight", k)))
        if convs != list(range(len(convs))) or not convs:
            raise WeightsError(f"{origin}: feature-encoder convolutions {convs} are not numbered 0..N-1.")
        shapes = [state[f"conv.{i}.weight"].shape for i in convs]
        expect("number of convolutions", len(layers), len(convs))
        expect("conv dims", [d for d, _, _ in layers], [int(s[0]) for s in shapes])
        expect("conv kernels", [k for _, k, _ in layers], [int(s[2]) for s in shapes])
        expect("in_d", model.get("in_d"), int(shapes[0][1]))
        width = int(state["encoder_norm.weight"].shape[0])
        expect("encoder_embed_dim", model.get("encoder_embed_dim"), width)
        blocks = {int(m[1]) for k in state if (m := re.fullmatch(r"blocks\.(\d+)\..*", k))}
        expect("encoder_layers", model.get("encoder_layers"), len(blocks))
        ffn = int(state["blocks.0.fc1.weight"].shape[0]) if blocks else None
        expect("encoder_ffn_embed_dim", model.get("encoder_ffn_embed_dim"), ffn)
        pos = state["pos_conv.weight"]
        groups = width // int(pos.shape[1])
        expect("conv_pos", model.get("conv_pos"), int(pos.shape[2]))
        expect("conv_pos_groups", model.get("conv_pos_groups"), groups)
        expect("conv_bias", model.get("conv_bias"), "conv.0.bias" in state)
    except KeyError as exc:
        raise WeightsError(
            f"{origin}: a tensor needed to read the geometry is missing ({exc.args[0]} in ecgsoup names); "
            "not a complete ECG-FM checkpoint. Nothing was loaded."
        ) from None
    if problems:
        raise WeightsError(
            f"{origin}: cfg['model'] and the weights disagree: " + "; ".join(problems) + ". Nothing was "
            "loaded; if you know the settings these weights were trained with, pass them as model_cfg={...}."
        )
    layer_norm_first = _required(model, "layer_norm_first", origin)
    if not isinstance(layer_norm_first, bool):
        raise WeightsError(f"{origin}: cfg['model']['layer_norm_first']={layer_norm_first!r} is not a boolean.")
    try:
        return ECGFMConfig(
            in_channels=int(shapes[0][1]),
            conv_dim=tuple(int(s[0]) for s in shapes),
            conv_kernel=tuple(int(s[2]) for s in shapes),
            conv_stride=tuple(s for _, _, s in layers),
            conv_bias="conv.0.bias" in state,
            encoder_embed_dim=width,
            encoder_layers=len(blocks),
            encoder_attention_heads=int(_required(model, "encoder_attention_heads", origin)),
            encoder_ffn_embed_dim=ffn,
            conv_pos=int(pos.shape[2]),
            conv_pos_groups=groups,
            layer_norm_first=layer_norm_first,
        )
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{origin}: the checkpoint implies an invalid ECG-FM geometry ({exc}).") from exc


def convert(path, *, model_cfg: dict | None = None) -> Converted:
    """Read an original ECG-FM checkpoint as ecgsoup weights and geometry.

    Parameters
    ----------
    path : str or Path
        A fairseq-signals checkpoint (``{'model': state_dict, 'cfg': ...}``),
        pretrained or fine-tuned, read with ``weights_only=True``.
    model_cfg : dict, optional
        fairseq-signals model settings (``conv_feature_layers``,
        ``encoder_attention_heads``, ``layer_norm_first``, ...) to use instead
        of the file's ``cfg['model']``, for a bare state dict.

    Returns
    -------
    Converted
        ``state_dict`` in the key names of
        :class:`~ecgsoup.backbones.ecg_fm.model.ECGFM`, the
        :class:`~ecgsoup.backbones.ecg_fm.model.ECGFMConfig`, and notes.

    Raises
    ------
    WeightsError
        If the file cannot be read safely, holds keys that are not part of an
        ECG-FM encoder, lacks the settings the shapes cannot give, or if its
        configuration and tensor shapes disagree.
    """
    origin = Path(path)
    checkpoint = read_checkpoint(origin)
    model = _model_cfg(checkpoint, origin, model_cfg)
    state, notes = unwrap(checkpoint, origin, wrapper_keys=("model", "state_dict"), prefixes=("module.",))
    if any(key.startswith(_FINETUNED_MARK) for key in state):
        # A fine-tuned classifier wraps the pretrained model as `encoder`.
        state = {key.removeprefix("encoder."): t for key, t in state.items()}
        notes.append("stripped prefix 'encoder.' of a fine-tuned checkpoint")
    state, folded = fold_weight_norm(state, POS_CONV, dim=2)
    if folded:
        notes.append("folded the weight norm of the positional convolution")
    state, map_notes = map_keys(state, KEY_MAP, IGNORED, origin, FAMILY)
    notes.extend(map_notes)
    state = {key: tensor.float() for key, tensor in state.items()}
    config = _architecture(state, model, origin)
    state = fuse_qkv(state, config.encoder_layers, origin, "encoder.layers.{i}.self_attn.{p}_proj.{kind}")
    notes.append(
        f"geometry: {config.in_channels} leads, convs {list(config.conv_dim)} (kernels "
        f"{list(config.conv_kernel)}, strides {list(config.conv_stride)}), {config.encoder_layers} "
        f"{'pre' if config.layer_norm_first else 'post'}-LN layers of {config.encoder_embed_dim}, "
        f"{config.encoder_attention_heads} heads"
    )
    return Converted(state_dict=state, config=config, notes=notes)
