"""Convert an original ECG-JEPA checkpoint (Kim et al.) into ecgsoup's ECGJEPA.

The released files (``multiblock_epoch100.pth`` and the random-masking one)
are what the authors' pretraining script saves: ``{"encoder": state_dict,
"epoch": int}``, where the state dict is the context encoder
(``MaskTransformer``).  The authors' ``models.load_encoder`` loads it
strictly into a 768-wide, 12-block, 16-head encoder; the geometry here is read
from the tensor shapes, except the head count, which the weights do not
record: it is 16 (what the authors' loader uses for every file) unless
``num_heads`` says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

from ecgsoup.backbones._base import Converted
from ecgsoup.backbones._checkpoint import WeightsError, map_keys, read_checkpoint, unwrap
from ecgsoup.backbones.ecg_jepa.model import ECGJEPAConfig

__all__ = ["IGNORED", "KEY_MAP", "WINDOW", "convert"]

#: Samples per lead that the authors' ``representation`` accepts (it asserts 2,500).
WINDOW = 2500
#: Heads of every released encoder, as ``models.load_encoder`` builds it.
DEFAULT_HEADS = 16

_BLOCK = r"encoder_blocks\.blocks\.(\d+)"

#: Original key (regex) -> ecgsoup key.
KEY_MAP = [
    (r"W_P\.(weight|bias)", r"patch_embed.\1"),
    (r"pos_embed", r"pos_embed"),
    (_BLOCK + r"\.norm1\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_BLOCK + r"\.attn\.qkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (_BLOCK + r"\.attn\.proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_BLOCK + r"\.norm2\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_BLOCK + r"\.mlp\.fc1\.(weight|bias)", r"blocks.\1.fc1.\2"),
    (_BLOCK + r"\.mlp\.fc2\.(weight|bias)", r"blocks.\1.fc2.\2"),
    (r"norm\.(weight|bias)", r"norm.\1"),
]

#: The encoder file holds no head or unused tensor, so nothing is set aside.
IGNORED = None


def _geometry(state: dict, origin, num_heads: int) -> ECGJEPAConfig:
    try:
        embed_dim, patch_size = (int(n) for n in state["patch_embed.weight"].shape)
        n_tokens = int(state["pos_embed"].shape[0])
        mlp_dim = int(state["blocks.0.fc1.weight"].shape[0])
    except KeyError as exc:
        raise WeightsError(
            f"{origin}: a tensor needed to read the geometry is missing ({exc.args[0]} in ecgsoup names); "
            "not a complete ECG-JEPA encoder."
        ) from None
    blocks = sorted({int(m[1]) for k in state if (m := re.fullmatch(r"blocks\.(\d+)\.norm1\.weight", k))})
    if blocks != list(range(len(blocks))):
        raise WeightsError(f"{origin}: blocks {blocks} are not numbered 0..N-1.")
    if WINDOW % patch_size:
        raise WeightsError(
            f"{origin}: patches of {patch_size} samples do not tile the {WINDOW}-sample window of ECG-JEPA."
        )
    n_patches = WINDOW // patch_size
    if n_tokens % n_patches:
        raise WeightsError(
            f"{origin}: the position table has {n_tokens} rows, not a whole number of leads of {n_patches} patches."
        )
    try:
        return ECGJEPAConfig(
            embed_dim=embed_dim,
            depth=len(blocks),
            num_heads=int(num_heads),
            mlp_dim=mlp_dim,
            n_leads=n_tokens // n_patches,
            n_patches=n_patches,
            patch_size=patch_size,
            qkv_bias="blocks.0.attn.qkv.bias" in state,
        )
    except ValueError as exc:
        raise WeightsError(f"{origin}: the tensor shapes imply an invalid ECG-JEPA geometry ({exc}).") from exc


def convert(path, num_heads: int = DEFAULT_HEADS, **options) -> Converted:
    """Read an original ECG-JEPA ``.pth`` and return it in ecgsoup's ECGJEPA names.

    Parameters
    ----------
    path : str or Path
        The authors' checkpoint: ``{"encoder": state_dict, ...}`` (a bare
        state dict, or one with ``module.`` prefixes, is accepted too).  It is
        read with ``weights_only=True``.  The state dict of a whole
        ``ecg_jepa`` module is accepted too: its context encoder
        (``encoder.*``) is taken, as the authors' downstream code does.
    num_heads : int, default=16
        Attention heads per block.  The weights do not record it; every
        released file uses 16.
    **options
        None other is accepted; present for a uniform converter signature.

    Returns
    -------
    Converted
        ``state_dict`` in :class:`~ecgsoup.backbones.ecg_jepa.model.ECGJEPA`
        key names, the inferred :class:`ECGJEPAConfig`, and notes.

    Raises
    ------
    WeightsError
        When the file cannot be read safely, holds keys that are not part of
        the encoder (a predictor, a target encoder), or implies an invalid
        geometry.
    """
    if options:
        raise TypeError(f"convert() takes only num_heads for ecg-jepa, got {sorted(options)}.")
    origin = Path(path)
    # A whole ecg_jepa module's state dict also holds target_encoder.* and predictor.*; the
    # authors' downstream code uses the context encoder, which is what "encoder." selects.
    state, notes = unwrap(read_checkpoint(origin), origin, wrapper_keys=("encoder", "state_dict", "model"),
                          prefixes=("module.",), submodule="encoder.")
    mapped, map_notes = map_keys(state, KEY_MAP, IGNORED, origin, "ecg-jepa")
    notes.extend(map_notes)
    config = _geometry(mapped, origin, num_heads)
    notes.append(
        f"geometry from shapes: width {config.embed_dim}, {config.depth} blocks, MLP {config.mlp_dim}, "
        f"{config.n_leads} leads x {config.n_patches} patches of {config.patch_size} samples; "
        f"{config.num_heads} heads (not recorded in the weights)"
    )
    return Converted(state_dict=mapped, config=config, notes=notes)
