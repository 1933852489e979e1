"""DiffDock pose-diffusion math: schedules, wrapped normal, IGSO(3), torsion and rigid updates."""
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.transform import Rotation

from bench.docking import noise, so3, torsion, torus
from bench.docking.noise import PoseNoiseConfig

F64 = torch.float64


def _fd(fn, x, h):
    return (fn(x + h) - fn(x - h)) / (2 * h)


def _chi2_pvalue(samples, grid, pdf, bins=20):
    """Equal-probability bins from the CDF of pdf on grid (trapezoid); chi-square p-value."""
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    edges = np.interp(np.linspace(0, 1, bins + 1), cdf / cdf[-1], grid)
    edges[0], edges[-1] = -np.inf, np.inf
    counts = np.histogram(samples, edges)[0]
    expected = len(samples) / bins
    return stats.chi2.sf(((counts - expected) ** 2 / expected).sum(), bins - 1)


# ---------------------------------------------------------------------------------------- noise

def test_schedule_endpoints_equal_configured_range():
    cfg = PoseNoiseConfig()
    assert noise.t_to_sigma(0.0, 0.0, 0.0, cfg) == pytest.approx((0.1, 0.03, 0.0314), rel=1e-12)
    assert noise.t_to_sigma(1.0, 1.0, 1.0, cfg) == pytest.approx((19.0, 1.55, 3.14), rel=1e-12)
    t = torch.linspace(0, 1, 11, dtype=F64)
    tr = noise.exp_sigma(t, 0.1, 19.0)
    assert torch.all(tr[1:] > tr[:-1])
    assert torch.allclose(tr.log(), (1 - t) * math.log(0.1) + t * math.log(19.0))


def test_inference_time_schedule_and_steps():
    ts = noise.t_schedule(20)
    assert ts.shape == (20,) and ts[0] == 1.0 and ts[-1].item() == pytest.approx(0.05)
    assert torch.allclose(ts[:-1] - ts[1:], torch.full((19,), 0.05, dtype=F64))
    full = noise.reverse_plan(PoseNoiseConfig(actual_steps=None))
    assert len(full) == 20 and sum(s.dt for s in full) == pytest.approx(1.0)
    assert [s.dt for s in full] == pytest.approx([0.05] * 20)
    plan = noise.reverse_plan(PoseNoiseConfig())            # v1.0 README: 18 of 20, no final noise
    assert len(plan) == 18 and sum(s.dt for s in plan) == pytest.approx(1.0)
    assert [s.dt for s in plan] == pytest.approx([0.05] * 17 + [0.15])
    assert [s.add_noise for s in plan] == [True] * 17 + [False]
    assert plan[0].sigma_tr == pytest.approx(19.0) and plan[0].t == 1.0
    with pytest.raises(ValueError):
        PoseNoiseConfig(actual_steps=21)


def test_g_matches_variance_growth():
    t, h = 0.37, 1e-6
    for conv in ("v1.0", "consistent"):
        cfg = PoseNoiseConfig(rot_g=conv)
        g = noise.g_coefficients(*noise.t_to_sigma(t, t, t, cfg), cfg)
        dvar = [_fd(lambda x: noise.t_to_sigma(x, x, x, cfg)[i] ** 2, t, h) for i in range(3)]
        assert g[0] ** 2 == pytest.approx(dvar[0], rel=1e-6)
        assert g[2] ** 2 == pytest.approx(dvar[2], rel=1e-6)
        assert g[1] ** 2 == pytest.approx(dvar[1] * (2 if conv == "v1.0" else 1), rel=1e-6)
    z = torch.ones(3, dtype=F64)
    assert torch.allclose(noise.sde_perturb(z, 2.0, 0.25, z), 4 * 0.25 * z + 2 * 0.5 * z)
    assert torch.allclose(noise.ode_perturb(z, 2.0, 0.25), 0.5 * z)


# ---------------------------------------------------------------------------------------- torus

@pytest.mark.parametrize("sigma", [0.0314, 0.1, 0.5, 1.0, 3.14])
def test_torus_score_matches_finite_difference(sigma):
    x = torch.tensor([-3.1, -1.0, -0.3 * sigma, 0.0, 0.7 * sigma, 2.0 * sigma, 3.13], dtype=F64)
    x = x[torus.log_density(x, sigma) > -300]                  # where the density is representable
    h = 1e-5 * min(sigma, 1.0)
    fd = _fd(lambda y: torus.log_density(y, sigma), x, h)
    assert torch.allclose(torus.score(x, sigma), fd, rtol=1e-6, atol=1e-6 / sigma ** 2)
    assert torch.allclose(torus.score(x + 2 * math.pi, sigma), torus.score(x, sigma))   # periodic


