"""IGSO(3): the isotropic Gaussian on SO(3) that DiffDock uses for the ligand's rotation.

Density w.r.t. the normalised Haar measure, as a function of the rotation angle omega (DiffDock
utils/so3.py `_expansion`, Nikolayev & Savyolova 1997):
    f(omega; eps) = sum_l (2l+1) exp(-l(l+1) eps^2/2) sin((l+1/2) omega) / sin(omega/2)
Marginal of the angle on [0, pi]: p(omega) = f(omega) (1 - cos omega) / pi   (so3.py `_density`).
Score: d/domega log f, placed along the rotation axis: score_vec = s(omega) v/|v|   (so3.py `_score`,
`score_vec`). Loss normaliser: sqrt(E[s^2] / pi)   (so3.py `_exp_score_norms`; the 1/pi is DiffDock's).

The l-series converges slowly for small eps (DiffDock sums L = 2000 terms on fixed tables). Here
eps < 1 uses the Poisson-dual form of the same series (exact; truncated to |k| <= 2 it is the
small-eps formula of Leach et al. 2022, "Denoising diffusion probabilistic models on SO(3)"):
    f = e^(s/4) sqrt(pi) s^(-3/2) / (2 sin(omega/2))
        * sum_k (-1)^k (omega - 2 pi k) exp(-(omega - 2 pi k)^2 / (4s)),
with s = eps^2/2, so the rotation vector is ~ N(0, eps^2 I) for small eps. eps >= 1 uses the l-series
(16 terms) rewritten as a cosine series (Dirichlet kernel), which is stable at omega -> 0.
Sampling: inverse CDF of p on per-eps grids (omega up to min(pi, 12 eps)), uniform axis (so3.py
`sample_vec`). Tables are built lazily in float64 and kept in memory (about 0.5 s on one core).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

_SWITCH = 1.0   # eps below: dual (theta) form; at/above: l-series
_K = 2          # dual terms k = -K..K; neglected terms < exp(-6 pi^2 / s) ~ 1e-51 at eps = 1
_L = 16         # l-series terms; neglected terms < exp(-L(L+1) s) ~ 1e-59 at eps = 1
_F64 = torch.float64


@dataclass(frozen=True)
class IGSO3Tables:
    eps_min: float = 5e-4   # DiffDock so3.py MIN_EPS
    eps_max: float = 4.0    # MAX_EPS
    n_eps: int = 500        # log-spaced rows (DiffDock: 2000, nearest row; here rows are interpolated)
    n_omega: int = 1024     # grid points per row (DiffDock: 2000 on (0, pi])
    tail: float = 12.0      # row grid ends at min(pi, tail * eps): P(omega > 12 eps) < 1e-30


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=_F64)


def _half_cot_gap(w: torch.Tensor) -> torch.Tensor:
    """1/w - cot(w/2)/2, stable as w -> 0 (Taylor: w/12 + w^3/720)."""
    small = w < 1e-3
    ws = torch.where(small, torch.ones_like(w), w)
    return torch.where(small, w / 12 + w ** 3 / 720, 1 / ws - 0.5 / torch.tan(ws / 2))


def _dual(w: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log f, d/dw log f) from the Poisson-dual sum; w, eps: [M]."""
    s = (eps ** 2 / 2)[:, None]
    k = torch.arange(-_K, _K + 1, dtype=_F64)
    k = k[k != 0]
    wk = w[:, None]
    e = torch.exp(math.pi * k * (wk - math.pi * k) / s)        # [M, 2K]; <= 1 on [0, pi]
    sign = (-1.0) ** k
    r = (sign * (wk - 2 * math.pi * k) * e).sum(-1)            # S = w + r
    dr = (sign * e * (1 + math.pi * k * (wk - 2 * math.pi * k) / s)).sum(-1)
    s = s[:, 0]
    big_s = w + r
    log_f = (s / 4 + 0.5 * math.log(math.pi) - 1.5 * torch.log(s) - w ** 2 / (4 * s)
             + torch.log(big_s / (2 * torch.sin(w / 2))))
    # d/dw: -cot(w/2)/2 - w/(2s) + S'/S, regrouped so the 1/w poles cancel analytically.
    score = _half_cot_gap(w) - w / (2 * s) + (w * dr - r) / (w * big_s)
    return log_f, score


