"""MLPs for the 2D study (DisCo-Diff App. F: 4-layer denoiser, 3-layer encoder)."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    in_dim: int
    out_dim: int
    width: int = 128
    layers: int = 4            # number of Linear layers (App. F counts layers this way)
    zero_init_out: bool = False  # start the output at exactly 0


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        if cfg.layers < 1:
            raise ValueError("an MLP needs at least one layer")
        dims = [cfg.in_dim] + [cfg.width] * (cfg.layers - 1) + [cfg.out_dim]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                mods.append(nn.SiLU())
        self.net = nn.Sequential(*mods)
        if cfg.zero_init_out:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class FourierTime(nn.Module):
    """c_noise [B] -> [B, 2*n] sinusoidal features at fixed log-spaced frequencies (+ c_noise)."""

    def __init__(self, n: int = 8, max_freq: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(0, math.log10(max_freq), n) * math.pi, persistent=False)
        self.dim = 2 * n + 1

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        a = c_noise[:, None] * self.freqs
        return torch.cat([c_noise[:, None], a.sin(), a.cos()], 1)


class TimeMLP(nn.Module):
    """F(x, c_noise, extra) for low-dimensional x: an MLP on [x, time features, extra]."""

    def __init__(self, x_dim: int, cfg: MLPConfig, fourier: int = 8, extra_dim: int = 0):
        super().__init__()
        self.time = FourierTime(fourier)
        self.mlp = MLP(dataclasses.replace(cfg, in_dim=x_dim + self.time.dim + extra_dim))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        parts = [x, self.time(c_noise.expand(x.shape[0]).float())]
        if extra is not None:
            parts.append(extra)
        return self.mlp(torch.cat(parts, 1))
