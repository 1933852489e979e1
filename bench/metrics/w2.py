"""Wasserstein-2 between two point clouds by exact optimal transport (POT's network simplex)."""
from __future__ import annotations

import numpy as np


def wasserstein2(x: np.ndarray, y: np.ndarray, max_iter: int = 10_000_000) -> float:
    """W2 between the empirical measures of x [n, d] and y [m, d], uniform weights.

    W2^2 = min over couplings P of sum_ij P_ij ||x_i - y_j||^2.
    """
    import ot

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need point clouds [n, d] and [m, d], got {x.shape} and {y.shape}")
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    M = ot.dist(x, y, metric="sqeuclidean")
    cost = ot.emd2(a, b, M, numItermax=max_iter)
    return float(np.sqrt(max(cost, 0.0)))


def gaussian_w2(m1: np.ndarray, S1: np.ndarray, m2: np.ndarray, S2: np.ndarray) -> float:
    """Closed form between N(m1, S1) and N(m2, S2) (Dowson & Landau 1982; Givens & Shortt 1984):
    W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)."""
    from scipy.linalg import sqrtm

    r1 = sqrtm(S1)
    cross = sqrtm(r1 @ S2 @ r1).real
    return float(np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross)))
