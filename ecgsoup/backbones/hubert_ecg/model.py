"""HuBERT-ECG: a post-LayerNorm HuBERT encoder over the concatenated 12 leads, in pure torch.

The architecture (Coppola et al., 2024) is the HuBERT speech encoder applied to
one 1-D signal: the 12 leads, concatenated lead by lead.

1. **Feature encoder.**  A stack of bias-free 1-D convolutions on the raw
   signal, each followed by an exact GELU; the first one is also followed by
   a GroupNorm with one group per channel (a per-channel normalisation over
   time).  For the released models (kernels 10, 3, 3, 2, 2; strides 4, 2, 2,
   2, 2) a 5 s, 100 Hz, 12-lead input of 6,000 samples gives 93 frames.
2. **Projection.**  LayerNorm over the conv channels, then a linear map to the
   model width.
3. **Positions.**  A grouped convolution over time (kernel 128, 16 groups,
   weight-normalised in training; here the folded weight), of which the last
   output frame is dropped when the kernel is even, then GELU; the result is
   added to the frames, and a LayerNorm follows.  There is no lead embedding.
4. **Transformer.**  Post-LN layers: self-attention, residual, LayerNorm,
   GELU feed-forward, residual, LayerNorm.

Layers emitted: index 0 is the LayerNorm'd embedding (step 3), then the output
of every transformer layer (already normalised).  Each is pooled by a plain
mean over frames, as the authors' classifier pools the last layer, so the
readout is the identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._base import Backbone, LayerInfo
from .._base import empty_module as _empty

__all__ = ["HubertECGConfig", "HubertECG"]


# Largest accepted sizes: far beyond HuBERT-ECG large (width 1024, 16 layers), small enough
# that no config asks for more memory than a weights file could fill.
_LIMITS = dict(conv_dim=2**14, conv_kernel=2**12, conv_stride=2**12, hidden_size=2**14, num_hidden_layers=256,
               num_attention_heads=256, intermediate_size=2**16, num_conv_pos_embeddings=2**12,
               num_conv_pos_embedding_groups=2**12)


@dataclass(frozen=True)
class HubertECGConfig:
    """Architecture of a HuBERT-ECG encoder (no input contract, no training settings).

    The field names follow the ``config.json`` of the published Hugging Face
    folders, so a converter copies them across unchanged.

    Parameters
    ----------
    conv_dim, conv_kernel, conv_stride : tuple of int
        Channels, kernel sizes and strides of the feature-encoder convolutions.
    conv_bias : bool
        Whether those convolutions have a bias (False in the released models).
    hidden_size : int
        Model width.
    num_hidden_layers : int
        Number of transformer layers.
    num_attention_heads : int
        Attention heads per layer; must divide ``hidden_size``.
    intermediate_size : int
        Width of the feed-forward hidden layer.
    num_conv_pos_embeddings : int
        Kernel size of the positional convolution.
    num_conv_pos_embedding_groups : int
        Groups of the positional convolution; must divide ``hidden_size``.
    feat_proj_layer_norm : bool
        Whether a LayerNorm precedes the projection to ``hidden_size``.
    layer_norm_eps : float
        Epsilon of every LayerNorm.
    group_norm_eps : float
        Epsilon of the GroupNorm after the first convolution.
    """

    conv_dim: tuple = (512, 512, 512, 512, 512)
    conv_kernel: tuple = (10, 3, 3, 2, 2)
    conv_stride: tuple = (4, 2, 2, 2, 2)
    conv_bias: bool = False
    hidden_size: int = 512
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    feat_proj_layer_norm: bool = True
    layer_norm_eps: float = 1e-5
    group_norm_eps: float = 1e-5

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
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}."
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_conv_pos_embedding_groups={self.num_conv_pos_embedding_groups}."
            )

    @property
    def total_stride(self) -> int:
        """Input samples per output frame (64 for the released models)."""
        return math.prod(self.conv_stride)

    def n_frames(self, n_samples: int) -> int:
        """Number of frames the feature encoder makes of ``n_samples`` input samples."""
        length = int(n_samples)
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            length = (length - kernel) // stride + 1
        return length

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> HubertECGConfig:
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
    """One post-LN transformer layer: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: HubertECGConfig):
        super().__init__()
        width = config.hidden_size
        self.attn = _Attention(width, config.num_attention_heads)
        self.norm1 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.fc1 = _empty(nn.Linear, width, config.intermediate_size)
        self.fc2 = _empty(nn.Linear, config.intermediate_size, width)
        self.norm2 = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.fc2(F.gelu(self.fc1(x))))


