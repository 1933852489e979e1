"""Fig. 7 right: sample with the discrete latent z_a, switch to z_b after a fraction of the Heun
steps, and see how much of z_b reaches the image (claim 4: a late switch barely changes it,
because the latents act at large t).

A triple (seed, z_a, z_b): `seed` draws the initial noise and the class label exactly as
`generate` does (bench/images/sampling.py), and then z_a from the prior, so switching after 100 %
of the steps (never) gives `generate`'s image for that seed. z_b comes from the same prior and
class, from the generator of its own seed; where it equals z_a it is redrawn from that generator
(up to MAX_REDRAWS times), since a switch to the same latent shows nothing.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.samplers import edm_sampler
from bench.diffusion.seeds import PerSampleRandom
from bench.disco.latents import guided, one_hot
from bench.disco.prior import AutoregressivePrior
from bench.images.sampling import SamplerSpec, supported_sigma_range

MAX_REDRAWS = 32


class SwitchingDenoiser:
    """D(x; sigma, z) with z = z_a during Heun steps 0 .. switch_step - 1 and z_b from step
    `switch_step` on; both evaluations of a Heun step see the same latent. `at_step` is the
    sampler's trajectory hook (called at each step's start), which tells it the step."""

    def __init__(self, D: Any, z_a: torch.Tensor, z_b: torch.Tensor, switch_step: int):
        self.D, self.z_a, self.z_b, self.switch_step = D, z_a, z_b, switch_step
        self.step = 0

    def at_step(self, i: int, x: torch.Tensor, t: float) -> None:
        self.step = i

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        return self.D(x, sigma, latent=self.z_a if self.step < self.switch_step else self.z_b, **cond)


@dataclasses.dataclass
class SwitchedSamples:
    fractions: tuple[float, ...]     # the switch points, as fractions of the Heun steps
    images: dict[float, np.ndarray]  # fraction -> uint8 [n, C, H, W]; 1.0 = z_a throughout, 0.0 = z_b throughout
    codes_a: np.ndarray              # [n, m]
    codes_b: np.ndarray              # [n, m]
    identical: int                   # triples whose z_b still equals z_a after MAX_REDRAWS redraws
    nfe: int                         # counted, per image and switch point


def switch_step(fraction: float, num_steps: int) -> int:
    """The Heun step at which z_b takes over: after `fraction` of the steps (rounded to a step)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"switch fraction must be in [0, 1], got {fraction}")
    return int(round(fraction * num_steps))


def _draw_b(prior: AutoregressivePrior, seeds_b: Sequence[int], y_idx: Optional[torch.Tensor],
            z_a: torch.Tensor) -> tuple[torch.Tensor, int]:
    rnd = PerSampleRandom(seeds_b, z_a.device)
    m = prior.cfg.m
    z_b = prior.sample(rnd.rand(m), y_idx)
    for _ in range(MAX_REDRAWS):
        same = (z_b == z_a).all(1).nonzero().flatten()
        if len(same) == 0:
            break
        u = torch.stack([torch.rand(m, generator=rnd.generators[int(j)], device=rnd.device) for j in same])
        z_b[same] = prior.sample(u, None if y_idx is None else y_idx[same])
    return z_b, int((z_b == z_a).all(1).sum())


@torch.no_grad()
def switched_samples(denoiser: nn.Module, prior: AutoregressivePrior, seeds: Sequence[int], seeds_b: Sequence[int],
                     fractions: Sequence[float], spec: SamplerSpec, *, img_shape: tuple[int, int, int],
                     label_dim: int = 0, batch: int = 64,
                     device: torch.device = torch.device("cpu")) -> SwitchedSamples:
    """For each (seed, seed_b): the image sampled with z_a switched to z_b after each of `fractions` of the
    Heun steps (deterministic Heun or Euler only: a stochastic sampler would mix the two effects)."""
    if spec.kind not in ("heun", "euler"):
        raise ValueError(f"latent switching uses the deterministic heun or euler sampler, not {spec.kind}")
    if len(seeds) != len(seeds_b):
        raise ValueError(f"{len(seeds)} seeds but {len(seeds_b)} z_b seeds: one each per triple")
    net_min, net_max = supported_sigma_range(denoiser)
    t_steps = edm_sigma_steps(spec.num_steps, max(spec.sigma_min, net_min), min(spec.sigma_max, net_max),
                              spec.rho).to(device)
    D = guided(denoiser, spec.cfg)
    k = prior.cfg.k
    out: dict[float, list[np.ndarray]] = {f: [] for f in fractions}
    codes_a, codes_b, identical, nfe = [], [], 0, 0
    for i in range(0, len(seeds), batch):
        rnd = PerSampleRandom(seeds[i:i + batch], device)
        x_T = rnd.randn(*img_shape).to(torch.float64) * t_steps[0]   # generate()'s order of draws
        cond: dict = {}
        y_idx = None
        if label_dim:
            y_idx = rnd.randint(label_dim)
            cond["class_labels"] = torch.eye(label_dim, device=device)[y_idx]
        z_a = prior.sample(rnd.rand(prior.cfg.m), y_idx, spec.temperature).to(device)
        z_b, same = _draw_b(prior, seeds_b[i:i + batch], y_idx, z_a)
        identical += same
        w_a, w_b = one_hot(z_a, k).to(device), one_hot(z_b.to(device), k).to(device)
        for f in fractions:
            sw = SwitchingDenoiser(D, w_a, w_b, switch_step(f, spec.num_steps))
            x, nfe = edm_sampler(sw, x_T, t_steps, cond, spec.kind, trajectory=sw.at_step, out_dtype=torch.float64)
            out[f].append((x * 127.5 + 128).clip(0, 255).to(torch.uint8).cpu().numpy())   # EDM generate.py
        codes_a.append(z_a.cpu().numpy())
        codes_b.append(z_b.cpu().numpy())
    return SwitchedSamples(tuple(fractions), {f: np.concatenate(v) for f, v in out.items()},
                           np.concatenate(codes_a), np.concatenate(codes_b), identical, nfe)