def _series(w: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log f, d/dw log f) from the l-series as f = sum_m b_m cos(m w); w, eps: [M]."""
    ell = torch.arange(_L, dtype=_F64)
    c = (2 * ell + 1) * torch.exp(-ell * (ell + 1) * (eps ** 2 / 2)[:, None])   # [M, L]
    b = 2 * c.flip(-1).cumsum(-1).flip(-1)                      # b_m = 2 sum_{l >= m} c_l
    b[:, 0] = b[:, 0] / 2
    mw = ell * w[:, None]
    f = (b * torch.cos(mw)).sum(-1)
    df = -(b * ell * torch.sin(mw)).sum(-1)
    return torch.log(f), df / f


def _eval(omega, eps) -> tuple[torch.Tensor, torch.Tensor]:
    w, e = torch.broadcast_tensors(_t(omega), _t(eps))
    shape = w.shape
    w = w.reshape(-1).clamp(1e-12, math.pi)
    e = e.reshape(-1)
    log_f, score = torch.empty_like(w), torch.empty_like(w)
    for mask, fn in ((e < _SWITCH, _dual), (e >= _SWITCH, _series)):
        if mask.any():
            log_f[mask], score[mask] = fn(w[mask], e[mask])
    return log_f.reshape(shape), score.reshape(shape)


def log_density(omega, eps) -> torch.Tensor:
    """log f(omega; eps): IGSO(3) density on SO(3) w.r.t. normalised Haar measure. Broadcasts."""
    return _eval(omega, eps)[0]


def angle_log_density(omega, eps) -> torch.Tensor:
    """log p(omega): the angle's density on [0, pi], p = f (1 - cos omega) / pi."""
    w = _t(omega)
    return log_density(w, eps) + torch.log((1 - torch.cos(w)) / math.pi)


def angle_score(omega, eps) -> torch.Tensor:
    """s(omega) = d/domega log f(omega; eps) (so3.py `_score`). Broadcasts."""
    return _eval(omega, eps)[1]


def score_vec(rotvec, eps) -> torch.Tensor:
    """Score w.r.t. the rotation vector: s(|v|) v/|v|. rotvec [..., 3], eps [...] -> [..., 3]."""
    v = _t(rotvec)
    w = v.norm(dim=-1).clamp_min(1e-12)
    return (angle_score(w, eps) / w)[..., None] * v


# ----------------------------------------------------------------------------- lazily built tables

