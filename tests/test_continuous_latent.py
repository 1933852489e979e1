"""Continuous-latent ablation (Table 3): Gaussian latents + KL, embedding with a null latent,
and the DiT-style EDM prior over the latents."""
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from bench.diffusion.preconditioning import edm_coefficients
from bench.disco.continuous import (ContinuousLatentEmbedding, LatentDiffusionPrior,
                                    LatentDiffusionPriorConfig, gaussian_latent, posterior_mean,
                                    with_presence)
from bench.disco.latents import drop_latents


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_latent_reparameterisation_and_kl():
    B, m, d = 5, 3, 4
    stats = torch.randn(B, m, 2 * d, generator=_gen(0))
    eps = torch.randn(B, m, d, generator=_gen(1))
    u, kld = gaussian_latent(stats, eps)
    mean, logvar = stats[..., :d], stats[..., d:]
    std = (0.5 * logvar).exp()
    assert torch.allclose(u, mean + std * eps, atol=1e-6)
    assert torch.equal(posterior_mean(stats), mean)
    ref = kl_divergence(Normal(mean, std), Normal(torch.zeros_like(mean), torch.ones_like(std))).sum((1, 2))
    assert kld.shape == (B,)
    assert torch.allclose(kld, ref, atol=1e-6, rtol=1e-6)
    u0, kld0 = gaussian_latent(torch.zeros(B, m, 2 * d), eps)
    assert torch.equal(u0, eps) and torch.equal(kld0, torch.zeros(B))
    # extreme log-variances are clamped: finite sample and KL
    u_big, kld_big = gaussian_latent(torch.cat([torch.zeros(1, m, d), torch.full((1, m, d), 1e4)], -1), eps[:1])
    assert torch.isfinite(u_big).all() and torch.isfinite(kld_big).all()
    with pytest.raises(ValueError, match="eps"):
        gaussian_latent(stats, eps[..., :-1])
    with pytest.raises(ValueError, match="2d"):
        gaussian_latent(stats[..., :-1], eps)


def test_embedding_null_row_and_linearity():
    m, d, dim = 3, 4, 8
    emb = ContinuousLatentEmbedding(m, d, dim)
    with torch.no_grad():   # non-trivial bias and null so the checks below can tell them apart
        emb.bias.normal_(generator=_gen(2))
        emb.null.normal_(generator=_gen(3))
    u1, u2 = torch.randn(2, 6, m, d, generator=_gen(4))
    w = with_presence(u1)
    assert w.shape == (6, m, d + 1) and torch.equal(w[..., d], torch.ones(6, m))
    # latent dropout's all-zero row, and guidance's zeros_like, give exactly the null embedding
    dropped = drop_latents(w, 1.0, _gen(5))
    assert torch.equal(emb(dropped), emb.null.expand(6, m, dim))
    assert torch.equal(emb(torch.zeros_like(w)), emb.null.expand(6, m, dim))
    # present rows: affine in u (linear map + bias), per token
    f = lambda u: emb(with_presence(u))                                            # noqa: E731
    f0 = f(torch.zeros_like(u1))
    assert torch.allclose(f0, emb.bias.expand(6, m, dim))
    assert torch.allclose(f(2 * u1 - 3 * u2) - f0, 2 * (f(u1) - f0) - 3 * (f(u2) - f0), atol=1e-5)
    assert torch.allclose(f(u1), torch.einsum("bmd,mde->bme", u1, emb.weight) + emb.bias, atol=1e-6)
    with pytest.raises(ValueError, match=rf"\[B, {m}, {d + 1}\]"):
        emb(u1)   # presence channel missing
    with pytest.raises(ValueError):
        emb(with_presence(u1)[:, :2])


def _randomise_head(prior: LatentDiffusionPrior, seed: int) -> None:
    with torch.no_grad():   # an untrained-but-nonzero F, so sampling tests exercise the network
        prior.precond.net.out.weight.normal_(0, 0.3, generator=_gen(seed))