@pytest.mark.parametrize("sigma", [0.0314, 0.5, 3.14, 6.0])
def test_torus_density_integrates_to_one(sigma):
    x = -math.pi + 2 * math.pi * torch.arange(8192, dtype=F64) / 8192
    assert (torus.density(x, sigma).sum() * 2 * math.pi / 8192).item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("sigma", [0.3, 1.5, 3.14])
def test_torus_samples_match_density_and_score_norm(sigma):
    g = torch.Generator().manual_seed(0)
    xs = torus.sample(torch.full((20000,), sigma), g)
    assert xs.min() >= -math.pi and xs.max() < math.pi
    grid = torch.linspace(-math.pi, math.pi, 20001, dtype=F64)
    assert _chi2_pvalue(xs.numpy(), grid.numpy(), torus.density(grid, sigma).numpy()) > 1e-3
    mc = (torus.score(xs, sigma) ** 2).mean().item()
    assert torus.mean_sq_score(sigma).item() == pytest.approx(mc, rel=0.05)


def test_torus_score_norm_limits():
    s = torch.tensor([0.001, 0.0314, 0.05], dtype=F64)
    assert torch.allclose(torus.mean_sq_score(s), 1 / s ** 2, rtol=1e-3)   # unwrapped Gaussian
    assert torus.mean_sq_score(3.14).item() < 0.01                        # nearly uniform


# ---------------------------------------------------------------------------------------- SO(3)

def _naive_f(omega, eps, L=4000):
    """DiffDock so3.py `_expansion`, summed directly (reference only)."""
    ell = np.arange(L)[:, None]
    return ((2 * ell + 1) * np.exp(-ell * (ell + 1) * eps ** 2 / 2)
            * np.sin(omega * (ell + 0.5)) / np.sin(omega / 2)).sum(0)


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0, 2.0])
def test_igso3_density_matches_l_series(eps):
    w = np.linspace(0.02 * eps, min(math.pi, 5 * eps), 25)
    ref = _naive_f(w, eps)
    assert np.allclose(so3.log_density(w, eps).exp().numpy(), ref, rtol=1e-9)


def test_igso3_dual_and_series_forms_agree():
    w = torch.linspace(1e-4, math.pi, 200, dtype=F64)
    for e in (0.6, 1.0, 1.4):
        eps = torch.full_like(w, e)
        (lf_d, s_d), (lf_s, s_s) = so3._dual(w, eps), so3._series(w, eps)
        assert torch.allclose(lf_d, lf_s, atol=1e-10) and torch.allclose(s_d, s_s, atol=1e-9)


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.5, 0.999, 1.0, 1.55, 3.0])
def test_igso3_angle_score_matches_finite_difference(eps):
    w = torch.linspace(0.05 * eps, min(math.pi - 0.01, 4 * eps), 15, dtype=F64)
    h = 1e-5 * eps
    fd = _fd(lambda x: so3.log_density(x, eps), w, h)
    assert torch.allclose(so3.angle_score(w, eps), fd, rtol=1e-6, atol=1e-7 / eps ** 2)


def test_igso3_score_vec_is_gradient_of_log_density():
    eps, h = 0.4, 1e-6
    v = torch.tensor([[0.1, -0.2, 0.3], [0.5, 0.4, -0.1], [1e-7, 0.0, 0.0]], dtype=F64)
    grad = torch.stack([(so3.log_density((v + h * e).norm(dim=-1), eps)
                         - so3.log_density((v - h * e).norm(dim=-1), eps)) / (2 * h)
                        for e in torch.eye(3, dtype=F64)], -1)
    assert torch.allclose(so3.score_vec(v, eps)[:2], grad[:2], rtol=1e-6)
    assert so3.score_vec(v, eps)[2].norm() < 1e-5                         # s(0) = 0, no 0/0


@pytest.mark.parametrize("eps", [0.03, 0.3, 1.0, 1.55, 4.0])
def test_igso3_density_integrates_to_one_under_haar(eps):
    w = torch.linspace(0, math.pi, 40001, dtype=F64)[1:]
    p = so3.angle_log_density(w, eps).exp()
    assert torch.trapezoid(p, w).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("eps", [0.03, 0.3, 1.0, 1.55])
