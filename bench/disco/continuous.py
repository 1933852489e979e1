"""The continuous-latent ablation (DisCo-Diff, Table 3): continuous instead of discrete latents.

The encoder outputs a diagonal Gaussian per latent token (mean and log-variance); the latent is
drawn by reparameterisation and regularised towards N(0, I) by a VAE-style KL term (weight 0.1
or 1 in the paper). The denoiser sees the latent through `ContinuousLatentEmbedding`, which keeps
the discrete latents' null-latent convention (an all-zero row, bench/disco/latents.py), so
latent dropout and guidance work unchanged. The second stage is `LatentDiffusionPrior`: a
DiT-style EDM diffusion model over the [m, d] latents with the AR prior's Transformer.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import nn

from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.loss import EDMLossConfig, edm_loss, sample_sigma
from bench.diffusion.preconditioning import EDMPrecond
from bench.diffusion.samplers import edm_sampler
from bench.nets.adm_unet import PositionalEmbedding

# Log-variance range: exp(logvar) stays finite in float32 (e^20 ~ 5e8) and exp(logvar / 2) does
# not underflow to 0 (e^-15 ~ 3e-7), so neither the sample nor the KL term becomes inf/NaN early
# in training; the same clamp as LDM's DiagonalGaussianDistribution (Rombach et al. 2022).
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def _split_stats(stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """stats [B, m, 2d] -> (mean [B, m, d], clamped logvar [B, m, d])."""
    if stats.ndim != 3 or stats.shape[-1] % 2:
        raise ValueError(f"encoder stats must be [B, m, 2d] (mean, log-variance), got {tuple(stats.shape)}")
    mean, logvar = stats.chunk(2, dim=-1)
    return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


def gaussian_latent(stats: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """stats [B, m, 2d] (mean then log-variance along the last axis), eps [B, m, d] unit Gaussian
    -> (u [B, m, d], kld [B] = KL(N(mean, var) || N(0, I)) summed over m and d)."""
    mean, logvar = _split_stats(stats)
    if eps.shape != mean.shape:
        raise ValueError(f"eps must be {list(mean.shape)}, got {list(eps.shape)}")
    u = mean + (0.5 * logvar).exp() * eps                           # Kingma & Welling 2014, Eq. 10
    kld = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum((1, 2))   # Kingma & Welling 2014, App. B
    return u, kld


def posterior_mean(stats: torch.Tensor) -> torch.Tensor:
    """stats [B, m, 2d] -> mean [B, m, d] (the deterministic latent, e.g. for prior training)."""
    return _split_stats(stats)[0]


def with_presence(u: torch.Tensor) -> torch.Tensor:
    """u [B, m, d] -> [B, m, d + 1] with a last channel of ones (= present). An all-zero row is the
    null latent, as the discrete latents' all-zero one-hot row, so `w * keep` (latent dropout)
    and `zeros_like(latent)` (guidance) in bench/disco/latents.py work unchanged."""
    if u.ndim != 3:
        raise ValueError(f"continuous latents must be [B, m, d], got {tuple(u.shape)}")
    return torch.cat([u, torch.ones_like(u[..., :1])], dim=-1)


class ContinuousLatentEmbedding(nn.Module):
    """w [B, m, d + 1] -> [B, m, dim]: present * (W_i u_i + b_i) + (1 - present) * null_i for each
    latent token i, where u = w[..., :d] and present = w[..., d] (all-zero row = null latent)."""

    def __init__(self, m: int, d: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.m, self.d, self.dim = m, d, dim
        self.weight = nn.Parameter(torch.randn(m, d, dim) * init_std)   # per-token linear map
        self.bias = nn.Parameter(torch.zeros(m, dim))
        self.null = nn.Parameter(torch.zeros(m, dim))                    # as LatentEmbedding's

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim != 3 or w.shape[-2:] != (self.m, self.d + 1):
            raise ValueError(f"continuous latent must be [B, {self.m}, {self.d + 1}] "
                             f"(values + presence), got {tuple(w.shape)}")
        present = w[..., self.d:]                                        # [B, m, 1]: 1, or 0 for null
        mapped = torch.einsum("bmd,mde->bme", w[..., :self.d], self.weight) + self.bias
        return present * mapped + (1 - present) * self.null


@dataclasses.dataclass(frozen=True)
class LatentDiffusionPriorConfig:
    m: int                 # latent tokens (paper: 10)
    d: int                 # dimensions per token (paper: 100, so 1000 in all)
    num_classes: int = 0   # 0: unconditional
    width: int = 64        # the AR prior's Transformer (bench/disco/prior.py ARPriorConfig)
    depth: int = 2
    heads: int = 4
    P_mean: float = -1.2   # EDM's training sigma distribution (Karras et al. 2022, Table 1)
    P_std: float = 1.2
    sampler_steps: int = 18          # EDM Heun steps (NFE 2N - 1)
    sigma_min: float = 0.002         # EDM's sampling range (Karras et al. 2022, Table 1)
    sigma_max: float = 80.0

    def __post_init__(self):
        if self.m < 1 or self.d < 1 or self.num_classes < 0:
            raise ValueError(f"need m, d >= 1 and num_classes >= 0, got {self.m}, {self.d}, {self.num_classes}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.sampler_steps < 1:
            raise ValueError(f"sampler_steps must be >= 1, got {self.sampler_steps}")


class _LatentDiT(nn.Module):
    """The raw network F(x_in [B, m, d], c_noise [B], class_labels [B] or None) -> [B, m, d]:
    DiT's in-context conditioning (Peebles & Xie 2023, Sec. 3.2): class and noise tokens are
    prepended to the latent tokens of a bidirectional Transformer."""

    def __init__(self, cfg: LatentDiffusionPriorConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.inp = nn.Linear(cfg.d, w)
        self.pos = nn.Parameter(torch.randn(cfg.m, w) * 0.02)
        self.cls = nn.Embedding(max(cfg.num_classes, 1), w)   # row 0 = start token if uncond
        # Noise token: an MLP of EDM's sinusoidal embedding of c_noise (DiT's TimestepEmbedder).
        self.noise = nn.Sequential(PositionalEmbedding(w), nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 4 * w, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, cfg.d)
        nn.init.zeros_(self.out.weight)   # DiT's zero-init (Peebles & Xie 2023, Sec. 3.2): F = 0,
        nn.init.zeros_(self.out.bias)     # so D(x; sigma) = c_skip x at initialisation

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        B = x_in.shape[0]
        if self.cfg.num_classes == 0:
            labels = torch.zeros(B, dtype=torch.long, device=x_in.device)
        elif class_labels is None:
            raise ValueError("this prior is class-conditional: pass class labels y")
        else:
            labels = class_labels.long()
        c_noise = c_noise.reshape(-1).expand(B).to(x_in.dtype)
        tokens = self.inp(x_in) + self.pos                                         # [B, m, width]
        h = torch.cat([self.cls(labels)[:, None], self.noise(c_noise)[:, None], tokens], 1)  # [B, 2 + m, width]
        return self.out(self.norm(self.blocks(h))[:, 2:])                          # [B, m, d]


class LatentDiffusionPrior(nn.Module):
    """EDM diffusion over continuous latents u [B, m, d], optionally class-conditional.

    Models x = u / latent_scale with EDM preconditioning at sigma_data = 1 (Karras et al. 2022,
    Table 1); `set_latent_scale` sets the scale from the training latents' std."""

    def __init__(self, cfg: LatentDiffusionPriorConfig):
        super().__init__()
        self.cfg = cfg
        self.precond = EDMPrecond(_LatentDiT(cfg), sigma_data=1.0,
                                  sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)
        self.loss_cfg = EDMLossConfig(P_mean=cfg.P_mean, P_std=cfg.P_std, sigma_data=1.0)
        self.register_buffer("latent_scale", torch.tensor(1.0))
        self.last_nfe = 0

    def set_latent_scale(self, scale: float) -> None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"latent_scale must be finite and > 0, got {scale}")
        self.latent_scale.fill_(scale)

    def _check(self, u: torch.Tensor, y: Optional[torch.Tensor], what: str) -> dict:
        """Validates u [B, m, d] and y; returns the denoiser's conditioning kwargs."""
        m, d = self.cfg.m, self.cfg.d
        if u.ndim != 3 or u.shape[1:] != (m, d):
            raise ValueError(f"{what} must be [B, {m}, {d}], got {tuple(u.shape)}")
        if self.cfg.num_classes == 0:
            return {}
        if y is None:
            raise ValueError("this prior is class-conditional: pass class labels y")
        if y.shape != (u.shape[0],):
            raise ValueError(f"class labels must be [{u.shape[0]}], got {tuple(y.shape)}")
        return {"class_labels": y.to(u.device)}

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """EDM denoiser D(x; sigma, y) on scaled latents x = u / latent_scale, [B, m, d]."""
        return self.precond(x, sigma, **self._check(x, y, "x"))

    def forward(self, u: torch.Tensor, y: Optional[torch.Tensor], sigma: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        """Per-sample EDM loss [B] given the draws sigma [B] and unit noise [B, m, d]: mean over
        m*d of (sigma^2 + 1) / sigma^2 * ||D(x + sigma n; sigma) - x||^2 (EDM Table 1, Eq. 2)."""
        cond = self._check(u, y, "u")
        x = u / self.latent_scale
        return edm_loss(self.precond, x, self.loss_cfg, sigma=sigma, noise=noise, reduce="mean", **cond)

    def draw(self, u: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss's random draws for latents u [B, m, d], from `generator` on the CPU, moved to
        u's device: sigma [B] (ln sigma ~ N(P_mean, P_std^2), EDM Table 1), unit noise [B, m, d].
        Under DDP: `ddp(u, y, *prior.draw(u, generator))`."""
        sigma = sample_sigma(self.loss_cfg, u.shape[0], generator, "cpu").to(u.device)
        noise = torch.randn(u.shape, generator=generator).to(u.device)
        return sigma, noise

    def loss(self, u: torch.Tensor, y: Optional[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Per-sample EDM loss [B] with sigma and noise drawn from `generator` (see `draw`)."""
        self._check(u, y, "u")
        return self(u, y, *self.draw(u, generator))

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """noise [n, m, d] unit Gaussian (one row per sample, from that sample's own seed), y [n]
        or None -> u [n, m, d] in latent units, by EDM's deterministic Heun sampler (Alg. 1)."""
        noise = noise.to(self.latent_scale.device)
        cond = self._check(noise, y, "noise")
        t_steps = edm_sigma_steps(self.cfg.sampler_steps, self.cfg.sigma_min, self.cfg.sigma_max)
        x_T = noise.double() * t_steps[0]   # x_T ~ N(0, sigma_max^2 I)
        x, self.last_nfe = edm_sampler(self.precond, x_T, t_steps, cond=cond)
        return x * self.latent_scale