def test_prior_zero_init_denoiser_is_c_skip_x():
    torch.manual_seed(0)
    prior = LatentDiffusionPrior(LatentDiffusionPriorConfig(m=3, d=4, num_classes=5, width=32, depth=1))
    x = torch.randn(6, 3, 4, generator=_gen(0))
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 80.0])
    y = torch.arange(6) % 5
    c = edm_coefficients(sigma, 1.0)
    assert torch.allclose(prior.denoise(x, sigma, y), c.c_skip[:, None, None] * x, atol=1e-6)
    # and the loss uses exactly those draws: D - x = (c_skip - 1) x + c_skip sigma n
    noise = torch.randn(6, 3, 4, generator=_gen(1))
    err = (c.c_skip[:, None, None] - 1) * x + c.c_skip[:, None, None] * sigma[:, None, None] * noise
    ref = (sigma**2 + 1) / sigma**2 * (err**2).mean((1, 2))
    assert torch.allclose(prior(x, y, sigma, noise), ref, rtol=1e-5)


def test_prior_sample_batch_invariant_deterministic_and_nfe():
    torch.manual_seed(0)
    cfg = LatentDiffusionPriorConfig(m=3, d=4, num_classes=3, width=32, depth=1, sampler_steps=6)
    prior = LatentDiffusionPrior(cfg)
    _randomise_head(prior, 1)
    prior.set_latent_scale(2.5)
    noise = torch.randn(8, 3, 4, generator=_gen(2))
    y = torch.arange(8) % 3
    full = prior.sample(noise, y)
    assert prior.last_nfe == 2 * cfg.sampler_steps - 1
    assert full.shape == (8, 3, 4) and torch.isfinite(full).all()
    assert torch.allclose(prior.sample(noise[:4], y[:4]), full[:4], atol=1e-5)
    assert torch.equal(prior.sample(noise, y), full)
    # the labels matter, and the output is in latent units (x latent_scale)
    assert not torch.allclose(prior.sample(noise, (y + 1) % 3), full, atol=1e-3)
    prior.set_latent_scale(1.0)
    assert not torch.allclose(prior.sample(noise, y), full, atol=1e-3)


def test_prior_input_errors():
    cond = LatentDiffusionPrior(LatentDiffusionPriorConfig(m=2, d=3, num_classes=4, width=16, depth=1))
    u = torch.zeros(5, 2, 3)
    with pytest.raises(ValueError, match="class-conditional"):
        cond.sample(u)
    with pytest.raises(ValueError, match="class-conditional"):
        cond.loss(u, None, _gen(0))
    with pytest.raises(ValueError, match=r"\[B, 2, 3\]"):
        cond.loss(torch.zeros(5, 3, 2), torch.zeros(5, dtype=torch.long), _gen(0))
    with pytest.raises(ValueError, match="labels"):
        cond.loss(u, torch.zeros(4, dtype=torch.long), _gen(0))
    with pytest.raises(ValueError):
        cond.set_latent_scale(0.0)
    uncond = LatentDiffusionPrior(LatentDiffusionPriorConfig(m=2, d=3, width=16, depth=1))
    loss = uncond.loss(u, None, _gen(0))
    assert loss.shape == (5,) and torch.equal(loss, uncond.loss(u, None, _gen(0)))
    assert torch.equal(loss, uncond(u, None, *uncond.draw(u, _gen(0))))   # the DDP path


def test_prior_learns_class_conditional_modes():
    torch.manual_seed(0)
    cfg = LatentDiffusionPriorConfig(m=2, d=2, num_classes=2, width=32, depth=1, sampler_steps=12)
    prior = LatentDiffusionPrior(cfg)
    g = _gen(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:   # class 0 at -2, class 1 at +2
        y = torch.randint(0, 2, (n,), generator=g)
        return (4.0 * y - 2.0)[:, None, None] + 0.1 * torch.randn(n, 2, 2, generator=g), y

    prior.set_latent_scale(float(batch(4096)[0].std()))
    opt = torch.optim.Adam(prior.parameters(), lr=2e-3)
    for _ in range(300):
        u, y = batch(256)
        loss = prior.loss(u, y, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    n = 64
    y = torch.arange(2).repeat_interleave(n)
    u = prior.sample(torch.randn(2 * n, 2, 2, generator=_gen(1)), y)
    for k, mode in enumerate((-2.0, 2.0)):
        mean = u[y == k].mean(0)                                       # [2, 2]
        assert (mean - mode).abs().max() < 0.5, (k, mean)
        near = ((u[y == k] - mode).flatten(1).norm(dim=1) < 1.0).float().mean()
        assert near > 0.9, (k, near)   # the samples themselves sit at their class's mode
