"""EDM machinery: preconditioning, loss weight, discretisation, Heun (NFE, exactness, order)."""
import math

import pytest
import torch

from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.loss import EDMLossConfig, edm_loss, loss_weight, sample_sigma
from bench.diffusion.preconditioning import EDMPrecond, edm_coefficients
from bench.diffusion.samplers import heun_sampler
from bench.diffusion.seeds import PerSampleRandom, format_seeds, parse_seeds


@pytest.mark.parametrize("sigma,sd", [(1.0, 0.5), (80.0, 0.5), (0.002, 0.5), (2.0, 2.13)])
def test_edm_coefficients_match_formulas(sigma, sd):
    c = edm_coefficients(torch.tensor(sigma, dtype=torch.float64), sd)
    # EDM Table 1, worked by hand.
    assert c.c_skip.item() == pytest.approx(sd**2 / (sigma**2 + sd**2))
    assert c.c_out.item() == pytest.approx(sigma * sd / math.sqrt(sigma**2 + sd**2))
    assert c.c_in.item() == pytest.approx(1 / math.sqrt(sigma**2 + sd**2))
    assert c.c_noise.item() == pytest.approx(math.log(sigma) / 4)


def test_edm_coefficients_known_values():
    c = edm_coefficients(torch.tensor(1.0), 0.5)
    assert c.c_skip.item() == pytest.approx(0.2)
    assert c.c_out.item() == pytest.approx(0.4472136, rel=1e-6)
    assert c.c_in.item() == pytest.approx(0.8944272, rel=1e-6)
    assert c.c_noise.item() == 0.0


def test_precond_applies_skip_and_out():
    class Const(torch.nn.Module):
        def forward(self, x_in, c_noise):
            return torch.ones_like(x_in)
    D = EDMPrecond(Const(), sigma_data=0.5)
    x = torch.full((3, 2), 2.0)
    out = D(x, torch.tensor(1.0))
    assert torch.allclose(out, 0.2 * x + 0.4472136 * torch.ones_like(x), atol=1e-6)


def test_loss_weight_and_sigma_distribution():
    assert loss_weight(torch.tensor(1.0), 0.5).item() == pytest.approx((1 + 0.25) / 0.25)
    s = sample_sigma(EDMLossConfig(), 200_000, torch.Generator().manual_seed(0))
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.01)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.01)


def test_edm_loss_zero_for_perfect_denoiser_of_a_point():
    y = torch.zeros(16, 2)
    loss = edm_loss(lambda x, s: torch.zeros_like(x), y, EDMLossConfig(), torch.Generator().manual_seed(0))
    assert loss.shape == (16,) and torch.all(loss == 0)


def test_discretisation():
    t = edm_sigma_steps(18, 0.002, 80, 7)
    assert len(t) == 19 and t[-1] == 0
    assert t[0].item() == pytest.approx(80) and t[-2].item() == pytest.approx(0.002)
    assert torch.all(t[1:] < t[:-1])
    # EDM Eq. 5 at i = 9 of N = 18, by hand.
    i, N = 9, 18
    expect = (80 ** (1 / 7) + i / (N - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert t[i].item() == pytest.approx(expect)
    with pytest.raises(ValueError):
        edm_sigma_steps(0)


@pytest.mark.parametrize("n", [1, 2, 18, 50])
def test_heun_nfe_is_2n_minus_1(n):
    _, nfe = heun_sampler(lambda x, s: 0 * x, torch.ones(4, 2), edm_sigma_steps(n))
    assert nfe == 2 * n - 1


def test_heun_exact_on_linear_ode():
    # Data = a single point c: D(x; t) = c, so dx/dt = (x - c)/t and x(t) = c + (x_T - c) t / T.
    c = torch.tensor([[1.5, -2.0]])
    t_steps = edm_sigma_steps(7, 0.01, 10.0)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)) * 10
    states = []
    x0, _ = heun_sampler(lambda x, s: c.expand_as(x), x_T, t_steps,
                         trajectory=lambda i, x, t: states.append((t, x.clone())))
    for t, x in states:
        exact = c + (x_T.double() - c) * t / float(t_steps[0])
        assert torch.allclose(x, exact, atol=1e-5)
    assert torch.allclose(x0, c.expand_as(x0), atol=1e-5)


def test_heun_second_order_on_gaussian_data():
    # Data N(0, s^2): D = x s^2/(t^2+s^2); the ODE solution is x(t) = x_T sqrt(t^2+s^2)/sqrt(T^2+s^2).
    s, T, tmin = 1.0, 5.0, 0.5
    D = lambda x, t: x * s**2 / (t**2 + s**2)  # noqa: E731
    x_T = torch.ones(1, 1) * T

    def err(n):
        ts = edm_sigma_steps(n, tmin, T)[:-1]  # stop at tmin (no final Euler step to 0)
        states = []
        heun_sampler(D, x_T, torch.cat([ts, ts[-1:]]), trajectory=lambda i, x, t: states.append(x.clone()))
        exact = T * math.sqrt(tmin**2 + s**2) / math.sqrt(T**2 + s**2)
        return abs(states[n - 1].item() - exact)

    e1, e2 = err(9), err(17)   # step count roughly doubled
    assert e2 < e1 / 3         # 2nd order: error falls ~4x


