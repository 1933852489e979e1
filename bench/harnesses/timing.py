"""Sec. 4.1 / App. D.1 (claim 7): sampling the autoregressive prior costs a negligible share of the
DM's sampling time (paper: 0.44 s vs 78 s for 32 ImageNet-128 images at 114 NFE on one A100).

For the scale's DisCo-Diff preset (paper: the 64 px preset; the 128 px one waits for issue 17) and a
batch of 32 images: the prior's ancestral sampling of the latents, and the DM's Heun sampling with
those latents fixed (NFE counted by the sampler), each timed REPEATS times after a warm-up; each
repeat's overhead = prior / DM x 100 (the paper's 0.44 / 78). Seconds per NFE (one denoiser call on
the batch) are timed too, so a CPU row can be set against a GPU one. The networks keep their seeded
initial weights: the work of a forward pass does not depend on the weights' values, so no model is
trained.

On CPU at paper scale a whole sampling run takes hours: there the DM's time is the timed seconds
per NFE times the NFE, counted by running the same sampler loop with a no-op denoiser, and the rows
say "projected". `--device cuda` times the whole run.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch

from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.samplers import edm_sampler
from bench.disco.latents import one_hot
from bench.disco.prior import AutoregressivePrior
from bench.images.model import ImageDiffusionModel
from bench.images.presets import image_preset
from bench.images.sampling import Latents, LatentSource, SamplerSpec, generate
from bench.progress import stage
from bench.provenance import device_name, git_sha
from bench.registry import RunContext, describe_variant, harness
from bench.rows import TIMING_REPEAT_SEEDS, Row
from bench.tolerance import Tolerance
from bench.train import build_seeded

N_IMAGES = 32          # Sec. 4.1: a batch of 32 images
REPEATS = 5            # timed runs after one warm-up; the verdict's replicates
VARIANT = "initial weights"
describe_variant(VARIANT, "the scale's DisCo-Diff preset (networks, prior, Heun steps) at its seeded initial weights, "
                 "nothing trained: a forward pass costs the same whatever the weights; paper scale: the 64 px preset "
                 "(the paper times ImageNet-128)")
WHOLE_RUN_BUDGET_S = 1800   # on CPU, time whole sampling runs only if (1 + REPEATS) of them fit in this


@dataclasses.dataclass
class GivenLatents(LatentSource):
    """The latents the prior already drew, in order (the DM's timing leaves the prior out)."""
    codes: torch.Tensor   # [n, m]
    k: int
    name = "given"

    def draw(self, rnd, y_idx, device) -> Latents:
        z = self.codes[:len(rnd.seeds)]
        return Latents(one_hot(z, self.k).to(device), z.cpu().numpy())


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def counted_nfe(spec: SamplerSpec) -> int:
    """The sampler's denoiser calls for one batch, counted by running its loop with a no-op denoiser."""
    _, nfe = edm_sampler(lambda x, sigma, **c: x, torch.zeros(1, 1), edm_sigma_steps(spec.num_steps), {}, spec.kind)
    return nfe


@harness("timing", "Sec. 4.1: sampling cost of the autoregressive prior versus the DM (claim 7)", ("timing.",),
         code=("bench/harnesses/timing.py", "bench/images/", "bench/disco/", "bench/nets/", "bench/diffusion/"),
         tolerances=(("overhead_pct*", Tolerance("timing")), ("nfe", Tolerance("exact"))))
def timing(ctx: RunContext) -> list[Row]:
    preset = image_preset("DisCo-Diff", ctx.scale)
    spec = SamplerSpec("heun", preset.sampler_steps)
    nfe = counted_nfe(spec)
    if ctx.dry_run:
        print(f"{preset.label} [{ctx.scale}]: {N_IMAGES} images, Heun {spec.num_steps} steps ({nfe} NFE, counted), "
              f"prior {preset.prior.depth} x {preset.prior.width} ({preset.prior.m} latents of {preset.prior.k}); "
              f"{REPEATS} timed repeats after a warm-up on {device_name(ctx.device)}; networks at their seeded "
              "initial weights (nothing trained)")
        return []
    if not ctx.shard.is_main:
        return []
    device = torch.device(ctx.device)
    model = build_seeded(lambda: ImageDiffusionModel(preset.model), preset.train.seed).to(device).eval()
    prior = build_seeded(lambda: AutoregressivePrior(preset.prior), preset.prior_train.seed).to(device).eval()
    u = preset.model.unet
    seeds = list(range(N_IMAGES))
    gen = torch.Generator().manual_seed(ctx.seed)
    uniforms = torch.rand(N_IMAGES, preset.prior.m, generator=gen).to(device)
    labels = torch.randint(max(u.label_dim, 1), (N_IMAGES,), generator=gen).to(device) if u.label_dim else None
    x = torch.randn(N_IMAGES, u.in_channels, u.img_resolution, u.img_resolution, generator=gen).to(device)
    cond = {"class_labels": torch.eye(u.label_dim, device=device)[labels]} if u.label_dim else {}

    with torch.no_grad():
        codes = prior.sample(uniforms, labels)
        weights = one_hot(codes, preset.prior.k).to(device)

        def prior_run():
            prior.sample(uniforms, labels)

        def one_call():
            model.denoiser(x, torch.full((N_IMAGES,), 1.0, device=device), latent=weights, **cond)

        def whole_run():
            generate(model.denoiser, seeds, spec, img_shape=(u.in_channels, u.img_resolution, u.img_resolution),
                     label_dim=u.label_dim, latents=GivenLatents(codes, preset.prior.k), batch=N_IMAGES, device=device)

        stage(f"timing [{ctx.scale}]: warm-up, then {REPEATS} timed repeats of the prior and of one denoiser call "
              f"on {N_IMAGES} images ({device_name(ctx.device)})")
        prior_run(), one_call()
        prior_s = [_timed(prior_run, device) for _ in range(REPEATS)]
        per_nfe = [_timed(one_call, device) for _ in range(REPEATS)]
        whole = device.type == "cuda" or statistics.median(per_nfe) * nfe * (1 + REPEATS) <= WHOLE_RUN_BUDGET_S
        if whole:
            stage(f"timing [{ctx.scale}]: warm-up, then {REPEATS} whole sampling runs ({nfe} NFE each)")
            whole_run()
            dm_s = [_timed(whole_run, device) for _ in range(REPEATS)]
        else:
            dm_s = [s * nfe for s in per_nfe]
    how = "timed whole" if whole else "projected: seconds per NFE x counted NFE"
    setting = f"{N_IMAGES} images, {u.img_resolution} px, {device_name(ctx.device)}"
    common = dict(scale=ctx.scale, dataset="none (timing: seeded initial weights)", device=device_name(ctx.device),
                  git_sha=git_sha(), n_samples=N_IMAGES)
    rows = []
    for i in range(REPEATS):
        rep = dict(common, seeds=f"{TIMING_REPEAT_SEEDS}{i + 1}")
        rows += [Row("timing", "", "DisCo-Diff (autoregressive prior)", VARIANT, setting, "prior_seconds",
                     prior_s[i], seconds=prior_s[i], **rep),
                 Row("timing", "", "DisCo-Diff (diffusion model)", VARIANT, setting, "dm_seconds_per_nfe",
                     per_nfe[i], nfe="1", seconds=per_nfe[i], **rep),
                 Row("timing", "", "DisCo-Diff (diffusion model)", VARIANT, f"{setting} ({how})", "dm_seconds",
                     dm_s[i], nfe=str(nfe), seconds=dm_s[i] if whole else 0.0, **rep),
                 Row("timing", "", "DisCo-Diff", VARIANT, f"{setting} ({how})", "overhead_pct",
                     100 * prior_s[i] / dm_s[i], nfe=str(nfe), **rep)]
    med = dict(common, seeds=f"median of {REPEATS}")
    rows.append(Row("timing", "timing.overhead_pct", "DisCo-Diff", VARIANT, f"{setting} ({how})",
                    "overhead_pct_median", 100 * statistics.median(prior_s) / statistics.median(dm_s), nfe=str(nfe),
                    **med))
    print(f"  prior {statistics.median(prior_s):.4f} s, DM {statistics.median(dm_s):.3f} s ({how}; "
          f"{statistics.median(per_nfe):.4f} s/NFE x {nfe} NFE): overhead {rows[-1].value:.3f} %")
    return rows

