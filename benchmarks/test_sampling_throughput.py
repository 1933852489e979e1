"""Sampling throughput at the small preset (pytest-benchmark): images/s of Heun with the preset's 18
steps (35 NFE), one intra-op thread, batch 16, for EDM and for DisCo-Diff with generative latents
at cfg 0 and cfg 1 (a guided call evaluates the latent and the null latent together). Untrained
weights cost what trained ones do. The ratio to EDM is what to compare across machines.
Run: python -m pytest benchmarks/test_sampling_throughput.py --benchmark-only"""
import pytest
import torch

from bench.disco.prior import AutoregressivePrior
from bench.images.model import ImageDiffusionModel
from bench.images.presets import image_preset
from bench.images.sampling import AutoregressiveLatents, SamplerSpec, generate
from bench.threads import single_thread

BATCH = 16


@pytest.mark.parametrize("label,cfg", [("EDM", 0.0), ("DisCo-Diff", 0.0), ("DisCo-Diff", 1.0)])
def test_small_preset_heun18(benchmark, label, cfg):
    p = image_preset(label, "small")
    torch.manual_seed(0)
    den = ImageDiffusionModel(p.model).eval().denoiser
    latents = AutoregressiveLatents(AutoregressivePrior(p.prior).eval()) if p.model.disco else None
    u = p.model.unet
    spec = SamplerSpec("heun", p.sampler_steps, cfg=cfg)

    def run():
        return generate(den, list(range(BATCH)), spec, img_shape=(u.in_channels, u.img_resolution, u.img_resolution),
                        label_dim=u.label_dim, latents=latents, batch=BATCH)

    with single_thread():
        g = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert g.images.shape == (BATCH, 1, 32, 32) and g.nfe == 2 * p.sampler_steps - 1
    benchmark.extra_info["images_per_s"] = BATCH / benchmark.stats.stats.mean
    benchmark.extra_info["nfe"] = g.nfe
