"""PFGM++'s perturbation kernel (baselines/pfgmpp.py) against its analytic law, and its D -> infinity limit."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from baselines.pfgmpp import PFGMPPConfig, perturbation_radius_beta, pfgmpp_loss, prior_latents, unit_perturbation
from bench.diffusion.loss import EDMLossConfig


def _radii(N: int, D: int, sigma: float, n: int, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return (unit_perturbation((n, N), D, g, dtype=torch.float64) * sigma).norm(dim=1).numpy()


@pytest.mark.parametrize("N,D,sigma", [(1024, 128, 0.7), (3072, 128, 20.0), (16, 4, 1.0)])
def test_radius_follows_the_beta_prime_law(N, D, sigma):
    """R^2 / (R^2 + r^2) ~ Beta(N/2, D/2), r = sigma sqrt(D) (PFGM++; pfgmpp's training/loss.py draws this Beta)."""
    b = perturbation_radius_beta(torch.as_tensor(_radii(N, D, sigma, 4000)), sigma, D).numpy()
    assert stats.kstest(b, stats.beta(N / 2, D / 2).cdf).pvalue > 1e-3


def test_radius_density_is_the_pfgmpp_kernel():
    """The kernel itself, integrated numerically: p(R) ∝ R^(N-1) / (R^2 + r^2)^((N+D)/2) (the N-dim shell of
    p_r(y|x) ∝ (||y-x||^2 + r^2)^(-(N+D)/2)); no Beta involved."""
    N, D, sigma = 6, 5, 1.3
    r = sigma * math.sqrt(D)
    dens = lambda R: R ** (N - 1) / (R ** 2 + r ** 2) ** ((N + D) / 2)   # noqa: E731
    Z = integrate.quad(dens, 0, np.inf)[0]
    grid = np.linspace(0, 60, 3001)
    cdf_grid = np.concatenate([[0], np.cumsum([integrate.quad(dens, a, b)[0] for a, b in zip(grid[:-1], grid[1:])])]) / Z
    radii = _radii(N, D, sigma, 4000, seed=1)
    assert stats.kstest(radii, lambda x: np.interp(x, grid, cdf_grid)).pvalue > 1e-3


def test_direction_is_uniform():
    g = torch.Generator().manual_seed(2)
    n = unit_perturbation((20000, 3), 8, g, dtype=torch.float64)
    u = (n / n.norm(dim=1, keepdim=True)).numpy()
    assert np.abs(u.mean(0)).max() < 0.02                        # no preferred direction
    assert np.allclose(u.T @ u / len(u), np.eye(3) / 3, atol=0.01)   # isotropic second moment
    # on the sphere S^2, each coordinate of a uniform direction is U(-1, 1) (Archimedes)
    assert stats.kstest(u[:, 2], stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_large_D_recovers_the_gaussian_perturbation():
    """D -> infinity: the kernel tends to EDM's N(0, sigma^2 I) (PFGM++ Sec. 4)."""
    g = torch.Generator().manual_seed(3)
    x = unit_perturbation((2000, 64), 5000, g, dtype=torch.float64).numpy()
    assert stats.kstest(x.reshape(-1)[:50000], stats.norm.cdf).pvalue > 1e-3
    assert stats.kstest(np.linalg.norm(x, axis=1), stats.chi(64).cdf).pvalue > 1e-3
    # at small D the tails are heavier than Gaussian (Student-t with D degrees of freedom)
    small = unit_perturbation((2000, 64), 4, torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    assert np.quantile(np.abs(small), 0.999) > 1.5 * np.quantile(np.abs(x), 0.999)


def test_prior_latents_have_one_generator_per_seed():
    a = prior_latents((1, 4, 4), [3, 5, 7], sigma_max=80.0, D=128)
    b = prior_latents((1, 4, 4), [5], sigma_max=80.0, D=128)
    assert a.shape == (3, 1, 4, 4) and a.dtype == torch.float64
    assert torch.equal(a[1:2], b)                                # a sample does not depend on its batch
    r = a.flatten(1).norm(dim=1)
    assert (r > 0).all() and torch.isfinite(r).all()


def test_loss_is_edms_with_the_pfgmpp_noise():
    cfg, pfgm = EDMLossConfig(), PFGMPPConfig(D=128)
    y = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ident = lambda x, sigma, **_: torch.zeros_like(x)   # noqa: E731  (D(x) = 0: the loss is w(sigma) ||y||^2)
    loss = pfgmpp_loss(ident, y, cfg, pfgm, torch.Generator().manual_seed(1))
    from bench.diffusion.loss import loss_weight, sample_sigma
    sigma = sample_sigma(cfg, 5, torch.Generator().manual_seed(1))
    assert torch.allclose(loss, loss_weight(sigma, cfg.sigma_data) * (y ** 2).flatten(1).mean(1))
    with pytest.raises(ValueError, match="D >= 1"):
        PFGMPPConfig(D=0)


@pytest.mark.parametrize("D", [2, 128])
def test_heun_from_the_prior_with_the_exact_posterior_reproduces_the_data(D):
    """End to end: EDM's Heun ODE in sigma, started from the PFGM++ prior at sigma_max = 80 and driven by the
    exact PFGM++ denoiser of a 5-point dataset (posterior weights ∝ (||y - x_i||^2 + r^2)^(-(N+D)/2)), lands on
    the points with the data's frequencies (0.6 / 0.2 / 0.2): kernel, prior and ODE belong together."""
    from bench.diffusion.discretisation import edm_sigma_steps
    from bench.diffusion.samplers import heun_sampler

    pts = torch.tensor([[-2.0, 0.0]] * 3 + [[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    N = pts.shape[1]

    def exact_denoiser(x, sigma, **_):
        r2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2 * D
        d2 = ((x[:, None, :] - pts[None]) ** 2).sum(-1)
        return torch.softmax(-(N + D) / 2 * torch.log(d2 + r2), 1) @ pts

    n = 4000
    x, nfe = heun_sampler(exact_denoiser, prior_latents((N,), range(n), 80.0, D), edm_sigma_steps(100, 0.002, 80.0))
    nearest = ((x[:, None] - pts[None]) ** 2).sum(-1).argmin(1)
    got = np.array([(nearest < 3).double().mean().item(), (nearest == 3).double().mean().item(),
                    (nearest == 4).double().mean().item()])
    se = np.sqrt(np.array([0.6, 0.2, 0.2]) * np.array([0.4, 0.8, 0.8]) / n)
    assert np.all(np.abs(got - [0.6, 0.2, 0.2]) < 4 * se), got
    assert nfe == 199
