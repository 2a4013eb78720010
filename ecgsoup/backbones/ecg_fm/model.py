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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._base import empty_module as _empty
from .._wav2vec import ConvFrontEndConfig, FusedAttention, Wav2VecBackbone

__all__ = ["ECGFM", "ECGFMConfig"]


# Largest accepted sizes: far beyond ECG-FM (width 768, 12 layers), small enough that no config
# asks for more memory than a weights file could fill.
_LIMITS = dict(in_channels=256, conv_dim=2**14, conv_kernel=2**12, conv_stride=2**12, encoder_embed_dim=2**14,
               encoder_layers=256, encoder_attention_heads=256, encoder_ffn_embed_dim=2**16, conv_pos=2**12,
               conv_pos_groups=2**12)

@dataclass(frozen=True)
class ECGFMConfig(ConvFrontEndConfig):
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
        self._check_front_end("encoder_embed_dim", "encoder_attention_heads", "conv_pos_groups")


class _Layer(nn.Module):
    """One transformer layer, post-LN or pre-LN as the checkpoint says."""

    def __init__(self, config: ECGFMConfig):
        super().__init__()
        width = config.encoder_embed_dim
        self.pre_norm = config.layer_norm_first
        self.attn = FusedAttention(width, config.encoder_attention_heads)
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


class ECGFM(Wav2VecBackbone):
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
        self.encoder_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(_Layer(config) for _ in range(config.encoder_layers))
        self._zero_init()
        self.eval()
        self.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.config.encoder_embed_dim

    @property
    def depth(self) -> int:
        return self.config.encoder_layers

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
        return self._with_positions(h)

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

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' embedding: the encoder output averaged over frames, ``(B, width)``."""
        *_, last = self.iter_layers(x)
        return self.pool(last, self.n_layers - 1)
