"""Samplers over an EDM denoiser D(x; sigma) with sigma(t) = t.

The probability-flow ODE is dx/dt = (x - D(x; t)) / t (EDM Eq. 1 with sigma(t)=t, s(t)=1).
`edm_sampler` is EDM's Algorithm 2: Heun (or Euler) steps, optionally with "churn" — noise
added to go from t_cur up to t_hat = (1 + gamma) t_cur before each step. With S_churn = 0 it is
Algorithm 1 (deterministic Heun). NFE is counted by wrapping the denoiser: every call is one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import torch

from bench.diffusion.preconditioning import Denoiser

Trajectory = Callable[[int, torch.Tensor, float], None]   # (step i, x_i, t_i)


class CountingDenoiser:
    """Wraps D and counts calls (NFE). A batched call over many samples counts once."""

    def __init__(self, D: Denoiser):
        self.D = D
        self.nfe = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        self.nfe += 1
        return self.D(x, sigma, **cond)


@dataclasses.dataclass(frozen=True)
class Stochasticity:
    """EDM Algorithm 2's churn (Karras et al. 2022, Sec. 4): gamma_i = min(S_churn / N, sqrt(2) - 1)
    for t_i in [S_min, S_max], else 0; the added noise is scaled by S_noise."""
    S_churn: float = 0.0
    S_min: float = 0.0
    S_max: float = math.inf
    S_noise: float = 1.0

    def gamma(self, t: float, num_steps: int) -> float:
        if self.S_churn <= 0 or not self.S_min <= t <= self.S_max:
            return 0.0
        return min(self.S_churn / num_steps, math.sqrt(2) - 1)


def edm_sampler(D: Denoiser, x_T: torch.Tensor, t_steps: torch.Tensor,
                cond: Optional[dict] = None, solver: str = "heun",
                churn: Stochasticity = Stochasticity(),
                randn_like: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                trajectory: Optional[Trajectory] = None) -> tuple[torch.Tensor, int]:
    """x_T: initial noise already scaled by t_steps[0], [B, ...]; t_steps: N+1 levels ending in 0.
    randn_like(x) must draw per-sample noise (e.g. PerSampleRandom.randn_like) when churn is on.
    trajectory(i, x_i, t_i) is called at every step's start and at the end (i = N).
    Returns (x_0, nfe): Heun 2N - 1 (no correction on the last step, to t = 0), Euler N.
    """
    if solver not in ("heun", "euler"):
        raise ValueError(f"solver must be 'heun' or 'euler', got {solver!r}")
    if churn.S_churn > 0 and randn_like is None:
        raise ValueError("stochastic sampling (S_churn > 0) needs randn_like with per-sample seeds")
    cond = cond or {}
    Dc = CountingDenoiser(D)
    x = x_T.to(torch.float64)
    N = len(t_steps) - 1
    for i in range(N):
        t_cur, t_next = float(t_steps[i]), float(t_steps[i + 1])
        if trajectory is not None:
            trajectory(i, x, t_cur)
        # Increase noise temporarily (Alg. 2 lines 4-6): t_hat = t_cur (1 + gamma).
        gamma = churn.gamma(t_cur, N)
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            x = x + math.sqrt(t_hat**2 - t_cur**2) * churn.S_noise * randn_like(x).to(x)
        # Euler step from t_hat to t_next (line 7-8).
        d_cur = (x - Dc(x.float(), torch.tensor(t_hat), **cond).double()) / t_hat
        x_next = x + (t_next - t_hat) * d_cur
        if solver == "heun" and t_next > 0:  # 2nd-order correction (lines 9-11)
            d_prime = (x_next - Dc(x_next.float(), torch.tensor(t_next), **cond).double()) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    if trajectory is not None:
        trajectory(N, x, 0.0)
    return x.float(), Dc.nfe


def heun_sampler(D: Denoiser, x_T: torch.Tensor, t_steps: torch.Tensor,
                 cond: Optional[dict] = None, trajectory: Optional[Trajectory] = None,
                 ) -> tuple[torch.Tensor, int]:
    """EDM Algorithm 1: deterministic Heun, NFE = 2N - 1."""
    return edm_sampler(D, x_T, t_steps, cond, "heun", trajectory=trajectory)
