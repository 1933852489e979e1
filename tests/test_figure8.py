"""figure8 (docking poses under different pointer latents): the within/between-latent pose distances and the
choice of latents; the CLI run is in test_docking_table4.py (it reuses table4's trained models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.harnesses.figure8 import BETWEEN, WITHIN, ComplexPoses, distinct_pointers


def test_distinct_pointers_keep_first_appearance_order():
    z = torch.tensor([[3, 7], [3, 7], [1, 2], [3, 7], [9, 0], [1, 2], [4, 4]])
    np.testing.assert_array_equal(distinct_pointers(z, 3), [[3, 7], [1, 2], [9, 0]])
    np.testing.assert_array_equal(distinct_pointers(z[:2], 3), [[3, 7]])   # fewer than asked: what there is


def _poses(pairwise: np.ndarray, L: int, S: int) -> ComplexPoses:
    return ComplexPoses(complex=None, latents=np.zeros((L, 2), dtype=np.int64), seeds=list(range(S)),
                        poses=np.zeros((L, S, 1, 3)), rmsd=np.zeros((L, S)), pairwise=pairwise, distinct_draws=L,
                        nfe=1)


def test_pair_means_compare_pairs_with_other_seeds_only():
    # 2 latents x 2 seeds, order (l0 s0, l0 s1, l1 s0, l1 s1); same-seed pairs of different latents (0<->2,
    # 1<->3) are left out of "between": there only the latent differs, and within has no such pairs
    d = np.array([[0, 1, 50, 4],
                  [1, 0, 6, 50],
                  [50, 6, 0, 3],
                  [4, 50, 3, 0]], dtype=float)
    m = _poses(d, 2, 2).pair_means()
    assert m[WITHIN] == pytest.approx((1 + 3) / 2)
    assert m[BETWEEN] == pytest.approx((4 + 6) / 2)


def test_pair_means_of_a_latent_that_does_not_matter_are_equal():
    rng = np.random.default_rng(0)
    L, S = 3, 4
    seed_effect = rng.normal(size=(S, 5))                 # poses depend on the seed only
    x = np.tile(seed_effect, (L, 1))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    m = _poses(d, L, S).pair_means()
    assert m[WITHIN] == pytest.approx(m[BETWEEN])
