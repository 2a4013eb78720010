"""MERL's ECG encoder: a 1-D ResNet-18 without max-pooling, in pure torch.

The architecture (Liu et al., ICML 2024) is the torchvision ResNet-18 made
one-dimensional:

1. **Stem.**  A bias-free convolution (kernel 7, stride 2, padding 3) from
   the 12 leads to 64 channels, BatchNorm, ReLU.  There is no max-pool.
2. **Four stages** of two basic blocks each, 64, 128, 256 and 512 wide, with
   strides 1, 2, 2 and 2.  A block is conv(k3, stride) -> BatchNorm -> ReLU
   -> conv(k3) -> BatchNorm, added to its shortcut, then ReLU.  The shortcut
   is the identity, or a bias-free 1x1 convolution (with the block's
   stride) followed by BatchNorm when the block changes the width or the
   length.
3. **Pooling.**  A global average over time of the last stage gives the
   512-d embedding the authors' linear probe reads.

Layers emitted: index 0 is the stem's output, then the output of each stage.
Each is pooled by a global average over time, so the pooled last stage is the
authors' embedding and the readout is the identity.  The BatchNorms always
use their running statistics: a backbone is frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ecgsoup.backbones._base import LayerInfo, StagedCNN

__all__ = ["ResNet1D", "ResNet1DConfig"]


# Largest accepted sizes: far beyond MERL's ResNet-18 (widths up to 512, 2 blocks a stage), small
# enough that no config asks for more memory than a weights file could fill.
_LIMITS = dict(in_channels=256, stem_width=2**14, stem_kernel=2**12, stem_stride=2**8, widths=2**14, blocks=256,
               strides=2**8, kernel_size=2**12)

@dataclass(frozen=True)
class ResNet1DConfig:
    """Geometry of a MERL ResNet encoder (architecture only, no preprocessing).

    Parameters
    ----------
    in_channels : int
        Number of input leads (12 in the released models).
    stem_width : int
        Channels of the stem convolution (64).
    stem_kernel : int
        Kernel length of the stem convolution (7; padding ``kernel // 2``).
    stem_stride : int
        Stride of the stem convolution (2).
    widths : tuple of int
        Output width of each stage (64, 128, 256, 512).
    blocks : tuple of int
        Basic blocks per stage ((2, 2, 2, 2) for ResNet-18).
    strides : tuple of int
        Stride of the first block of each stage ((1, 2, 2, 2)).
    kernel_size : int
        Kernel length of the block convolutions (3; padding ``kernel // 2``).
    bn_eps : float
        Epsilon of every BatchNorm (torch's default, 1e-5).
    """

    in_channels: int = 12
    stem_width: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    kernel_size: int = 3
    bn_eps: float = 1e-5

    def __post_init__(self):
        from ecgsoup.backbones._base import check_sizes

        check_sizes(self, _LIMITS)
        # JSON round trips hand lists back; the config must stay hashable.
        for name in ("widths", "blocks", "strides"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.widths or not len(self.widths) == len(self.blocks) == len(self.strides):
            raise ValueError(
                f"widths ({len(self.widths)}), blocks ({len(self.blocks)}) and strides "
                f"({len(self.strides)}) must be non-empty and list one value per stage."
            )
        if min(self.in_channels, self.stem_width, self.stem_kernel, self.stem_stride,
               self.kernel_size, *self.widths, *self.blocks, *self.strides) < 1:
            raise ValueError("Every width, kernel, stride and block count of a ResNet must be positive.")
        if self.kernel_size % 2 == 0 or self.stem_kernel % 2 == 0:
            raise ValueError(
                f"Kernels must be odd (padding kernel // 2 keeps the length), got stem {self.stem_kernel} "
                f"and blocks {self.kernel_size}."
            )

    def projects(self, stage: int) -> bool:
        """Whether stage ``stage``'s first block has a projection shortcut."""
        previous = self.stem_width if stage == 0 else self.widths[stage - 1]
        return self.strides[stage] != 1 or previous != self.widths[stage]


class _BatchNorm(nn.Module):
    """Inference-only BatchNorm over channels: running statistics, affine.

    Holds exactly the tensors the original ``nn.BatchNorm1d`` uses at
    inference (``weight``, ``bias``, ``running_mean``, ``running_var``); the
    training counter ``num_batches_tracked`` has no effect there.
    """

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("running_mean", torch.zeros(width))
        self.register_buffer("running_var", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


def _conv(in_width: int, out_width: int, kernel: int, stride: int = 1) -> nn.Conv1d:
    """A bias-free convolution with zero weights (no draw from the global RNG)."""
    with torch.device("meta"):
        conv = nn.Conv1d(in_width, out_width, kernel, stride=stride, padding=kernel // 2, bias=False)
    conv.weight = nn.Parameter(torch.zeros(conv.weight.shape))
    return conv


class _Shortcut(nn.Module):
    """Projection shortcut: 1x1 convolution with the block's stride, then BatchNorm."""

    def __init__(self, in_width: int, out_width: int, stride: int, eps: float):
        super().__init__()
        self.conv = _conv(in_width, out_width, 1, stride)
        self.norm = _BatchNorm(out_width, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class _BasicBlock(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN, plus the shortcut, then ReLU."""

    def __init__(self, in_width: int, out_width: int, stride: int, cfg: ResNet1DConfig):
        super().__init__()
        self.conv1 = _conv(in_width, out_width, cfg.kernel_size, stride)
        self.norm1 = _BatchNorm(out_width, cfg.bn_eps)
        self.conv2 = _conv(out_width, out_width, cfg.kernel_size)
        self.norm2 = _BatchNorm(out_width, cfg.bn_eps)
        project = stride != 1 or in_width != out_width
        self.shortcut = _Shortcut(in_width, out_width, stride, cfg.bn_eps) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class _Stem(nn.Module):
    def __init__(self, cfg: ResNet1DConfig):
        super().__init__()
        self.conv = _conv(cfg.in_channels, cfg.stem_width, cfg.stem_kernel, cfg.stem_stride)
        self.norm = _BatchNorm(cfg.stem_width, cfg.bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ResNet1D(StagedCNN):
    """MERL's ResNet encoder; input ``(batch, leads, time)`` in MIMIC lead order, any length.

    Parameters
    ----------
    config : ResNet1DConfig
        The geometry.  Convolution weights start at zero and BatchNorms at
        the identity, without drawing from torch's global random generator;
        load weights (``load_strict``) or call :meth:`init_weights` before use.

    Notes
    -----
    **Layers.** ``"stem"`` (64 wide) and ``"stage1"`` .. ``"stage4"`` (64,
    128, 256 and 512 wide in the released model), each the output of the last
    block of its stage, pooled by a global average over time.  For a 10 s,
    500 Hz input (5,000 samples) the maps are 2,500, 2,500, 1,250, 625 and
    313 samples long.

    **Streams.** A layer continues its predecessor's stream only when the
    first block of its stage has an *identity* shortcut (stride 1, same
    width): the stem and stage 1 share one.  Stages 2, 3 and 4 start with a
    projection shortcut (a learned 1x1 convolution and BatchNorm), which
    maps the previous channels into a new basis, so each starts a stream of
    its own (``"stage2"``, ...).  Only layers of one stream may be averaged
    (PPA) or mixed (PMA); ``LayerSelector`` concatenates any of them.
    """

    family = "merl"

    def __init__(self, config: ResNet1DConfig):
        super().__init__(config)
        cfg = config
        self.stem = _Stem(cfg)
        stages, width = [], cfg.stem_width
        for out_width, n_blocks, stride in zip(cfg.widths, cfg.blocks, cfg.strides):
            blocks = [
                _BasicBlock(width if b == 0 else out_width, out_width, stride if b == 0 else 1, cfg)
                for b in range(n_blocks)
            ]
            stages.append(nn.Sequential(*blocks))
            width = out_width
        self.stages = nn.ModuleList(stages)

    # -- the backbone interface ------------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """``stem``, ``stage1`` .. ``stageN``; a projection shortcut starts a new stream."""
        cfg = self.config
        infos = [LayerInfo("stem", cfg.stem_width, "stem")]
        for stage, width in enumerate(cfg.widths):
            stream = f"stage{stage + 1}" if cfg.projects(stage) else infos[-1].stream
            infos.append(LayerInfo(f"stage{stage + 1}", width, stream))
        return tuple(infos)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"Expected input (batch, {self.config.in_channels} leads, time), got shape {tuple(x.shape)}."
            )
        return self.stem(x)

    # -- initialisation ------------------------------------------------------------
    def init_weights(self, generator: torch.Generator | None = None) -> ResNet1D:
        """Random weights as the original starts from, drawn from ``generator``.

        Convolutions get torch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``;
        BatchNorms the identity (scale 1, shift 0, mean 0, variance 1).
        Drawing from a local generator leaves torch's global random state
        untouched.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv1d):
                    bound = 1.0 / math.sqrt(module.weight[0].numel())
                    module.weight.uniform_(-bound, bound, generator=generator)
                elif isinstance(module, _BatchNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
                    module.running_mean.zero_()
                    module.running_var.fill_(1.0)
        return self