def test_igso3_sampled_angles_match_density(eps):
    g = torch.Generator().manual_seed(1)
    v = so3.sample_rotvec(torch.full((20000,), eps), g)
    w = v.norm(dim=-1)
    grid = torch.linspace(0, math.pi, 40001, dtype=F64)[1:]
    pdf = so3.angle_log_density(grid, eps).exp()
    assert _chi2_pvalue(w.numpy(), grid.numpy(), pdf.numpy()) > 1e-3
    assert (v / w[:, None]).mean(0).norm() < 0.03                         # uniform axis


def test_igso3_is_brownian_motion_with_per_axis_variance_eps2():
    """Composing n rotations exp(N(0, eps^2/n I)) approaches IGSO(3)(eps): checks the eps convention."""
    eps, n, m = 0.8, 200, 3000
    g = torch.Generator().manual_seed(2)
    r = torch.eye(3, dtype=F64).expand(m, 3, 3)
    for _ in range(n):
        r = r @ so3.rotvec_to_matrix(torch.randn(m, 3, generator=g, dtype=F64) * eps / math.sqrt(n))
    w = so3.matrix_to_rotvec(r).norm(dim=-1).numpy()
    grid = np.linspace(0, math.pi, 20001)[1:]
    pdf = so3.angle_log_density(grid, eps).exp().numpy()
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    assert stats.kstest(w, lambda x: np.interp(x, grid, cdf / cdf[-1])).pvalue > 1e-3


def test_igso3_expected_score_norm():
    eps = torch.tensor([0.001, 0.01], dtype=F64)
    assert torch.allclose(so3.mean_sq_score(eps), 3 / eps ** 2, rtol=2e-3)   # -> N(0, eps^2 I)
    g = torch.Generator().manual_seed(3)
    for e in (0.2, 0.8, 1.5):
        w = so3.sample_angle(torch.full((40000,), e), g)
        mc = (so3.angle_score(w, e) ** 2).mean().item()
        assert so3.mean_sq_score(e).item() == pytest.approx(mc, rel=0.04)
    assert torch.allclose(so3.score_norm(eps), (so3.mean_sq_score(eps) / math.pi).sqrt())


def test_axis_angle_matrix_round_trip():
    g = torch.Generator().manual_seed(4)
    axis = torch.randn(500, 3, generator=g, dtype=F64)
    angle = torch.cat([torch.rand(497, generator=g, dtype=F64) * math.pi,
                       torch.tensor([0.0, 1e-9, math.pi - 1e-7], dtype=F64)])
    v = axis / axis.norm(dim=-1, keepdim=True) * angle[:, None]
    m = so3.rotvec_to_matrix(v)
    assert np.allclose(m.numpy(), Rotation.from_rotvec(v.numpy()).as_matrix(), atol=1e-12)
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3, dtype=F64).expand_as(m), atol=1e-12)
    assert torch.allclose(so3.matrix_to_rotvec(m)[:-1], v[:-1], atol=1e-9)
    assert torch.allclose(so3.rotvec_to_matrix(so3.matrix_to_rotvec(m)), m, atol=1e-9)


# ---------------------------------------------------------------------------------------- torsions

def _molecule(seed=0):
    """Hexagonal ring 0-5, chain 5-6-7-8-9 with branches 7-10-11 and 8-12 (1.5 A bonds)."""
    edges = [(i, (i + 1) % 6) for i in range(6)] + [(5, 6), (6, 7), (7, 8), (8, 9), (7, 10),
                                                    (10, 11), (8, 12)]
    rng = np.random.default_rng(seed)
    pos = np.zeros((13, 3))
    pos[:6, :2] = 1.5 * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], 1)
    for child, parent in [(6, 5), (7, 6), (8, 7), (9, 8), (10, 7), (11, 10), (12, 8)]:
        d = rng.normal(size=3)
        pos[child] = pos[parent] + 1.5 * d / np.linalg.norm(d)
    return np.asarray(edges), pos


