"""Fig. 10 (a) / Fig. 7 left: training loss versus sigma for EDM and DisCo-Diff, ImageNet-64
panel (claim 3: the latents cut the loss mostly at large sigma).

Runs the whole image pipeline on the scale's preset: stage 1 for both models, DisCo-Diff's
stage 2 (latents at tau = 0.01, autoregressive prior), then the loss of held-out images at fixed
sigmas (same noise and Gumbel draws for both), and a sample grid per model (Heun, per-sample
seeds, counted NFE). The `setting` "Fig. 10(a)" names the paper's panel (ImageNet-64 there); the
`dataset` column says what was actually used (a stand-in below paper scale): the training set, and for the loss
rows the held-out set (at paper scale ImageNet's validation set if $DISCO_BENCH_IMAGENET64_VAL
names one, else the training zip's last 10,000 images, which training then never reads).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from baselines.edm.preset import ADM_IMAGENET64_PUBLISHED_PARAMS, PRECISION
from bench import atomic, plots
from bench.diffusion.seeds import format_seeds
from bench.disco.prior import AutoregressivePrior
from bench.images.model import ImageDiffusionModel
from bench.images.pipeline import (ImageTensors, held_out_description, load_preset_dataset, loss_per_image_versus_sigma,
                                   memory_plan, train_prior, train_stage1)
from bench.images.sampling import SamplerSpec, generate
from bench.images.presets import file_name, image_preset
from bench.nets import meta_parameter_count
from bench.nets.vit_encoder import ViTEncoder
from bench.progress import stage
from bench.provenance import device_name, git_sha
from bench.registry import RunContext, describe_variant, harness
from bench.rows import HELD_OUT_SEEDS, Row
from bench.tolerance import Tolerance

PANEL = "Fig. 10(a)"   # the paper's panel (ImageNet-64 there); the dataset column says what ran here
VARIANT = "scale preset"
describe_variant(VARIANT, "the scale's preset (bench/images/presets.py, baselines/edm/preset.py): below paper scale, smaller nets "
                 "trained from scratch on a stand-in dataset for the same steps (EDM and DisCo-Diff alike), "
                 f"not EDM's ImageNet-64 network fine-tuned; precision at paper scale: {PRECISION}")
SIGMAS = np.geomspace(0.01, 80.0, 16)   # Fig. 7 plots t in [0, 50] with a 0.01..1 inset
HIGH_SIGMA, LOW_SIGMA = 10.0, 0.1       # "large t" / "small t" bins of claim 3
N_EVAL = {"smoke": 256, "small": 1000, "paper": 10_000}
N_SAMPLES = {"smoke": 16, "small": 64, "paper": 64}
EVAL_GROUPS = 4   # disjoint groups of held-out images: the replicates of claim 3's loss comparison


def _groups(n: int) -> list[tuple[int, int]]:
    """EVAL_GROUPS contiguous, disjoint [lo, hi) ranges covering n images."""
    edges = np.linspace(0, n, EVAL_GROUPS + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


@harness("figure10", "Fig. 10 / Fig. 7 left: training loss versus sigma, EDM vs DisCo-Diff (image pipeline end to end)", (),
         code=("bench/harnesses/figure10.py", "bench/images/", "baselines/edm/", "bench/disco/", "bench/nets/",
               "bench/data/images.py", "bench/train.py", "bench/diffusion/", "bench/distributed.py"),
         tolerances=(("loss*", Tolerance("relative", 0.05)), ("prior_nll_nats_per_latent", Tolerance("absolute", 0.1)),
                     ("codes_used_of_k", Tolerance("absolute", 2))))
def figure10(ctx: RunContext) -> list[Row]:
    presets = [image_preset(label, ctx.scale) for label in ("EDM", "DisCo-Diff")]
    if ctx.dry_run:
        for p in presets:
            parts = {"denoiser": lambda: ImageDiffusionModel(p.model).denoiser}
            if p.model.disco:
                parts["encoder"] = lambda: ViTEncoder(p.model.encoder)
                parts["prior"] = lambda: AutoregressivePrior(p.prior)
            counts = ", ".join(f"{k} {meta_parameter_count(make):,}" for k, make in parts.items())
            plan = (f"{p.train.steps:,} steps x batch {p.train.batch_size}, lr {p.train.lr:g}"
                    + (f"; {PRECISION}" if p.train.bf16 else "; fp32") if p.train.steps else
                    "no training: EDM's published network is used as is (set DISCO_BENCH_EDM64)")
            print(f"{p.label} [{p.scale}]: data {p.dataset}; parameters: {counts}; {plan}")
            if p.train.steps:
                print("\n".join("  " + line for line in memory_plan(p, ctx.shard.world)))
        print(f"held-out loss (Fig. 10) on: {held_out_description(presets[0])}")
        if ctx.scale == "paper":
            print(f"EDM's ImageNet-64 ADM: {ADM_IMAGENET64_PUBLISHED_PARAMS / 1e6:.2f} M parameters published "
                  "(EDM paper, Table 7); ours is the 'EDM' denoiser above")
        return []
    device = torch.device(ctx.device)
    out = Path(ctx.out) / ctx.scale
    train_data = load_preset_dataset(presets[0], "train")
    test_data = load_preset_dataset(presets[0], "test")
    n_eval = min(N_EVAL[ctx.scale], len(test_data))
    stage(f"figure10 [{ctx.scale}]: training on {train_data.name} ({len(train_data):,} images"
          f"{', streamed' if train_data.streamed else ''}); held-out loss on {test_data.name}", ctx.shard.is_main)
    common = dict(scale=ctx.scale, dataset=train_data.name, device=device_name(ctx.device), git_sha=git_sha())
    held_out = dict(common, dataset=test_data.name)   # the loss rows: measured on held-out images
    rows: list[Row] = []
    curves: dict[str, np.ndarray] = {}
    for p in presets:
        t0 = time.perf_counter()
        s1 = train_stage1(p, train_data, ctx.cache, ctx.seed, device, ctx.shard)
        steps_run = p.train.steps
        if steps_run:   # (paper-scale EDM is the published network: nothing trained)
            rows.append(Row("figure10", "", p.label, VARIANT, PANEL, "train_images_per_s",
                            steps_run * p.train.batch_size / max(s1.info["seconds"], 1e-9),
                            n_samples=steps_run * p.train.batch_size, seeds=str(ctx.seed),
                            seconds=s1.info["seconds"], **common))
        prior, latent_shape = None, None
        if p.model.disco:
            s2 = train_prior(p, s1, train_data, ctx.seed, device, ctx.shard)
            prior, latent_shape = s2.prior, (p.prior.m, p.prior.k)
            used = len(torch.unique(s2.codes.flatten()))
            rows.append(Row("figure10", "", p.label, VARIANT, PANEL, "prior_nll_nats_per_latent",
                            float(s2.info["final_loss"]), seeds=str(ctx.seed), seconds=s2.info["seconds"], **common))
            rows.append(Row("figure10", "", p.label, VARIANT, PANEL, "codes_used_of_k",
                            float(used), n_samples=len(s2.codes), seeds=str(ctx.seed), **common))
        if not ctx.shard.is_main:   # other ranks only help train
            continue
        stage(f"figure10 [{ctx.scale}]: evaluating {p.label}'s loss at {len(SIGMAS)} noise levels "
              f"on {n_eval} held-out images")
        tensors = ImageTensors.of(test_data.subset(slice(0, n_eval)), p.model.unet.label_dim, device)
        t1 = time.perf_counter()
        per_image = loss_per_image_versus_sigma(s1.ema, tensors, SIGMAS, p.loss, seed=ctx.seed)   # [sigmas, n]
        curves[p.label] = curve = per_image.mean(1)
        for s, v in zip(SIGMAS, curve):
            rows.append(Row("figure10", "", p.label, VARIANT, f"sigma={s:.4g}", "loss", float(v),
                            n_samples=n_eval, seeds=str(ctx.seed), seconds=time.perf_counter() - t1, **held_out))
        # claim 3's numbers, once per group of held-out images (the same images, noise and Gumbel draws for
        # both models): replicates of one training run, paired by group
        for lo, hi in _groups(n_eval):
            for metric, sel in (("loss_high_sigma", SIGMAS >= HIGH_SIGMA), ("loss_low_sigma", SIGMAS <= LOW_SIGMA)):
                rows.append(Row("figure10", "", p.label, VARIANT, PANEL, metric, float(per_image[sel, lo:hi].mean()),
                                n_samples=hi - lo, seeds=f"{HELD_OUT_SEEDS}{lo}-{hi - 1}, noise seed {ctx.seed}",
                                **held_out))
        seeds = list(range(N_SAMPLES[ctx.scale]))
        u = p.model.unet
        stage(f"figure10 [{ctx.scale}]: sampling {len(seeds)} images from {p.label} ({p.sampler_steps} Heun steps)")
        t2 = time.perf_counter()
        g = generate(s1.ema.denoiser, seeds, SamplerSpec("heun", p.sampler_steps),
                     img_shape=(u.in_channels, u.img_resolution, u.img_resolution), label_dim=u.label_dim,
                     prior=prior, latent_shape=latent_shape, device=device)
        dt = time.perf_counter() - t2
        rows.append(Row("figure10", "", p.label, VARIANT, PANEL, "sample_images_per_s", len(seeds) / dt,
                        nfe=str(g.nfe), n_samples=len(seeds), seeds=format_seeds(seeds), seconds=dt, **common))
        plots.image_grid(g.images, out / f"figure10_samples_{file_name(p.label)}.png")
        print(f"  {p.label}: trained in {s1.info['seconds']:.0f} s, total {time.perf_counter() - t0:.0f} s")
    if not ctx.shard.is_main:
        return []
    npz = atomic.save_npz(out / "figure10_data.npz", sigmas=SIGMAS, git_sha=np.array(git_sha()),
                          **{f"loss__{k}": v for k, v in curves.items()})
    plots.loss_versus_sigma(npz, out / "figure10.png",
                            f"loss vs sigma, {train_data.name}, {ctx.scale} scale (held-out n={n_eval})")
    return rows

