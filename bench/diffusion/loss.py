"""EDM training loss (Karras et al. 2022, Sec. 5 and Table 1).

ln(sigma) ~ N(P_mean, P_std^2);  loss = lambda(sigma) * ||D(y + sigma n; sigma) - y||^2,
lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import torch

from bench.diffusion.preconditioning import Denoiser


@dataclasses.dataclass(frozen=True)
class EDMLossConfig:
    P_mean: float = -1.2      # EDM's ImageNet/CIFAR setting
    P_std: float = 1.2
    sigma_data: float = 0.5   # per-coordinate std of the data
    noise: str = "lognormal"  # "lognormal" (EDM) or "loguniform" on [sigma_lo, sigma_hi]
    sigma_lo: float = 0.002
    sigma_hi: float = 80.0

    def __post_init__(self):
        if self.noise not in ("lognormal", "loguniform"):
            raise ValueError(f"noise must be 'lognormal' or 'loguniform', got {self.noise!r}")


def sample_sigma(cfg: EDMLossConfig, n: int, generator: Optional[torch.Generator] = None,
                 device: Any = "cpu") -> torch.Tensor:
    if cfg.noise == "loguniform":  # ln sigma ~ U[ln lo, ln hi]: every scale the sampler visits
        u = torch.rand(n, generator=generator, device=device)
        return (math.log(cfg.sigma_lo) + u * (math.log(cfg.sigma_hi) - math.log(cfg.sigma_lo))).exp()
    z = torch.randn(n, generator=generator, device=device)
    return (cfg.P_mean + cfg.P_std * z).exp()


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(D: Denoiser, y: torch.Tensor, cfg: EDMLossConfig,
             generator: Optional[torch.Generator] = None,
             sigma: Optional[torch.Tensor] = None, noise: Optional[torch.Tensor] = None,
             reduce: str = "mean", **cond: Any) -> torch.Tensor:
    """Per-sample weighted denoising loss, shape [B]: the mean over data dimensions, or with
    reduce="sum" their sum, which is EDM's image training loss (training_loop.py sums the
    per-pixel loss and divides by the batch size only: its gradient is C*H*W times the mean's).
    sigma [B] and unit noise [B, ...] are drawn from `generator` unless given."""
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    if sigma is None:
        sigma = sample_sigma(cfg, y.shape[0], generator, y.device)
    if noise is None:
        noise = torch.randn(y.shape, generator=generator, device=y.device)
    n = noise * sigma.reshape(-1, *([1] * (y.ndim - 1)))
    D_yn = D(y + n, sigma, **cond)
    w = loss_weight(sigma, cfg.sigma_data)
    per_pixel = ((D_yn - y) ** 2).flatten(1)
    return w * (per_pixel.sum(1) if reduce == "sum" else per_pixel.mean(1))
