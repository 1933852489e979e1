"""EDM preconditioning: D(x; sigma) = c_skip x + c_out F(c_in x, c_noise).

Coefficients from Karras et al. 2022 (EDM), Table 1, "Ours" column:
  c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
  c_out  = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)
  c_in   = 1 / sqrt(sigma^2 + sigma_data^2)
  c_noise = ln(sigma) / 4
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class EDMCoefficients:
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> EDMCoefficients:
    s2, d2 = sigma**2, sigma_data**2
    return EDMCoefficients(
        c_skip=d2 / (s2 + d2),
        c_out=sigma * sigma_data / (s2 + d2).sqrt(),
        c_in=1 / (s2 + d2).sqrt(),
        c_noise=sigma.log() / 4,
    )


def _expand(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sigma of shape [B] (or scalar) -> broadcastable to x of shape [B, ...]."""
    c = c.reshape(-1, *([1] * (x.ndim - 1))) if c.ndim else c
    return c.to(x.dtype)


class EDMPrecond(nn.Module):
    """Wraps a raw network F(x_in, c_noise, **cond) into the EDM denoiser D(x, sigma, **cond).

    As EDM's EDMPrecond: with use_fp16 the network F runs in float16 on CUDA (elsewhere, and for
    the preconditioning, float32); sigma_min / sigma_max are the noise levels the network supports,
    which EDM's generate.py clamps the sampler's grid to."""

    def __init__(self, net: nn.Module, sigma_data: float, use_fp16: bool = False,
                 sigma_min: float = 0.0, sigma_max: float = math.inf):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data
        self.use_fp16 = use_fp16
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        c = edm_coefficients(sigma, self.sigma_data)
        x_in = _expand(c.c_in, x) * x
        if self.use_fp16 and x.device.type == "cuda":
            F_x = self.net(x_in.to(torch.float16), c.c_noise, **cond).to(x.dtype)
        else:
            F_x = self.net(x_in, c.c_noise, **cond)
        return _expand(c.c_skip, x) * x + _expand(c.c_out, x) * F_x


Denoiser = Callable[..., torch.Tensor]  # D(x [B,...], sigma [B] or scalar, **cond) -> [B,...]
