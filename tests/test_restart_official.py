"""Restart sampling is seed-compatible with the authors' code (Newbeeer/diffusion_restart_sampling,
benchmarks/generate_restart.py `restart_sampler` + `main`, commit 8cbcb07): the same random draws
in the same order and dtype, and the same outputs, pinned here so no copy of that code is needed.

How the pinned numbers were produced (outside this repository): the official generate_restart.py
at 8cbcb07 (torchvision stubbed: it is used only by --save_images), its StackedRandomGenerator
and the lines of its main() that draw the latents and class labels, run on torch 2.13 CPU, one
thread, with `toy_denoiser` below (imported from this file) wrapped as a network object, and with
NVlabs/edm (commit 008a4e5) training/networks.py EDMPrecond(DhariwalUNet) holding the weights of
`tiny_adm()` below. The official sampler was called with restart_info = the intervals as JSON,
S_min 0.01, S_max 1, S_noise 1.003, restart_gamma 0.05.
"""
import json

import numpy as np
import pytest
import torch

import bench.images.sampling as sampling
from baselines.edm.sampler import RESTART_IMAGENET64, RESTART_IMAGENET64_S_NOISE
from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.preconditioning import EDMPrecond
from bench.diffusion.samplers import RestartConfig, RestartInterval
from bench.diffusion.seeds import PerSampleRandom
from bench.images.sampling import SamplerSpec, generate
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig

SMALL = RestartConfig(num_steps=8, intervals=(RestartInterval(3, 2, 1.09, 1.92), RestartInterval(4, 2, 0.06, 0.30)),
                      S_noise=1.003)
SEEDS = [0, 7, 123456789]
SHAPE = (2, 4, 4)
LABELS = 3
MEANS = torch.tensor([[0.5, -0.5], [-0.25, 0.75], [0.0, 0.3]])   # per class, per channel


def toy_denoiser(x, sigma, class_labels=None):
    """A float32 denoiser with EDM's calling convention (x and sigma cast to float32, sigma a
    scalar): Gaussian data N(mu_y, 0.5^2) per class plus a tanh term, so it is not linear."""
    x, s = x.to(torch.float32), torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1)
    mu = (class_labels.to(torch.float32) @ MEANS)[:, :, None, None]
    return mu + (x - mu) * (0.25 / (s * s + 0.25)) + 0.1 * torch.tanh(x) * (s / (1 + s))


def snapped(config):
    """{main-grid index: interval}: generate_restart.py casts each t_min to the index of the nearest
    level of the whole grid (t_N = 0 included)."""
    t = edm_sigma_steps(config.num_steps)
    return {int(torch.argmin((t - r.t_min).abs())): r for r in config.intervals}


def official_draw_order(config, label_dim):
    """The per-generator draws of generate_restart.py, transcribed from its main() and
    restart_sampler (commit 8cbcb07):
      main():  latents = rnd.randn([B, C, H, W])            float32 (default dtype)
               rnd.randint(net.label_dim, size=[B])          (class labels, if label_dim)
      restart_sampler, x float64 from `latents.to(torch.float64) * t_steps[0]`:
      for i in 0..N-1:                                     (main pass)
          x_hat = x_cur + (...).sqrt() * S_noise * randn_like(x_cur)   EVERY step, gamma 0 or not
          (Heun step)
          if i + 1 in restart_list: for K repeats:
              x_next = x_next + randn_like(x_next) * (...)             the jump to t_max
              for j in 0..N_restart-2:
                  x_hat = x_cur + (...) * randn_like(x_cur)            every restart step
    randn_like draws in the dtype of its argument: x is float64 throughout."""
    order = [("normal", SHAPE, torch.float32)]
    if label_dim:
        order.append(("randint", (), torch.int64))
    at = snapped(config)
    for i in range(config.num_steps):
        order.append(("normal", SHAPE, torch.float64))
        if i + 1 in at:
            r = at[i + 1]
            order += [("normal", SHAPE, torch.float64)] * (r.repeats * r.n_steps)   # 1 jump + N_restart - 1 churn
    return order


class LoggingRandom(PerSampleRandom):
    """PerSampleRandom that records every draw from the per-sample generators."""
    log: list = []

    def _record(self, kind, out):
        if not getattr(self, "_inside", False):
            LoggingRandom.log.append((kind, tuple(out.shape[1:]), out.dtype))
        return out

    def randn(self, *shape, dtype=torch.float32):
        return self._record("normal", super().randn(*shape, dtype=dtype))

    def randn_like(self, x):
        self._inside = True
        try:
            out = super().randn_like(x)
        finally:
            self._inside = False
        return self._record("normal", out)

    def randint(self, high, *shape):
        return self._record("randint", super().randint(high, *shape))

    def rand(self, *shape, dtype=torch.float32):
        return self._record("uniform", super().rand(*shape, dtype=dtype))