def _cumtrapz(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Cumulative trapezoid along the last axis, starting at 0. y, x: [R, N]."""
    seg = 0.5 * (y[:, 1:] + y[:, :-1]) * (x[:, 1:] - x[:, :-1])
    return torch.cat([torch.zeros_like(seg[:, :1]), seg.cumsum(-1)], -1)


def _interp_rows(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise linear interpolation: x [R, M], xp/fp [R, N] (xp non-decreasing) -> [R, M]."""
    i = torch.searchsorted(xp.contiguous(), x.contiguous(), right=True).clamp(1, xp.shape[-1] - 1)
    x0, x1 = xp.gather(-1, i - 1), xp.gather(-1, i)
    f0, f1 = fp.gather(-1, i - 1), fp.gather(-1, i)
    a = ((x - x0) / (x1 - x0).clamp_min(1e-300)).clamp(0, 1)
    return f0 + a * (f1 - f0)


@functools.lru_cache(maxsize=4)
def _tables(cfg: IGSO3Tables) -> dict[str, torch.Tensor]:
    """log_eps [E]; quantile [E, n_omega] (omega at u = j/(n-1)); log_msq [E] = log E[s^2]."""
    log_eps = torch.linspace(math.log(cfg.eps_min), math.log(cfg.eps_max), cfg.n_eps, dtype=_F64)
    eps = log_eps.exp()
    u = torch.linspace(0, 1, cfg.n_omega, dtype=_F64)
    quant, msq = [], []
    for rows in torch.split(torch.arange(cfg.n_eps), 128):
        e = eps[rows][:, None]
        w = torch.clamp(cfg.tail * e, max=math.pi) * u[1:]               # [R, n-1], w > 0
        log_f, s = _eval(w, e)
        pdf = torch.exp(log_f + torch.log((1 - torch.cos(w)) / math.pi))
        w0 = torch.cat([torch.zeros_like(w[:, :1]), w], -1)
        p0 = torch.cat([torch.zeros_like(w[:, :1]), pdf], -1)
        cdf = _cumtrapz(p0, w0)
        mass = cdf[:, -1:]
        quant.append(_interp_rows(u.expand(len(rows), -1) * mass, cdf, w0))
        s0 = torch.cat([torch.zeros_like(w[:, :1]), s], -1)             # s(0) = 0
        msq.append(_cumtrapz(p0 * s0 ** 2, w0)[:, -1] / mass[:, 0])
    return {"log_eps": log_eps, "quantile": torch.cat(quant), "log_msq": torch.cat(msq).log()}


def _row_coords(eps: torch.Tensor, cfg: IGSO3Tables) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional row index into the log-eps grid (clamped to the table): floor and weight."""
    r = (eps.log() - math.log(cfg.eps_min)) / (math.log(cfg.eps_max / cfg.eps_min)) * (cfg.n_eps - 1)
    r = r.clamp(0, cfg.n_eps - 1 - 1e-9)
    r0 = r.floor()
    return r0.long(), r - r0


def sample_angle(eps, generator: torch.Generator | None = None,
                 cfg: IGSO3Tables = IGSO3Tables()) -> torch.Tensor:
    """omega ~ p(omega; eps) by inverse CDF, bilinear in (log eps, u); eps is clamped to the table's
    [eps_min, eps_max] (as DiffDock clamps its row index). eps [B] -> [B] float64."""
    eps = _t(eps).reshape(-1)
    tab = _tables(cfg)
    r0, a = _row_coords(eps, cfg)
    c = torch.rand(eps.shape, generator=generator, dtype=_F64) * (cfg.n_omega - 1)
    c0 = c.floor().long().clamp(max=cfg.n_omega - 2)
    b = c - c0
    q = tab["quantile"]

    def at(row):
        return (1 - b) * q[row, c0] + b * q[row, c0 + 1]
    return (1 - a) * at(r0) + a * at(r0 + 1)


def sample_rotvec(eps, generator: torch.Generator | None = None,
                  cfg: IGSO3Tables = IGSO3Tables()) -> torch.Tensor:
    """Rotation vectors ~ IGSO(3)(eps): angle by inverse CDF, axis uniform on S^2. eps [B] -> [B, 3]."""
    omega = sample_angle(eps, generator, cfg)
    axis = torch.randn(omega.shape + (3,), generator=generator, dtype=_F64)
    return axis / axis.norm(dim=-1, keepdim=True) * omega[:, None]


def mean_sq_score(eps, cfg: IGSO3Tables = IGSO3Tables()) -> torch.Tensor:
    """E_omega[s(omega)^2], interpolated in log-log; below eps_min its limit 3/eps^2. eps [...] -> [...]."""
    eps = _t(eps)
    tab = _tables(cfg)
    r0, a = _row_coords(eps.reshape(-1), cfg)
    m = tab["log_msq"]
    m = ((1 - a) * m[r0] + a * m[r0 + 1]).exp().reshape(eps.shape)
    return torch.where(eps < cfg.eps_min, 3 / eps ** 2, m)


def score_norm(eps, cfg: IGSO3Tables = IGSO3Tables()) -> torch.Tensor:
    """DiffDock's rotation loss normaliser sqrt(E[s^2] / pi) (so3.py `score_norm`)."""
    return (mean_sq_score(eps, cfg) / math.pi).sqrt()


# ----------------------------------------------------------------------------- axis-angle helpers

def random_rotations(n: int, generator: torch.Generator | None = None, dtype: torch.dtype = _F64) -> torch.Tensor:
    """[n, 3, 3] Haar-uniform rotations from normalised Gaussian quaternions (w, x, y, z); draws randn [n, 4]."""
    q = torch.randn(n, 4, generator=generator, dtype=_F64)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1)
    return R.reshape(n, 3, 3).to(dtype)


def rotvec_to_matrix(v) -> torch.Tensor:
    """Rodrigues: R = I + A K + B K^2, A = sin(w)/w, B = (1 - cos w)/w^2. v [..., 3] -> [..., 3, 3]."""
    v = torch.as_tensor(v)
    v = v if v.is_floating_point() else v.to(_F64)
    w2 = (v * v).sum(-1)
    w = w2.sqrt()
    small = w < 1e-4
    ws = torch.where(small, torch.ones_like(w), w)
    a = torch.where(small, 1 - w2 / 6, torch.sin(ws) / ws)
    b = torch.where(small, 0.5 - w2 / 24, (1 - torch.cos(ws)) / ws ** 2)
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    k = torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape + (3,))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_rotvec(m) -> torch.Tensor:
    """Inverse of rotvec_to_matrix via a quaternion (largest-component branch). [..., 3, 3] -> [..., 3]."""
    m = torch.as_tensor(m)
    m = m if m.is_floating_point() else m.to(_F64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 q_i q_j candidates; each row is (w, x, y, z) scaled by 4 q_c for the chosen component c.
    cand = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                     m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                     m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m00 - m11 + m22], -1)], -2)                     # [..., 4, 4]
    diag = torch.diagonal(cand, dim1=-2, dim2=-1)
    best = diag.argmax(-1, keepdim=True)
    q = cand.gather(-2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)                                  # w >= 0: angle in [0, pi]
    sin_half = q[..., 1:].norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, q[..., 0])
    scale = torch.where(sin_half < 1e-8, 2.0 / q[..., 0].clamp_min(1e-12),
                        angle / sin_half.clamp_min(1e-300))
    return q[..., 1:] * scale[..., None]
