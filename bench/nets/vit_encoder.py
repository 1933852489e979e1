"""DisCo-Diff encoder: a Vision Transformer that maps a clean image to m categorical latents.

Sources:
- ViT: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (patch embedding, learned
  positional embeddings, extra learnable classification token(s), pre-norm Transformer blocks,
  final LayerNorm before the head).
- DisCo-Diff (Xu et al., ICML 2024), App. D: the encoder is a ViT over the clean image with m
  extra classification tokens; each of the m output tokens is mapped to k logits, one
  categorical distribution per discrete latent. ImageNet-64: 12 layers, width 768, 12 heads,
  patch 8x8 (16x16 for 128 px), m = 10, k = 100.

Choices the paper leaves open (ours): the m tokens are prepended before the patch tokens; the m
tokens get their own learned positional embedding (separate from the patch one); one head
Linear(width, k) is shared across tokens plus a learned per-token bias [m, k] (zero-init);
tokens and positional embeddings are initialised N(0, 0.02) truncated at +-2 std (timm ViT);
all other layers keep PyTorch's default init (the head is NOT zero-initialised, so a fresh
encoder gives different logits per token); no dropout.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class ViTEncoderConfig:
    img_resolution: int                        # H = W of the input image
    in_channels: int = 3                       # C of the input image
    patch: int = 8                             # patch side P (Conv2d kernel = stride = P)
    width: int = 768                           # token dim D
    depth: int = 12                            # number of Transformer encoder layers
    heads: int = 12                            # attention heads (D % heads == 0)
    m: int = 10                                # number of discrete latents = extra tokens
    k: int = 100                               # categories per latent = logits per token
    mlp_ratio: float = 4.0                     # MLP hidden dim = mlp_ratio * D

    def __post_init__(self) -> None:
        for name in ("img_resolution", "in_channels", "patch", "width", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.img_resolution % self.patch:
            raise ValueError(f"img_resolution ({self.img_resolution}) must be divisible by "
                             f"patch ({self.patch})")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.m < 1:
            raise ValueError(f"m (number of latents) must be >= 1, got {self.m}")
        if self.k < 2:
            raise ValueError(f"k (categories per latent) must be >= 2, got {self.k}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")

    @property
    def num_patches(self) -> int:
        return (self.img_resolution // self.patch) ** 2   # N = (H / P)^2

    @property
    def mlp_dim(self) -> int:
        return int(round(self.width * self.mlp_ratio))

    @classmethod
    def imagenet64(cls) -> "ViTEncoderConfig":
        """DisCo-Diff App. D, ImageNet-64: ViT-Base (12 x 768, 12 heads), patch 8, m=10, k=100."""
        return cls(img_resolution=64, in_channels=3, patch=8, width=768, depth=12, heads=12,
                   m=10, k=100)

    @classmethod
    def tiny(cls) -> "ViTEncoderConfig":
        """CPU-sized config for tests and smoke runs."""
        return cls(img_resolution=8, in_channels=1, patch=2, width=32, depth=2, heads=4, m=2, k=5)


class ViTEncoder(nn.Module):
    """x [B, C, H, W] -> logits [B, m, k] (one categorical distribution per latent)."""

    def __init__(self, cfg: ViTEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.width
        # Patch embedding (ViT Sec. 3.1): [B, C, H, W] -> [B, D, H/P, W/P].
        self.patch_embed = nn.Conv2d(cfg.in_channels, D, kernel_size=cfg.patch, stride=cfg.patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, D))   # [1, N, D]
        # m learnable classification tokens (DisCo-Diff App. D) and their positions.
        self.latent_tokens = nn.Parameter(torch.zeros(1, cfg.m, D))         # [1, m, D]
        self.latent_pos_embed = nn.Parameter(torch.zeros(1, cfg.m, D))      # [1, m, D]
        layer = nn.TransformerEncoderLayer(
            d_model=D, nhead=cfg.heads, dim_feedforward=cfg.mlp_dim, dropout=0.0,
            activation="gelu", batch_first=True, norm_first=True)
        # Nested-tensor fast path is unavailable with norm_first; disable to avoid the warning.
        self.blocks = nn.TransformerEncoder(layer, num_layers=cfg.depth,
                                            enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D)                                         # final LN (pre-norm ViT)
        self.head = nn.Linear(D, cfg.k)                                     # shared across tokens
        self.token_bias = nn.Parameter(torch.zeros(cfg.m, cfg.k))           # [m, k] per-token bias
        for p in (self.pos_embed, self.latent_tokens, self.latent_pos_embed):
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        expected = (cfg.in_channels, cfg.img_resolution, cfg.img_resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"ViTEncoder expects input of shape [B, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}], got {list(x.shape)}")
        B = x.shape[0]
        h = self.patch_embed(x)                          # [B, D, H/P, W/P]
        h = h.flatten(2).transpose(1, 2)                 # [B, N, D]
        h = h + self.pos_embed                           # [B, N, D]
        t = (self.latent_tokens + self.latent_pos_embed).expand(B, -1, -1)  # [B, m, D]
        h = torch.cat([t, h], dim=1)                     # [B, m + N, D]
        h = self.blocks(h)                               # [B, m + N, D]
        h = self.norm(h[:, :cfg.m])                      # [B, m, D]
        return self.head(h) + self.token_bias            # [B, m, k]
