"""Latent conditioning: embeddings with a learned null latent, latent dropout, and guidance.

Convention used throughout: a latent is a weight tensor w [B, m, k] (one-hot, or a soft
Gumbel sample); a row of all zeros is the *null latent* (DisCo-Diff App. B: latents are replaced
by a learned null embedding with probability 0.1 during training, enabling guidance).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from bench.diffusion.preconditioning import Denoiser


class LatentEmbedding(nn.Module):
    """w [B, m, k] -> [B, m, dim]: sum_j w_j E[i, j] for each latent i, or the null embedding
    (weighted by 1 - sum_j w_j, so the all-zero row is exactly the null latent)."""

    def __init__(self, m: int, k: int, dim: int, init_std: float = 1.0):
        super().__init__()
        self.m, self.k, self.dim = m, k, dim
        self.table = nn.Parameter(torch.randn(m, k, dim) * init_std)
        self.null = nn.Parameter(torch.zeros(m, dim))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.shape[-2:] != (self.m, self.k):
            raise ValueError(f"latent weights must be [B, {self.m}, {self.k}], got {tuple(w.shape)}")
        present = w.sum(-1, keepdim=True)                      # [B, m, 1]: 1, or 0 for null
        return torch.einsum("bmk,mkd->bmd", w, self.table) + (1 - present) * self.null


def one_hot(z: torch.Tensor, k: int) -> torch.Tensor:
    """Integer latents [B, m] -> weights [B, m, k]."""
    return torch.nn.functional.one_hot(z.long(), k).float()


def null_latent(batch: int, m: int, k: int, device: Any = "cpu") -> torch.Tensor:
    return torch.zeros(batch, m, k, device=device)


def drop_latents(w: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Replace each sample's latents by the null latent with probability p (all m at once)."""
    if p <= 0:
        return w
    keep = (torch.rand(w.shape[0], generator=generator, device=w.device) >= p).to(w.dtype)
    return w * keep.reshape(-1, *([1] * (w.ndim - 1)))


def guided(D: Denoiser, cfg: float) -> Denoiser:
    """Latent guidance: D~ = D(z) + cfg * (D(z) - D(null)).

    The paper's App. B writes w D(z) + (1-w) D(null) but uses cfg=0 for the plain conditional
    model (Table 3); this form, as in the released disco-diffdock code, makes cfg=0 the
    conditional model. The conditional and null passes run as one batched call: one NFE.
    """
    if cfg == 0:
        return D

    def D_guided(x: torch.Tensor, sigma: torch.Tensor, *, latent: torch.Tensor, **cond: Any) -> torch.Tensor:
        B = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device)
        sigma2 = sigma.expand(B).repeat(2) if sigma.ndim <= 1 else sigma.repeat(2)
        both = D(torch.cat([x, x]), sigma2, latent=torch.cat([latent, torch.zeros_like(latent)]),
                 **{k: torch.cat([v, v]) for k, v in cond.items()})
        d_z, d_null = both[:B], both[B:]
        return d_z + cfg * (d_z - d_null)

    return D_guided
