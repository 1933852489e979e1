"""Latent context for image DisCo-Diff (App. D): the m discrete latents (one-hot, soft Gumbel
samples, or the null latent) -> embeddings -> a Transformer encoder -> the keys/values of the
denoiser's cross-attention layers. Paper scale: 6 layers, width 192.

With `continuous_dim` = d > 0 (Table 3's continuous-latent ablation) the latent is m tokens of d
real numbers plus a presence flag ([B, m, d + 1], all zeros = null; bench/disco/continuous.py),
embedded linearly; the Transformer and the cross-attention are the same."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bench.disco.continuous import ContinuousLatentEmbedding
from bench.disco.latents import LatentEmbedding
from bench.provenance import NEW_OPTION


@dataclasses.dataclass(frozen=True)
class LatentContextConfig:
    m: int = 10          # number of latents (App. D: 10)
    k: int = 100         # codebook size (Sec. 4.1: 100)
    width: int = 192     # token width = the U-Net's xattn_dim (App. D: 192)
    depth: int = 6       # Transformer encoder layers (App. D: 6)
    heads: int = 4
    group_resolutions: tuple[int, ...] = ()   # () = one group for every cross-attention layer
    continuous_dim: int = dataclasses.field(default=0, metadata=NEW_OPTION)   # > 0: d-dim continuous latents

    @property
    def latent_shape(self) -> tuple[int, int]:
        """The last two axes of the latent tensor the context takes: [m, k] (weights over the
        codebook) or [m, d + 1] (continuous, with the presence flag)."""
        return (self.m, self.continuous_dim + 1) if self.continuous_dim else (self.m, self.k)

    def __post_init__(self):
        object.__setattr__(self, "group_resolutions", tuple(int(r) for r in self.group_resolutions))
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.group_resolutions and self.m % len(self.group_resolutions):
            raise ValueError(f"m = {self.m} latents do not split into {len(self.group_resolutions)} equal groups")


class LatentContext(nn.Module):
    def __init__(self, cfg: LatentContextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = (ContinuousLatentEmbedding(cfg.m, cfg.continuous_dim, cfg.width, init_std=0.02)
                      if cfg.continuous_dim else LatentEmbedding(cfg.m, cfg.k, cfg.width, init_std=0.02))  # null included
        self.pos = nn.Parameter(torch.zeros(cfg.m, cfg.width))
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

        groups = self.cfg.group_resolutions
        if groups:   # True = masked out: tokens attend within their own group only
            g = torch.arange(cfg.m) // (cfg.m // len(groups))
            self.register_buffer("group_mask", g[:, None] != g[None, :], persistent=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor | dict[int, torch.Tensor]:
        """latent [B, m, k] weights or [B, m, d + 1] continuous (all-zero row = null) -> tokens [B, m, width], or with groups
        {resolution: tokens [B, m / groups, width]}."""
        groups = self.cfg.group_resolutions
        if not groups:
            return self.norm(self.encoder(self.embed(latent) + self.pos))
        h = self.norm(self.encoder(self.embed(latent) + self.pos, mask=self.group_mask))
        return dict(zip(groups, h.chunk(len(groups), dim=1)))
