"""Sampling an image model with per-sample seeds and counted NFE: the sampler choice
(`SamplerSpec`) and `generate`, used by the harnesses and by `python -m bench sample`."""
from __future__ import annotations

import dataclasses
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
    kind: str = "heun"           # heun | euler | edm-sde (EDM Alg. 2 with churn) | restart
    steps: int = 18              # ignored by restart, whose main grid is `restart.num_steps`
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    churn: Stochasticity = Stochasticity()
    cfg: float = 0.0             # latent guidance (App. B); 0 = the conditional model
    temperature: float = 1.0     # the prior's sampling temperature
    restart: Optional[RestartConfig] = None   # kind = restart (e.g. RESTART_IMAGENET64[623])

    def __post_init__(self) -> None:
        if self.kind not in ("heun", "euler", "edm-sde", "restart"):
            raise ValueError(f"unknown sampler {self.kind!r}: heun, euler, edm-sde or restart")
        if (self.kind == "restart") != (self.restart is not None):
            raise ValueError("the restart sampler needs a RestartConfig, and only it takes one")

    @property
    def num_steps(self) -> int:
        return self.restart.num_steps if self.restart is not None else self.steps


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
    t_steps = edm_sigma_steps(spec.num_steps, spec.sigma_min, spec.sigma_max, spec.rho)
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
        if spec.kind == "restart":
            x, n = restart_sampler(D, x_T, t_steps.to(device), spec.restart, rnd.randn_like, cond, spec.rho)
        else:
            solver = "euler" if spec.kind == "euler" else "heun"
            churn = spec.churn if spec.kind == "edm-sde" else Stochasticity()
            x, n = edm_sampler(D, x_T, t_steps.to(device), cond, solver, churn,
                               randn_like=rnd.randn_like if churn.S_churn > 0 else None)
        nfe = n
        imgs.append((x * 127.5 + 128).clip(0, 255).to(torch.uint8).cpu().numpy())   # EDM generate.py
        if y_idx is not None:
            labs.append(y_idx.cpu().numpy())
        if progress is not None:
            progress(len(rnd.seeds))
    return Generated(np.concatenate(imgs), list(seeds), np.concatenate(labs) if labs else None,
                     np.concatenate(lats) if lats else None, nfe)
