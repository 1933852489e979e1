"""EDM time discretisation (Karras et al. 2022, Eq. 5):

sigma_i = (sigma_max^(1/rho) + i/(N-1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < N;
sigma_N = 0.
"""
from __future__ import annotations

import torch


def edm_sigma_steps(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                    rho: float = 7.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Returns num_steps + 1 noise levels, decreasing, ending in exactly 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(num_steps, dtype=dtype)
    frac = i / max(num_steps - 1, 1)
    t = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=dtype)])
