"""Convert an original MERL checkpoint into ecgsoup's ResNet1D.

The authors publish two kinds of file for each pretrained model:

* ``*_encoder.pth`` (e.g. ``res18_best_encoder.pth``): the ECG encoder's own
  state dict, flat (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
  ...).  It also holds ``linear.*``, a classifier the pretraining never
  trains (the authors' linear probe replaces it);
* ``*_ckpt.pth``: the whole pretraining model, whose encoder tensors carry
  the prefix ``ecg_encoder.``, beside the text encoder (``lm_model.*``), the
  projection and attention-pooling heads (``proj_t``, ``downconv``,
  ``att_pool_head``, ``linear1``, ``linear2``).

Both are accepted, also inside the trainer's ``{"model_state_dict": ...}``
wrapper with ``nn.DataParallel``'s ``module.`` prefix.  Everything that is not
the encoder, and the BatchNorms' ``num_batches_tracked`` counters, is set
aside with one log line.  The geometry (leads, widths, blocks, kernels) is
read from the tensor shapes.
"""

from __future__ import annotations

import re
from pathlib import Path

from ecgsoup.backbones._base import Converted
from ecgsoup.backbones._checkpoint import WeightsError, map_keys, read_checkpoint, unwrap
from ecgsoup.backbones.merl.model import ResNet1DConfig

__all__ = ["ENCODER_PREFIX", "HEADS", "KEY_MAP", "convert"]

ENCODER_PREFIX = "ecg_encoder."
_BN = r"(weight|bias|running_mean|running_var)"
_BLOCK = r"layer(\d+)\.(\d+)"

#: Original encoder key (regex, without prefix) -> ecgsoup key.  ``layerN`` is stage ``N - 1``.
KEY_MAP = [
    (r"conv1\.weight", r"stem.conv.weight"),
    (rf"bn1\.{_BN}", r"stem.norm.\1"),
    (rf"{_BLOCK}\.conv([12])\.weight", r"stages.\1.\2.conv\3.weight"),
    (rf"{_BLOCK}\.bn([12])\.{_BN}", r"stages.\1.\2.norm\3.\4"),
    (rf"{_BLOCK}\.shortcut\.0\.weight", r"stages.\1.\2.shortcut.conv.weight"),
    (rf"{_BLOCK}\.shortcut\.1\.{_BN}", r"stages.\1.\2.shortcut.norm.\3"),
]

#: Known, unused tensors: the untrained classifier, BatchNorm counters, and
#: (in a whole-model file) the text encoder and the projection heads.
HEADS = (
    r"linear\.(?:weight|bias)",
    r".*num_batches_tracked",
)
_PRETRAINING_HEADS = r"(?:lm_model|proj_t|proj_e|downconv|att_pool_head|linear1|linear2)\..*"
_VIT_MARKERS = ("to_patch_embedding.weight", "pos_embedding")


def _key_map(prefix: str) -> list[tuple[str, str]]:
    """KEY_MAP for keys that start with ``prefix`` (``""`` or ``"ecg_encoder."``)."""
    return [(re.escape(prefix) + pattern, target) for pattern, target in KEY_MAP]


def _renumber(state: dict) -> dict:
    """``stages.<N>.`` from ``layerN`` (1-based) to 0-based stage indices."""
    out = {}
    for key, tensor in state.items():
        match = re.match(r"stages\.(\d+)\.", key)
        if match:
            key = f"stages.{int(match[1]) - 1}." + key[match.end():]
        out[key] = tensor
    return out


