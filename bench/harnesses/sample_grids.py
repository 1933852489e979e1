"""The paper's sample figures of the class-conditional DisCo-Diff (the scale's model, from the cache that
table1, table3 and figure10 fill), each with the number its panel argues for:

- figure2 / figure14: samples sharing a discrete latent (Fig. 2(b), 14: per class, a grid per latent).
  Number: within-latent over between-latent distance in the FID detector's pool features, per class
  (< 1: images that share a latent resemble each other more than images of the same class with other
  latents, so the latent carries content beyond the class). figure2 also draws panel (a), random samples.
- figure9: latent guidance cfg 0, 1, 4, 8 for one class and fixed seeds (paper: ImageNet-128 "malamute";
  here the scale's model, at paper scale ImageNet-64's malamute). Number: sample diversity per cfg, the mean
  pairwise feature (and pixel) distance within groups of seeds.
- figure11 / figure12: plain class-conditional samples (paper: ImageNet-64 and ImageNet-128; ours: the
  scale's model for both until a 128 px preset exists, issue 17). Number: the grid's sample diversity.

Every image has its own seed; NFE is the sampler's count.
"""
from __future__ import annotations

import numpy as np

from bench import plots
from bench.harnesses.figure10 import VARIANT
from bench.harnesses.image_figures import (IMAGE_FIGURE_CODE, FigureRun, SharedLatent, distinct_latents,
                                           figure_classes, figure_run, mean_cross, mean_pairwise)
from bench.metrics.image_distance import pixel_rms
from bench.registry import RunContext, harness
from bench.rows import Row
from bench.tolerance import Tolerance

TOLERANCES = (("*ratio", Tolerance("spread", 4, floor=0.05)), ("*diversity", Tolerance("spread", 4, floor=0.1)),
              ("*distance", Tolerance("spread", 4, floor=0.1)))
# (classes, latents per class, samples per latent) of the shared-latent grids
SHARED = {"figure2": {"smoke": (2, 2, 4), "small": (2, 4, 8), "paper": (2, 4, 8)},
          "figure14": {"smoke": (2, 2, 3), "small": (4, 4, 8), "paper": (4, 4, 8)}}
CFGS = (0.0, 1.0, 4.0, 8.0)                       # Fig. 9
N_SEEDS = {"smoke": 4, "small": 32, "paper": 32}  # figure9, figure11, figure12: images (per cfg)
GROUPS = {"smoke": 2, "small": 4, "paper": 4}     # groups of seeds: the replicates of a diversity
LATENT_SEEDS = 2_000_000                          # the shared latents' draws (their own seeds)
FIRST_SEED = {"figure2": 0, "figure9": 10_000, "figure11": 20_000, "figure12": 30_000, "figure14": 40_000}


def _groups(seeds: list[int], scale: str) -> list[list[int]]:
    return [list(g) for g in np.array_split(np.array(seeds), GROUPS[scale]) if len(g)]


