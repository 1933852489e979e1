"""Fig. 7's latent switching: the switch points are the sampler's steps, 100 % is `generate`'s image and
0 % the image of z_b throughout; the distances are what they say."""
import numpy as np
import pytest
import torch

from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.samplers import edm_sampler
from bench.disco.image_denoiser import DisCoADMDenoiser
from bench.disco.latent_context import LatentContextConfig
from bench.disco.latents import one_hot
from bench.disco.prior import ARPriorConfig, AutoregressivePrior
from bench.images.latent_switch import SwitchingDenoiser, switch_step, switched_samples
from bench.images.sampling import SamplerSpec, generate
from bench.metrics.image_distance import feature_l2, pixel_rms
from bench.nets.adm_unet import ADMUNetConfig

M, K = 3, 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    den = DisCoADMDenoiser(ADMUNetConfig.tiny(xattn_dim=16), LatentContextConfig(m=M, k=K, width=16, depth=1, heads=2))
    with torch.no_grad():   # as if trained: a fresh net outputs 0 and ignores its latents
        for name, p in den.named_parameters():
            if "out_conv" in name or "xattn_proj" in name:
                p.normal_(0, 0.5)
    prior = AutoregressivePrior(ARPriorConfig(m=M, k=K, num_classes=10, width=16, depth=1, heads=2))
    return den.eval(), prior.eval()


def _run(model, fractions, seeds=(0, 1, 2), steps=4):
    den, prior = model
    cfg = den.denoiser.net.cfg
    return switched_samples(den, prior, list(seeds), [100 + s for s in seeds], fractions, SamplerSpec("heun", steps),
                            img_shape=(cfg.in_channels, cfg.img_resolution, cfg.img_resolution),
                            label_dim=cfg.label_dim)


def test_never_switching_is_generate_and_switching_at_once_is_z_b_throughout(model):
    den, prior = model
    cfg = den.denoiser.net.cfg
    sw = _run(model, (1.0, 0.5, 0.0))
    g = generate(den, [0, 1, 2], SamplerSpec("heun", 4), img_shape=(cfg.in_channels, cfg.img_resolution,
                                                                     cfg.img_resolution),
                 label_dim=cfg.label_dim, prior=prior, latent_shape=(M, K))
    assert np.array_equal(sw.images[1.0], g.images) and np.array_equal(sw.codes_a, g.latents)
    assert sw.nfe == g.nfe == 7
    assert (sw.codes_a != sw.codes_b).any(1).all() and sw.identical == 0   # z_b redrawn where it equalled z_a
    # 0 %: z_b from the first step: the same noise and class sampled with z_b fixed
    rnd_noise = torch.stack([torch.randn(cfg.in_channels, cfg.img_resolution, cfg.img_resolution,
                                         generator=torch.Generator().manual_seed(s)) for s in (0, 1, 2)])
    t = edm_sigma_steps(4)
    y = torch.stack([torch.randint(cfg.label_dim, (), generator=_after_noise(s, cfg)) for s in (0, 1, 2)])
    x, _ = edm_sampler(den, rnd_noise.double() * t[0], t, {"class_labels": torch.eye(cfg.label_dim)[y],
                                                          "latent": one_hot(torch.from_numpy(sw.codes_b), K)},
                       out_dtype=torch.float64)
    assert np.array_equal(sw.images[0.0], (x * 127.5 + 128).clip(0, 255).to(torch.uint8).numpy())
    # a switch half way lands between the two
    assert not np.array_equal(sw.images[0.5], sw.images[1.0]) and not np.array_equal(sw.images[0.5], sw.images[0.0])


def _after_noise(seed, cfg):
    g = torch.Generator().manual_seed(seed)
    torch.randn(cfg.in_channels, cfg.img_resolution, cfg.img_resolution, generator=g)
    return g


def test_a_heun_step_sees_one_latent_and_the_switch_rounds_to_a_step():
    seen = []
    sw = SwitchingDenoiser(lambda x, s, latent: seen.append(int(latent)) or x * 0, torch.tensor(0), torch.tensor(1), 2)
    edm_sampler(sw, torch.ones(1, 1), edm_sigma_steps(4), trajectory=sw.at_step)
    assert seen == [0, 0, 0, 0, 1, 1, 1]   # steps 0, 1 (two calls each) under z_a; 2, 3 under z_b (last: Euler)
    assert [switch_step(f, 18) for f in (0, 0.25, 0.5, 0.75, 1)] == [0, 4, 9, 14, 18]
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        switch_step(1.5, 18)


def test_stochastic_sampler_and_unpaired_seeds_are_refused(model):
    den, prior = model
    with pytest.raises(ValueError, match="deterministic"):
        switched_samples(den, prior, [0], [1], (0.5,), SamplerSpec("restart", restart=_restart()), img_shape=(3, 16, 16),
                         label_dim=10)
    with pytest.raises(ValueError, match="one each per triple"):
        switched_samples(den, prior, [0, 1], [1], (0.5,), SamplerSpec("heun", 4), img_shape=(3, 16, 16), label_dim=10)


def _restart():
    from baselines.edm.sampler import RESTART_IMAGENET64
    return RESTART_IMAGENET64[min(RESTART_IMAGENET64)]


def test_distances():
    a = np.zeros((2, 1, 2, 2), np.uint8)
    b = a.copy()
    b[1] = 255
    assert pixel_rms(a, b).tolist() == [0.0, 1.0]
    assert feature_l2(np.array([[0.0, 0.0], [3.0, 4.0]]), np.zeros((2, 2))).tolist() == [0.0, 5.0]
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_rms(a, b[:1])


def test_band_energies_put_a_tint_in_colour_a_square_in_layout_stripes_in_texture():
    from bench.metrics.image_distance import band_energies
    d = np.zeros((3, 1, 32, 32))
    d[0] += 0.5                         # a global brightness change
    d[1, 0, 8:24, 8:24] = 1.0           # a shape
    d[2, 0, ::2] = 1.0
    d[2, 0, 1::2] = -1.0                # one-pixel stripes
    e = band_energies(d, sigma=2.0)
    assert np.allclose(e["colour"] + e["layout"] + e["texture"], 1.0)
    assert e["colour"][0] == pytest.approx(1.0) and e["layout"][1] > 0.5 and e["texture"][2] > 0.99
    assert np.isnan(band_energies(np.zeros((1, 1, 4, 4)), 1.0)["layout"]).all()   # no change: no shares


def test_distinct_latents_takes_what_the_prior_has_and_refuses_a_collapsed_one():
    from bench.disco.prior import ARPriorConfig, AutoregressivePrior
    from bench.harnesses.image_figures import LatentsError, distinct_latents
    prior = AutoregressivePrior(ARPriorConfig(m=2, k=3, num_classes=2, width=8, depth=1, heads=2)).eval()
    z = distinct_latents(prior, range(200), 0, 4)
    assert len(z) == 4 and len({tuple(v.tolist()) for v in z}) == 4
    with torch.no_grad():   # a prior that always draws code 0: one latent per class
        prior.head.weight.zero_()
        prior.head.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
    with pytest.raises(LatentsError, match="only 1 distinct latent"):
        distinct_latents(prior, range(50), 1, 2)
