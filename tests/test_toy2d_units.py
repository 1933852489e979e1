"""Unit tests of the 2D toy study's pieces (DisCo-Diff App. F): the 8-Gaussian mixture
(bench/data/mixture2d.py) and the DM2D / DisCo2D networks (bench/nets/toy2d.py).

Every test checks concrete values: the mixture against the paper's reading in
reference/toy2d.csv and its analytic moments; DisCo2D's score G = (F(z) - x)/(t^2 + sigma_1^2)
+ H(x, t) against a hand computation and the autograd score of N(F(z), (sigma_1^2 + t^2) I);
`network_score` as the score minus its analytic x-linear term; DM2D against EDM's c_skip/c_out/
c_in/c_noise. Small widths, CPU only, a few seconds in all.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from bench.data.mixture2d import (Mixture2DConfig, data_std, mixture_means, sample_mixture,
                                  sample_mixture_iid)
from bench.disco.latents import null_latent, one_hot
from bench.metrics.ode_geometry import jacobian
from bench.nets.toy2d import DM2D, DM2DConfig, DisCo2D, DisCo2DConfig

REF = Path(__file__).resolve().parents[1] / "reference" / "toy2d.csv"
SIGMAS = [0.05, 0.3, 1.0, 4.0, 20.0]


def _ref() -> dict[str, str]:
    with open(REF, newline="") as f:
        return {r["ref_id"]: r["value"] for r in csv.DictReader(f)}


def _zero_last(mlp_seq: torch.nn.Sequential) -> None:
    with torch.no_grad():
        mlp_seq[-1].weight.zero_()
        mlp_seq[-1].bias.zero_()


def _disco(seed: int = 0, **kw) -> DisCo2D:
    torch.manual_seed(seed)
    return DisCo2D(DisCo2DConfig(width=16, **kw)).eval()


def _dm(seed: int = 0, **kw) -> DM2D:
    torch.manual_seed(seed)
    return DM2D(DM2DConfig(width=16, **kw)).eval()


def _x(n: int = 64, seed: int = 1, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------- the mixture

def test_config_matches_paper_reading():
    ref, cfg = _ref(), Mixture2DConfig()
    assert cfg.modes == int(ref["toy2d.data.n_modes"]) == 8
    assert cfg.radius == float(ref["toy2d.data.radius"]) == 3.0
    assert cfg.std == float(ref["toy2d.data.sigma"]) == 0.2
    assert cfg.points_per_mode == int(ref["toy2d.data.points_per_mode"]) == 1000
    assert cfg.modes * cfg.points_per_mode == int(ref["toy2d.data.n_points"])


def test_means_are_eight_points_on_circle_at_45_degrees():
    mu = mixture_means(Mixture2DConfig()).double()
    assert mu.shape == (8, 2)
    for k in range(8):
        a = math.radians(45 * k)
        assert mu[k].tolist() == pytest.approx([3 * math.cos(a), 3 * math.sin(a)], abs=1e-6)
    # the reference's list of means, as a set
    r = 3 / math.sqrt(2)
    ref_means = [(3, 0), (-3, 0), (0, 3), (0, -3), (r, r), (r, -r), (-r, r), (-r, -r)]
    for p in ref_means:
        assert (mu - torch.tensor(p, dtype=torch.float64)).norm(dim=1).min() < 1e-6
    # evenly spaced: every adjacent pair 2 r sin(pi/8) apart, mixture mean at the origin
    d = (mu - mu.roll(1, 0)).norm(dim=1)
    assert torch.allclose(d, torch.full((8,), 6 * math.sin(math.pi / 8), dtype=torch.float64), atol=1e-6)
    assert mu.mean(0).abs().max() < 1e-6


def test_sample_mixture_exact_counts_and_per_mode_moments():
    cfg = Mixture2DConfig()
    x, labels = sample_mixture(cfg, torch.Generator().manual_seed(0))
    assert x.shape == (8000, 2) and labels.shape == (8000,)
    assert torch.bincount(labels, minlength=8).tolist() == [1000] * 8
    assert labels.tolist() == [k for k in range(8) for _ in range(1000)]   # mode-major order
    mu = mixture_means(cfg)
    n = cfg.points_per_mode
    tol_mean = 5 * cfg.std / math.sqrt(n)            # 5 standard errors of a mean: 0.032
    tol_std = 5 * cfg.std / math.sqrt(2 * (n - 1))   # 5 standard errors of a std: 0.022
    for k in range(8):
        xk = x[labels == k].double()
        assert (xk.mean(0) - mu[k].double()).abs().max() < tol_mean
        assert (xk.std(0) - cfg.std).abs().max() < tol_std
        # residuals are uncorrelated between coordinates (isotropic)
        c = torch.corrcoef(xk.T)[0, 1]
        assert abs(c) < 5 / math.sqrt(n)
    # pooled residual std over all 16000 coordinates
    res = (x - mu[labels]).double()
    assert abs(res.std() - cfg.std) < 5 * cfg.std / math.sqrt(2 * res.numel())


def test_sample_mixture_n_per_mode_and_reproducible():
    cfg = Mixture2DConfig()
    x, labels = sample_mixture(cfg, torch.Generator().manual_seed(3), n_per_mode=7)
    assert x.shape == (56, 2) and torch.bincount(labels).tolist() == [7] * 8
    torch.manual_seed(123)                                   # the global RNG must not matter
    a, la = sample_mixture(cfg, torch.Generator().manual_seed(5))
    torch.manual_seed(456)
    b, lb = sample_mixture(cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _ = sample_mixture(cfg, torch.Generator().manual_seed(6))
    assert not torch.allclose(a, c)
    # smoke preset: 100 per mode
    assert torch.bincount(sample_mixture(Mixture2DConfig(points_per_mode=100))[1]).tolist() == [100] * 8


@pytest.mark.parametrize("modes,radius,std", [(8, 3.0, 0.2), (3, 1.0, 0.5), (5, 2.0, 0.1), (12, 4.0, 1.0)])
def test_data_std_is_the_analytic_mixture_std(modes, radius, std):
    """Per coordinate: Var = E[mu_c^2] - E[mu_c]^2 + std^2, computed here from the means."""
    cfg = Mixture2DConfig(modes=modes, radius=radius, std=std)
    mu = mixture_means(cfg).double()
    var = mu.pow(2).mean(0) - mu.mean(0).pow(2) + std**2            # [2]
    assert data_std(cfg) == pytest.approx(math.sqrt(var[0].item()), rel=1e-6)
    assert data_std(cfg) == pytest.approx(math.sqrt(var[1].item()), rel=1e-6)
    assert data_std(cfg) == pytest.approx(math.sqrt(radius**2 / 2 + std**2), rel=1e-12)


def test_data_std_default_value_and_empirical():
    cfg = Mixture2DConfig()
    assert data_std(cfg) == pytest.approx(math.sqrt(4.5 + 0.04), rel=1e-12)   # 2.13073...
    x, _ = sample_mixture(cfg, torch.Generator().manual_seed(0))
    emp = x.double().std(0)
    # exact mode counts: the between-mode part is exact; noise and cross terms ~ 2e-3 in std
    assert (emp - data_std(cfg)).abs().max() < 0.01
    xi, _ = sample_mixture_iid(cfg, 80_000, torch.Generator().manual_seed(0))
    assert (xi.double().std(0) - data_std(cfg)).abs().max() < 0.02


def test_sample_mixture_iid_equal_frequencies_and_reproducible():
    cfg = Mixture2DConfig()
    n = 80_000
    x, labels = sample_mixture_iid(cfg, n, torch.Generator().manual_seed(1))
    assert x.shape == (n, 2) and int(labels.min()) == 0 and int(labels.max()) == 7
    counts = torch.bincount(labels, minlength=8).double()
    sd = math.sqrt(n * (1 / 8) * (7 / 8))                            # multinomial: 93.5
    assert (counts - n / 8).abs().max() < 5 * sd
    chi2 = ((counts - n / 8) ** 2 / (n / 8)).sum().item()
    assert chi2 < 30.0                                                # chi^2_7: P(>30) ~ 1e-4
    # i.i.d. choices: counts are not the exact n/8 of sample_mixture
    assert not torch.all(counts == n / 8)
    res = (x - mixture_means(cfg)[labels]).double()
    assert res.mean(0).abs().max() < 5 * 0.2 / math.sqrt(n)
    assert abs(res.std() - 0.2) < 0.005
    a = sample_mixture_iid(cfg, 100, torch.Generator().manual_seed(9))
    torch.manual_seed(77)
    b = sample_mixture_iid(cfg, 100, torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ------------------------------------------------------------------------------- DisCo2D

def _set_F(model: DisCo2D, table: torch.Tensor) -> None:
    with torch.no_grad():
        model.F.table.copy_(table.reshape(model.F.table.shape))


def test_disco_config_matches_paper():
    ref, cfg = _ref(), DisCo2DConfig()
    assert cfg.m == int(ref["toy2d.latent.m"]) == 1
    assert cfg.vocab == int(ref["toy2d.latent.vocab_size"]) == 8
    assert cfg.h_layers == int(ref["toy2d.denoiser.h_mlp_layers"]) == 4
    assert cfg.enc_layers == int(ref["toy2d.encoder.mlp_layers"]) == 3
    assert DM2DConfig().layers == int(ref["toy2d.denoiser.mlp_layers"]) == 4
    m = DisCo2D(DisCo2DConfig(width=16))
    assert sum(isinstance(l, torch.nn.Linear) for l in m.H.mlp.net) == 4
    assert sum(isinstance(l, torch.nn.Linear) for l in m.encoder.net) == 3
    assert tuple(m.F.table.shape) == (1, 8, 2)


def test_h_zero_init_gives_exact_analytic_score():
    model = _disco(h_zero_init=True)
    F = mixture_means(Mixture2DConfig())
    _set_F(model, F)
    x = _x()
    z = torch.arange(64) % 8
    w = one_hot(z[:, None], 8)
    sigma = torch.tensor(SIGMAS).repeat(13)[:64]
    with torch.no_grad():
        assert torch.equal(model.network_score(x, sigma), torch.zeros(64, 2))
        G = model.score(x, sigma, w)
    expected = (F[z] - x) / (sigma[:, None] ** 2 + 0.2**2)
    torch.testing.assert_close(G, expected, rtol=1e-6, atol=1e-6)
    # one concrete row by hand: x = (1, 2), F = (3, 0), t = 1 -> ((3-1)/1.04, (0-2)/1.04)
    xr = torch.tensor([[1.0, 2.0]])
    with torch.no_grad():
        g = model.score(xr, 1.0, one_hot(torch.tensor([[0]]), 8))
    assert g[0].tolist() == pytest.approx([2 / 1.04, -2 / 1.04], rel=1e-6)


def test_zeroed_H_score_is_gaussian_score_by_autograd():
    """With H = 0, G is exactly grad_x log N(x; F(z), (sigma_1^2 + t^2) I)."""
    model = _disco(sigma_1=0.3)
    _zero_last(model.H.mlp.net)
    table = torch.tensor([[k - 3.5, 0.5 * k] for k in range(8)])
    _set_F(model, table)
    z = torch.tensor([0, 3, 5, 7, 1, 2])
    for t in SIGMAS:
        x = _x(6, seed=int(t * 100)).double().requires_grad_(True)
        v = 0.3**2 + t**2
        logp = (-0.5 * ((x - table[z].double()) ** 2).sum(1) / v - math.log(2 * math.pi * v)).sum()
        (grad,) = torch.autograd.grad(logp, x)
        with torch.no_grad():
            G = model.score(x.detach().float(), torch.tensor(t), one_hot(z[:, None], 8))
        torch.testing.assert_close(G.double(), grad, rtol=1e-5, atol=1e-6)


def test_zeroed_H_denoiser_is_gaussian_posterior_mean():
    """D = x + t^2 G = (sigma_1^2 x + t^2 F(z)) / (sigma_1^2 + t^2): Tweedie for N(F(z), sigma_1^2)."""
    model = _disco()
    _zero_last(model.H.mlp.net)
    F = mixture_means(Mixture2DConfig())
    _set_F(model, F)
    x = _x(16)
    z = torch.arange(16) % 8
    w = one_hot(z[:, None], 8)
    for t in SIGMAS:
        with torch.no_grad():
            D = model(x, torch.full((16,), t), w)
        expected = (0.04 * x + t**2 * F[z]) / (0.04 + t**2)
        torch.testing.assert_close(D, expected, rtol=1e-5, atol=1e-5)


def test_network_score_is_H_with_edm_input_scaling():
    model = _disco(sigma_data=0.7)
    x = _x(32)
    for t in SIGMAS:
        s = torch.full((32,), t)
        with torch.no_grad():
            got = model.network_score(x, t)
            by_hand = model.H(x / math.sqrt(t**2 + 0.49), s.log() / 4)
            # sigma as a per-sample tensor gives the same
            assert torch.equal(model.network_score(x, s), got)
        torch.testing.assert_close(got, by_hand, rtol=1e-6, atol=1e-6)
        assert got.abs().max() > 1e-4                                  # H is not trivially 0 here


def test_network_score_removes_exactly_the_analytic_term():
    model = _disco(seed=3)
    table = torch.randn(8, 2, generator=torch.Generator().manual_seed(4)) * 2
    _set_F(model, table)
    x = _x(40)
    z = torch.arange(40) % 8
    w = one_hot(z[:, None], 8)
    for t in SIGMAS:
        sigma = torch.full((40,), t)
        v = t**2 + 0.04
        with torch.no_grad():
            G = model.score(x, sigma, w)
            N = model.network_score(x, t, w)
            # network_score ignores the latent
            assert torch.equal(N, model.network_score(x, t, null_latent(40, 1, 8)))
            assert torch.equal(N, model.network_score(x, t))
        torch.testing.assert_close(G - N, (table[z] - x) / v, rtol=1e-5, atol=1e-5 * max(1.0, 1 / v))
        # Jacobians in x: dG/dx - dN/dx = -I / (t^2 + sigma_1^2) (the x-linear term)
        xs = x[:8]
        JG = jacobian(lambda xx: model.score(xx, t, w[:8]), xs)
        JN = jacobian(lambda xx: model.network_score(xx, t, w[:8]), xs)
        eye = torch.eye(2).expand(8, 2, 2)
        torch.testing.assert_close((JG - JN).float(), -eye / v, rtol=1e-4, atol=1e-4)


def test_changing_F_changes_score_not_network_score():
    model = _disco(seed=5)
    x = _x(24)
    z = torch.arange(24) % 8
    w = one_hot(z[:, None], 8)
    t = 0.8
    with torch.no_grad():
        G0, N0 = model.score(x, t, w), model.network_score(x, t, w)
        delta = torch.arange(16.0).reshape(1, 8, 2) / 4
        model.F.table.add_(delta)
        G1, N1 = model.score(x, t, w), model.network_score(x, t, w)
    assert torch.equal(N0, N1)
    torch.testing.assert_close(G1 - G0, delta[0][z] / (t**2 + 0.04), rtol=1e-5, atol=1e-5)


def test_forward_is_x_plus_t2_score_with_soft_and_null_latents():
    model = _disco(seed=6)
    table = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    _set_F(model, table)
    with torch.no_grad():
        model.F.null.copy_(torch.tensor([[0.25, -0.5]]))
    x = _x(3)
    w = torch.zeros(3, 1, 8)
    w[0, 0, 2] = 1.0                                   # hard code 2
    w[1, 0, 1], w[1, 0, 5] = 0.3, 0.7                  # soft mixture of codes 1 and 5
    # row 2 all zero: the null latent
    F_expected = torch.stack([table[2], 0.3 * table[1] + 0.7 * table[5], torch.tensor([0.25, -0.5])])
    t = 2.0
    with torch.no_grad():
        G = model.score(x, t, w)
        D = model(x, torch.full((3,), t), w)
        N = model.network_score(x, t)
    torch.testing.assert_close(G, (F_expected - x) / (t**2 + 0.04) + N, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(D, x + t**2 * G, rtol=1e-6, atol=1e-5)


def test_encode_logits_shape_and_values():
    model = _disco()
    x = _x(10)
    with torch.no_grad():
        logits = model.encode_logits(x)
        assert logits.shape == (10, 1, 8)
        torch.testing.assert_close(logits[:, 0], model.encoder(x))
        _zero_last(model.encoder.net)
        model.encoder.net[-1].bias.copy_(torch.arange(8.0))
        logits = model.encode_logits(x)
    assert torch.equal(logits, torch.arange(8.0).expand(10, 1, 8))
    # m = 2, vocab 3: latent i takes outputs [3i, 3i + 3)
    torch.manual_seed(0)
    m2 = DisCo2D(DisCo2DConfig(width=16, m=2, vocab=3))
    with torch.no_grad():
        _zero_last(m2.encoder.net)
        m2.encoder.net[-1].bias.copy_(torch.arange(6.0))
        assert m2.encode_logits(x[:4]).tolist() == [[[0, 1, 2], [3, 4, 5]]] * 4


def test_init_F_from_data_distinct_points_is_a_permutation():
    """8 distinct points and 8 codes: after the first pick every chosen point has weight 0, so
    k-means++ must pick each point exactly once."""
    pts = mixture_means(Mixture2DConfig())
    x0 = pts.repeat(5, 1)                                  # duplicates do not change that
    for seed in range(5):
        model = _disco()
        model.init_F_from_data(x0, torch.Generator().manual_seed(seed))
        F = model.F.table[0].detach()
        assert sorted(map(tuple, F.tolist())) == sorted(map(tuple, pts.tolist()))


def test_init_F_from_data_deterministic_and_on_data():
    x, _ = sample_mixture(Mixture2DConfig(), torch.Generator().manual_seed(0))
    model = _disco()
    torch.manual_seed(10)
    model.init_F_from_data(x, torch.Generator().manual_seed(1))
    a = model.F.table.detach().clone()
    torch.manual_seed(20)                                  # the global RNG must not matter
    model.init_F_from_data(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, model.F.table)
    # the first centre is x[randint(N)] from the generator; all are exact, distinct data points
    first = torch.randint(len(x), (1,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0, 0], x[first[0]])
    for p in a[0]:
        assert (x == p).all(1).sum() >= 1
    assert len({tuple(p) for p in a[0].tolist()}) == 8
    model.init_F_from_data(x, torch.Generator().manual_seed(2))
    assert not torch.equal(a, model.F.table)


def test_init_F_from_data_probabilities_proportional_to_squared_distance():
    """Points 0, 1, 3 on a line, 2 codes: P(second | first) proportional to squared distance."""
    x0 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    model = _disco(vocab=2)
    pairs = torch.zeros(3, 3)
    for seed in range(2400):
        model.init_F_from_data(x0, torch.Generator().manual_seed(seed))
        i, j = (int(v) for v in model.F.table[0, :, 0].detach())
        pairs[{0: 0, 1: 1, 3: 2}[i], {0: 0, 1: 1, 3: 2}[j]] += 1
    assert pairs.diagonal().sum() == 0
    first = pairs.sum(1) / pairs.sum()
    assert (first - 1 / 3).abs().max() < 0.05                              # uniform first pick
    cond = pairs / pairs.sum(1, keepdim=True)
    expected = torch.tensor([[0, 1 / 10, 9 / 10], [1 / 5, 0, 4 / 5], [9 / 13, 4 / 13, 0]])
    assert (cond - expected).abs().max() < 0.05                            # ~5 binomial s.e.


# ------------------------------------------------------------------------------- DM2D

def test_dm_zero_network_is_edm_skip_score():
    """F = 0: D = c_skip x, score = (c_skip - 1) x / t^2 = -x / (t^2 + sigma_data^2), the exact
    score of N(0, (sigma_data^2 + t^2) I); network_score = 0."""
    model = _dm()
    _zero_last(model.denoiser.net.mlp.net)
    sd = model.cfg.sigma_data
    assert sd == 0.5
    for t in SIGMAS:
        x = _x(16, seed=int(t * 10)).double().requires_grad_(True)
        with torch.no_grad():
            D = model(x.detach().float(), torch.tensor(t))
            N = model.network_score(x.detach().float(), t)
        c_skip = sd**2 / (t**2 + sd**2)
        torch.testing.assert_close(D.double(), c_skip * x.detach(), rtol=1e-6, atol=1e-6)
        assert torch.equal(N, torch.zeros(16, 2))
        v = sd**2 + t**2
        (grad,) = torch.autograd.grad((-0.5 * (x**2).sum(1) / v).sum(), x)
        torch.testing.assert_close(((D.double() - x.detach()) / t**2), grad,
                                   rtol=1e-4, atol=2e-6 * 3 / t**2)


def test_dm_network_score_by_hand_and_score_reconstruction():
    model = _dm(seed=2, sigma_data=0.8)
    sd = 0.8
    x = _x(32)
    for t in SIGMAS:
        s = torch.full((32,), t)
        with torch.no_grad():
            N = model.network_score(x, t)
            raw = model.denoiser.net(x / math.sqrt(t**2 + sd**2), s.log() / 4)
            D = model(x, s)
            D_latent = model(x, s, latent=torch.ones(32, 1, 8))          # the latent is ignored
        c_out = t * sd / math.sqrt(t**2 + sd**2)
        torch.testing.assert_close(N, c_out * raw / t**2, rtol=1e-5, atol=1e-6)
        assert torch.equal(D, D_latent)
        # score = network_score + analytic skip term -x / (t^2 + sigma_data^2) = (D - x) / t^2
        score = (D.double() - x.double()) / t**2
        tol = 4e-7 * 10 / t**2                                  # float32 rounding of D, divided by t^2
        torch.testing.assert_close(N.double() - x.double() / (t**2 + sd**2), score, rtol=1e-4, atol=tol)
        assert N.abs().max() > 1e-4
