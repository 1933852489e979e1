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

from bench.diffusion.discretisation import edm_sigma_steps
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
        if churn.S_churn > 0:   # EDM draws this noise at every step, gamma = 0 or not
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


# ------------------------------------------------------------------------------------ Restart
# Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes",
# Alg. 2; facts from the authors' benchmarks/generate_restart.py): a deterministic Heun main
# pass; after reaching a restart interval's t_min it K times adds noise from t_min up to t_max,
# N(0, (t_max^2 - t_min^2) S_noise^2), and re-solves the ODE back to t_min on an EDM grid of
# n_steps points, with a small fixed churn (restart_gamma) inside [S_min, S_max].


@dataclasses.dataclass(frozen=True)
class RestartInterval:
    n_steps: int    # N_restart: grid points from t_max down to t_min (N_restart - 1 Heun steps)
    repeats: int    # K: how many times the interval is restarted
    t_min: float    # snapped to the nearest main-grid level
    t_max: float


@dataclasses.dataclass(frozen=True)
class RestartConfig:
    num_steps: int                              # main Heun grid (EDM discretisation)
    intervals: tuple[RestartInterval, ...]
    S_noise: float = 1.003                      # Restart's ImageNet-64 setting
    restart_gamma: float = 0.05
    S_min: float = 0.01
    S_max: float = 1.0

    def nfe(self) -> int:
        """2 N_main - 1 + sum_i 2 K_i (N_restart,i - 1) (the Restart code's own accounting)."""
        return 2 * self.num_steps - 1 + sum(2 * r.repeats * (r.n_steps - 1) for r in self.intervals)


def restart_sampler(D: Denoiser, x_T: torch.Tensor, t_steps: torch.Tensor, config: RestartConfig,
                    randn_like: Callable[[torch.Tensor], torch.Tensor],
                    cond: Optional[dict] = None, rho: float = 7.0) -> tuple[torch.Tensor, int]:
    """t_steps: the main grid (config.num_steps + 1 levels ending in 0). Returns (x_0, counted NFE)."""
    if len(t_steps) != config.num_steps + 1:
        raise ValueError(f"t_steps has {len(t_steps) - 1} steps, config says {config.num_steps}")
    main = t_steps[:-1]
    at = {int(torch.argmin((main - r.t_min).abs())): r for r in config.intervals}
    if len(at) != len(config.intervals):
        raise ValueError("two restart intervals snap to the same main step")
    cuts = sorted(i for i in at if 0 < i < config.num_steps)
    nfe, x, start = 0, x_T, 0
    for stop in cuts + [config.num_steps]:
        x, n = edm_sampler(D, x, t_steps[start:stop + 1], cond)            # main pass, no churn
        nfe += n
        if stop in at:
            r, t_min = at[stop], float(t_steps[stop])
            grid = edm_sigma_steps(r.n_steps, t_min, r.t_max, rho)[:-1]     # t_max .. t_min, no 0
            churn = Stochasticity(S_churn=config.restart_gamma * (r.n_steps - 1),   # gamma = restart_gamma
                                  S_min=config.S_min, S_max=config.S_max, S_noise=config.S_noise)
            for _ in range(r.repeats):
                x = x + randn_like(x).to(x) * math.sqrt(r.t_max**2 - t_min**2) * config.S_noise
                x, n = edm_sampler(D, x, grid, cond, churn=churn, randn_like=randn_like)
                nfe += n
        start = stop
    return x, nfe
