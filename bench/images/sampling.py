"""Sampling an image model with per-sample seeds and counted NFE: the sampler choice
(`SamplerSpec`), where the latents come from (`LatentSource`: the autoregressive prior, Table 3's
continuous-latent diffusion prior, or oracle latents of training images) and `generate`, used by
the harnesses and by `python -m bench sample`."""
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
from bench.disco.continuous import LatentDiffusionPrior, with_presence
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
class Latents:
    """One batch's latents: what the denoiser takes ([B, m, k] weights or [B, m, d + 1] continuous),
    what is recorded per sample, and the class labels when the source fixes them (oracle latents
    keep their training image's class)."""
    weights: torch.Tensor
    record: np.ndarray
    class_idx: Optional[torch.Tensor] = None


class LatentSource:
    """Where a DisCo-Diff sample's latents come from. `draw` takes the batch's per-sample generators
    (after the initial noise and the class label, as EDM's generate.py orders its draws) and the
    class labels drawn for them."""
    name = ""

    def draw(self, rnd: PerSampleRandom, y_idx: Optional[torch.Tensor], device: torch.device) -> Latents:
        raise NotImplementedError


@dataclasses.dataclass
class AutoregressiveLatents(LatentSource):
    """Generative latents: the class-conditional autoregressive prior, m uniforms per sample."""
    prior: AutoregressivePrior
    temperature: float = 1.0
    name = "generative"

    def draw(self, rnd, y_idx, device) -> Latents:
        z = self.prior.sample(rnd.rand(self.prior.cfg.m), y_idx, self.temperature)
        return Latents(one_hot(z, self.prior.cfg.k).to(device), z.cpu().numpy())


@dataclasses.dataclass
class ContinuousPriorLatents(LatentSource):
    """Generative continuous latents (Table 3): the diffusion prior from [m, d] unit noise per sample."""
    prior: LatentDiffusionPrior
    name = "generative"

    def draw(self, rnd, y_idx, device) -> Latents:
        c = self.prior.cfg
        u = self.prior.sample(rnd.randn(c.m, c.d).to(device), y_idx)
        return Latents(with_presence(u).to(device), u.cpu().numpy())


@dataclasses.dataclass
class OracleLatents(LatentSource):
    """Oracle latents (Table 3): each sample draws a training image with its own seed and takes that
    image's encoder latents (tau = 0.01; continuous: a sample of the encoder's Gaussian) and class.
    latents: [N, m] integer codes (k given) or [N, m, d] floats; labels: [N] or None."""
    latents: torch.Tensor
    labels: Optional[torch.Tensor]
    k: Optional[int] = None
    name = "oracle"

    def draw(self, rnd, y_idx, device) -> Latents:
        idx = rnd.randint(len(self.latents)).cpu()   # [B]: one training image per sample
        z = self.latents[idx]
        w = one_hot(z, self.k) if self.k else with_presence(z)
        y = None if self.labels is None or y_idx is None else self.labels[idx].to(y_idx)
        return Latents(w.to(device), z.cpu().numpy(), y)


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
             latent_shape: Optional[tuple[int, int]] = None, latents: Optional[LatentSource] = None, batch: int = 64,
             device: torch.device = torch.device("cpu"),
             progress: Optional[Callable[[int], None]] = None) -> Generated:
    """Images for `seeds`, each from its own generator in EDM generate.py's order (initial noise
    [C, H, W], then the class label, then (DisCo-Diff) the prior's m uniforms, then the sampler's
    noise), so a seed gives the same image whatever the batch size or process count.
    Latents come from `latents`, or (`prior` + `latent_shape`, as `bench sample` passes them) the
    autoregressive prior. NFE is counted by the sampler for one batch (batches are identical in
    length): denoiser evaluations only; a guided evaluation (cond + null in one batched call) is one."""
    if latents is None and latent_shape is not None:
        if prior is None:
            raise ValueError("a DisCo-Diff denoiser needs its autoregressive prior to sample latents")
        latents = AutoregressiveLatents(prior, spec.temperature)
    elif latents is not None and spec.temperature != 1.0 and not isinstance(latents, AutoregressiveLatents):
        raise ValueError(f"temperature acts on the autoregressive prior; these latents are {latents.name}")
    disco = latents is not None
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
            lat = latents.draw(rnd, y_idx, device)
            if lat.class_idx is not None:   # oracle latents keep their image's class
                y_idx = lat.class_idx
                cond["class_labels"] = torch.eye(label_dim, device=device)[y_idx]
            cond["latent"] = lat.weights
            D = guided(denoiser, spec.cfg)
            lats.append(lat.record)
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