def test_rotatable_bonds_and_masks():
    edges, _ = _molecule()
    bonds, masks = torsion.find_rotatable_bonds(edges, 13)
    assert sorted(map(tuple, bonds.tolist())) == [(6, 5), (6, 7), (7, 8), (7, 10)]
    expect = {(6, 5): range(6), (6, 7): [7, 8, 9, 10, 11, 12], (7, 8): [8, 9, 12], (7, 10): [10, 11]}
    for b, m in zip(map(tuple, bonds.tolist()), masks):
        assert set(np.flatnonzero(m)) == set(expect[b])
    assert np.array_equal(torsion.rotatable_bond_masks(edges, 13, bonds.tolist()), masks)
    assert set(np.flatnonzero(torsion.rotatable_bond_masks(edges, 13, [(8, 7)])[0])) == {0, 1, 2, 3, 4, 5,
                                                                                          6, 7, 10, 11}
    with pytest.raises(ValueError, match="ring"):
        torsion.rotatable_bond_masks(edges, 13, [(0, 1)])


@pytest.mark.parametrize("as_torch", [False, True])
def test_torsion_updates_invert_and_keep_bond_lengths(as_torch):
    edges, pos = _molecule()
    bonds, masks = torsion.find_rotatable_bonds(edges, 13)
    theta = np.array([0.4, -1.3, 2.9, -0.05])
    x = torch.tensor(pos, dtype=torch.float32) if as_torch else pos
    moved = torsion.apply_torsion_updates(x, bonds, masks, theta)
    assert type(moved) is type(x) and moved.dtype == x.dtype
    back = torsion.apply_torsion_updates(moved, bonds[::-1], masks[::-1], -theta[::-1])
    assert np.allclose(np.asarray(back), np.asarray(x), atol=1e-5)
    m = np.asarray(moved, dtype=np.float64)
    assert not np.allclose(m, pos, atol=1e-2)
    lengths = lambda p: np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=1)   # noqa: E731
    assert np.allclose(lengths(m), lengths(pos), atol=1e-5)


def test_torsion_update_changes_dihedral_by_the_angle():
    edges, pos = _molecule(seed=5)
    bonds, masks = torsion.find_rotatable_bonds(edges, 13)
    quads = torsion.torsion_quadruplets(edges, bonds)
    theta = np.array([0.7, -2.2, 1.9, 3.0])
    before = torsion.torsion_angles(pos, quads)
    after = torsion.torsion_angles(torsion.apply_torsion_updates(pos, bonds, masks, theta), quads)
    change = (after - before + np.pi) % (2 * np.pi) - np.pi
    assert np.allclose(change, (-theta + np.pi) % (2 * np.pi) - np.pi, atol=1e-10)   # DiffDock: -theta
    # against an independent dihedral: scipy-free formula on one quadruplet
    a, u, v, b = pos[quads[0]]
    n1, n2 = np.cross(u - a, v - u), np.cross(v - u, b - v)
    ref = math.atan2(np.dot(np.cross(n1, n2), (v - u) / np.linalg.norm(v - u)), np.dot(n1, n2))
    assert before[0] == pytest.approx(ref, abs=1e-12)


def test_rigid_update_and_modify_conformer():
    edges, pos = _molecule()
    bonds, masks = torsion.find_rotatable_bonds(edges, 13)
    rot, tr = np.array([0.3, -1.1, 0.8]), np.array([1.0, -2.0, 0.5])
    spun = torsion.rigid_update(pos, np.zeros(3), rot)
    assert np.allclose(spun.mean(0), pos.mean(0), atol=1e-12)                   # centre is kept
    assert np.allclose(spun - spun.mean(0), (pos - pos.mean(0)) @ Rotation.from_rotvec(rot).as_matrix().T)
    rigid = torsion.rigid_update(pos, tr, rot)
    assert np.allclose(rigid.mean(0), pos.mean(0) + tr)
    assert np.allclose(torsion.modify_conformer(pos, tr, rot), rigid)
    theta = np.array([1.0, -0.5, 2.0, 0.3])
    full = torsion.modify_conformer(pos, tr, rot, theta, bonds, masks)
    assert np.allclose(full.mean(0), rigid.mean(0), atol=1e-10)                 # Kabsch keeps the centre
    flex = torsion.apply_torsion_updates(rigid, bonds, masks, theta)
    dist = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)             # noqa: E731
    assert np.allclose(dist(full), dist(flex), atol=1e-10)                      # alignment is rigid
    assert np.sum((full - rigid) ** 2) <= np.sum((flex - rigid) ** 2) + 1e-12


def test_torsion_updates_are_differentiable():
    edges, pos = _molecule()
    bonds, masks = torsion.find_rotatable_bonds(edges, 13)
    theta = torch.tensor([0.2, 0.1, -0.3, 0.4], dtype=F64, requires_grad=True)
    out = torsion.apply_torsion_updates(torch.tensor(pos), bonds, masks, theta)
    out.sum().backward()
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0
