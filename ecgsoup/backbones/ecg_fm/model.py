"""ECG-FM: a wav2vec 2.0 encoder with a 12-channel convolutional front end, in pure torch.

The architecture (McKeen et al., 2024, built on fairseq-signals) reads the 12
leads as 12 input channels, not as one concatenated signal:

1. **Feature encoder.**  Bias-free 1-D convolutions over time (the released
   model: four of 256 channels, kernel 2, stride 2, so 2,500 samples give 156
   frames), each followed by an exact GELU; the first one is also followed by
   a GroupNorm with one group per channel, computed in float32.
2. **Projection.**  LayerNorm over the conv channels, then a linear map to the
   model width (absent when the widths already agree).
3. **Positions.**  A grouped convolution over time (kernel 128, 16 groups,
   weight-normalised in training; here the folded weight), of which the last
   output frame is dropped when the kernel is even, then GELU; the result is
   added to the frames.
4. **Transformer.**  With ``layer_norm_first=False`` (the released model): a
   LayerNorm on the frames, then post-LN layers (self-attention, residual,
   LayerNorm, GELU feed-forward, residual, LayerNorm).  With
   ``layer_norm_first=True``: pre-LN layers and the LayerNorm after the last.

Layers emitted: index 0 is the input of the first transformer layer (after the
encoder LayerNorm for post-LN models), then the output of every layer; for
pre-LN models the last one is the encoder's output, after its final
LayerNorm.  Each is pooled by the mean over frames, as the authors' classifier
and embedding script pool the encoder output, so the readout is the identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._base import Backbone, LayerInfo
from .._base import empty_module as _empty

__all__ = ["ECGFM", "ECGFMConfig"]


# Largest accepted sizes: far beyond ECG-FM (width 768, 12 layers), small enough that no config
# asks for more memory than a weights file could fill.
_LIMITS = dict(in_channels=256, conv_dim=2**14, conv_kernel=2**12, conv_stride=2**12, encoder_embed_dim=2**14,
               encoder_layers=256, encoder_attention_heads=256, encoder_ffn_embed_dim=2**16, conv_pos=2**12,
               conv_pos_groups=2**12)

@dataclass(frozen=True)
class ECGFMConfig:
    """Architecture of an ECG-FM encoder (no input contract, no training settings).

    The names follow fairseq-signals' model configuration (``cfg['model']`` of
    a checkpoint), with the convolution list split into three tuples.

    Parameters
    ----------
    in_channels : int
        Input leads (``in_d``), 12 for the released model.
    conv_dim, conv_kernel, conv_stride : tuple of int
        Channels, kernel sizes and strides of the feature-encoder convolutions
        (``conv_feature_layers``).
    conv_bias : bool
        Whether those convolutions have a bias.
    encoder_embed_dim : int
        Model width.
    encoder_layers : int
        Number of transformer layers.
    encoder_attention_heads : int
        Attention heads per layer; must divide ``encoder_embed_dim``.
    encoder_ffn_embed_dim : int
        Width of the feed-forward hidden layer.
    conv_pos : int
        Kernel size of the positional convolution.
    conv_pos_groups : int
        Groups of the positional convolution; must divide ``encoder_embed_dim``.
    layer_norm_first : bool
        Pre-LN layers (True) or post-LN layers (False, the released model).
    """

    in_channels: int = 12
    conv_dim: tuple = (256, 256, 256, 256)
    conv_kernel: tuple = (2, 2, 2, 2)
    conv_stride: tuple = (2, 2, 2, 2)
    conv_bias: bool = False
    encoder_embed_dim: int = 768
    encoder_layers: int = 12
    encoder_attention_heads: int = 12
    encoder_ffn_embed_dim: int = 3072
    conv_pos: int = 128
    conv_pos_groups: int = 16
    layer_norm_first: bool = False

    def __post_init__(self):
        from ecgsoup.backbones._base import check_sizes

        check_sizes(self, _LIMITS)
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not (len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) >= 1):
            raise ValueError(
                "conv_dim, conv_kernel and conv_stride must have one entry per convolution; got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)} and {len(self.conv_stride)}."
            )
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                f"encoder_embed_dim={self.encoder_embed_dim} is not a multiple of "
                f"encoder_attention_heads={self.encoder_attention_heads}."
            )
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError(
                f"encoder_embed_dim={self.encoder_embed_dim} is not a multiple of "
                f"conv_pos_groups={self.conv_pos_groups}."
            )

    @property
    def total_stride(self) -> int:
        """Input samples per output frame (16 for the released model)."""
        return math.prod(self.conv_stride)

    def n_frames(self, n_samples: int) -> int:
        """Number of frames the feature encoder makes of ``n_samples`` samples per lead."""
        length = int(n_samples)
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            length = (length - kernel) // stride + 1
        return length

    def to_dict(self) -> dict:
        return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ECGFMConfig:
        return cls(**data)


class _Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection (one GEMM instead of three)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = _empty(nn.Linear, width, 3 * width)
        self.out = _empty(nn.Linear, width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, width = x.shape
        qkv = self.qkv(x).view(batch, frames, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, frames, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(1, 2).reshape(batch, frames, width))


class _Layer(nn.Module):
    """One transformer layer, post-LN or pre-LN as the checkpoint says."""

    def __init__(self, config: ECGFMConfig):
        super().__init__()
        width = config.encoder_embed_dim
        self.pre_norm = config.layer_norm_first
        self.attn = _Attention(width, config.encoder_attention_heads)
        self.norm1 = nn.LayerNorm(width)
        self.fc1 = _empty(nn.Linear, width, config.encoder_ffn_embed_dim)
        self.fc2 = _empty(nn.Linear, config.encoder_ffn_embed_dim, width)
        self.norm2 = nn.LayerNorm(width)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.norm1(x))
            return x + self._ffn(self.norm2(x))
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self._ffn(x))


class ECGFM(Backbone):
    """A frozen ECG-FM encoder that yields the embedding and every transformer layer.

    Parameters
    ----------
    config : ECGFMConfig
        The architecture.  Weights start at zero (normalisation scales at
        one); load converted weights with a strict loader, or draw random ones
        with :meth:`init_weights`.  Building the module never draws from
        torch's global random generator.

    Notes
    -----
    Input to :meth:`forward_layers` and :meth:`pooled_layers` is
    ``(batch, leads, time)`` in the contract's lead order.  For the released
    model, 12 leads of 2,500 samples (5 s at 500 Hz) give 156 frames.
    """

    family = "ecg-fm"

    def __init__(self, config: ECGFMConfig):
        super().__init__(config)
        channels = (config.in_channels,) + config.conv_dim
        self.conv = nn.ModuleList(
            _empty(nn.Conv1d, channels[i], channels[i + 1], kernel, stride=stride, bias=config.conv_bias)
            for i, (kernel, stride) in enumerate(zip(config.conv_kernel, config.conv_stride))
        )
        self.conv_norm = nn.GroupNorm(config.conv_dim[0], config.conv_dim[0])
        last = config.conv_dim[-1]
        self.feat_norm = nn.LayerNorm(last)
        width = config.encoder_embed_dim
        # fairseq-signals builds the projection only when the widths differ.
        self.proj = _empty(nn.Linear, last, width) if last != width else None
        kernel = config.conv_pos
        self.pos_conv = _empty(nn.Conv1d, width, width, kernel, padding=kernel // 2,
                               groups=config.conv_pos_groups)
        # An even kernel with padding kernel // 2 makes one frame too many; the
        # original drops the last one.
        self._pos_trim = 1 if kernel % 2 == 0 else 0
        self.encoder_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_Layer(config) for _ in range(config.encoder_layers))
        self._zero_init()
        self.eval()
        self.requires_grad_(False)

    # -- layer table --------------------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """``layer00`` (input of the first transformer layer) and ``layer01``..., one stream."""
        return tuple(
            LayerInfo(f"layer{i:02d}", self.config.encoder_embed_dim, "residual")
            for i in range(self.config.encoder_layers + 1)
        )

    # -- weights ------------------------------------------------------------------
    def _zero_init(self) -> None:
        with torch.no_grad():
            for name, tensor in self.named_parameters():
                is_norm_scale = name.endswith("weight") and "norm" in name
                tensor.fill_(1.0 if is_norm_scale else 0.0)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> ECGFM:
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
        ECGFM
            ``self``, for chaining.
        """
        for name, tensor in self.named_parameters():
            if "norm" in name:
                tensor.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                tensor.zero_()
            else:
                fan_in = tensor[0].numel()
                noise = torch.empty(tensor.shape, dtype=torch.float32).normal_(generator=generator)
                tensor.copy_(noise / math.sqrt(fan_in))
        return self

    # -- forward ------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"ECG-FM takes (batch, {self.config.in_channels} leads, time); got shape {tuple(x.shape)}. "
                "Pass the leads in the contract's order (an ECGPreprocessor does this)."
            )
        if self.config.n_frames(x.shape[2]) < 1:
            raise ValueError(
                f"{x.shape[2]} samples per lead are too few for the feature encoder "
                f"(it needs at least {self._min_samples()})."
            )

    def _min_samples(self) -> int:
        length = 1
        for kernel, stride in reversed(list(zip(self.config.conv_kernel, self.config.conv_stride))):
            length = (length - 1) * stride + kernel
        return length

    @staticmethod
    def _conv(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        bias = None if conv.bias is None else conv.bias.to(h.dtype)
        return F.conv1d(h, conv.weight.to(h.dtype), bias, stride=conv.stride,
                        padding=conv.padding, groups=conv.groups)

    @staticmethod
    def _compute_dtype(h: torch.Tensor) -> torch.dtype:
        """The dtype the convolutions run in: float32 for bfloat16 input on a CPU.

        CPUs without native bfloat16 run bfloat16 convolutions (grouped ones
        one group at a time) in a slow reference kernel; the convolutions are
        a small part of the work, so float32 there costs little.
        """
        if h.dtype == torch.bfloat16 and h.device.type == "cpu":
            return torch.float32
        return h.dtype

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The frames with positions added, before the transformer: ``(B, frames, width)``."""
        self._check(x)
        h = x.to(self._compute_dtype(x))
        for i, conv in enumerate(self.conv):
            h = self._conv(conv, h)
            if i == 0:
                # The original's GroupNorm runs in float32 whatever the input dtype.
                norm = self.conv_norm
                h = F.group_norm(h.float(), norm.num_groups, norm.weight.float(), norm.bias.float(),
                                 norm.eps).to(h.dtype)
            h = F.gelu(h)
        h = self.feat_norm(h.transpose(1, 2).to(x.dtype))
        if self.proj is not None:
            h = self.proj(h)
        pos = self._conv(self.pos_conv, h.transpose(1, 2).to(self._compute_dtype(h))).to(h.dtype)
        if self._pos_trim:
            pos = pos[..., : -self._pos_trim]
        return h + F.gelu(pos).transpose(1, 2)

    def iter_layers(self, x: torch.Tensor):
        """Yield every layer's hidden map ``(B, frames, width)`` as it is computed."""
        h = self.embed(x)
        if not self.config.layer_norm_first:
            h = self.encoder_norm(h)
        yield h
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == last and self.config.layer_norm_first:
                yield self.encoder_norm(h)
            else:
                yield h

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's hidden map, ``(B, frames, width)`` each, from one pass."""
        return list(self.iter_layers(x))

    def pool(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Mean over frames, accumulated in float32: ``(B, width)``."""
        return hidden.mean(dim=1, dtype=torch.float32)

    def pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer mean-pooled as soon as it is computed: ``(B, n_layers * width)`` float32."""
        return torch.cat([self.pool(h, i) for i, h in enumerate(self.iter_layers(x))], dim=1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' embedding: the encoder output averaged over frames, ``(B, width)``."""
        *_, last = self.iter_layers(x)
        return self.pool(last, self.n_layers - 1)
