"""PFGM++ (Xu et al., ICML 2023): its perturbation kernel, prior and loss. The model as a whole is
not built yet (issue 17: presets, DisCo-PFGM++, the table1 rows).

PFGM++ treats an N-dimensional datum as a point in N + D dimensions and perturbs it with the kernel
    p_r(y | x) ∝ 1 / (||y - x||^2 + r^2)^((N + D) / 2),        r = sigma sqrt(D)          (PFGM++ Sec. 3-4)
so that with r = sigma sqrt(D) the EDM machinery carries over unchanged: EDM's preconditioning and loss
weight in sigma, and EDM's Heun ODE in sigma (Newbeeer/pfgmpp training/loss.py, generate.py). Only the
noise differs: the radius R = ||y - x|| has R^2 / r^2 ~ BetaPrime(N/2, D/2), i.e. R^2 / (R^2 + r^2) ~
Beta(N/2, D/2) (pfgmpp's loss draws that Beta and sets R = r sqrt(b / (1 - b))), and the direction is uniform.
The prior x_T is the same kernel around 0 at sigma_max.

Our draw uses only Gaussians, so each sample has its own torch.Generator as everywhere in the suite:
with g ~ N(0, I_N) and h ~ N(0, I_D), ||g||^2 ~ chi2_N and ||h||^2 ~ chi2_D are independent, so
b = ||g||^2 / (||g||^2 + ||h||^2) ~ Beta(N/2, D/2), and g / ||g|| is uniform and independent of ||g||; hence
    y - x = sigma sqrt(D) sqrt(b / (1 - b)) g / ||g|| = sigma g sqrt(D) / ||h||,
a multivariate Student-t with D degrees of freedom. As D -> infinity, ||h|| / sqrt(D) -> 1 and the kernel is
EDM's Gaussian N(0, sigma^2 I) (PFGM++ Sec. 4: D -> infinity recovers diffusion models).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch

from bench.diffusion.loss import EDMLossConfig, edm_loss, sample_sigma
from bench.diffusion.preconditioning import Denoiser

LABEL = "PFGM++"


@dataclasses.dataclass(frozen=True)
class PFGMPPConfig:
    D: int = 128   # augmented dimensions (DESIGN.md: D = 128, the setting PFGM++ recommends for images)

    def __post_init__(self):
        if not self.D >= 1:
            raise ValueError(f"PFGM++ needs D >= 1 augmented dimensions, got {self.D}")


def unit_perturbation(shape: Sequence[int], D: int, generator: Optional[torch.Generator] = None,
                      device: Any = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, ...] perturbations at sigma = 1: row b is g sqrt(D) / ||h|| (g ~ N(0, I_N), N = prod(shape[1:]),
    h ~ N(0, I_D)), drawn from `generator` as all of g then all of h. Multiply by sigma [B] for the kernel."""
    B = shape[0]
    g = torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float64)
    h = torch.randn(B, D, generator=generator, device=device, dtype=torch.float64)
    scale = D ** 0.5 / h.norm(dim=1)
    return (g * scale.reshape(-1, *([1] * (len(shape) - 1)))).to(dtype)


def perturbation_radius_beta(radius: torch.Tensor, sigma: float, D: int) -> torch.Tensor:
    """b = R^2 / (R^2 + r^2) with r = sigma sqrt(D): Beta(N/2, D/2)-distributed under the PFGM++ kernel."""
    r2 = sigma ** 2 * D
    return radius ** 2 / (radius ** 2 + r2)


def pfgmpp_loss(denoiser: Denoiser, y: torch.Tensor, cfg: EDMLossConfig, pfgm: PFGMPPConfig,
                generator: Optional[torch.Generator] = None, reduce: str = "mean", **cond: Any) -> torch.Tensor:
    """Per-sample PFGM++ loss [B]: EDM's loss (sigma law, weight, preconditioned denoiser) with the PFGM++
    perturbation in place of the Gaussian (pfgmpp training/loss.py, the `pfgmv2` path)."""
    sigma = sample_sigma(cfg, y.shape[0], generator, y.device)
    noise = unit_perturbation(y.shape, pfgm.D, generator, y.device, y.dtype)
    return edm_loss(denoiser, y, cfg, sigma=sigma, noise=noise, reduce=reduce, **cond)


def prior_latents(shape: Sequence[int], seeds: Sequence[int], sigma_max: float, D: int,
                  device: Any = "cpu") -> torch.Tensor:
    """x_T [len(seeds), *shape] for the Heun sampler: the PFGM++ kernel around 0 at sigma_max, each sample from
    its own generator seeded with its seed (pfgmpp generate.py starts its EDM sampler from this, unscaled)."""
    out = [unit_perturbation((1, *shape), D, torch.Generator().manual_seed(int(s)), dtype=torch.float64)
           for s in seeds]
    return (torch.cat(out) * sigma_max).to(device)


__all__ = ["LABEL", "PFGMPPConfig", "perturbation_radius_beta", "pfgmpp_loss", "prior_latents",
           "unit_perturbation"]
