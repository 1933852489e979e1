"""DiffDock's noise schedules and reverse-SDE step sizes (translation, rotation, torsion).

Facts from gcorso/DiffDock (v1.0-era code; the v1.0 tag commit itself was not pinned):
- ranges: workdir/paper_score_model/model_parameters.yml (tr 0.1-19 A, rot 0.03-1.55, tor 0.0314-3.14);
- sigma(t) = sigma_min^(1-t) * sigma_max^t: utils/diffusion_utils.py `t_to_sigma`;
- t schedule: utils/diffusion_utils.py `get_t_schedule` = linspace(1, 0, steps + 1)[:-1];
- steps, dt, g and the update: utils/sampling.py `sampling`;
- "--inference_steps 20 --actual_steps 18 --no_final_step_noise": the v1.0 README inference/evaluate
  commands (argparse defaults in v1.0 inference.py are actual_steps=None, no_final_step_noise=False).

Reverse step i (SDE):  perturb = g^2 dt score + g sqrt(dt) z,  z ~ N(0, I);  (ODE: 0.5 g^2 dt score).
dt_i = t_i - t_{i+1}, except the last executed step, whose dt is its whole t (it lands on t = 0);
with actual_steps=18 of a 20-step schedule that last step has dt = 0.15.
No final noise: the last executed step uses z = 0.
Sampling temperatures (Ketata et al. 2023, "low-temperature sampling"; DiffDock-L and disco-diffdock
utils/sampling.py temp_sampling / temp_psi / temp_sigma_data, one triple per component; T = 1 is off):
  sigma_data = sigma_min^(1-s) sigma_max^s  (s = temp_sigma_data),
  lambda = (sigma_data + sigma) / (sigma_data + sigma / T),
  perturb = g^2 dt (lambda + T psi / 2) score + g sqrt(dt (1 + psi)) z.
DisCo-Diff App. E.5 tunes them on validation (diffusion temperature < 1 for both models).

g(t) for sigma(t) = min^(1-t) max^t with variance sigma^2: g = sqrt(d sigma^2/dt) = sigma sqrt(2 ln(max/min)).
DiffDock uses that for translation and torsion. For rotation, v1.0 utils/sampling.py has
g_rot = 2 sigma sqrt(ln(max/min)) (g^2 twice the above); DiffDock-L switched to sigma sqrt(2 ln(max/min)),
which is the consistent value since an IGSO(3)(eps) rotation vector has per-axis std ~ eps for small eps
(see so3.py). `rot_g` picks the convention; the default reproduces v1.0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class PoseNoiseConfig:
    tr_sigma_min: float = 0.1      # Angstrom
    tr_sigma_max: float = 19.0
    rot_sigma_min: float = 0.03    # IGSO(3) eps, radians
    rot_sigma_max: float = 1.55
    tor_sigma_min: float = 0.0314  # wrapped-normal sigma, radians
    tor_sigma_max: float = 3.14
    inference_steps: int = 20      # length of the t schedule
    actual_steps: int | None = 18  # steps executed (None: all); v1.0 README uses 18
    no_final_step_noise: bool = True
    rot_g: Literal["v1.0", "consistent"] = "v1.0"

    def __post_init__(self) -> None:
        for name in ("tr", "rot", "tor"):
            lo, hi = getattr(self, f"{name}_sigma_min"), getattr(self, f"{name}_sigma_max")
            if not 0 < lo < hi:
                raise ValueError(f"need 0 < {name}_sigma_min < {name}_sigma_max, got {lo}, {hi}")
        if self.inference_steps < 1:
            raise ValueError(f"inference_steps must be >= 1, got {self.inference_steps}")
        if self.actual_steps is not None and not 1 <= self.actual_steps <= self.inference_steps:
            raise ValueError(f"actual_steps must be in [1, {self.inference_steps}], got {self.actual_steps}")
        if self.rot_g not in ("v1.0", "consistent"):
            raise ValueError(f"rot_g must be 'v1.0' or 'consistent', got {self.rot_g!r}")

    @property
    def n_steps(self) -> int:
        return self.inference_steps if self.actual_steps is None else self.actual_steps


def exp_sigma(t, sigma_min: float, sigma_max: float):
    """sigma(t) = sigma_min^(1-t) sigma_max^t (diffusion_utils.py `t_to_sigma`); t float or tensor."""
    return sigma_min ** (1 - t) * sigma_max ** t


def t_to_sigma(t_tr, t_rot, t_tor, cfg: PoseNoiseConfig) -> tuple:
    """(sigma_tr, sigma_rot, sigma_tor) at the three (possibly different) times."""
    return (exp_sigma(t_tr, cfg.tr_sigma_min, cfg.tr_sigma_max),
            exp_sigma(t_rot, cfg.rot_sigma_min, cfg.rot_sigma_max),
            exp_sigma(t_tor, cfg.tor_sigma_min, cfg.tor_sigma_max))


def t_schedule(inference_steps: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[inference_steps]: 1, 1 - 1/n, ..., 1/n (get_t_schedule: linspace(1, 0, n + 1)[:-1])."""
    return torch.linspace(1.0, 0.0, inference_steps + 1, dtype=dtype)[:-1]