class HubertECG(Backbone):
    """A frozen HuBERT-ECG encoder that yields the embedding and every transformer layer.

    Parameters
    ----------
    config : HubertECGConfig
        The architecture.  Weights start at zero (LayerNorm/GroupNorm scales at
        one); load converted weights with a strict loader, or draw random ones
        with :meth:`init_weights`.  Building the module never draws from
        torch's global random generator.

    Notes
    -----
    Input to :meth:`forward_layers` and :meth:`pooled_layers` is
    ``(batch, leads, time)`` (the leads are concatenated lead by lead, the
    model's native layout) or an already concatenated ``(batch, leads * time)``.
    For the released models, 12 leads of 500 samples give 93 frames.
    """

    family = "hubert-ecg"

    def __init__(self, config: HubertECGConfig):
        super().__init__(config)
        channels = (1,) + config.conv_dim
        self.conv = nn.ModuleList(
            _empty(nn.Conv1d, channels[i], channels[i + 1], kernel, stride=stride, bias=config.conv_bias)
            for i, (kernel, stride) in enumerate(zip(config.conv_kernel, config.conv_stride))
        )
        last = config.conv_dim[-1]
        self.conv_norm = nn.GroupNorm(config.conv_dim[0], config.conv_dim[0], eps=config.group_norm_eps)
        self.proj_norm = (
            nn.LayerNorm(last, eps=config.layer_norm_eps) if config.feat_proj_layer_norm else None
        )
        self.proj = _empty(nn.Linear, last, config.hidden_size)
        kernel = config.num_conv_pos_embeddings
        self.pos_conv = _empty(
            nn.Conv1d, config.hidden_size, config.hidden_size, kernel,
            padding=kernel // 2, groups=config.num_conv_pos_embedding_groups,
        )
        # An even kernel with padding kernel // 2 makes one frame too many; the
        # original drops the last one.
        self._pos_trim = 1 if kernel % 2 == 0 else 0
        self.embed_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))
        self._zero_init()
        self.eval()
        self.requires_grad_(False)

    # -- layer table --------------------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """``layer00`` (the embedding) and ``layer01``... (transformer layers), one stream."""
        return tuple(
            LayerInfo(f"layer{i:02d}", self.config.hidden_size, "residual")
            for i in range(self.config.num_hidden_layers + 1)
        )

    # -- weights ------------------------------------------------------------------
    def _zero_init(self) -> None:
        with torch.no_grad():
            for name, tensor in self.named_parameters():
                is_norm_scale = name.endswith("weight") and ("norm" in name)
                tensor.fill_(1.0 if is_norm_scale else 0.0)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> HubertECG:
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
        HubertECG
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
    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            # Lead-major concatenation: lead 0's samples, then lead 1's, ...
            x = x.reshape(x.shape[0], -1)
        if x.ndim != 2:
            raise ValueError(
                "HuBERT-ECG takes (batch, leads, time) or (batch, leads * time); "
                f"got shape {tuple(x.shape)}."
            )
        frames = self.config.n_frames(x.shape[1])
        if frames < 1:
            raise ValueError(
                f"{x.shape[1]} input samples are too few for the feature encoder "
                f"(it needs at least {self._min_samples()})."
            )
        return x

    def _min_samples(self) -> int:
        length = 1
        for kernel, stride in reversed(list(zip(self.config.conv_kernel, self.config.conv_stride))):
            length = (length - 1) * stride + kernel
        return length

    @staticmethod
    def _compute_dtype(h: torch.Tensor) -> torch.dtype:
        """The dtype the convolutions run in: float32 for bfloat16 input on a CPU.

        CPUs without native bfloat16 run bfloat16 convolutions in a reference
        kernel (grouped ones one group at a time), 8 to 17 times slower than
        float32 on such a CPU.  The convolutions are about a quarter of the work, so float32
        there costs little even on CPUs that do have native bfloat16.
        """
        if h.dtype == torch.bfloat16 and h.device.type == "cpu":
            return torch.float32
        return h.dtype

    @staticmethod
    def _conv(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        bias = None if conv.bias is None else conv.bias.to(h.dtype)
        return F.conv1d(h, conv.weight.to(h.dtype), bias, stride=conv.stride,
                        padding=conv.padding, groups=conv.groups)

    def _positions(self, h: torch.Tensor) -> torch.Tensor:
        """The positional convolution of ``(B, frames, width)``, as ``(B, width, frames + 1)``."""
        return self._conv(self.pos_conv, h.transpose(1, 2).to(self._compute_dtype(h))).to(h.dtype)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Layer 0: the LayerNorm'd frame embedding with positions, ``(B, frames, width)``."""
        x = self._flatten(x)
        h = x.unsqueeze(1).to(self._compute_dtype(x))
        for i, conv in enumerate(self.conv):
            h = self._conv(conv, h)
            if i == 0:
                norm = self.conv_norm
                weight, bias = norm.weight.to(h.dtype), norm.bias.to(h.dtype)
                h = F.group_norm(h, norm.num_groups, weight, bias, norm.eps)
            h = F.gelu(h)
        h = h.transpose(1, 2).to(x.dtype)
        if self.proj_norm is not None:
            h = self.proj_norm(h)
        h = self.proj(h)
        pos = self._positions(h)
        if self._pos_trim:
            pos = pos[..., : -self._pos_trim]
        h = h + F.gelu(pos).transpose(1, 2)
        return self.embed_norm(h)

    def iter_layers(self, x: torch.Tensor):
        """Yield every layer's hidden map ``(B, frames, width)`` as it is computed."""
        h = self.embed(x)
        yield h
        for block in self.blocks:
            h = block(h)
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
