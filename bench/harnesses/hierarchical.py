"""Group-hierarchical DisCo-Diff (Sec. 3.3, Fig. 5): the m latents split into groups, each group feeding
one resolution of the U-Net's decoder, coarsest first (paper: 3 groups of 10 at 8, 16, 32 px; below
paper scale bench/images/presets.py's smaller split). Claim 9: the coarse-resolution groups set shape
and layout, the fine ones colour and texture.

- figure6: top, images of z, of z-hat, and of z with one group taken from z-hat (per group); bottom, an
  image and variations that keep more and more of its latent (as figure16). Its number (claim 9a): where
  the change goes when one group is swapped, image by image (same seed and class): the share of the
  difference's energy in the layout band (Gaussian low-pass without the channel means), in the colour
  band (channel means) and in the texture band (the rest), bench/metrics/image_distance.band_energies.
  Claim 9 predicts a larger layout share when the coarsest group is swapped than when the finest is.
- figure15: grids that share z, share z-hat, and share (z's coarse groups, z-hat's finest group), the
  same seeds in each; numbers: layout- and colour-band distances of the composed images to the z and
  z-hat images of the same seeds.
- figure16: progressively fixing more groups of a reference latent (0 = the prior's, all = the
  reference image's latent), the rest drawn by the prior; number: the sample diversity per step.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bench import plots
from bench.disco.latents import one_hot
from bench.harnesses.figure10 import VARIANT
from bench.harnesses.image_figures import (IMAGE_FIGURE_CODE, FigureRun, PrefixLatents, SharedLatent, distinct_latents,
                                           figure_classes, figure_run, mean_pairwise)
from bench.images.sampling import Latents, LatentSource
from bench.metrics.image_distance import band_energies
from bench.registry import RunContext, harness
from bench.rows import Row
from bench.tolerance import Tolerance

LABEL = "DisCo-Diff (hierarchical)"   # the image preset
METHOD = "Group hierarchical DisCo-Diff"   # as the paper (and reference/) names it
CODE = ("bench/harnesses/hierarchical.py", *IMAGE_FIGURE_CODE)
TOLERANCES = (("*_share", Tolerance("spread", 4, floor=0.05)), ("*distance*", Tolerance("spread", 4, floor=0.02)),
              ("*diversity", Tolerance("spread", 4, floor=0.1)))
N_PAIRS = {"smoke": 8, "small": 32, "paper": 32}   # (seed, z, z-hat) pairs
GROUPS = {"smoke": 4, "small": 8, "paper": 8}      # groups of pairs: the replicates
N_REFS = {"smoke": 2, "small": 4, "paper": 4}   # figure15/16: latent pairs / reference latents (classes)
N_CLASSES = 4
N_SHOW = 6                                          # pairs drawn in the figures
N_SAMPLES = {"smoke": 3, "small": 8, "paper": 8}   # figure15/16: images per grid row
FIRST_SEED = {"figure6": 50_000, "figure15": 60_000, "figure16": 70_000}
LATENT_SEEDS = 3_000_000


@dataclasses.dataclass
class PerSeedLatents(LatentSource):
    """Each seed's own latent [m] and class (a figure's chosen latents, any batch split)."""
    latents: dict[int, torch.Tensor]
    classes: dict[int, int]
    k: int
    name = "chosen"

    def draw(self, rnd, y_idx, device) -> Latents:
        z = torch.stack([self.latents[s] for s in rnd.seeds])
        y = torch.tensor([self.classes[s] for s in rnd.seeds], device=device)
        return Latents(one_hot(z, self.k).to(device), z.cpu().numpy(), y)


def group_slices(run: FigureRun) -> list[slice]:
    """The latent positions of each group, coarsest resolution first."""
    c = run.preset.model.context
    size = c.m // len(c.group_resolutions)
    return [slice(i * size, (i + 1) * size) for i in range(len(c.group_resolutions))]


def group_name(run: FigureRun, i: int) -> str:
    res = run.preset.model.context.group_resolutions
    which = "coarsest" if i == 0 else "finest" if i == len(res) - 1 else f"group {i + 1}"
    return f"swap {which} group" + (f" ({res[i]} px)" if which.startswith("group") else "")


def _sigma(run: FigureRun) -> float:
    """The layout band's low-pass: 1/16 of the image width (2 px at 32 px, 4 px at 64 px)."""
    return run.preset.model.unet.img_resolution / 16


def _pairs(run: FigureRun, first: int, n: int):
    classes = figure_classes(run.preset, N_CLASSES)
    seeds = list(range(first, first + n))
    cls = {s: classes[j % len(classes)] for j, s in enumerate(seeds)}
    lat = {s: distinct_latents(run.model.stage2.prior, range(LATENT_SEEDS + 1000 * j, LATENT_SEEDS + 1000 * (j + 1)),
                               cls[s], 2) for j, s in enumerate(seeds)}
    return seeds, cls, lat


