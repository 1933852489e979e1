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
                trajectory: Optional[Trajectory] = None,
                out_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, int]:
    """x_T: initial noise already scaled by t_steps[0], [B, ...]; t_steps: N+1 levels ending in 0.
    randn_like(x) must draw per-sample noise (e.g. PerSampleRandom.randn_like) when churn is on.
    trajectory(i, x_i, t_i) is called at every step's start and at the end (i = N).
    Returns (x_0, nfe): Heun 2N - 1 (no correction on the last step, to t = 0), Euler N.
    The state is float64 throughout (as EDM's generate.py); x_0 is returned as `out_dtype`
    (float64 = EDM generate.py's sampler output, which it converts to uint8).
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
    return x.to(out_dtype), Dc.nfe


def heun_sampler(D: Denoiser, x_T: torch.Tensor, t_steps: torch.Tensor,
                 cond: Optional[dict] = None, trajectory: Optional[Trajectory] = None,
                 ) -> tuple[torch.Tensor, int]:
    """EDM Algorithm 1: deterministic Heun, NFE = 2N - 1."""
    return edm_sampler(D, x_T, t_steps, cond, "heun", trajectory=trajectory)


# ------------------------------------------------------------------------------------ Restart
# Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes",
# Alg. 2), written to be seed-compatible with the authors' EDM implementation,
# Newbeeer/diffusion_restart_sampling benchmarks/generate_restart.py `restart_sampler` (read at
# commit 8cbcb07): with the same per-sample generators and network it gives the same images.
# What that requires (all from generate_restart.py):
# * main pass: Heun on EDM's float64 grid; the code runs EDM Alg. 2 with the published S_churn 0,
#   so gamma = 0, but it still draws the churn noise N(0, I) at EVERY main step (scaled by 0), so
#   the per-sample random streams advance once per main step;
# * after the main step that lands on level t_i closest to an interval's t_min (argmin over the
#   whole grid), K times: x += N(0, I) sqrt(t_max^2 - t_min^2) S_noise, then Heun from t_max down
#   to t_min on an EDM (rho) grid of N_restart levels, EDM Alg. 2 with gamma = restart_gamma inside
#   [S_min, S_max] (else 0) and a churn draw at every step, every step 2nd order (t_min > 0);
# * `get_steps` builds those restart grids in float32 (step indices torch.float), so every time
#   quantity in a restart pass is float32, while x and every noise draw are float64 (noise is
#   drawn like the float64 state): we keep those dtypes and the order of operations.


@dataclasses.dataclass(frozen=True)
class RestartInterval:
    n_steps: int    # N_restart: grid points from t_max down to t_min (N_restart - 1 Heun steps)
    repeats: int    # K: how many times the interval is restarted
    t_min: float    # snapped to the nearest main-grid level
    t_max: float

    def __post_init__(self) -> None:
        if self.n_steps < 2 or self.repeats < 0 or not 0 < self.t_min < self.t_max:
            raise ValueError(f"bad restart interval {self}: need n_steps >= 2, repeats >= 0, 0 < t_min < t_max")


@dataclasses.dataclass(frozen=True)
class RestartConfig:
    """One Restart setting. generate_restart.py's flags: --steps (num_steps), --restart_info
    (intervals, as {i: [N_restart, K, t_min, t_max]}), --S_noise, --restart_gamma, --S_min, --S_max."""
    num_steps: int                              # main Heun grid (EDM discretisation)
    intervals: tuple[RestartInterval, ...]
    # Scales the restart noise and the in-interval churn. No default on purpose: generate_restart.py
    # defaults to 0 (no restart noise at all) and the authors' commands pass 1.003 (ImageNet-64) or
    # 1.0 (CIFAR-10; hyperparam.py) -- each setting names its value (baselines/edm/sampler.py).
    S_noise: float
    restart_gamma: float = 0.05                 # generate_restart.py --restart_gamma default
    S_min: float = 0.01                         # the window of restart_gamma (published: 0.01 .. 1)
    S_max: float = 1.0

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError(f"Restart needs a main grid of >= 2 steps, got {self.num_steps}")
        if self.S_noise < 0 or self.restart_gamma < 0 or self.S_min > self.S_max:
            raise ValueError(f"bad Restart noise settings: S_noise {self.S_noise}, restart_gamma "
                             f"{self.restart_gamma}, S_min {self.S_min}, S_max {self.S_max}")

    def nfe(self) -> int:
        """2 N_main - 1 + sum_i 2 K_i (N_restart,i - 1) (the Restart code's own accounting)."""
        return 2 * self.num_steps - 1 + sum(2 * r.repeats * (r.n_steps - 1) for r in self.intervals)


def restart_grid(n_steps: int, t_min: torch.Tensor, t_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM's discretisation (Karras et al. 2022, Eq. 5) from t_max down to t_min, n_steps levels,
    no trailing 0, in float32 as generate_restart.py's get_steps (float32 step indices; t_min is
    the float64 main-grid level, t_max a Python float)."""
    i = torch.arange(n_steps, dtype=torch.float32, device=t_min.device)
    return (t_max ** (1 / rho) + i / (n_steps - 1) * (t_min ** (1 / rho) - t_max ** (1 / rho))) ** rho


def _churn_step(Dc: CountingDenoiser, x: torch.Tensor, t_cur: torch.Tensor, t_next: torch.Tensor, gamma: float,
                S_noise: float, randn_like: Callable[[torch.Tensor], torch.Tensor], cond: dict,
                second_order: bool) -> torch.Tensor:
    """One step of EDM Alg. 2 (lines 4-11) on 0-dim time tensors, whose dtype is the precision of
    the time arithmetic (float64 main grid, float32 restart grids). The churn noise is drawn even
    when gamma = 0, as generate_restart.py does; x is float64, so it is drawn in float64."""
    t_hat = t_cur + gamma * t_cur
    x_hat = x + (t_hat ** 2 - t_cur ** 2).sqrt() * S_noise * randn_like(x)
    d_cur = (x_hat - Dc(x_hat.float(), t_hat.float(), **cond).double()) / t_hat
    x_next = x_hat + (t_next - t_hat) * d_cur
    if second_order:
        d_prime = (x_next - Dc(x_next.float(), t_next.float(), **cond).double()) / t_next
        x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def restart_sampler(D: Denoiser, x_T: torch.Tensor, t_steps: torch.Tensor, config: RestartConfig,
                    randn_like: Callable[[torch.Tensor], torch.Tensor],
                    cond: Optional[dict] = None, rho: float = 7.0,
                    out_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, int]:
    """x_T: initial noise scaled by t_steps[0]; t_steps: the main grid (config.num_steps + 1
    levels ending in 0, float64 as EDM's). randn_like(x) must draw per-sample noise in x's dtype
    (PerSampleRandom.randn_like). Returns (x_0 as out_dtype, counted NFE = config.nfe())."""
    if len(t_steps) != config.num_steps + 1:
        raise ValueError(f"t_steps has {len(t_steps) - 1} steps, config says {config.num_steps}")
    t_steps = t_steps.to(torch.float64)
    N = config.num_steps
    # Each t_min snaps to the nearest level of the whole grid (0 included), as the official code.
    at = {int(torch.argmin((t_steps - r.t_min).abs())): r for r in config.intervals}
    if len(at) != len(config.intervals):   # the official dict would silently keep only the last
        raise ValueError("two restart intervals snap to the same main step")
    if not all(0 < k < N for k in at):     # the official code never restarts at level 0
        raise ValueError(f"a restart t_min snaps to the first or last level of the {N}-step grid")
    cond = cond or {}
    Dc = CountingDenoiser(D)
    x = x_T.to(torch.float64)
    for i in range(N):
        # Main pass: EDM Alg. 2 with gamma = 0 (S_churn 0), Euler on the last step (to t = 0).
        x = _churn_step(Dc, x, t_steps[i], t_steps[i + 1], 0.0, config.S_noise, randn_like, cond,
                        second_order=i < N - 1)
        r = at.get(i + 1)
        if r is None:
            continue
        grid = restart_grid(r.n_steps, t_steps[i + 1], r.t_max, rho)        # float32, t_max .. t_min
        for _ in range(r.repeats):
            # Restart's forward jump t_min -> t_max; its scale is float32 (from the float32 grid).
            x = x + randn_like(x) * (grid[0] ** 2 - grid[-1] ** 2).sqrt() * config.S_noise
            for j in range(r.n_steps - 1):
                t_cur = grid[j]
                gamma = config.restart_gamma if config.S_min <= t_cur <= config.S_max else 0.0
                x = _churn_step(Dc, x, t_cur, grid[j + 1], gamma, config.S_noise, randn_like, cond,
                                second_order=True)
    return x.to(out_dtype), Dc.nfe
