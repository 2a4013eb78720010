"""The ST-MEM Vision Transformer encoder, as used by ECG-Soup.

Each lead is cut into non-overlapping patches; every patch becomes a token
(patch embedding + fixed sin-cos position + lead embedding), each lead is
framed by a left and a right SEP token, and the tokens of all leads form one
sequence with full self-attention across leads and time.  There is no CLS
token: a record's representation at layer ``l`` is the mean over its patch
tokens (SEP excluded).

Layer indexing: layer 0 is the token embedding, layers 1..depth are the
outputs of the transformer blocks.  ``pooled_layers`` returns all of them from
one forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ecgsoup.backbones._base import Backbone, BackboneCard, InputContract, LayerInfo, Readout
from ecgsoup.backbones.stmem.config import EncoderConfig

__all__ = ["STMEMEncoder", "sincos_positions"]


def sincos_positions(n_patches: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos table with zero SEP rows, shape ``(1, n_patches + 2, dim)``.

    Row 0 and row ``n_patches + 1`` (the SEP positions) are zero; the sin and
    cos halves are concatenated, with frequency ``10000 ** (-i / (dim / 2))``.
    """
    if dim % 2:
        raise ValueError(f"Positional embedding needs an even width, got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = torch.arange(n_patches, dtype=torch.float64)[:, None] * omega[None, :]
    table = torch.zeros(n_patches + 2, dim, dtype=torch.float64)
    table[1:-1] = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return table.float()[None]


def init_linear_and_norm(root: nn.Module, generator: torch.Generator | None = None) -> None:
    """MAE-style init of every Linear and LayerNorm under ``root``, from ``generator``.

    Linear: Xavier-uniform weight, zero bias; LayerNorm: weight 1, bias 0.
    Drawing from a local generator leaves the global torch RNG untouched.
    """
    for module in root.modules():
        if isinstance(module, nn.Linear):
            bound = (6.0 / (module.in_features + module.out_features)) ** 0.5
            with torch.no_grad():
                module.weight.uniform_(-bound, bound, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class PatchEmbedding(nn.Module):
    """LayerNorm(patch) -> Linear(patch -> width) -> LayerNorm(width), per patch."""

    def __init__(self, patch_size: int, width: int, eps: float):
        super().__init__()
        self.patch_size = patch_size
        self.norm_in = nn.LayerNorm(patch_size, eps=eps)
        self.proj = nn.Linear(patch_size, width)
        self.norm_out = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, C, N, patch) -> (B, C, N, width)
        batch, leads, length = x.shape
        patches = x.reshape(batch, leads, length // self.patch_size, self.patch_size)
        return self.norm_out(self.proj(self.norm_in(patches)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        inner = cfg.heads * cfg.dim_head
        self.heads = cfg.heads
        self.attn_norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.qkv = nn.Linear(cfg.width, 3 * inner, bias=cfg.qkv_bias)
        self.proj = nn.Linear(inner, cfg.width)
        self.mlp_norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.width)

    def _qkv(self, x: torch.Tensor):
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.attn_norm(x)).reshape(batch, tokens, 3, self.heads, -1)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, heads, S, dim_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.transpose(1, 2).flatten(2))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax attention matrix ``(B, heads, S, S)`` for analysis."""
        q, k, _ = self._qkv(x)
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        return scores.softmax(dim=-1)


class STMEMEncoder(Backbone):
    """ST-MEM ViT encoder; input ``(batch, leads, time)`` in the config's lead order.

    Parameters
    ----------
    config : EncoderConfig
        Architecture and preprocessing contract.  Kept as ``self.config``.

    Notes
    -----
    Fewer leads than lead embeddings are allowed (the first ``C`` embeddings
    are used, as in the original code); more is an error.
    """

    family = "stmem"

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        cfg = config
        self.contract = stmem_contract(config)
        self.card = stmem_card(config)
        self.patch_embedding = PatchEmbedding(cfg.patch_size, cfg.width, cfg.norm_eps)
        # Fixed during pretraining (spec 2.2) but stored, because original
        # checkpoints hold a learned table that must be loaded, not recomputed.
        self.pos_embedding = nn.Parameter(
            sincos_positions(cfg.n_patches, cfg.width), requires_grad=False
        )
        self.sep_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.lead_embeddings = nn.Parameter(torch.zeros(cfg.n_leads, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)

    # -- building blocks, shared with the masked autoencoder ---------------------
    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus position, ``(B, C, N, D)``; masking happens on this."""
        self._check_input(x)
        return self.patch_embedding(x) + self.pos_embedding[:, None, 1:-1]

    def frame_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Add SEP tokens and lead embeddings; ``(B, C, n, D) -> (B, C*(n+2), D)``."""
        batch, leads, _, width = tokens.shape
        left = (self.sep_embedding + self.pos_embedding[0, 0]).expand(batch, leads, 1, width)
        right = (self.sep_embedding + self.pos_embedding[0, -1]).expand(batch, leads, 1, width)
        framed = torch.cat([left, tokens, right], dim=2)
        framed = framed + self.lead_embeddings[:leads, None, :]
        return framed.reshape(batch, -1, width)

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.config
        if x.ndim != 3:
            raise ValueError(f"Expected input (batch, leads, time), got shape {tuple(x.shape)}.")
        if x.shape[1] > cfg.n_leads:
            raise ValueError(
                f"Input has {x.shape[1]} leads but the model has {cfg.n_leads} lead "
                f"embeddings ({', '.join(cfg.lead_names)})."
            )
        if x.shape[2] != cfg.n_samples:
            raise ValueError(
                f"Input has {x.shape[2]} samples per lead; the model expects "
                f"{cfg.n_samples} ({cfg.seconds:g} s at {cfg.sampling_rate:g} Hz)."
            )

    # -- the backbone interface ------------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """Layer 0 is the token embedding, layers 1..depth the blocks; one residual stream."""
        return tuple(LayerInfo(f"layer{i:02d}", self.config.width) for i in range(self.config.n_layers))

    def readout(self) -> Readout:
        """The encoder's final LayerNorm, applied after pooling (ECG-Soup's ``LN_enc``)."""
        return Readout(
            "layernorm",
            self.norm.weight.detach().float().cpu().numpy().copy(),
            self.norm.bias.detach().float().cpu().numpy().copy(),
            float(self.norm.eps),
        )

    # -- forward passes ----------------------------------------------------------
    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Token outputs of every layer, ``[X^0, ..., X^L]``, each ``(B, S, D)``."""
        hidden = self.frame_tokens(self.patch_tokens(x))
        outputs = [hidden]
        for block in self.blocks:
            hidden = block(hidden)
            outputs.append(hidden)
        return outputs

    def pool(self, tokens: torch.Tensor, layer: int = 0, n_leads: int | None = None) -> torch.Tensor:
        """Mean over patch tokens of all leads, SEP excluded: ``(B, S, D) -> (B, D)``.

        Every layer is pooled alike; ``n_leads`` defaults to what the token
        count implies for this model's window.
        """
        batch, tokens_count, width = tokens.shape
        if n_leads is None:
            n_leads = tokens_count // (self.config.n_patches + 2)
        per_lead = tokens.reshape(batch, n_leads, -1, width)
        return per_lead[:, :, 1:-1].mean(dim=(1, 2))

    def pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled representation ``h_l`` of every layer, ``(B, L+1, D)``.

        Pools each layer as soon as it is computed, so only one layer's tokens
        are alive at a time.
        """
        leads = x.shape[1]
        hidden = self.frame_tokens(self.patch_tokens(x))
        pooled = [self.pool(hidden, 0, leads)]
        for index, block in enumerate(self.blocks, start=1):
            hidden = block(hidden)
            pooled.append(self.pool(hidden, index, leads))
        return torch.stack(pooled, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled_layers(x)

    def attention_weights(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention matrices of every block, each ``(B, heads, S, S)``."""
        hidden = self.frame_tokens(self.patch_tokens(x))
        maps = []
        for block in self.blocks:
            maps.append(block.attention_weights(hidden))
            hidden = block(hidden)
        return maps

    # -- initialisation ------------------------------------------------------------
    def init_weights(self, generator: torch.Generator | None = None) -> STMEMEncoder:
        """MAE-style initialisation, drawn from ``generator``.

        Linear: Xavier-uniform weight, zero bias; LayerNorm: 1 and 0; SEP and
        lead embeddings: N(0, 0.02).  Uses a local generator so the global
        torch RNG is never touched.
        """
        init_linear_and_norm(self, generator)
        with torch.no_grad():
            self.sep_embedding.normal_(0.0, 0.02, generator=generator)
            self.lead_embeddings.normal_(0.0, 0.02, generator=generator)
            self.pos_embedding.copy_(sincos_positions(self.config.n_patches, self.config.width))
        return self


_STMEM_CITATION = (
    "Na Y, Park M, Tae Y, Joo S. Guiding Masked Representation Learning to Capture "
    "Spatio-Temporal Relationship of Electrocardiogram. ICLR 2024."
)


def stmem_contract(config: EncoderConfig) -> InputContract:
    """The input contract an ST-MEM configuration implies (rate, window, leads, z-score)."""
    return InputContract(
        sampling_rate=config.sampling_rate,
        window=config.n_samples,
        lead_names=config.lead_names,
        layout="leads",
        recipe="resample@1",
        window_norm="zscore_per_lead" if config.normalisation == "zscore" else "none",
        units=config.units,
        bandpass=config.bandpass,
    )


def stmem_card(config: EncoderConfig, source: str = "") -> BackboneCard:
    """The card of an ST-MEM-architecture model; the loader refines it from the weights' origin."""
    return BackboneCard(
        name=config.name,
        family="stmem",
        license="CC-BY-NC-4.0",
        source=source or "ST-MEM architecture (Na et al.)",
        citation=_STMEM_CITATION,
        download="https://github.com/bakqui/ST-MEM",
        notice=(
            "ST-MEM's original code and weights are licensed CC BY-NC 4.0: non-commercial use only."
        ),
    )
