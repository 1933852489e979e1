"""W2, curvature, Jacobian norm, purity: against closed forms."""
import math

import numpy as np
import pytest
import torch

from bench.metrics.clustering import coverage, purity
from bench.metrics.ode_geometry import curvature, jacobian, sq_frobenius
from bench.metrics.w2 import gaussian_w2, wasserstein2


def test_w2_exact_translation_and_permutation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    assert wasserstein2(x, x[rng.permutation(300)]) == pytest.approx(0.0, abs=1e-6)  # sqrt of float rounding
    v = np.array([0.3, -0.4])
    assert wasserstein2(x, x + v) == pytest.approx(0.5, rel=1e-9)


def test_w2_against_gaussian_closed_form():
    rng = np.random.default_rng(1)
    m1, m2 = np.zeros(2), np.array([2.0, 1.0])
    S1, S2 = np.diag([1.0, 0.25]), np.array([[0.5, 0.2], [0.2, 0.8]])
    exact = gaussian_w2(m1, S1, m2, S2)
    assert exact == pytest.approx(math.sqrt(5 + np.trace(S1 + S2) - 2 * np.trace(
        __import__("scipy.linalg", fromlist=["sqrtm"]).sqrtm(np.sqrt(S1) @ S2 @ np.sqrt(S1)).real)))
    n = 2000
    est = wasserstein2(rng.multivariate_normal(m1, S1, n), rng.multivariate_normal(m2, S2, n))
    assert est == pytest.approx(exact, abs=0.06)   # finite-sample bias in 2-D is O(n^-1/2)


def test_w2_rejects_bad_shapes():
    with pytest.raises(ValueError):
        wasserstein2(np.zeros((5, 2)), np.zeros((5, 3)))


def test_curvature_of_a_line_is_zero():
    v = lambda x, t: torch.ones_like(x) * torch.tensor([1.0, 2.0], dtype=x.dtype)  # noqa: E731
    k = curvature(v, torch.randn(10, 2), 1.0)
    assert torch.allclose(k, torch.zeros(10, dtype=k.dtype), atol=1e-9)


@pytest.mark.parametrize("r", [0.5, 2.0, 7.0])
def test_curvature_of_a_circle_is_one_over_r(r):
    omega = 3.0
    v = lambda x, t: omega * torch.stack([-x[:, 1], x[:, 0]], 1)  # noqa: E731  (rotation)
    ang = torch.linspace(0, 6, 12)
    x = r * torch.stack([ang.cos(), ang.sin()], 1)
    k = curvature(v, x, 1.0, dt=1e-4)
    assert torch.allclose(k, torch.full_like(k, 1 / r), rtol=1e-3)


def test_jacobian_of_a_linear_map():
    A = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    J = jacobian(lambda x: x @ A.T, torch.randn(7, 2))
    assert torch.allclose(J, A.double().expand(7, 2, 2))
    assert torch.allclose(sq_frobenius(J), torch.full((7,), (A**2).sum().item(), dtype=torch.float64))


def test_jacobian_of_a_nonlinear_map():
    x = torch.tensor([[0.3, -1.2]])
    J = jacobian(lambda x: torch.stack([x[:, 0] ** 2, x[:, 0] * x[:, 1]], 1), x)
    assert torch.allclose(J[0], torch.tensor([[0.6, 0.0], [-1.2, 0.3]], dtype=torch.float64), atol=1e-6)


def test_purity_and_coverage():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert purity(labels.copy(), labels) == 1.0
    assert purity(np.zeros(6, int), labels) == pytest.approx(2 / 6)
    assert coverage(np.zeros(6, int), labels) == pytest.approx(1 / 3)
    assert purity(np.array([0, 0, 1, 1, 1, 1]), labels) == pytest.approx(4 / 6)


def test_diverged_fraction():
    from bench.data.mixture2d import Mixture2DConfig
    from bench.harnesses.toy2d import diverged_fraction
    x = np.array([[0.0, 3.0], [1e6, 0.0], [np.nan, 0.0], [29.0, 0.0]])
    assert diverged_fraction(x, Mixture2DConfig()) == 0.5


def test_w2_equals_an_independent_exact_solver():
    """Equal sizes and uniform weights: the optimal coupling is a permutation (Birkhoff-von Neumann), so
    scipy's assignment solver gives the exact W2 too; POT's network simplex must agree."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(400, 2)), rng.normal(1.0, 2.0, size=(400, 2))
    M = cdist(x, y, "sqeuclidean")
    r, c = linear_sum_assignment(M)
    assert wasserstein2(x, y) == pytest.approx(np.sqrt(M[r, c].mean()), rel=1e-10)
    assert wasserstein2(x, y[:300]) > 0   # unequal sizes
