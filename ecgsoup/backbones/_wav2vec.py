"""What HuBERT-ECG and ECG-FM share: the wav2vec 2.0 shape of encoder.

Both families put a stack of 1-D convolutions on the raw signal, add a grouped
positional convolution, and run a transformer of fused-attention layers; they
differ in the front end's input (one concatenated signal or 12 channels), in
where the LayerNorms sit, and in the names of the checkpoint fields.  The pieces
here are the ones that are the same to the letter.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ._base import Backbone, LayerInfo, draw_parameter, empty_module

__all__ = ["ConvFrontEndConfig", "FusedAttention", "Wav2VecBackbone"]


class ConvFrontEndConfig:
    """Mixin for a frozen config dataclass with ``conv_dim``, ``conv_kernel`` and ``conv_stride``."""

    def _check_front_end(self, width: str, heads: str, groups: str) -> None:
        """Normalise the conv tuples and refuse widths the attention or positions cannot split."""
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not (len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) >= 1):
            raise ValueError(
                "conv_dim, conv_kernel and conv_stride must have one entry per convolution; got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)} and {len(self.conv_stride)}."
            )
        for divisor in (heads, groups):
            if getattr(self, width) % getattr(self, divisor):
                raise ValueError(
                    f"{width}={getattr(self, width)} is not a multiple of "
                    f"{divisor}={getattr(self, divisor)}."
                )

    @property
    def total_stride(self) -> int:
        """Input samples per output frame."""
        return math.prod(self.conv_stride)

    def n_frames(self, n_samples: int) -> int:
        """Number of frames the feature encoder makes of ``n_samples`` input samples."""
        length = int(n_samples)
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            length = (length - kernel) // stride + 1
        return length

    def min_samples(self) -> int:
        """The fewest input samples that still give one frame."""
        length = 1
        for kernel, stride in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            length = (length - 1) * stride + kernel
        return length

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**data)


class FusedAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection (one GEMM instead of three)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = empty_module(nn.Linear, width, 3 * width)
        self.out = empty_module(nn.Linear, width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, width = x.shape
        qkv = self.qkv(x).view(batch, frames, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, frames, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(1, 2).reshape(batch, frames, width))


class Wav2VecBackbone(Backbone):
    """Weights, convolutions and pooling of a wav2vec-shaped encoder.

    A subclass sets ``conv``, ``pos_conv`` and ``blocks``, and defines ``width``,
    ``depth`` and ``iter_layers``.  Its layers are the input of the first
    transformer layer and the output of every layer, one residual stream, each
    pooled by the mean over frames.
    """

    width: int
    depth: int

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """``layer00`` (the embedding) and ``layer01``... (transformer layers), one stream."""
        return tuple(LayerInfo(f"layer{i:02d}", self.width, "residual") for i in range(self.depth + 1))

    def _zero_init(self) -> None:
        with torch.no_grad():
            for name, tensor in self.named_parameters():
                is_norm_scale = name.endswith("weight") and "norm" in name
                tensor.fill_(1.0 if is_norm_scale else 0.0)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator):
        """Draw random weights from ``generator`` (torch's global generator is not used).

        Linear and convolution weights are normal with standard deviation
        ``1 / sqrt(fan_in)``, biases zero and normalisation scales one, so
        activations keep a unit scale through the stack.

        Parameters
        ----------
        generator : torch.Generator
            Source of the random numbers (on the CPU).

        Returns
        -------
        Wav2VecBackbone
            ``self``, for chaining.
        """
        for name, tensor in self.named_parameters():
            draw_parameter(name, tensor, generator)
        return self

    def _min_samples(self) -> int:
        return self.config.min_samples()

    @staticmethod
    def _compute_dtype(h: torch.Tensor) -> torch.dtype:
        """The dtype the convolutions run in: float32 for bfloat16 input on a CPU.

        CPUs without native bfloat16 run bfloat16 convolutions in a reference
        kernel (grouped ones one group at a time), 8 to 17 times slower than
        float32 on such a CPU.  The convolutions are about a quarter of the work,
        so float32 there costs little even on CPUs that do have native bfloat16.
        """
        if h.dtype == torch.bfloat16 and h.device.type == "cpu":
            return torch.float32
        return h.dtype

    @staticmethod
    def _conv(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        bias = None if conv.bias is None else conv.bias.to(h.dtype)
        return F.conv1d(h, conv.weight.to(h.dtype), bias, stride=conv.stride,
                        padding=conv.padding, groups=conv.groups)

    def _with_positions(self, h: torch.Tensor) -> torch.Tensor:
        """``h + GELU(positional convolution of h)``; an even kernel's extra last frame is dropped."""
        pos = self._conv(self.pos_conv, h.transpose(1, 2).to(self._compute_dtype(h))).to(h.dtype)
        if self.pos_conv.kernel_size[0] % 2 == 0:
            pos = pos[..., :-1]
        return h + F.gelu(pos).transpose(1, 2)

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's hidden map, ``(B, frames, width)`` each, from one pass."""
        return list(self.iter_layers(x))

    def pool(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Mean over frames, accumulated in float32: ``(B, width)``."""
        return hidden.mean(dim=1, dtype=torch.float32)

    def pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer mean-pooled as soon as it is computed: ``(B, n_layers * width)`` float32."""
        return torch.cat([self.pool(h, i) for i, h in enumerate(self.iter_layers(x))], dim=1)
