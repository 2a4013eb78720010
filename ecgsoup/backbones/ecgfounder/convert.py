"""Convert an original ECGFounder checkpoint into ecgsoup's Net1D.

The released files (``12_lead_ECGFounder.pth``, ``1_lead_ECGFounder.pth``)
are dicts whose ``"state_dict"`` holds the authors' Net1D parameters.  They
also store BatchNorm tensors that the released configuration never runs
(it is built with ``use_bn=False``) and the 150-label classifier ``dense``;
both are set aside with one log line.  The geometry is read from the tensor
shapes, never assumed.
"""

from __future__ import annotations

import re
from pathlib import Path

from ecgsoup.backbones._base import Converted
from ecgsoup.backbones._checkpoint import WeightsError, map_keys, read_checkpoint, unwrap
from ecgsoup.backbones.ecgfounder.model import Net1DConfig

__all__ = ["IGNORED", "KEY_MAP", "convert"]

_BLOCK = r"stage_list\.(\d+)\.block_list\.(\d+)"

#: Original key (regex) -> ecgsoup key.
KEY_MAP = [
    (r"first_conv\.conv\.(weight|bias)", r"stem.\1"),
    (_BLOCK + r"\.conv1\.conv\.(weight|bias)", r"stages.\1.\2.pointwise_in.\3"),
    (_BLOCK + r"\.conv2\.conv\.(weight|bias)", r"stages.\1.\2.grouped.\3"),
    (_BLOCK + r"\.conv3\.conv\.(weight|bias)", r"stages.\1.\2.pointwise_out.\3"),
    (_BLOCK + r"\.se_fc1\.(weight|bias)", r"stages.\1.\2.se.squeeze.\3"),
    (_BLOCK + r"\.se_fc2\.(weight|bias)", r"stages.\1.\2.se.excite.\3"),
]

#: Stored but unused: the never-run BatchNorms and the classifier head.
_BN_TENSOR = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
IGNORED = rf"(?:first_bn|{_BLOCK}\.bn[123])\.{_BN_TENSOR}|dense\.(?:weight|bias)"


def _geometry(state: dict, origin) -> Net1DConfig:
    """The Net1D geometry implied by the tensor shapes (ecgsoup key names)."""
    try:
        return _shapes_to_config(state, origin)
    except KeyError as exc:
        raise WeightsError(
            f"{origin}: a tensor needed to read the geometry is missing ({exc.args[0]} in ecgsoup names); "
            "not a complete Net1D checkpoint."
        ) from None


def _shapes_to_config(state: dict, origin) -> Net1DConfig:
    stem = state["stem.weight"]
    base_filters, in_channels, kernel_size = (int(n) for n in stem.shape)
    blocks = {}
    for key in state:
        match = re.fullmatch(r"stages\.(\d+)\.(\d+)\.grouped\.weight", key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    n_stages = len(blocks)
    if sorted(blocks) != list(range(n_stages)) or not n_stages:
        raise WeightsError(f"{origin}: stages {sorted(blocks)} are not numbered 0..N-1.")
    filter_list, m_blocks_list, groups_widths, ratios = [], [], set(), set()
    for stage in range(n_stages):
        indices = sorted(blocks[stage])
        if indices != list(range(len(indices))):
            raise WeightsError(
                f"{origin}: stage {stage} has blocks {indices}, not numbered 0..M-1."
            )
        head = f"stages.{stage}.0"
        width = int(state[f"{head}.pointwise_out.weight"].shape[0])
        middle, per_group, grouped_kernel = (int(n) for n in state[f"{head}.grouped.weight"].shape)
        if grouped_kernel != kernel_size:
            raise WeightsError(
                f"{origin}: stage {stage} has kernel {grouped_kernel} but the stem has {kernel_size}; "
                "Net1D uses one kernel size."
            )
        groups = middle // per_group
        groups_widths.add(width // groups)
        ratios.add(middle / width)
        filter_list.append(width)
        m_blocks_list.append(len(indices))
    if len(groups_widths) != 1 or len(ratios) != 1:
        raise WeightsError(
            f"{origin}: stages disagree on the group width ({sorted(groups_widths)}) or the bottleneck "
            f"ratio ({sorted(ratios)}); not a Net1D geometry."
        )
    squeeze = int(state["stages.0.0.se.squeeze.weight"].shape[0])
    try:
        return Net1DConfig(
            in_channels=in_channels,
            base_filters=base_filters,
            ratio=ratios.pop(),
            filter_list=tuple(filter_list),
            m_blocks_list=tuple(m_blocks_list),
            kernel_size=kernel_size,
            # Strides leave no trace in the weights; every released model uses 2.
            stride=2,
            groups_width=groups_widths.pop(),
            stem_stride=2,
            se_reduction=max(1, filter_list[0] // squeeze),
        )
    except ValueError as exc:
        raise WeightsError(
            f"{origin}: the tensor shapes imply an invalid Net1D geometry ({exc})."
        ) from exc


def convert(path, **options) -> Converted:
    """Read an original ECGFounder ``.pth`` and return it in ecgsoup's Net1D names.

    Parameters
    ----------
    path : str or Path
        The authors' checkpoint: a dict with a ``"state_dict"`` entry (a bare
        state dict, or one saved from ``nn.DataParallel`` with ``module.``
        prefixes, is accepted too).  It is read with ``weights_only=True``.
    **options
        None are accepted; present for a uniform converter signature.

    Returns
    -------
    Converted
        ``state_dict`` in :class:`~ecgsoup.backbones.ecgfounder.model.Net1D`
        key names, the inferred :class:`Net1DConfig`, and notes on what was
        unwrapped or ignored.

    Raises
    ------
    WeightsError
        When the file cannot be read safely, holds keys that are not part of
        Net1D, or implies an invalid geometry.
    """
    if options:
        raise TypeError(f"convert() takes no options for ecgfounder, got {sorted(options)}.")
    origin = Path(path)
    state, notes = unwrap(read_checkpoint(origin), origin, prefixes=("module.",))
    mapped, map_notes = map_keys(state, KEY_MAP, IGNORED, origin, "ecgfounder")
    notes.extend(map_notes)
    config = _geometry(mapped, origin)
    notes.append(
        f"geometry from shapes: {config.in_channels} leads, widths {list(config.filter_list)}, "
        f"blocks {list(config.m_blocks_list)}, kernel {config.kernel_size}, groups of {config.groups_width}"
    )
    return Converted(state_dict=mapped, config=config, notes=notes)
