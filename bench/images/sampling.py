"""Sampling an image model with per-sample seeds and counted NFE: the sampler choice
(`SamplerSpec`) and `generate`, used by the harnesses and by `python -m bench sample`."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.samplers import RestartConfig, Stochasticity, edm_sampler, restart_sampler
from bench.diffusion.seeds import PerSampleRandom
from bench.disco.latents import guided, one_hot
from bench.disco.prior import AutoregressivePrior


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """Which sampler and its settings. Settings that the chosen sampler would not use are refused
    (ValueError), never silently ignored: churn only with edm-sde (which needs S_churn > 0);
    restart takes its main grid, S_noise and S_min/S_max from `restart` (steps, if given, must
    equal restart.num_steps)."""
    kind: str = "heun"           # heun | euler | edm-sde (EDM Alg. 2 with churn) | restart
    steps: Optional[int] = None  # main grid; None: 18 (EDM's default), or restart.num_steps
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0             # also the restart intervals' grids (generate_restart.py)
    churn: Stochasticity = Stochasticity()   # kind = edm-sde only
    cfg: float = 0.0             # latent guidance (App. B); 0 = the conditional model
    temperature: float = 1.0     # the prior's sampling temperature
    restart: Optional[RestartConfig] = None   # kind = restart (e.g. RESTART_IMAGENET64[623])

    def __post_init__(self) -> None:
        if self.kind not in ("heun", "euler", "edm-sde", "restart"):
            raise ValueError(f"unknown sampler {self.kind!r}: heun, euler, edm-sde or restart")
        if (self.kind == "restart") != (self.restart is not None):
            raise ValueError("the restart sampler needs a RestartConfig, and only it takes one")
        if self.kind == "edm-sde" and not self.churn.S_churn > 0:
            raise ValueError("the edm-sde sampler needs S_churn > 0 (with 0 it is the heun sampler)")
        if self.kind != "edm-sde" and self.churn != Stochasticity():
            raise ValueError(f"churn settings (S_churn, S_min, S_max, S_noise) are for edm-sde; the {self.kind} "
                             "sampler would ignore them" + (" (Restart's are in its RestartConfig)"
                                                            if self.kind == "restart" else ""))
        if self.restart is not None:
            if self.steps is not None and self.steps != self.restart.num_steps:
                raise ValueError(f"steps {self.steps}: this Restart setting's main grid has "
                                 f"{self.restart.num_steps} steps")
            object.__setattr__(self, "steps", self.restart.num_steps)
        elif self.steps is None:
            object.__setattr__(self, "steps", 18)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    @property
    def num_steps(self) -> int:
        return self.steps


def supported_sigma_range(denoiser: nn.Module) -> tuple[float, float]:
    """The noise levels the network supports (EDMPrecond.sigma_min / sigma_max, EDM's defaults
    0 and inf when it does not say), looked up on a DisCo-Diff denoiser's inner EDMPrecond too."""
    for m in (denoiser, getattr(denoiser, "denoiser", None)):
        if m is not None and hasattr(m, "sigma_min") and hasattr(m, "sigma_max"):
            return float(m.sigma_min), float(m.sigma_max)
    return 0.0, math.inf


@dataclasses.dataclass
class Generated:
    images: np.ndarray           # uint8 [n, C, H, W]
    seeds: list[int]
    class_labels: Optional[np.ndarray]
    latents: Optional[np.ndarray]
    nfe: int


@torch.no_grad()
def generate(denoiser: nn.Module, seeds: Sequence[int], spec: SamplerSpec, *, img_shape: tuple[int, int, int],
             label_dim: int = 0, class_idx: Optional[int] = None, prior: Optional[AutoregressivePrior] = None,
             latent_shape: Optional[tuple[int, int]] = None, batch: int = 64,
             device: torch.device = torch.device("cpu"),
             progress: Optional[Callable[[int], None]] = None) -> Generated:
    """Images for `seeds`, each from its own generator in EDM generate.py's order (initial noise
    [C, H, W], then the class label, then (DisCo-Diff) the prior's m uniforms, then the sampler's
    noise), so a seed gives the same image whatever the batch size or process count.
    NFE is counted by the sampler for one batch (batches are identical in length)."""
    disco = latent_shape is not None
    if disco and prior is None:
        raise ValueError("a DisCo-Diff denoiser needs its autoregressive prior to sample latents")
    if not disco and (spec.cfg != 0 or spec.temperature != 1.0):
        raise ValueError("cfg and temperature act on discrete latents: this denoiser has none")
    # The grid is clamped to the network's supported range, as EDM's generate.py and
    # generate_restart.py do (sigma_min = max(sigma_min, net.sigma_min), likewise sigma_max).
    net_min, net_max = supported_sigma_range(denoiser)
    t_steps = edm_sigma_steps(spec.num_steps, max(spec.sigma_min, net_min), min(spec.sigma_max, net_max), spec.rho)
    imgs, labs, lats, nfe = [], [], [], 0
    for i in range(0, len(seeds), batch):
        rnd = PerSampleRandom(seeds[i:i + batch], device)
        x_T = rnd.randn(*img_shape).to(torch.float64) * t_steps[0]
        cond: dict = {}
        y_idx = None
        if label_dim:
            y_idx = rnd.randint(label_dim)     # drawn even with class_idx, as EDM does
            if class_idx is not None:
                y_idx = torch.full_like(y_idx, class_idx)
            cond["class_labels"] = torch.eye(label_dim, device=device)[y_idx]
        D = denoiser
        if disco:
            z = prior.sample(rnd.rand(latent_shape[0]), y_idx, spec.temperature)
            cond["latent"] = one_hot(z, latent_shape[1]).to(device)
            D = guided(denoiser, spec.cfg)
            lats.append(z.cpu().numpy())
        # Both samplers return their float64 state, which EDM's generate.py (and Restart's
        # generate_restart.py) converts to uint8.
        if spec.kind == "restart":
            x, n = restart_sampler(D, x_T, t_steps.to(device), spec.restart, rnd.randn_like, cond, spec.rho,
                                   out_dtype=torch.float64)
        else:
            solver = "euler" if spec.kind == "euler" else "heun"
            x, n = edm_sampler(D, x_T, t_steps.to(device), cond, solver, spec.churn,
                               randn_like=rnd.randn_like if spec.kind == "edm-sde" else None,
                               out_dtype=torch.float64)
        nfe = n
        imgs.append((x * 127.5 + 128).clip(0, 255).to(torch.uint8).cpu().numpy())   # EDM generate.py
        if y_idx is not None:
            labs.append(y_idx.cpu().numpy())
        if progress is not None:
            progress(len(rnd.seeds))
    return Generated(np.concatenate(imgs), list(seeds), np.concatenate(labs) if labs else None,
                     np.concatenate(lats) if lats else None, nfe)