def step_dts(schedule: torch.Tensor, n_steps: int) -> torch.Tensor:
    """[n_steps] dt as in sampling.py: t_i - t_{i+1}, and t_i itself for the last executed step."""
    nxt = torch.cat([schedule[1:n_steps], schedule.new_zeros(1)])
    return schedule[:n_steps] - nxt


def g_coefficients(sigma_tr, sigma_rot, sigma_tor, cfg: PoseNoiseConfig) -> tuple:
    """Diffusion coefficients (g_tr, g_rot, g_tor) at the given sigmas (sampling.py)."""
    def g(sigma, lo, hi):
        return sigma * math.sqrt(2 * math.log(hi / lo))
    g_rot = (2 * sigma_rot * math.sqrt(math.log(cfg.rot_sigma_max / cfg.rot_sigma_min)) if cfg.rot_g == "v1.0"
             else g(sigma_rot, cfg.rot_sigma_min, cfg.rot_sigma_max))
    return (g(sigma_tr, cfg.tr_sigma_min, cfg.tr_sigma_max), g_rot,
            g(sigma_tor, cfg.tor_sigma_min, cfg.tor_sigma_max))


@dataclass(frozen=True)
class ReverseStep:
    t: float            # same t for tr/rot/tor (inference.py passes one schedule to all three)
    dt: float
    sigma_tr: float
    sigma_rot: float
    sigma_tor: float
    g_tr: float
    g_rot: float
    g_tor: float
    add_noise: bool     # False only for the last executed step when no_final_step_noise


def reverse_plan(cfg: PoseNoiseConfig = PoseNoiseConfig()) -> list[ReverseStep]:
    """The executed reverse steps, in order (t decreasing)."""
    ts = t_schedule(cfg.inference_steps)
    dts = step_dts(ts, cfg.n_steps)
    plan = []
    for i in range(cfg.n_steps):
        t = float(ts[i])
        sig = t_to_sigma(t, t, t, cfg)
        last = i == cfg.n_steps - 1
        plan.append(ReverseStep(t, float(dts[i]), *sig, *g_coefficients(*sig, cfg),
                                add_noise=not (last and cfg.no_final_step_noise)))
    return plan


@dataclass(frozen=True)
class LowTemperature:
    """One component's low-temperature sampling setting (see the module docstring)."""
    temperature: float = 1.0   # temp_sampling T (1 = plain reverse SDE)
    psi: float = 0.0           # temp_psi: extra Langevin noise
    sigma_data: float = 0.5    # temp_sigma_data s: sigma_data = sigma_min^(1-s) sigma_max^s

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"sampling temperature must be > 0, got {self.temperature}")
        if self.psi < 0:
            raise ValueError(f"temp_psi must be >= 0, got {self.psi}")

    @property
    def is_off(self) -> bool:
        return self.temperature == 1.0


@dataclass(frozen=True)
class SamplingTemperatures:
    """Low-temperature settings for translation, rotation and torsion (all off by default)."""
    tr: LowTemperature = LowTemperature()
    rot: LowTemperature = LowTemperature()
    tor: LowTemperature = LowTemperature()

    @classmethod
    def uniform(cls, temperature: float, psi: float = 0.0, sigma_data: float = 0.5) -> "SamplingTemperatures":
        t = LowTemperature(temperature, psi, sigma_data)
        return cls(t, t, t)

    @property
    def is_off(self) -> bool:
        return self.tr.is_off and self.rot.is_off and self.tor.is_off


def tempered_perturb(score: torch.Tensor, g: float, dt: float, z: torch.Tensor | None, sigma: float,
                     sigma_min: float, sigma_max: float, temp: LowTemperature) -> torch.Tensor:
    """Reverse-SDE update at sampling temperature temp (= sde_perturb when temp is off); z None: no noise."""
    if temp.is_off:
        return sde_perturb(score, g, dt, z)
    sigma_data = math.exp(temp.sigma_data * math.log(sigma_max) + (1 - temp.sigma_data) * math.log(sigma_min))
    lam = (sigma_data + sigma) / (sigma_data + sigma / temp.temperature)
    out = g ** 2 * dt * (lam + temp.temperature * temp.psi / 2) * score
    return out if z is None else out + g * math.sqrt(dt * (1 + temp.psi)) * z


def sde_perturb(score: torch.Tensor, g: float, dt: float, z: torch.Tensor | None = None) -> torch.Tensor:
    """g^2 dt score + g sqrt(dt) z (z = None: no noise); same shape as score (sampling.py)."""
    out = g ** 2 * dt * score
    return out if z is None else out + g * math.sqrt(dt) * z


def ode_perturb(score: torch.Tensor, g: float, dt: float) -> torch.Tensor:
    """Probability-flow step 0.5 g^2 dt score (sampling.py, ode=True)."""
    return 0.5 * g ** 2 * dt * score
