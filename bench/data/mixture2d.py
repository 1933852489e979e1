"""The 2D mixture of 8 Gaussians of DisCo-Diff App. F.1.

Means on a circle of radius 3 at angles 0, 45, ..., 315 degrees; equal weights; isotropic std
0.2 (the text dump is ambiguous between std and variance; reference/toy2d.csv records the
reading); 1000 points per component.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch


@dataclasses.dataclass(frozen=True)
class Mixture2DConfig:
    modes: int = 8
    radius: float = 3.0
    std: float = 0.2
    points_per_mode: int = 1000


def mixture_means(cfg: Mixture2DConfig) -> torch.Tensor:
    """[modes, 2]; mode 0 at (radius, 0), counter-clockwise."""
    a = torch.arange(cfg.modes, dtype=torch.float64) * (2 * math.pi / cfg.modes)
    return (cfg.radius * torch.stack([a.cos(), a.sin()], 1)).float()


def sample_mixture(cfg: Mixture2DConfig, generator: Optional[torch.Generator] = None,
                   n_per_mode: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly n_per_mode points from each mode: (x [N, 2], mode labels [N])."""
    n = cfg.points_per_mode if n_per_mode is None else n_per_mode
    labels = torch.arange(cfg.modes).repeat_interleave(n)
    x = mixture_means(cfg)[labels] + cfg.std * torch.randn(len(labels), 2, generator=generator)
    return x, labels


def data_std(cfg: Mixture2DConfig) -> float:
    """Per-coordinate std of the mixture: sqrt(radius^2 / 2 + std^2) (modes evenly spaced)."""
    return math.sqrt(cfg.radius**2 / 2 + cfg.std**2)


def sample_mixture_iid(cfg: Mixture2DConfig, n: int, generator: Optional[torch.Generator] = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """n points with i.i.d. mode choices (multinomial counts), as any sampler without latents
    produces: the reference for the noise floor of such samplers."""
    labels = torch.randint(cfg.modes, (n,), generator=generator)
    return mixture_means(cfg)[labels] + cfg.std * torch.randn(n, 2, generator=generator), labels