def _toy_generate(config, seeds=SEEDS, batch=64):
    return generate(toy_denoiser, seeds, SamplerSpec("restart", restart=config), img_shape=SHAPE,
                    label_dim=LABELS, batch=batch)


@pytest.mark.parametrize("config", [SMALL, RESTART_IMAGENET64[203]], ids=["small", "imagenet64-203"])
def test_restart_draws_the_official_noise_in_order_and_dtype(monkeypatch, config):
    monkeypatch.setattr(sampling, "PerSampleRandom", LoggingRandom)
    LoggingRandom.log = []
    g = _toy_generate(config)
    expected = official_draw_order(config, LABELS)
    assert LoggingRandom.log == expected
    # S_churn 0 in the main pass: still one (zero-scaled) float64 draw per main step
    assert sum(1 for k, _, d in LoggingRandom.log if d == torch.float64) == config.num_steps + sum(
        r.repeats * r.n_steps for r in config.intervals)
    assert g.nfe == config.nfe()


# Outputs of the official restart_sampler (float64, [-1, 1] scale) with toy_denoiser, seeds
# 0, 7, 123456789, C, H, W = 2, 4, 4, 3 classes: x[:, :, 1, 2] and the per-sample sum of x.
PINNED_TOY = {
    "small": {"x_12": [[0.46926018595695496, 1.1235616207122803], [0.3984166085720062, -1.4437100887298584],
                       [0.16320669651031494, -0.21731151640415192]],
              "sum": [8.120754908770323, -5.4910879554226995, 1.8441464863717556]},
    "imagenet64-203": {"x_12": [[-0.4848787784576416, 0.2732088565826416], [0.27493762969970703, -0.45128679275512695],
                                [1.1485011577606201, -0.166270911693573]],
                       "sum": [4.695006299763918, -1.8460039533674717, 2.4629216827452183]},
}


def _capture_restart_output(monkeypatch) -> dict:
    """Keep restart_sampler's float64 output (before generate's uint8) in the returned dict's "x"."""
    captured = {}
    real = sampling.restart_sampler

    def capture(*a, **k):
        x, n = real(*a, **k)
        captured["x"] = x
        return x, n

    monkeypatch.setattr(sampling, "restart_sampler", capture)
    return captured


