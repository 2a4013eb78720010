"""The masked autoencoder around an ST-MEM encoder (ST-MEM and ECG-Soup's IPA variant).

``MaskedAutoencoder`` masks patches independently per lead, runs the visible
tokens (plus SEP tokens) through the encoder, reinserts a learnable mask token
and reconstructs every patch with a small lead-wise transformer decoder.  The
loss is the mean squared error of the per-patch normalised signal, averaged
over masked patches only.

Two variants differ only in what reaches the decoder:

* ``aggregation="last"`` (ST-MEM): ``LN_enc(X^L)``, the last block's output
  after the encoder's final LayerNorm;
* ``aggregation="all_layers_mean"`` (IPA-ST-MEM): the token-wise mean over
  layers 1..L of ``LN_enc(X^l)``.  With a one-block encoder both are equal.

Only the encoder is kept after pretraining; it has the same parameter names in
both variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ecgsoup.backbones.stmem.model import (
    Block,
    STMEMEncoder,
    init_linear_and_norm,
    sincos_positions,
)

__all__ = ["MaskedAutoencoder", "MAEOutput", "default_decoder_settings", "AGGREGATIONS"]

AGGREGATIONS = ("last", "all_layers_mean")
OBJECTIVES = {"st-mem": "last", "ipa": "all_layers_mean"}


@dataclass(frozen=True)
class _DecoderBlockConfig:
    """The fields :class:`ecgsoup.backbones.stmem.model.Block` reads."""

    width: int
    heads: int
    dim_head: int
    mlp_dim: int
    qkv_bias: bool = True
    norm_eps: float = 1e-5


@dataclass
class MAEOutput:
    """Result of one masked forward pass.

    Attributes
    ----------
    loss : torch.Tensor
        Scalar: mean over masked patches of the per-patch MSE.
    pred : torch.Tensor
        ``(B, C, N, patch)`` reconstruction of every patch (normalised space
        when ``norm_pix_loss``).
    mask : torch.Tensor
        ``(B, C, N)``, 1 for masked patches, 0 for visible ones.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor


def default_decoder_settings(width: int) -> dict:
    """Decoder size for an encoder width.

    The ST-MEM decoder (256 wide, 4 blocks, 4 heads x 64, MLP 1024) is used
    for every size except tiny (width <= 192), where it would cost more than
    the encoder; tiny gets 128 wide, 2 blocks, 4 heads x 32, MLP 512.
    """
    if width <= 192:
        return dict(decoder_dim=128, decoder_depth=2, decoder_heads=4, decoder_dim_head=32)
    return dict(decoder_dim=256, decoder_depth=4, decoder_heads=4, decoder_dim_head=64)


