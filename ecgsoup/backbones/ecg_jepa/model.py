"""ECG-JEPA (Kim et al.): a pre-norm ViT over per-lead patches with a cross-pattern mask, in pure torch.

The encoder of Kim's ECG-JEPA (arXiv 2410.08559) reads 8 leads (I, II,
V1-V6) of exactly 2,500 samples (10 s at 250 Hz).

1. **Tokens.**  Each lead is cut into 50 patches of 50 samples; a linear map
   turns every patch into a token (400 tokens, lead-major: lead 0's 50
   patches, then lead 1's, ...).  There is no patch norm and no class token.
2. **Positions.**  A fixed 2-D sine-cosine table over (lead, patch), stored
   in the weights as ``pos_embed``, is added to the input of *every* block,
   not once: block ``i`` computes ``h_i = block(h_{i-1} + pos)``.
3. **Cross-pattern attention.**  A token attends to the tokens of its own lead
   and to the tokens at the same patch index in the other leads, nothing else.
4. **Blocks.**  Pre-norm: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``; the
   q/k/v projection has no bias, the MLP uses the exact GELU.
5. **Final norm.**  One LayerNorm, applied to every token.

The authors' representation (``MaskTransformer.representation``) is the mean
over the 400 tokens of the final LayerNorm of the last block's tokens.  The
norm is applied per token *before* the mean, so it cannot be a readout of a
plain mean: :meth:`ECGJEPA.pool` applies it to every token of every layer and
then averages, and the readout is the identity.  ``readout(pool(last layer))``
is therefore the authors' embedding exactly.

Layers emitted: ``layer00`` is the residual stream before the first block
(the token projection, without positions), ``layer01``... the output of every
block (without the positions the next block adds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._base import Backbone, LayerInfo, draw_parameter
from .._base import empty_module as _empty

__all__ = ["ECGJEPAConfig", "ECGJEPA", "sincos_positions", "cross_pattern_mask"]


# Largest accepted sizes: far beyond ECG-JEPA's ViT-B (width 768, 12 blocks, 400 tokens), small
# enough that no config asks for more memory than a weights file could fill.
_LIMITS = dict(embed_dim=2**14, depth=256, num_heads=256, mlp_dim=2**16, n_leads=64, n_patches=2**12,
               patch_size=2**12)

@dataclass(frozen=True)
class ECGJEPAConfig:
    """Architecture of an ECG-JEPA encoder (no input contract, no training settings).

    Parameters
    ----------
    embed_dim : int
        Token width (768 in the released model).
    depth : int
        Number of transformer blocks (12).
    num_heads : int
        Attention heads per block (16); must divide ``embed_dim``.  The
        weights do not record it.
    mlp_dim : int
        Hidden width of each block's MLP (3,072).
    n_leads : int
        Leads the positional table and the mask are built for (8).
    n_patches : int
        Patches per lead (50).
    patch_size : int
        Samples per patch (50); a window is ``n_patches * patch_size`` samples.
    qkv_bias : bool
        Whether the q/k/v projection has a bias (False in the released model).
    layer_norm_eps : float
        Epsilon of every LayerNorm.
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 16
    mlp_dim: int = 3072
    n_leads: int = 8
    n_patches: int = 50
    patch_size: int = 50
    qkv_bias: bool = False
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        from ecgsoup.backbones._base import check_sizes

        check_sizes(self, _LIMITS)
        for name in ("embed_dim", "depth", "num_heads", "mlp_dim", "n_leads", "n_patches", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer.")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not a multiple of num_heads={self.num_heads}.")
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim={self.embed_dim} must be a multiple of 4 for the 2-D sine-cosine positions.")

    @property
    def window(self) -> int:
        """Samples per lead in one window (2,500 for the released model)."""
        return self.n_patches * self.patch_size

    @property
    def n_tokens(self) -> int:
        return self.n_leads * self.n_patches

    def to_dict(self) -> dict:
        return asdict(self)