def test_per_sample_seeds_independent_of_batch():
    a = PerSampleRandom([3, 4, 5]).randn(2)
    b = PerSampleRandom([5]).randn(2)
    assert torch.equal(a[2], b[0])


def test_seed_parsing():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert format_seeds([0, 1, 2]) == "0-2"
    with pytest.raises(ValueError):
        parse_seeds("5-2")


from bench.diffusion.samplers import Stochasticity, edm_sampler  # noqa: E402


def test_euler_nfe_and_exact_on_linear_ode():
    c = torch.tensor([[1.5, -2.0]])
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)) * 10
    x0, nfe = edm_sampler(lambda x, s: c.expand_as(x), x_T, edm_sigma_steps(7, 0.01, 10.0), solver="euler")
    assert nfe == 7 and torch.allclose(x0, c.expand_as(x0), atol=1e-5)


def test_zero_churn_is_heun_and_churn_needs_per_sample_noise():
    D = lambda x, t: x * 0.25 / (t**2 + 0.25)  # noqa: E731  (data N(0, 0.5^2))
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) * 80
    ts = edm_sigma_steps(10)
    a, _ = heun_sampler(D, x_T, ts)
    b, _ = edm_sampler(D, x_T, ts, churn=Stochasticity(S_churn=0.0))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="per-sample"):
        edm_sampler(D, x_T, ts, churn=Stochasticity(S_churn=40))
    with pytest.raises(ValueError):
        edm_sampler(D, x_T, ts, solver="rk4")


def test_churn_gamma_is_capped_and_windowed():
    s = Stochasticity(S_churn=80, S_min=0.05, S_max=50)
    assert s.gamma(1.0, 10) == pytest.approx(math.sqrt(2) - 1)      # min(80/10, sqrt2 - 1)
    assert s.gamma(60.0, 10) == 0 and s.gamma(0.01, 10) == 0
    assert Stochasticity(S_churn=2).gamma(1.0, 40) == pytest.approx(0.05)


def test_stochastic_sampler_same_seeds_same_samples_any_batch():
    D = lambda x, t: x * 0.25 / (t**2 + 0.25)  # noqa: E731
    ts = edm_sigma_steps(12)
    churn = Stochasticity(S_churn=40, S_min=0.05, S_max=50, S_noise=1.003)

    def run(seeds):
        rnd = PerSampleRandom(seeds)
        return edm_sampler(D, rnd.randn(2) * float(ts[0]), ts, churn=churn, randn_like=rnd.randn_like)

    both, nfe = run([7, 8])
    alone, _ = run([8])
    assert torch.equal(both[1], alone[0]) and nfe == 2 * 12 - 1
    det, _ = heun_sampler(D, PerSampleRandom([8]).randn(2) * float(ts[0]), ts)
    assert not torch.equal(det, alone)   # the churn noise did act


from baselines.edm.sampler import RESTART_IMAGENET64  # noqa: E402
from bench.diffusion.samplers import restart_sampler  # noqa: E402

# The Restart authors' published ImageNet-64 EDM configuration (README: NFE 203, FID 1.41).
RESTART_203 = RESTART_IMAGENET64[203]


@pytest.mark.parametrize("published", sorted(RESTART_IMAGENET64))   # 203, 623 and the rest of the authors' file
def test_restart_nfe_counted_matches_published(published):
    """Counted calls of the denoiser = the NFE the Restart paper / DisCo-Diff Table 1 state."""
    config = RESTART_IMAGENET64[published]
    assert config.nfe() == published
    D = lambda x, t: x * 0.25 / (t**2 + 0.25)  # noqa: E731
    rnd = PerSampleRandom([0, 1])
    x0, nfe = restart_sampler(D, rnd.randn(3) * 80, edm_sigma_steps(config.num_steps), config, rnd.randn_like)
    assert nfe == published and torch.isfinite(x0).all()


def test_restart_on_point_mass_lands_on_the_point_and_seeds_are_per_sample():
    c = torch.tensor([0.5, -1.0])
    D = lambda x, t: c.expand_as(x)  # noqa: E731  (data = one point: every path must end at c)
    ts = edm_sigma_steps(36)

    def run(seeds):
        rnd = PerSampleRandom(seeds)
        return restart_sampler(D, rnd.randn(2) * 80, ts, RESTART_203, rnd.randn_like)[0]

    both, alone = run([3, 4]), run([4])
    assert torch.allclose(both, c.expand_as(both), atol=1e-4)
    assert torch.equal(both[1], alone[0])
    with pytest.raises(ValueError):
        restart_sampler(D, torch.zeros(1, 2), edm_sigma_steps(18), RESTART_203, PerSampleRandom([0]).randn_like)