class MaskedAutoencoder(nn.Module):
    """ST-MEM / IPA-ST-MEM masked autoencoder.

    Parameters
    ----------
    encoder : STMEMEncoder
        Trained in place; its weights are what pretraining produces.
    decoder_dim, decoder_depth, decoder_heads : int, default=256, 4, 4
        Decoder width, number of blocks and attention heads.
    decoder_dim_head : int, default=64
        Size of one decoder attention head.
    mask_ratio : float, default=0.75
        Fraction of patches masked in every lead; ``int(N * (1 - ratio))``
        patches per lead stay visible.
    norm_pix_loss : bool, default=True
        Normalise each target patch by its mean and unbiased variance (+1e-6).
    aggregation : {"last", "all_layers_mean"}, default="last"
        What reaches the decoder (see module docstring).
    """

    def __init__(
        self,
        encoder: STMEMEncoder,
        decoder_dim: int = 256,
        decoder_depth: int = 4,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        aggregation: str = "last",
        decoder_dim_head: int = 64,
    ):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation={aggregation!r}; expected one of {AGGREGATIONS}.")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={mask_ratio}; expected 0 <= ratio < 1.")
        cfg = encoder.config
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.aggregation = aggregation
        self.decoder_settings = dict(
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            decoder_heads=decoder_heads,
            decoder_dim_head=decoder_dim_head,
        )
        block_cfg = _DecoderBlockConfig(
            width=decoder_dim, heads=decoder_heads, dim_head=decoder_dim_head, mlp_dim=4 * decoder_dim
        )
        with torch.random.fork_rng(devices=[]):  # keep the global RNG untouched
            self.to_decoder = nn.Linear(cfg.width, decoder_dim)
            self.mask_token = nn.Parameter(torch.zeros(decoder_dim))
            self.decoder_pos_embedding = nn.Parameter(
                sincos_positions(cfg.n_patches, decoder_dim), requires_grad=False
            )
            self.decoder_blocks = nn.ModuleList(Block(block_cfg) for _ in range(decoder_depth))
            self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
            self.decoder_head = nn.Linear(decoder_dim, cfg.patch_size)

    # -- initialisation ------------------------------------------------------------
    def init_weights(self, generator: torch.Generator | None = None) -> MaskedAutoencoder:
        """MAE-style initialisation of encoder and decoder from one generator."""
        self.encoder.init_weights(generator)
        for part in [self.to_decoder, self.decoder_norm, self.decoder_head, *self.decoder_blocks]:
            init_linear_and_norm(part, generator)
        with torch.no_grad():
            self.mask_token.normal_(0.0, 0.02, generator=generator)
            self.decoder_pos_embedding.copy_(
                sincos_positions(self.encoder.config.n_patches, self.mask_token.shape[0])
            )
        return self

    # -- masking -------------------------------------------------------------------
    def n_visible(self, n_patches: int | None = None) -> int:
        n = self.encoder.config.n_patches if n_patches is None else n_patches
        return int(n * (1 - self.mask_ratio))

    def random_masking(self, tokens: torch.Tensor, generator: torch.Generator | None = None):
        """Keep ``n_visible`` random patches per lead.

        Returns the visible tokens ``(B, C, keep, D)``, the mask ``(B, C, N)``
        (1 = masked) and ``ids_restore`` ``(B, C, N)``.  The noise is drawn on
        the generator's device and moved to the tokens' device.
        """
        batch, leads, n, width = tokens.shape
        keep = self.n_visible(n)
        gen_device = generator.device if generator is not None else tokens.device
        noise = torch.rand(batch, leads, n, generator=generator, device=gen_device).to(tokens.device)
        ids_shuffle = torch.argsort(noise, dim=2)
        ids_restore = torch.argsort(ids_shuffle, dim=2)
        ids_keep = ids_shuffle[:, :, :keep]
        visible = torch.gather(tokens, 2, ids_keep[..., None].expand(-1, -1, -1, width))
        mask = torch.ones(batch, leads, n, device=tokens.device)
        mask[:, :, :keep] = 0
        mask = torch.gather(mask, 2, ids_restore)
        return visible, mask, ids_restore

    # -- forward -------------------------------------------------------------------
    def forward_encoder(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Encoder on visible tokens; returns ``(latent (B, C*(keep+2), D), mask, ids_restore)``."""
        enc = self.encoder
        visible, mask, ids_restore = self.random_masking(enc.patch_tokens(x), generator)
        hidden = enc.frame_tokens(visible)
        total = None
        for block in enc.blocks:
            hidden = block(hidden)
            if self.aggregation == "all_layers_mean":
                normed = enc.norm(hidden)
                total = normed if total is None else total + normed
        if self.aggregation == "all_layers_mean":
            latent = total / len(enc.blocks)
        else:
            latent = enc.norm(hidden)
        return latent, mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Reconstruct every patch: ``(B, C*(keep+2), D) -> (B, C, N, patch)``."""
        batch, leads, n = ids_restore.shape
        z = self.to_decoder(latent)
        dim = z.shape[-1]
        z = z.reshape(batch, leads, -1, dim)
        n_masked = n + 2 - z.shape[2]
        masks = self.mask_token.to(z.dtype).expand(batch, leads, n_masked, dim)
        patches = torch.cat([z[:, :, 1:-1], masks], dim=2)
        patches = torch.gather(patches, 2, ids_restore[..., None].expand(-1, -1, -1, dim))
        pos = self.decoder_pos_embedding
        patches = patches + pos[:, None, 1 : n + 1]
        left = z[:, :, :1] + pos[:, None, :1]
        right = z[:, :, -1:] + pos[:, None, -1:]
        seq = torch.cat([left, patches, right], dim=2)
        # Lead-wise decoding: every lead's [SEP, N patches, SEP] through the same
        # blocks, as independent sequences (leads folded into the batch).
        seq = seq.reshape(batch * leads, n + 2, dim)
        for block in self.decoder_blocks:
            seq = block(seq)
        out = self.decoder_head(self.decoder_norm(seq))
        return out.reshape(batch, leads, n + 2, -1)[:, :, 1:-1]

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, N, patch)``."""
        batch, leads, length = x.shape
        patch = self.encoder.config.patch_size
        return x.reshape(batch, leads, length // patch, patch)

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked patches of the per-patch MSE (normalised targets)."""
        target = self.patchify(x).float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as torch's default
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> MAEOutput:
        """Mask, encode, decode and score ``x`` of shape ``(B, C, T)``."""
        latent, mask, ids_restore = self.forward_encoder(x, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return MAEOutput(loss=self.loss(x, pred, mask), pred=pred, mask=mask)