def _sincos_1d(width: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
    angles = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_positions(width: int, n_leads: int, n_patches: int) -> torch.Tensor:
    """The fixed ``(n_leads * n_patches, width)`` position table, lead-major.

    The first half of the channels encodes the patch (time) index, the second
    half the lead index, each as sines then cosines of geometric frequencies
    (base 10,000), computed in float64 and rounded once to float32.
    """
    patch, lead = np.meshgrid(np.arange(n_patches, dtype=np.float64), np.arange(n_leads, dtype=np.float64))
    table = np.concatenate([_sincos_1d(width // 2, patch), _sincos_1d(width // 2, lead)], axis=1)
    return torch.from_numpy(table).float()


def cross_pattern_mask(n_leads: int, n_patches: int) -> torch.Tensor:
    """``(N, N)`` boolean: token (lead a, patch u) may attend to (lead b, patch v) iff a == b or u == v."""
    lead = torch.arange(n_leads).repeat_interleave(n_patches)
    patch = torch.arange(n_patches).repeat(n_leads)
    return (lead[:, None] == lead[None, :]) | (patch[:, None] == patch[None, :])


class _Attention(nn.Module):
    def __init__(self, config: ECGJEPAConfig):
        super().__init__()
        self.heads = config.num_heads
        self.qkv = _empty(nn.Linear, config.embed_dim, 3 * config.embed_dim, bias=config.qkv_bias)
        self.proj = _empty(nn.Linear, config.embed_dim, config.embed_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, tokens, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, width))


class _Block(nn.Module):
    """One pre-norm block: x = x + attn(LN(x)); x = x + mlp(LN(x))."""

    def __init__(self, config: ECGJEPAConfig):
        super().__init__()
        width, eps = config.embed_dim, config.layer_norm_eps
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = _Attention(config)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.fc1 = _empty(nn.Linear, width, config.mlp_dim)
        self.fc2 = _empty(nn.Linear, config.mlp_dim, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ECGJEPA(Backbone):
    """A frozen ECG-JEPA encoder that yields the token stream before and after every block.

    Parameters
    ----------
    config : ECGJEPAConfig
        The architecture.  Weights start at zero (LayerNorm scales at one, the
        position table at its fixed sine-cosine values); load converted
        weights with a strict loader, or draw random ones with
        :meth:`init_weights`.  Building the module never draws from torch's
        global random generator.

    Notes
    -----
    Input to :meth:`forward_layers` and :meth:`pooled_layers` is
    ``(batch, n_leads, n_patches * patch_size)``: for the released model
    ``(batch, 8, 2500)`` in the order I, II, V1-V6, unnormalised mV.
    """

    family = "ecg-jepa"

    def __init__(self, config: ECGJEPAConfig):
        super().__init__(config)
        self.patch_embed = _empty(nn.Linear, config.patch_size, config.embed_dim)
        # Stored in the original weights (a frozen parameter there), so it is loaded, not recomputed.
        # On the meta device (a shape check against a file) nothing is computed or allocated.
        meta = torch.get_default_device().type == "meta"
        table = (torch.empty(config.n_tokens, config.embed_dim) if meta
                 else sincos_positions(config.embed_dim, config.n_leads, config.n_patches))  # fmt: skip
        self.pos_embed = nn.Parameter(table, requires_grad=False)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        mask = (torch.empty(config.n_tokens, config.n_tokens, dtype=torch.bool) if meta
                else cross_pattern_mask(config.n_leads, config.n_patches))  # fmt: skip
        self.register_buffer("attn_mask", mask, persistent=False)
        self._zero_init()
        self.eval()
        self.requires_grad_(False)

    # -- layer table --------------------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """``layer00`` (the token projection) and ``layer01``... (block outputs), one stream."""
        return tuple(
            LayerInfo(f"layer{i:02d}", self.config.embed_dim, "residual") for i in range(self.config.depth + 1)
        )

    # -- weights ------------------------------------------------------------------
    def _zero_init(self) -> None:
        with torch.no_grad():
            for name, tensor in self.named_parameters():
                if name == "pos_embed":
                    continue
                tensor.fill_(1.0 if name.endswith("weight") and "norm" in name else 0.0)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> ECGJEPA:
        """Draw random weights from ``generator`` (torch's global generator is not used).

        Linear weights are normal with standard deviation ``1 / sqrt(fan_in)``,
        biases zero, LayerNorm scales one; the position table keeps its fixed
        sine-cosine values.

        Parameters
        ----------
        generator : torch.Generator
            Source of the random numbers (on the CPU).

        Returns
        -------
        ECGJEPA
            ``self``, for chaining.
        """
        for name, tensor in self.named_parameters():
            if name == "pos_embed":
                tensor.copy_(sincos_positions(self.config.embed_dim, self.config.n_leads, self.config.n_patches))
            else:
                draw_parameter(name, tensor, generator)
        return self

    # -- forward ------------------------------------------------------------------
    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        if x.ndim != 3 or x.shape[1] != config.n_leads or x.shape[2] != config.window:
            raise ValueError(
                f"ECG-JEPA takes (batch, {config.n_leads} leads, {config.window} samples) exactly; "
                f"got shape {tuple(x.shape)}."
            )
        # Lead-major tokens: lead 0's patches in time order, then lead 1's, ...
        return x.reshape(x.shape[0], config.n_tokens, config.patch_size)

    def iter_layers(self, x: torch.Tensor):
        """Yield the token stream ``(B, tokens, width)`` before the first block and after each block."""
        h = self.patch_embed(self._tokens(x))
        yield h
        pos = self.pos_embed.to(h.dtype)
        for block in self.blocks:
            h = block(h + pos, self.attn_mask)
            yield h

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's token map, ``(B, tokens, width)`` each, from one pass."""
        return list(self.iter_layers(x))

    def pool(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """The final LayerNorm on every token, then the mean over tokens, in float32: ``(B, width)``."""
        norm = self.norm
        normed = F.layer_norm(hidden.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)
        return normed.mean(dim=1)

    def pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer pooled as soon as it is computed: ``(B, n_layers * width)`` float32."""
        return torch.cat([self.pool(h, i) for i, h in enumerate(self.iter_layers(x))], dim=1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' representation: ``mean(LN_final(tokens of the last block))``, ``(B, width)``."""
        *_, h = self.iter_layers(x)
        return self.readout().torch(self.pool(h, self.config.depth))
