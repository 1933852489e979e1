"""Geometry of a generative ODE (DisCo-Diff App. F.3): curvature and Jacobian norm.

Velocity field v(x, t) = dx/dt of the probability-flow ODE. Unit tangent T = v / ||v||.
Curvature by finite difference along the backward ODE (App. F.3):
  kappa(x(t)) ~ ||T(x(t), t) - T(x(t - dt), t - dt)|| / ||x(t) - x(t - dt)||,
  x(t - dt) = x(t) - v(x(t), t) dt   (one Euler step), dt = 0.001.
"""
from __future__ import annotations

from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, float], torch.Tensor]   # (x [B, d], t) -> [B, d]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)


@torch.no_grad()
def curvature(v: Velocity, x: torch.Tensor, t: float, dt: float = 1e-3) -> torch.Tensor:
    """Per-point curvature [B] at (x, t)."""
    x = x.double()
    v_t = v(x, t).double()
    x_prev = x - v_t * dt
    v_prev = v(x_prev, t - dt).double()
    return (_unit(v_t) - _unit(v_prev)).norm(dim=1) / (x - x_prev).norm(dim=1).clamp_min(1e-30)


def jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """df/dx per sample [B, d_out, d_in], for f acting on each row independently (x [B, d_in]).

    One backward pass per output dimension: row j is the gradient of sum_b f(x)_bj.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = f(x)
        rows = [torch.autograd.grad(y[:, j].sum(), x, retain_graph=j + 1 < y.shape[1])[0]
                for j in range(y.shape[1])]
    return torch.stack(rows, 1).double()


def sq_frobenius(J: torch.Tensor) -> torch.Tensor:
    """||J||_F^2 per sample: [B, a, b] -> [B]."""
    return (J**2).flatten(1).sum(1)