def _hier_run(ctx: RunContext) -> FigureRun:
    run = figure_run(ctx, LABEL)
    if not run.preset.model.context.group_resolutions:
        raise ValueError(f"{LABEL} [{ctx.scale}] has no latent groups")
    return run


def _dry(ctx: RunContext, label: str, what: str) -> list[Row]:
    from bench.images.presets import image_preset
    c = image_preset(LABEL, ctx.scale).model.context
    print(f"{label} [{ctx.scale}]: {LABEL}: {c.m} latents of {c.k} in {len(c.group_resolutions)} groups at "
          f"{', '.join(f'{r} px' for r in c.group_resolutions)}; {what}")
    return []


@harness("figure6", "Fig. 6: group-hierarchical latents: swapping one group, where the change goes (claim 9)", (),
         code=CODE, options=("detector",), tolerances=TOLERANCES)
def figure6(ctx: RunContext) -> list[Row]:
    n = N_PAIRS[ctx.scale]
    if ctx.dry_run:
        return _dry(ctx, "figure6", f"{n} (seed, z, z-hat) pairs, each group swapped in turn")
    run = _hier_run(ctx)
    if not ctx.shard.is_main:
        return []
    seeds, cls, lat = _pairs(run, FIRST_SEED["figure6"], n)
    k = run.preset.prior.k
    images, nfe = {}, 0

    def with_latents(pick) -> np.ndarray:
        nonlocal nfe
        im, _, nfe = run.sample(seeds, PerSeedLatents({s: pick(s) for s in seeds}, cls, k))
        return im

    images["z"] = with_latents(lambda s: lat[s][0])
    images["z-hat"] = with_latents(lambda s: lat[s][1])
    slices = group_slices(run)
    for i, sl in enumerate(slices):
        def swapped(s, sl=sl):
            z = lat[s][0].clone()
            z[sl] = lat[s][1][sl]
            return z
        images[group_name(run, i)] = with_latents(swapped)
    rows = []
    edges = np.linspace(0, n, GROUPS[ctx.scale] + 1).round().astype(int)
    base = images["z"].astype(np.float64) / 127.5
    shares = {}
    for i in range(len(slices)):
        name = group_name(run, i)
        shares[name] = band_energies(images[name].astype(np.float64) / 127.5 - base, _sigma(run))
        for lo, hi in zip(edges[:-1], edges[1:]):
            common = run.common(nfe=str(nfe), n_samples=int(hi - lo), seeds=f"{seeds[lo]}-{seeds[hi - 1]}")
            for band, v in shares[name].items():
                rows.append(Row("figure6", "", METHOD, VARIANT, name, f"{band}_share", float(np.nanmean(v[lo:hi])),
                                **common))
    grid = np.stack([images[key][:N_SHOW] for key in images], 1)
    bottom = progressive(run, FIRST_SEED["figure6"] + 5_000, lat[seeds[0]][0], cls[seeds[0]], measure=False)[0]
    plots.captioned_grids([("a row per pair: z | z-hat | z with one group from z-hat", grid),
                           ("fixing more groups of the first row's z (a row each)", bottom)],
                          run.out / "figure6.png", "DisCo-Diff Fig. 6: " + run.caption(
                              f"layout share of the change: {_said(shares)}"),
                          [[f"class {cls[s]}" for s in seeds[:N_SHOW]], _fixed_labels(run)])
    return rows


def _said(shares: dict) -> str:
    return ", ".join(f"{name.replace('swap ', '')} {np.nanmean(v['layout']):.2f}" for name, v in shares.items())


def _fixed_labels(run: FigureRun) -> list[str]:
    g = len(group_slices(run))
    return ["prior's z"] + [f"{f} of {g} groups fixed" for f in range(1, g)] + ["whole z fixed"]


def progressive(run: FigureRun, first: int, z: torch.Tensor, c: int,
                measure: bool = True) -> tuple[np.ndarray, list[float], int]:
    """Images [fixed steps, samples, C, H, W] with the first f groups of z fixed (f = 0 .. all), the rest from
    the prior, each row the same seeds; and (measure) each row's diversity (mean pairwise detector distance)."""
    n = N_SAMPLES[run.ctx.scale]
    seeds = list(range(first, first + n))
    rows, div, nfe = [], [], 0
    slices = group_slices(run)
    for f in range(len(slices) + 1):
        upto = slices[f - 1].stop if f else 0
        if upto == run.preset.model.context.m:
            source = SharedLatent(z, run.preset.prior.k)
        else:
            source = PrefixLatents(run.model.stage2.prior, z[:upto])
        im, _, nfe = run.sample(seeds, source, class_idx=c)
        rows.append(im)
        if measure:
            div.append(mean_pairwise(run.features(im)))
    return np.stack(rows), div, nfe


