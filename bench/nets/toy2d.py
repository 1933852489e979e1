"""The two models of the 2D study (DisCo-Diff App. F.2).

DM: a 4-layer MLP with EDM preconditioning.
DisCo-Diff: a 3-layer MLP encoder E(x0) -> logits over a vocabulary of 8 (m = 1 latent), and
a denoiser whose score is reparameterised as (App. F.2)
    G(x, t, z) = (F(z) - x) / (t^2 + sigma_1^2) + H(x, t),
F(z) a learned 2-D point per latent value, H a 4-layer MLP of (x, t) only. The first term is
the exact score of N(F(z), sigma_1^2 I) noised to level t. The EDM denoiser is
D = x + t^2 G (Tweedie; sigma(t) = t).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from bench.diffusion.preconditioning import EDMPrecond, edm_coefficients
from bench.disco.latents import LatentEmbedding
from bench.nets.mlp import MLP, MLPConfig, TimeMLP


@dataclasses.dataclass(frozen=True)
class DM2DConfig:
    width: int = 128
    layers: int = 4
    sigma_data: float = 0.5   # EDM preconditioning constant


class DM2D(nn.Module):
    """Baseline: D(x, sigma) = EDM preconditioning around a 4-layer MLP."""

    def __init__(self, cfg: DM2DConfig):
        super().__init__()
        self.cfg = cfg
        self.denoiser = EDMPrecond(TimeMLP(2, MLPConfig(0, 2, cfg.width, cfg.layers)), cfg.sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.denoiser(x, sigma)

    def network_score(self, x: torch.Tensor, sigma: float, latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The learned part of the score (D - x)/t^2: c_out F(c_in x, c_noise) / t^2, i.e. the
        score minus its analytic skip term (c_skip - 1) x / t^2 = -x / (t^2 + sigma_data^2)."""
        s = torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
        c = edm_coefficients(s, self.cfg.sigma_data)
        return c.c_out[:, None] * self.denoiser.net(x * c.c_in[:, None], c.c_noise) / s[:, None] ** 2


@dataclasses.dataclass(frozen=True)
class DisCo2DConfig:
    vocab: int = 8               # codebook size k (App. F: 8)
    m: int = 1                   # number of latents (App. F: 1)
    width: int = 128
    h_layers: int = 4            # H: 4-layer MLP (App. F)
    enc_layers: int = 3          # encoder: 3-layer MLP (App. F)
    sigma_1: float = 0.2         # per-mode std in the analytic term
    sigma_data: float = 0.5      # input scaling of H: c_in = 1/sqrt(sigma^2 + sigma_data^2)
    f_init_std: float = 1.0      # std of the initial F(z) points
    h_zero_init: bool = False    # H's output layer starts at 0, so G starts as the analytic term


class DisCo2D(nn.Module):
    def __init__(self, cfg: DisCo2DConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = MLP(MLPConfig(2, cfg.m * cfg.vocab, cfg.width, cfg.enc_layers))
        self.F = LatentEmbedding(cfg.m, cfg.vocab, 2, init_std=cfg.f_init_std)
        self.H = TimeMLP(2, MLPConfig(0, 2, cfg.width, cfg.h_layers, zero_init_out=cfg.h_zero_init))

    def encode_logits(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 [B, 2] -> logits [B, m, k]."""
        return self.encoder(x0).reshape(-1, self.cfg.m, self.cfg.vocab)

    def init_F_from_data(self, x0: torch.Tensor, generator: torch.Generator) -> None:
        """F_k at training points chosen by k-means++ seeding (Arthur & Vassilvitskii 2007):
        the first uniformly, each next with probability proportional to its squared distance
        to the nearest chosen one."""
        n = self.cfg.m * self.cfg.vocab
        centres = [x0[torch.randint(len(x0), (1,), generator=generator)].squeeze(0)]
        for _ in range(n - 1):
            d2 = torch.cdist(x0, torch.stack(centres)).min(1).values ** 2
            centres.append(x0[torch.multinomial(d2 / d2.sum(), 1, generator=generator)].squeeze(0))
        with torch.no_grad():
            self.F.table.copy_(torch.stack(centres).reshape(self.cfg.m, self.cfg.vocab, 2))

    def score(self, x: torch.Tensor, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """G(x, t, z) [B, 2] (score units); latent: weights [B, m, k], all-zero row = null."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None]
        var = sigma**2 + self.cfg.sigma_1**2
        F_z = self.F(latent).sum(1)                       # [B, 2] (m = 1: the one point)
        return (F_z - x) / var + self.network_score(x, sigma[:, 0])

    def network_score(self, x: torch.Tensor, sigma, latent: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The learned function of x in the score: H(x, t) (F(z) enters only as a constant)."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        c = edm_coefficients(s, self.cfg.sigma_data)
        return self.H(x * c.c_in[:, None], c.c_noise)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """EDM denoiser D = x + t^2 G."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None]
        return x + s**2 * self.score(x, sigma, latent)
