"""ECGFounder's Net1D encoder: a RegNet-like 1-D CNN, in pure torch.

Net1D is a stem convolution followed by seven stages of pre-activation
bottleneck blocks with grouped convolutions and squeeze-excitation.  Every
convolution pads "SAME" (TensorFlow style: the output has
``ceil(length / stride)`` samples, the extra padding sample goes to the
right), so the network is fully convolutional and runs on any length.

Layer ``0`` is the stem (convolution + Swish), layers ``1..7`` are the
outputs of the seven stages; each is pooled by a global average over time.
The mean of the last stage's output is the embedding the original model
returns next to its logits (``deep_features``); the 150-label classifier
head is not part of this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ecgsoup.backbones._base import LayerInfo, StagedCNN

__all__ = ["Net1D", "Net1DConfig"]


# Largest accepted sizes: far beyond ECGFounder (widths up to 1024, 4 blocks a stage), small
# enough that no config asks for more memory than a weights file could fill.
_LIMITS = dict(in_channels=256, base_filters=2**14, filter_list=2**14, m_blocks_list=256, kernel_size=2**12,
               stride=2**8, groups_width=2**14, stem_stride=2**8, se_reduction=2**12)


@dataclass(frozen=True)
class Net1DConfig:
    """Geometry of a Net1D encoder (architecture only, no preprocessing).

    Parameters
    ----------
    in_channels : int
        Number of input leads (12 or 1 for the released models).
    base_filters : int
        Width of the stem convolution.
    ratio : float
        Bottleneck width of a block as a fraction of its output width
        (``int(out_width * ratio)`` channels inside the block).
    filter_list : tuple of int
        Output width of each stage.
    m_blocks_list : tuple of int
        Number of blocks in each stage.
    kernel_size : int
        Kernel length of the stem and of every grouped convolution.
    stride : int
        Downsampling factor of the first block of every stage.
    groups_width : int
        Channels per group: a stage of width ``w`` uses ``w // groups_width``
        groups in its grouped convolution.
    stem_stride : int
        Stride of the stem convolution (2 in every released model).
    se_reduction : int
        Squeeze-excitation bottleneck: ``width // se_reduction`` hidden units.
    """

    in_channels: int = 12
    base_filters: int = 64
    ratio: float = 1.0
    filter_list: tuple[int, ...] = (64, 160, 160, 400, 400, 1024, 1024)
    m_blocks_list: tuple[int, ...] = (2, 2, 2, 3, 3, 4, 4)
    kernel_size: int = 16
    stride: int = 2
    groups_width: int = 16
    stem_stride: int = 2
    se_reduction: int = 2

    def __post_init__(self):
        from ecgsoup.backbones._base import check_sizes

        check_sizes(self, _LIMITS)
        # JSON round trips hand lists back; the config must stay hashable.
        object.__setattr__(self, "filter_list", tuple(int(w) for w in self.filter_list))
        object.__setattr__(self, "m_blocks_list", tuple(int(m) for m in self.m_blocks_list))
        if len(self.filter_list) != len(self.m_blocks_list) or not self.filter_list:
            raise ValueError(
                f"filter_list ({len(self.filter_list)} stages) and m_blocks_list "
                f"({len(self.m_blocks_list)} stages) must be non-empty and of equal length."
            )
        if min(self.m_blocks_list) < 1:
            raise ValueError(
                f"Every stage needs at least one block, got m_blocks_list={self.m_blocks_list}."
            )
        if (
            min(
                self.in_channels, self.base_filters, self.kernel_size, self.stride, self.stem_stride
            )
            < 1
        ):
            raise ValueError(
                "in_channels, base_filters, kernel_size, stride and stem_stride must be positive."
            )
        for width in self.filter_list:
            groups, middle = width // self.groups_width, int(width * self.ratio)
            if groups < 1 or middle < 1 or middle % groups:
                raise ValueError(
                    f"A stage of width {width} has {groups} groups (groups_width={self.groups_width}) "
                    f"and {middle} bottleneck channels (ratio={self.ratio}); the groups must divide them."
                )
            if width // self.se_reduction < 1:
                raise ValueError(
                    f"Width {width} is too small for se_reduction={self.se_reduction}."
                )

    @property
    def n_stages(self) -> int:
        return len(self.filter_list)


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad time so a convolution returns ``ceil(length / stride)`` samples.

    The left side gets ``total // 2`` samples and the right side the rest,
    which is where the original places an odd padding sample.
    """
    length = x.shape[-1]
    out = (length + stride - 1) // stride
    total = max(0, (out - 1) * stride + kernel - length)
    if total == 0:
        return x
    return F.pad(x, (total // 2, total - total // 2))


class _SameConv1d(nn.Conv1d):
    """A ``Conv1d`` with SAME padding computed from the input length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


class _SqueezeExcite(nn.Module):
    """Channel gate: mean over time -> Linear -> Swish -> Linear -> sigmoid."""

    def __init__(self, width: int, reduction: int):
        super().__init__()
        self.squeeze = nn.Linear(width, width // reduction)
        self.excite = nn.Linear(width // reduction, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.excite(F.silu(self.squeeze(x.mean(-1)))))
        return x * gate.unsqueeze(-1)


class _Block(nn.Module):
    """Pre-activation bottleneck block with squeeze-excitation and an identity shortcut.

    Residual branch: [Swish] 1x1 conv -> Swish -> grouped k conv (strided
    when downsampling) -> Swish -> 1x1 conv -> squeeze-excitation.
    The shortcut max-pools the input when the block downsamples and, when
    the block widens the representation, places the input channels in the
    middle of the wider channel axis with zeros on both sides.  The very
    first block of the network omits the leading Swish because the stem
    already ends with one.
    """

    def __init__(self, in_width: int, out_width: int, cfg: Net1DConfig, stride: int, first: bool):
        super().__init__()
        middle = int(out_width * cfg.ratio)
        self.stride = stride
        self.first = first
        self.in_width, self.out_width = in_width, out_width
        self.pointwise_in = _SameConv1d(in_width, middle, 1)
        self.grouped = _SameConv1d(
            middle, middle, cfg.kernel_size, stride=stride, groups=out_width // cfg.groups_width
        )
        self.pointwise_out = _SameConv1d(middle, out_width, 1)
        self.se = _SqueezeExcite(out_width, cfg.se_reduction)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The identity path: SAME max-pool in time, centred zero-padding in channels."""
        if self.stride > 1:
            # The padding value is 0, not -inf: an odd-length input's last
            # window is max(x_last, 0), as in the original network.
            pad = self.stride - 1
            x = F.max_pool1d(F.pad(x, (pad // 2, pad - pad // 2)), self.stride)
        extra = self.out_width - self.in_width
        if extra:
            x = F.pad(x, (0, 0, extra // 2, extra - extra // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.first else F.silu(x)
        out = self.pointwise_in(out)
        out = self.grouped(F.silu(out))
        out = self.pointwise_out(F.silu(out))
        return self.se(out) + self.shortcut(x)


class Net1D(StagedCNN):
    """ECGFounder's Net1D encoder; input ``(batch, leads, time)``, any length.

    Parameters
    ----------
    config : Net1DConfig
        The geometry.  The module is built with every weight set to zero and
        without drawing from torch's global random generator; load weights
        (``load_strict``) or call :meth:`init_weights` before use.

    Notes
    -----
    **Layers.** ``"stem"`` (convolution + Swish, ``base_filters`` wide) and
    ``"stage1"`` .. ``"stage7"`` (the output of each stage's last block; 64,
    160, 160, 400, 400, 1024 and 1024 wide in the released models).  Every
    layer is pooled by a global average over time; the mean of the last stage
    is the original model's ``deep_features`` embedding, so the readout is the
    identity.

    **Streams.** Every block adds its residual branch to an *identity*
    shortcut: only max-pooling in time, and centred zero-padding when the
    width grows.  No projection ever changes the channel basis, so runs of
    layers with equal width live in one coordinate system: the stem and
    stage 1, stages 2 and 3, 4 and 5, 6 and 7 in the released geometry (in
    general, consecutive layers of equal width).  Each such run is one stream,
    named ``"residual<width>"`` with the run's first layer index appended when
    a width recurs non-consecutively.  Averaging (PPA) or mixing (PMA) is
    meaningful within a stream; across widths the bases differ in size, and
    only concatenation (``LayerSelector``) applies.
    """

    family = "ecgfounder"

    def __init__(self, config: Net1DConfig):
        super().__init__(config)
        cfg = config
        # Built on the meta device so that construction costs no time and
        # never touches the global RNG; real storage is allocated below.
        with torch.device("meta"):
            self.stem = _SameConv1d(
                cfg.in_channels, cfg.base_filters, cfg.kernel_size, stride=cfg.stem_stride
            )
            stages, width = [], cfg.base_filters
            for index, (out_width, n_blocks) in enumerate(zip(cfg.filter_list, cfg.m_blocks_list)):
                blocks = [
                    _Block(
                        width if b == 0 else out_width,
                        out_width,
                        cfg,
                        stride=cfg.stride if b == 0 else 1,
                        first=index == 0 and b == 0,
                    )
                    for b in range(n_blocks)
                ]
                stages.append(nn.Sequential(*blocks))
                width = out_width
            self.stages = nn.ModuleList(stages)
        # Zero placeholders until weights are loaded: an unloaded model is
        # visibly inert rather than silently random.
        for module in self.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                setattr(module, name, nn.Parameter(torch.zeros(param.shape, dtype=param.dtype)))

    # -- the backbone interface ------------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """``stem``, ``stage1`` .. ``stageN``; streams group consecutive equal widths."""
        widths = (self.config.base_filters, *self.config.filter_list)
        names = ("stem", *(f"stage{i}" for i in range(1, len(widths))))
        streams, seen = [], set()
        for index, width in enumerate(widths):
            if index and width == widths[index - 1]:
                streams.append(streams[-1])
                continue
            stream = f"residual{width}" if width not in seen else f"residual{width}-{index}"
            seen.add(width)
            streams.append(stream)
        return tuple(LayerInfo(n, w, s) for n, w, s in zip(names, widths, streams))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"Expected input (batch, {self.config.in_channels} leads, time), got shape {tuple(x.shape)}."
            )

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return F.silu(self.stem(x))

    # -- initialisation ------------------------------------------------------------
    def init_weights(self, generator: torch.Generator | None = None) -> Net1D:
        """Random weights as torch's default layer initialisation, from ``generator``.

        Every convolution and linear weight and bias is drawn from
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, the distribution the original
        network starts from.  Drawing from a local generator leaves torch's
        global random state untouched.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv1d, nn.Linear)):
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    module.weight.uniform_(-bound, bound, generator=generator)
                    if module.bias is not None:
                        module.bias.uniform_(-bound, bound, generator=generator)
        return self
