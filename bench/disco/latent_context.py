"""Latent context for image DisCo-Diff (App. D): the m discrete latents (one-hot, soft Gumbel
samples, or the null latent) -> embeddings -> a Transformer encoder -> the keys/values of the
denoiser's cross-attention layers. Paper scale: 6 layers, width 192."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bench.disco.latents import LatentEmbedding


@dataclasses.dataclass(frozen=True)
class LatentContextConfig:
    m: int = 10          # number of latents (App. D: 10)
    k: int = 100         # codebook size (Sec. 4.1: 100)
    width: int = 192     # token width = the U-Net's xattn_dim (App. D: 192)
    depth: int = 6       # Transformer encoder layers (App. D: 6)
    heads: int = 4

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")


class LatentContext(nn.Module):
    def __init__(self, cfg: LatentContextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = LatentEmbedding(cfg.m, cfg.k, cfg.width, init_std=0.02)   # null row included
        self.pos = nn.Parameter(torch.zeros(cfg.m, cfg.width))
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent weights [B, m, k] (all-zero row = null) -> tokens [B, m, width]."""
        return self.norm(self.encoder(self.embed(latent) + self.pos))