@pytest.mark.parametrize("name,config", [("small", SMALL), ("imagenet64-203", RESTART_IMAGENET64[203])])
def test_restart_output_equals_the_official_sampler_pinned(monkeypatch, name, config):
    captured = _capture_restart_output(monkeypatch)
    g = _toy_generate(config)
    x = captured["x"]
    assert x.dtype == torch.float64
    want = PINNED_TOY[name]
    # Float rounding only (the toy is elementwise float32): 1e-6, where the old draw order or
    # float32 restart noise moved outputs by ~1.
    np.testing.assert_allclose(x[:, :, 1, 2].numpy(), np.array(want["x_12"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(x.sum((1, 2, 3)).numpy(), np.array(want["sum"]), rtol=0, atol=1e-5)
    # the images, as generate_restart.py saves them
    assert np.array_equal(g.images, (x * 127.5 + 128).clip(0, 255).to(torch.uint8).numpy())


def test_restart_seeds_are_per_sample_whatever_the_batch():
    a = _toy_generate(SMALL, seeds=SEEDS, batch=3)
    b = _toy_generate(SMALL, seeds=SEEDS, batch=1)
    assert np.array_equal(a.images, b.images)


def tiny_adm():
    """A 16x16, 3-channel, 10-class EDM ADM (DhariwalUNet layout: channels_per_head 64) with every
    weight non-zero; torch.manual_seed(0), then ADMUNet's init, then N(0, 0.05^2) added."""
    cfg = ADMUNetConfig(img_resolution=16, in_channels=3, out_channels=3, label_dim=10, model_channels=64,
                        channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,), channels_per_head=64, dropout=0.0)
    torch.manual_seed(0)
    net = EDMPrecond(ADMUNet(cfg), 0.5).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


# The official sampler with NVlabs/edm's EDMPrecond(DhariwalUNet) holding tiny_adm()'s weights,
# config SMALL, seeds 0, 1: x[:, :, 3, 5] and the per-sample sum of x.
PINNED_ADM = {"x_35": [[-0.45304545760154724, -1.282334566116333, 0.8536217212677002],
                        [0.324940949678421, 0.6395961046218872, 0.5142974257469177]],
              "sum": [-123.41020366549492, 8.953700041398406]}


def test_restart_with_an_edm_network_equals_the_official_sampler_pinned(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    captured = _capture_restart_output(monkeypatch)
    try:
        with torch.no_grad():
            generate(tiny_adm(), [0, 1], SamplerSpec("restart", restart=SMALL), img_shape=(3, 16, 16), label_dim=10)
    finally:
        torch.set_num_threads(threads)
    x = captured["x"]
    # 1e-4: EDM's EDMPrecond embeds a scalar sigma once for the batch (shape [1]) where ours
    # expands it to [B] first; the matmuls then round differently (measured: <= 5e-6 here).
    np.testing.assert_allclose(x[:, :, 3, 5].numpy(), np.array(PINNED_ADM["x_35"]), rtol=0, atol=1e-4)
    np.testing.assert_allclose(x.sum((1, 2, 3)).numpy(), np.array(PINNED_ADM["sum"]), rtol=0, atol=1e-3)


def test_published_settings_are_the_authors_file_and_s_noise():
    """baselines/edm/sampler.py = benchmarks/params_imagenet_edm.txt (8cbcb07), transcribed here."""
    lines = [
        '14 {"0": [3, 1, 19.35, 40.79], "1": [3, 1, 1.09, 1.92], "2": [3, 1, 0.06, 0.30]}',
        '18 {"0": [5, 1, 19.35, 40.79], "1": [5, 1, 1.09, 1.92], "2": [5, 1, 0.59, 1.09], "3": [5, 1, 0.06, 0.30]}',
        '18 {"0": [3, 1, 19.35, 40.79], "1": [4, 1, 1.09, 1.92], "2": [4, 4, 0.59, 1.09], "3": [4, 1, 0.30, 0.59], "4": [4, 4, 0.06, 0.30]}',   # noqa: E501
        '18 {"0": [3, 1, 19.35, 40.79], "1": [4, 1, 1.09, 1.92], "2": [4, 5, 0.59, 1.09], "3": [4, 5, 0.30, 0.59], "4": [4, 10, 0.06, 0.30]}',  # noqa: E501
        '36 {"0": [4, 1, 19.35, 40.79], "1": [4, 1, 1.09, 1.92], "2": [4, 5, 0.59, 1.09], "3": [4, 5, 0.30, 0.59], "4": [6, 6, 0.06, 0.30]}',   # noqa: E501
        '36 {"0": [3, 1, 19.35, 40.79], "1": [6, 1, 1.09, 1.92], "2": [6, 5, 0.59, 1.09], "3": [6, 5, 0.30, 0.59], "4": [6, 20, 0.06, 0.30]}',  # noqa: E501
        '36 {"0": [6, 1, 19.35, 40.79], "1": [6, 1, 1.09, 1.92], "2": [7, 6, 0.59, 1.09], "3": [7, 6, 0.30, 0.59], "4": [7, 25, 0.06, 0.30]}',  # noqa: E501
        '36 {"0": [10, 3, 19.35, 40.79], "1": [10, 3, 1.09, 1.92], "2": [7, 6, 0.59, 1.09], "3": [7, 6, 0.30, 0.59], "4": [7, 25, 0.06, 0.30]}',  # noqa: E501
    ]
    got = {}
    for line in lines:
        steps, info = line.split(" ", 1)
        intervals = tuple(RestartInterval(*v) for v in json.loads(info).values())
        nfe = 2 * int(steps) - 1 + sum(2 * r.repeats * (r.n_steps - 1) for r in intervals)   # hyperparam.py
        got[nfe] = (int(steps), intervals)
    assert sorted(got) == sorted(RESTART_IMAGENET64) == [39, 67, 99, 165, 203, 385, 535, 623]
    for nfe, (steps, intervals) in got.items():
        c = RESTART_IMAGENET64[nfe]
        assert (c.num_steps, c.intervals) == (steps, intervals) and c.nfe() == nfe
        # the authors' commands: --S_min=0.01 --S_max=1 --S_noise 1.003, --restart_gamma default 0.05
        assert (c.S_noise, c.S_min, c.S_max, c.restart_gamma) == (1.003, 0.01, 1.0, 0.05)
    assert RESTART_IMAGENET64_S_NOISE == 1.003
    with pytest.raises(TypeError):   # no silent default: generate_restart.py's own is 0
        RestartConfig(num_steps=36, intervals=())