def _geometry(state: dict, origin) -> ResNet1DConfig:
    """The ResNet geometry implied by the tensor shapes (ecgsoup key names)."""
    try:
        stem_width, in_channels, stem_kernel = (int(n) for n in state["stem.conv.weight"].shape)
        blocks = {}
        for key in state:
            match = re.fullmatch(r"stages\.(\d+)\.(\d+)\.conv1\.weight", key)
            if match:
                blocks.setdefault(int(match[1]), set()).add(int(match[2]))
        n_stages = len(blocks)
        if not n_stages or sorted(blocks) != list(range(n_stages)):
            raise WeightsError(f"{origin}: stages layer{[s + 1 for s in sorted(blocks)]} are not layer1..layerN.")
        widths, counts, kernels = [], [], set()
        for stage in range(n_stages):
            indices = sorted(blocks[stage])
            if indices != list(range(len(indices))):
                raise WeightsError(f"{origin}: layer{stage + 1} has blocks {indices}, not numbered 0..M-1.")
            weight = state[f"stages.{stage}.0.conv1.weight"]
            widths.append(int(weight.shape[0]))
            kernels.add(int(weight.shape[-1]))
            counts.append(len(indices))
    except KeyError as exc:
        raise WeightsError(
            f"{origin}: a tensor needed to read the geometry is missing ({exc.args[0]} in ecgsoup names); "
            "not a complete MERL ResNet checkpoint."
        ) from None
    if len(kernels) != 1:
        raise WeightsError(f"{origin}: the blocks use kernels {sorted(kernels)}; a MERL ResNet uses one.")
    try:
        config = ResNet1DConfig(
            in_channels=in_channels,
            stem_width=stem_width,
            stem_kernel=stem_kernel,
            # Strides leave no trace in the weights; every MERL ResNet uses a
            # stride-2 stem and stages of stride 1, 2, 2, 2 (2 beyond the fourth).
            stem_stride=2,
            widths=tuple(widths),
            blocks=tuple(counts),
            strides=tuple(1 if s == 0 else 2 for s in range(n_stages)),
            kernel_size=kernels.pop(),
        )
    except ValueError as exc:
        raise WeightsError(f"{origin}: the tensor shapes imply an invalid ResNet geometry ({exc}).") from exc
    for stage in range(n_stages):
        has = f"stages.{stage}.0.shortcut.conv.weight" in state
        if has != config.projects(stage):
            raise WeightsError(
                f"{origin}: layer{stage + 1} {'has' if has else 'lacks'} a projection shortcut, which a "
                f"stride-{config.strides[stage]} stage from width "
                f"{config.stem_width if stage == 0 else config.widths[stage - 1]} to {config.widths[stage]} "
                f"{'does not have' if has else 'needs'}; not a MERL ResNet geometry."
            )
    return config


def convert(path, **options) -> Converted:
    """Read an original MERL ResNet ``.pth`` and return it in ecgsoup's ResNet1D names.

    Parameters
    ----------
    path : str or Path
        The authors' ``*_encoder.pth`` (a flat encoder state dict) or
        ``*_ckpt.pth`` (the whole pretraining model, encoder under
        ``ecg_encoder.``), possibly inside ``{"model_state_dict": ...}`` with
        ``module.`` prefixes.  It is read with ``weights_only=True``.
    **options
        None are accepted; present for a uniform converter signature.

    Returns
    -------
    Converted
        ``state_dict`` in :class:`~ecgsoup.backbones.merl.model.ResNet1D`
        key names, the inferred :class:`ResNet1DConfig`, and notes on what
        was unwrapped or ignored.

    Raises
    ------
    WeightsError
        When the file cannot be read safely, holds keys that are not part of
        a MERL ResNet (a MERL ViT file, for instance), or implies an invalid
        geometry.
    """
    if options:
        raise TypeError(f"convert() takes no options for merl, got {sorted(options)}.")
    origin = Path(path)
    state, notes = unwrap(read_checkpoint(origin), origin, prefixes=("module.",))
    whole_model = any(key.startswith(ENCODER_PREFIX) for key in state)
    prefix = ENCODER_PREFIX if whole_model else ""
    encoder_keys = [key[len(prefix):] for key in state if key.startswith(prefix)]
    if any(key.startswith(_VIT_MARKERS) for key in encoder_keys):
        raise WeightsError(
            f"{origin} holds a MERL ViT encoder; ecgsoup ports MERL's ResNet encoders only "
            "(res18_best_encoder.pth or a *_ckpt.pth of a ResNet model)."
        )
    ignored = "|".join(re.escape(prefix) + head for head in HEADS)
    if whole_model:
        ignored += "|" + _PRETRAINING_HEADS
        notes.append(f"took the encoder ('{ENCODER_PREFIX}*') of a whole MERL pretraining model")
    mapped, map_notes = map_keys(state, _key_map(prefix), ignored, origin, "merl")
    notes.extend(map_notes)
    mapped = _renumber(mapped)
    config = _geometry(mapped, origin)
    notes.append(
        f"geometry from shapes: {config.in_channels} leads, stem {config.stem_width}, widths "
        f"{list(config.widths)}, blocks {list(config.blocks)}, kernels {config.stem_kernel}/{config.kernel_size}"
    )
    return Converted(state_dict=mapped, config=config, notes=notes)
