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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._base import empty_module as _empty
from .._wav2vec import ConvFrontEndConfig, FusedAttention, Wav2VecBackbone

__all__ = ["HubertECGConfig", "HubertECG"]


# Largest accepted sizes: far beyond HuBERT-ECG large (width 1024, 16 layers), small enough
# that no config asks for more memory than a weights file could fill.
_LIMITS = dict(conv_dim=2**14, conv_kernel=2**12, conv_stride=2**12, hidden_size=2**14, num_hidden_layers=256,
               num_attention_heads=256, intermediate_size=2**16, num_conv_pos_embeddings=2**12,
               num_conv_pos_embedding_groups=2**12)


@dataclass(frozen=True)
class HubertECGConfig(ConvFrontEndConfig):
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
        self._check_front_end("hidden_size", "num_attention_heads", "num_conv_pos_embedding_groups")


class _Layer(nn.Module):
    """One post-LN transformer layer: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: HubertECGConfig):
        super().__init__()
        width = config.hidden_size
        self.attn = FusedAttention(width, config.num_attention_heads)
        self.norm1 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.fc1 = _empty(nn.Linear, width, config.intermediate_size)
        self.fc2 = _empty(nn.Linear, config.intermediate_size, width)
        self.norm2 = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.fc2(F.gelu(self.fc1(x))))


class HubertECG(Wav2VecBackbone):
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
        self.embed_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))
        self._zero_init()
        self.eval()
        self.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.config.hidden_size

    @property
    def depth(self) -> int:
        return self.config.num_hidden_layers

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
        return self.embed_norm(self._with_positions(h))

    def iter_layers(self, x: torch.Tensor):
        """Yield every layer's hidden map ``(B, frames, width)`` as it is computed."""
        h = self.embed(x)
        yield h
        for block in self.blocks:
            h = block(h)
            yield h
