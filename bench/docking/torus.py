"""Wrapped normal on the circle: DiffDock's torsion-angle noise (gcorso/DiffDock utils/torus.py).

p(x; sigma) = sum_k N(x + 2 pi k; 0, sigma^2)         (torus.py `p`, without the 1/sqrt(2 pi sigma^2))
score(x) = d/dx log p = -sum_k w_k (x + 2 pi k) / sigma^2,  w_k = softmax_k(-(x + 2 pi k)^2 / (2 sigma^2))
sample: sigma * N(0, 1) wrapped to [-pi, pi)           (torus.py `sample`)
loss normaliser: E_x~p[score(x)^2], not square-rooted  (torus.py `score_norm`; utils/training.py divides by
                                                       it as `tor_score_norm2`: (pred - score)^2 / E[s^2])
DiffDock tabulates p and the score on log grids (sigma in [3e-3 pi, 2 pi], nearest-cell lookup, +1e-5 in
the score's denominator) and estimates E[score^2] by Monte Carlo with 10000 draws per sigma. Here p and the
score are evaluated directly (log-sum-exp over |k| <= n_wrap; n_wrap = 10 is exact to float64 for
sigma <= 2 pi) and E[score^2] by periodic quadrature on a lazily built, in-memory table over the same
sigma range, interpolated in log-log; below the range it is the unwrapped limit 1/sigma^2.
"""
from __future__ import annotations

import functools
import math

import torch

_F64 = torch.float64
SIGMA_MIN, SIGMA_MAX, N_SIGMA = 3e-3 * math.pi, 2 * math.pi, 300   # table range: DiffDock torus.py
N_X = 1024   # quadrature points on [-pi, pi); spacing < 0.7 SIGMA_MIN, error ~ exp(-2 pi^2 0.65^-2)


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=_F64)


def wrap(x) -> torch.Tensor:
    """Map angles to [-pi, pi)."""
    return torch.remainder(_t(x) + math.pi, 2 * math.pi) - math.pi


def _shifted(x, sigma, n_wrap: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, sigma = torch.broadcast_tensors(wrap(x), _t(sigma))
    k = torch.arange(-n_wrap, n_wrap + 1, dtype=_F64)
    y = x[..., None] + 2 * math.pi * k                       # [..., 2 n_wrap + 1]
    return y, sigma[..., None]


def log_density(x, sigma, n_wrap: int = 10) -> torch.Tensor:
    """log p(x; sigma), normalised on [-pi, pi). x, sigma broadcast -> same shape."""
    y, s = _shifted(x, sigma, n_wrap)
    return torch.logsumexp(-y ** 2 / (2 * s ** 2), -1) - 0.5 * torch.log(2 * math.pi * s[..., 0] ** 2)


def density(x, sigma, n_wrap: int = 10) -> torch.Tensor:
    return log_density(x, sigma, n_wrap).exp()


def score(x, sigma, n_wrap: int = 10) -> torch.Tensor:
    """d/dx log p(x; sigma); softmax weights keep it finite for tiny sigma."""
    y, s = _shifted(x, sigma, n_wrap)
    w = torch.softmax(-y ** 2 / (2 * s ** 2), -1)
    return -(w * y).sum(-1) / s[..., 0] ** 2


def sample(sigma, generator: torch.Generator | None = None) -> torch.Tensor:
    """x ~ p(.; sigma) in [-pi, pi); sigma [...] -> [...]."""
    sigma = _t(sigma)
    return wrap(sigma * torch.randn(sigma.shape, generator=generator, dtype=_F64))


@functools.lru_cache(maxsize=1)
def _table() -> tuple[torch.Tensor, torch.Tensor]:
    """(log sigma [N_SIGMA], log E[score^2] [N_SIGMA]) by the periodic trapezoid rule."""
    log_s = torch.linspace(math.log(SIGMA_MIN), math.log(SIGMA_MAX), N_SIGMA, dtype=_F64)
    x = -math.pi + 2 * math.pi * torch.arange(N_X, dtype=_F64) / N_X
    out = []
    for chunk in torch.split(log_s.exp(), 64):
        y, s = _shifted(x, chunk[:, None], 10)                   # [R, N_X, 21], [R, 1, 1]
        logits = -y ** 2 / (2 * s ** 2)
        p = logits.logsumexp(-1).exp()                           # unnormalised density [R, N_X]
        sc = -(torch.softmax(logits, -1) * y).sum(-1) / s[..., 0] ** 2
        out.append(((sc ** 2 * p).sum(-1) / p.sum(-1)).log())
    return log_s, torch.cat(out)


def mean_sq_score(sigma) -> torch.Tensor:
    """E_x~p[score(x; sigma)^2] (DiffDock torus.py `score_norm`). sigma [...] -> [...]."""
    sigma = _t(sigma)
    log_s, log_m = _table()
    r = (sigma.log() - log_s[0]) / (log_s[1] - log_s[0])
    r = r.clamp(0, N_SIGMA - 1 - 1e-9)
    r0 = r.floor().long()
    a = r - r0
    m = ((1 - a) * log_m[r0] + a * log_m[r0 + 1]).exp()
    return torch.where(sigma < SIGMA_MIN, 1 / sigma ** 2, m)