def _said(seeds: list[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}"


def _dry_run(ctx: RunContext, label: str, what: str) -> list[Row]:
    from bench.images.presets import image_preset
    from bench.metrics.detectors import load_detector
    p = image_preset("DisCo-Diff", ctx.scale)
    print(f"{label} [{ctx.scale}]: {what}; {p.label}, Heun {p.sampler_steps} steps; features: "
          f"{load_detector(ctx.fid_detector).info.describe()}")
    return []


def shared_latent_study(run: FigureRun, label: str) -> tuple[list[Row], list[tuple[str, np.ndarray]], list[list[str]]]:
    """Per class: `latents` distinct latents from the prior, `samples` images sharing each; the within/between
    distance ratio per class (rows) and a grid per class (rows = latents)."""
    n_cls, wanted, n_img = SHARED[label][run.ctx.scale]
    prior, k = run.model.stage2.prior, run.preset.prior.k
    rows, panels, labels = [], [], []
    first = FIRST_SEED[label]
    for ci, c in enumerate(figure_classes(run.preset, n_cls)):
        lat = distinct_latents(prior, range(LATENT_SEEDS + 1000 * ci, LATENT_SEEDS + 1000 * (ci + 1)), c, wanted)
        n_lat = len(lat)   # (fewer where the prior draws fewer distinct latents for the class: the setting says)
        images, feats, seeds_all = [], [], []
        for li, z in enumerate(lat):
            seeds = list(range(first + (ci * wanted + li) * n_img, first + (ci * wanted + li + 1) * n_img))
            im, _, nfe = run.sample(seeds, SharedLatent(z, k), class_idx=c)
            images.append(im)
            feats.append(run.features(im))
            seeds_all += seeds
        within = float(np.mean([mean_pairwise(f) for f in feats]))
        between = float(np.mean([mean_cross(feats[a], feats[b]) for a in range(n_lat) for b in range(a + 1, n_lat)]))
        common = run.common(nfe=str(nfe), n_samples=n_lat * n_img, seeds=_said(seeds_all),
                            feature_extractor=run.feature_name)
        setting = f"class {c}, {n_lat} latents x {n_img} images"
        rows += [Row(label, "", "DisCo-Diff", VARIANT, setting, "within_latent_distance", within, **common),
                 Row(label, "", "DisCo-Diff", VARIANT, setting, "between_latent_distance", between, **common),
                 Row(label, "", "DisCo-Diff", VARIANT, setting, "within_between_ratio", within / between, **common)]
        panels.append((f"class {c}: within/between {within / between:.2f}", np.stack(images)))
        labels.append(["z=" + ",".join(str(int(v)) for v in z[:6]) + ("..." if len(z) > 6 else "") for z in lat])
    return rows, panels, labels


@harness("figure2", "Fig. 2: random samples, and samples sharing a discrete latent (within/between-latent distance)",
         (), code=("bench/harnesses/sample_grids.py", *IMAGE_FIGURE_CODE), options=("detector",), tolerances=TOLERANCES)
def figure2(ctx: RunContext) -> list[Row]:
    if ctx.dry_run:
        return _dry_run(ctx, "figure2", "16 random samples; %d classes x %d latents x %d images sharing each"
                        % SHARED["figure2"][ctx.scale])
    run = figure_run(ctx)
    if not ctx.shard.is_main:
        return []
    random, _, _ = run.sample(range(FIRST_SEED["figure2"] + 100_000, FIRST_SEED["figure2"] + 100_016))
    rows, panels, labels = shared_latent_study(run, "figure2")
    plots.captioned_grids([("(a) random latents and classes", random.reshape(2, 8, *random.shape[1:]))] + panels,
                          run.out / "figure2.png", "DisCo-Diff Fig. 2: " + run.caption("(a) random samples; (b) a row "
                                                                                      "per shared latent"),
                          [["", ""]] + labels)
    return rows


@harness("figure14", "Fig. 14: samples sharing a discrete latent, per class (within/between-latent distance)", (),
         code=("bench/harnesses/sample_grids.py", *IMAGE_FIGURE_CODE), options=("detector",), tolerances=TOLERANCES)
def figure14(ctx: RunContext) -> list[Row]:
    if ctx.dry_run:
        return _dry_run(ctx, "figure14", "%d classes x %d latents x %d images sharing each" % SHARED["figure14"][ctx.scale])
    run = figure_run(ctx)
    if not ctx.shard.is_main:
        return []
    rows, panels, labels = shared_latent_study(run, "figure14")
    plots.captioned_grids(panels, run.out / "figure14.png", "DisCo-Diff Fig. 14 (paper: ImageNet-128): "
                          + run.caption("a row per shared latent, a panel per class"), labels)
    return rows


def diversity_rows(run: FigureRun, label: str, images: np.ndarray, seeds: list[int], setting: str, nfe: int) -> list[Row]:
    """Mean pairwise feature and pixel distance within each group of seeds (the replicates)."""
    feats = run.features(images)
    rows = []
    index = {s: i for i, s in enumerate(seeds)}
    for g in _groups(seeds, run.ctx.scale):
        at = [index[s] for s in g]
        pix = float(np.mean([pixel_rms(images[[a]], images[[b]])[0] for ai, a in enumerate(at) for b in at[ai + 1:]]))
        common = run.common(nfe=str(nfe), n_samples=len(g), seeds=_said(g))
        rows += [Row(label, "", "DisCo-Diff", VARIANT, setting, "feature_diversity", mean_pairwise(feats[at]),
                     feature_extractor=run.feature_name, **common),
                 Row(label, "", "DisCo-Diff", VARIANT, setting, "pixel_diversity", pix, **common)]
    return rows


@harness("figure9", "Fig. 9: latent guidance cfg 0/1/4/8 for one class and fixed seeds (sample diversity per cfg)", (),
         code=("bench/harnesses/sample_grids.py", *IMAGE_FIGURE_CODE), options=("detector",), tolerances=TOLERANCES)
def figure9(ctx: RunContext) -> list[Row]:
    n = N_SEEDS[ctx.scale]
    if ctx.dry_run:
        return _dry_run(ctx, "figure9", f"cfg {', '.join(f'{c:g}' for c in CFGS)} x {n} seeds, one class")
    run = figure_run(ctx)
    if not ctx.shard.is_main:
        return []
    c = figure_classes(run.preset, 1)[0]
    seeds = list(range(FIRST_SEED["figure9"], FIRST_SEED["figure9"] + n))
    rows, grid = [], []
    for cfg in CFGS:   # the same seeds: the same noise and latents at every cfg
        images, _, nfe = run.sample(seeds, class_idx=c, cfg=cfg)
        rows += diversity_rows(run, "figure9", images, seeds, f"class {c}, cfg={cfg:g}", nfe)
        grid.append(images[:8])
    plots.captioned_grids([(f"class {c}: a row per cfg, the same seeds in each column", np.stack(grid))],
                          run.out / "figure9.png", "DisCo-Diff Fig. 9 (paper: ImageNet-128 malamute): "
                          + run.caption("latent guidance"), [[f"cfg {g:g}" for g in CFGS]])
    return rows


def _plain(ctx: RunContext, label: str, paper: str) -> list[Row]:
    n = N_SEEDS[ctx.scale]
    if ctx.dry_run:
        return _dry_run(ctx, label, f"{n} samples, random classes and latents")
    run = figure_run(ctx)
    if not ctx.shard.is_main:
        return []
    seeds = list(range(FIRST_SEED[label], FIRST_SEED[label] + n))
    images, _, nfe = run.sample(seeds)
    rows = diversity_rows(run, label, images, seeds, "random classes and latents", nfe)
    cols = min(8, n)
    plots.captioned_grids([("random classes and latents", images[:n // cols * cols].reshape(-1, cols, *images.shape[1:]))],
                          run.out / f"{label}.png", f"DisCo-Diff {paper}: " + run.caption("samples"))
    return rows


@harness("figure11", "Fig. 11: class-conditional samples (paper: ImageNet-64, ODE sampler)", (),
         code=("bench/harnesses/sample_grids.py", *IMAGE_FIGURE_CODE), options=("detector",), tolerances=TOLERANCES)
def figure11(ctx: RunContext) -> list[Row]:
    return _plain(ctx, "figure11", "Fig. 11 (paper: ImageNet-64)")


@harness("figure12", "Fig. 12: class-conditional samples (paper: ImageNet-128; here the scale's 64 px-class model "
         "until issue 17's 128 px preset)", (),
         code=("bench/harnesses/sample_grids.py", *IMAGE_FIGURE_CODE), options=("detector",), tolerances=TOLERANCES)
def figure12(ctx: RunContext) -> list[Row]:
    return _plain(ctx, "figure12", "Fig. 12 (paper: ImageNet-128; ours: the scale's model, no 128 px preset yet)")
