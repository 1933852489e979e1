"""DisCo pieces: Gumbel-Softmax, null latent, latent dropout, guidance, autoregressive prior."""
import itertools

import pytest
import torch

from bench.disco.gumbel import gumbel_noise, gumbel_softmax
from bench.disco.latents import LatentEmbedding, drop_latents, guided, null_latent, one_hot
from bench.disco.prior import ARPriorConfig, AutoregressivePrior


def test_gumbel_soft_and_hard_sum_to_one():
    logits = torch.randn(64, 3, 10, generator=torch.Generator().manual_seed(0))
    for hard in (False, True):
        w = gumbel_softmax(logits, 1.0, hard=hard, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(w.sum(-1), torch.ones(64, 3), atol=1e-6)
    hard = gumbel_softmax(logits, 1.0, hard=True, generator=torch.Generator().manual_seed(0))
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}


def test_gumbel_small_tau_is_argmax_of_perturbed_logits():
    logits = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    g = gumbel_noise(logits.shape, torch.Generator().manual_seed(1))
    w = gumbel_softmax(logits, 0.01, generator=torch.Generator().manual_seed(1))
    assert torch.equal(w.argmax(-1), (logits + g).argmax(-1))
    # near one-hot unless the two largest perturbed logits are within ~0.05 of each other
    assert (w.max(-1).values > 0.99).float().mean() > 0.9


def test_gumbel_hard_samples_follow_softmax():
    logits = torch.tensor([2.0, 0.0, -1.0]).expand(40_000, 3)
    w = gumbel_softmax(logits, 1.0, hard=True, generator=torch.Generator().manual_seed(0))
    freq = w.mean(0)
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.01)


def test_straight_through_passes_gradient():
    logits = torch.randn(4, 5, requires_grad=True)
    w = gumbel_softmax(logits, 1.0, hard=True, generator=torch.Generator().manual_seed(0))
    (w * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_null_latent_and_embedding():
    emb = LatentEmbedding(m=2, k=4, dim=3)
    torch.nn.init.normal_(emb.null)
    z = torch.tensor([[1, 3]])
    e = emb(one_hot(z, 4))
    assert torch.allclose(e[0, 0], emb.table[0, 1]) and torch.allclose(e[0, 1], emb.table[1, 3])
    assert torch.allclose(emb(null_latent(1, 2, 4))[0], emb.null)
    with pytest.raises(ValueError):
        emb(torch.zeros(1, 3, 4))


def test_drop_latents_rate():
    w = torch.ones(20_000, 1, 8) / 8
    d = drop_latents(w, 0.1, torch.Generator().manual_seed(0))
    dropped = (d.sum((1, 2)) == 0).float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.01)
    assert torch.equal(drop_latents(w, 0.0), w)


def _toy_denoiser(x, sigma, latent):
    # Depends on the latent so guidance has an effect: null (all-zero) gives 0 shift.
    return x * 0.5 + latent.sum((1, 2))[:, None] * torch.tensor([1.0, 2.0])


def test_guidance_cfg0_is_conditional_and_formula():
    x = torch.randn(6, 2)
    lat = one_hot(torch.randint(8, (6, 1)), 8)
    cond = _toy_denoiser(x, 1.0, lat)
    assert torch.equal(guided(_toy_denoiser, 0.0)(x, torch.tensor(1.0), latent=lat), cond)
    uncond = _toy_denoiser(x, 1.0, torch.zeros_like(lat))
    for cfg in (1.0, 2.0):
        out = guided(_toy_denoiser, cfg)(x, torch.tensor(1.0), latent=lat)
        assert torch.allclose(out, cond + cfg * (cond - uncond))


@pytest.mark.parametrize("num_classes", [0, 3])
def test_prior_likelihood_is_normalised(num_classes):
    torch.manual_seed(0)
    p = AutoregressivePrior(ARPriorConfig(m=3, k=4, num_classes=num_classes, width=16, depth=2, heads=2))
    z = torch.tensor(list(itertools.product(range(4), repeat=3)))
    y = torch.full((len(z),), 2) if num_classes else None
    total = p.log_prob(z, y).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_prior_learns_a_distribution_and_samples_it():
    torch.manual_seed(0)
    p = AutoregressivePrior(ARPriorConfig(m=2, k=3, width=16, depth=1, heads=2))
    data = torch.tensor([[0, 1]] * 70 + [[2, 2]] * 30)
    opt = torch.optim.Adam(p.parameters(), 1e-2)
    for _ in range(300):
        loss = -p.log_prob(data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = p.sample(torch.rand(5000, 2, generator=torch.Generator().manual_seed(0)))
    frac = (z == torch.tensor([0, 1])).all(1).float().mean().item()
    assert frac == pytest.approx(0.7, abs=0.03)
    assert ((z == torch.tensor([0, 1])).all(1) | (z == torch.tensor([2, 2])).all(1)).float().mean() > 0.97
    with pytest.raises(ValueError):
        p.sample(torch.rand(2, 2), temperature=0)


def test_stratified_empirical_matches_counts():
    from bench.disco.prior import stratified_empirical
    codes = torch.tensor([0] * 50 + [1] * 30 + [5] * 20)[:, None]
    g = torch.Generator().manual_seed(0)
    z = stratified_empirical(codes, 100, g)
    assert sorted(z[:, 0].tolist()) == sorted(codes[:, 0].tolist())
    z = stratified_empirical(codes, 7, g)           # 3.5, 2.1, 1.4 -> 4 (largest remainder), 2, 1
    assert torch.bincount(z[:, 0], minlength=6).tolist() == [4, 2, 0, 0, 0, 1]
