"""ODE samplers over an EDM denoiser D(x; sigma) with sigma(t) = t.

The probability-flow ODE is dx/dt = (x - D(x; t)) / t (EDM Eq. 1 with sigma(t)=t, s(t)=1).
NFE is counted by wrapping the denoiser: every call is one function evaluation.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from bench.diffusion.preconditioning import Denoiser


class CountingDenoiser:
    """Wraps D and counts calls (NFE). A batched call over many samples counts once."""

    def __init__(self, D: Denoiser):
        self.D = D
        self.nfe = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        self.nfe += 1
        return self.D(x, sigma, **cond)


def heun_sampler(D: Denoiser, x_T: torch.Tensor, t_steps: torch.Tensor,
                 cond: Optional[dict] = None,
                 trajectory: Optional[Callable[[int, torch.Tensor, float], None]] = None,
                 ) -> tuple[torch.Tensor, int]:
    """EDM Algorithm 1 (deterministic Heun, 2nd order, Euler on the last step to t=0).

    x_T: initial noise already scaled by t_steps[0], [B, ...]. t_steps: N+1 levels ending in 0.
    trajectory(i, x_i, t_i) is called at every step's start and at the end (i = N).
    Returns (x_0, nfe) with nfe counted, = 2N - 1 for N steps.
    """
    cond = cond or {}
    Dc = CountingDenoiser(D)
    x = x_T.to(torch.float64)
    N = len(t_steps) - 1
    for i in range(N):
        t_cur, t_next = float(t_steps[i]), float(t_steps[i + 1])
        if trajectory is not None:
            trajectory(i, x, t_cur)
        d_cur = (x - Dc(x.float(), torch.tensor(t_cur), **cond).double()) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if t_next > 0:  # 2nd-order correction (EDM Alg. 1, lines 9-11)
            d_prime = (x_next - Dc(x_next.float(), torch.tensor(t_next), **cond).double()) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    if trajectory is not None:
        trajectory(N, x, 0.0)
    return x.float(), Dc.nfe
