"""A naive layer-wise embedding, written the way research code usually does it.

This is the baseline that ``throughput.py`` compares ``LayerwiseEmbedder``
against.  It computes the same numbers (checked to 1e-4 in every run) but
with none of the embedder's choices:

- eager float32 under ``torch.no_grad()`` (not ``torch.inference_mode()``);
- a hand-written attention, ``softmax(Q K^T / sqrt(d)) V``, that materialises
  the full ``(heads, S, S)`` score matrix (no ``scaled_dot_product_attention``);
- the token outputs of every layer gathered with forward hooks on the
  embedding stage and on each block (full ``(S, D)`` tensors kept, not pooled
  as they are produced);
- one record at a time (batch 1), z-scoring and windowing in numpy;
- pooling (mean over patch tokens, separator tokens excluded) after the
  forward pass, from the hooked tensors.

It reads the weights of an :class:`ecgsoup.backbones.stmem.STMEMEncoder` but none of
its forward code, so an error in the encoder's forward pass would show up as
a mismatch, not be copied.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ZSCORE_EPS = 1e-8  # spec 2.1: (x - mean) / (std + 1e-8), std with ddof 0


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` with the score matrix materialised."""
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return torch.matmul(torch.softmax(scores, dim=-1), v)


class _Embed(nn.Module):
    """Patch embedding, positions, SEP tokens and lead embeddings: layer 0's tokens."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        pe = enc.patch_embedding
        batch, leads, length = x.shape
        n_patches = length // pe.patch_size
        patches = x.reshape(batch, leads, n_patches, pe.patch_size)
        tokens = pe.norm_out(pe.proj(pe.norm_in(patches)))
        pos = enc.pos_embedding[0]  # (n_patches + 2, D), SEP rows at both ends
        tokens = tokens + pos[1:-1]
        width = tokens.shape[-1]
        left = (enc.sep_embedding + pos[0]).expand(batch, leads, 1, width)
        right = (enc.sep_embedding + pos[-1]).expand(batch, leads, 1, width)
        framed = torch.cat([left, tokens, right], dim=2) + enc.lead_embeddings[:leads, None, :]
        return framed.reshape(batch, leads * (n_patches + 2), width)


class _NaiveBlock(nn.Module):
    """A pre-norm transformer block using the weights of an ecgsoup ``Block``."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        batch, tokens, _ = x.shape
        qkv = b.qkv(b.attn_norm(x)).reshape(batch, tokens, 3, b.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = naive_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, -1)
        x = x + b.proj(attended)
        return x + b.fc2(F.gelu(b.fc1(b.mlp_norm(x))))


class NaiveEncoder(nn.Module):
    """Token embedding followed by naive blocks; returns only the last layer's tokens.

    Parameters
    ----------
    encoder : ecgsoup.backbones.stmem.STMEMEncoder
        Supplies the weights (shared, not copied).
    """

    def __init__(self, encoder):
        super().__init__()
        self.embed = _Embed(encoder)
        self.blocks = nn.ModuleList(_NaiveBlock(block) for block in encoder.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(x)
        for block in self.blocks:
            hidden = block(hidden)
        return hidden


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)  # one more window flush with the record's end
    return starts


def _pool(tokens: torch.Tensor, n_leads: int) -> torch.Tensor:
    """Mean over the patch tokens of all leads, SEP tokens excluded: ``(1, S, D) -> (D,)``."""
    per_lead = tokens.reshape(tokens.shape[0], n_leads, -1, tokens.shape[-1])
    return per_lead[:, :, 1:-1].mean(dim=(1, 2))[0]


def naive_embed(encoder, X: np.ndarray, window_stride: int | None = None) -> np.ndarray:
    """Pooled embeddings of every layer, one record and one window at a time.

    Parameters
    ----------
    encoder : ecgsoup.backbones.stmem.STMEMEncoder
        The frozen encoder (float32, on CPU or GPU).
    X : ndarray of shape (n_records, n_leads, T)
        Model-ready ECG (leads in the model's order, ``T >= config.n_samples``).
    window_stride : int, default=None
        Step between windows; ``None`` means half a window, as the embedder.

    Returns
    -------
    pooled : ndarray of shape (n_records, depth + 1, width), float32
        Layer 0 (token embedding) to layer ``depth``, each mean-pooled and
        averaged over the record's windows.
    """
    config = encoder.config
    window = config.n_samples
    stride = window // 2 if window_stride is None else window_stride
    device = next(encoder.parameters()).device
    model = NaiveEncoder(encoder).eval()
    captured: list[torch.Tensor] = []
    hooks = [
        module.register_forward_hook(lambda _m, _in, out: captured.append(out.detach()))
        for module in [model.embed, *model.blocks]
    ]
    results = []
    try:
        with torch.no_grad():
            for record in X:
                per_window = []
                for start in _window_starts(record.shape[-1], window, stride):
                    w = record[:, start : start + window].astype(np.float32)
                    w = (w - w.mean(axis=-1, keepdims=True)) / (
                        w.std(axis=-1, keepdims=True) + ZSCORE_EPS
                    )
                    captured.clear()
                    model(torch.tensor(w[None], device=device))
                    per_window.append(torch.stack([_pool(t, record.shape[0]) for t in captured]))
                results.append(torch.stack(per_window).mean(dim=0).cpu().numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return np.stack(results).astype(np.float32)