@harness("figure15", "Fig. 15: group-hierarchical latents: grids sharing z, z-hat, and z's coarse groups with z-hat's "
         "finest", (), code=CODE, options=("detector",), tolerances=TOLERANCES)
def figure15(ctx: RunContext) -> list[Row]:
    n = N_SAMPLES[ctx.scale]
    if ctx.dry_run:
        return _dry(ctx, "figure15", f"{N_REFS[ctx.scale]} latent pairs x 3 grids x {n} images")
    run = _hier_run(ctx)
    if not ctx.shard.is_main:
        return []
    k, fine = run.preset.prior.k, group_slices(run)[-1]
    pair_seeds, cls, lat = _pairs(run, FIRST_SEED["figure15"], N_REFS[ctx.scale])
    rows, panels = [], []
    for j, p in enumerate(pair_seeds):
        z, zh = lat[p]
        composed = z.clone()
        composed[fine] = zh[fine]
        seeds = list(range(FIRST_SEED["figure15"] + 1000 * (j + 1), FIRST_SEED["figure15"] + 1000 * (j + 1) + n))
        ims = {}
        for name, latent in (("z", z), ("z-hat", zh), ("composed", composed)):
            ims[name], _, nfe = run.sample(seeds, SharedLatent(latent, k), class_idx=cls[p])
        common = run.common(nfe=str(nfe), n_samples=n, seeds=f"{seeds[0]}-{seeds[-1]}")
        for parent in ("z", "z-hat"):
            e = _band_distance(ims["composed"], ims[parent], _sigma(run))
            for band in ("layout", "colour"):
                rows.append(Row("figure15", "", METHOD, VARIANT, f"composed vs {parent}", f"{band}_distance",
                                float(e[band].mean()), **common))
        panels.append((f"class {cls[p]}: z | z-hat | composed", np.stack([ims["z"], ims["z-hat"], ims["composed"]])))
    plots.captioned_grids(panels, run.out / "figure15.png", "DisCo-Diff Fig. 15: " + run.caption(
        "rows share z, z-hat, and (z's coarse groups, z-hat's finest group); columns share seeds"),
        [["z", "z-hat", "composed"]] * len(panels))
    return rows


def _band_distance(a: np.ndarray, b: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """Per image: the RMS (in [-1, 1] pixel units) of the layout and colour bands of a - b."""
    from scipy.ndimage import gaussian_filter

    d = (a.astype(np.float64) - b.astype(np.float64)) / 127.5
    dc = d.mean(axis=(2, 3), keepdims=True)
    low = gaussian_filter(d - dc, sigma=(0, 0, sigma, sigma), mode="reflect")
    return {"layout": np.sqrt((low ** 2).reshape(len(d), -1).mean(1)),
            "colour": np.sqrt((np.broadcast_to(dc, d.shape) ** 2).reshape(len(d), -1).mean(1))}


@harness("figure16", "Fig. 16: group-hierarchical latents: fixing more groups of one image's latent (diversity per step)",
         (), code=CODE, options=("detector",), tolerances=TOLERANCES)
def figure16(ctx: RunContext) -> list[Row]:
    if ctx.dry_run:
        return _dry(ctx, "figure16", f"{N_REFS[ctx.scale]} reference latents x (groups + 1) rows x {N_SAMPLES[ctx.scale]} images")
    run = _hier_run(ctx)
    if not ctx.shard.is_main:
        return []
    ref_seeds, cls, lat = _pairs(run, FIRST_SEED["figure16"], N_REFS[ctx.scale])
    rows, panels = [], []
    labels = _fixed_labels(run)
    for j, s in enumerate(ref_seeds):
        grid, div, nfe = progressive(run, FIRST_SEED["figure16"] + 1000 * (j + 1), lat[s][0], cls[s])
        n = grid.shape[1]
        for label, d in zip(labels, div):
            rows.append(Row("figure16", "", METHOD, VARIANT, label, "feature_diversity", d, nfe=str(nfe), n_samples=n,
                            seeds=f"reference {j}: {FIRST_SEED['figure16'] + 1000 * (j + 1)}-"
                                  f"{FIRST_SEED['figure16'] + 1000 * (j + 1) + n - 1}",
                            feature_extractor=run.feature_name, **run.common()))
        panels.append((f"class {cls[s]}", grid))
    plots.captioned_grids(panels, run.out / "figure16.png", "DisCo-Diff Fig. 16: " + run.caption(
        "a row per number of fixed groups (the rest from the prior)"), [labels] * len(panels))
    return rows
