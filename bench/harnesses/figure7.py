"""Fig. 7: left, the training loss versus sigma (figure10's measurement, read from its saved arrays, not
recomputed); right, latent switching (claim 4: switching the discrete latent late in sampling barely
changes the image, because the latents act at large t).

Latent switching (bench/images/latent_switch.py): for each triple (seed, z_a, z_b) of the scale's
class-conditional DisCo-Diff (the model table1/table3/figure10 train, from the same cache), sample with
z_a and switch to z_b after 0, 25, 50, 75 and 100 % of the Heun steps (cfg 0: the conditional model;
100 % = z_a throughout, 0 % = z_b throughout). Its numbers, per switch point: the distance of the
switched image to the z_a image ("latent_switch_change") and to the z_b image, in the FID detector's
pool features and in pixels (RMS), and the change as a fraction of the whole z_a -> z_b change. The
triples whose z_b differs from z_a (a near-deterministic prior can draw the same latent; their count is
reported) are split into groups of consecutive seeds; each group's mean is a replicate, paired across
switch points (the same seeds and latents).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bench import atomic, plots
from bench.images.latent_switch import switched_samples
from bench.images.pipeline import load_preset_dataset, train_model
from bench.images.presets import image_preset
from bench.images.sampling import SamplerSpec
from bench.metrics.detectors import load_detector
from bench.metrics.image_distance import feature_l2, pixel_rms
from bench.progress import stage
from bench.provenance import device_name, git_sha
from bench.harnesses.figure10 import VARIANT
from bench.harnesses.image_figures import detector_features_name   # the same trained models, described once there
from bench.registry import RunContext, harness
from bench.rows import Row
from bench.tolerance import Tolerance

PANEL = "Fig. 7 right"
FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.0)   # switch to z_b after this fraction of the Heun steps (grid order)
N_TRIPLES = {"smoke": 8, "small": 32, "paper": 64}
GROUPS = {"smoke": 4, "small": 8, "paper": 8}
SEED_B_OFFSET = 1_000_000   # z_b of triple j comes from seed SEED_B_OFFSET + j
GRID_ROWS = 6
METRICS = {  # metric -> (space, distance to which image)
    "latent_switch_change": ("feature", "a"), "latent_switch_distance_to_b": ("feature", "b"),
    "latent_switch_change_pixel": ("pixel", "a"), "latent_switch_distance_to_b_pixel": ("pixel", "b"),
}


def setting(fraction: float) -> str:
    return f"switch={fraction:.0%}"


@harness("figure7", "Fig. 7: loss versus sigma (from figure10); switching the discrete latent late in sampling "
         "(claim 4)", (), code=("bench/harnesses/figure7.py", "bench/images/", "bench/metrics/image_distance.py",
                               "bench/metrics/detectors.py", "baselines/edm/", "bench/disco/", "bench/nets/",
                               "bench/data/images.py", "bench/train.py", "bench/diffusion/"),
         options=("detector",),
         tolerances=(("latent_switch*", Tolerance("spread", 4, floor=0.02)), ("identical_latent_pairs", Tolerance("absolute", 2))))
def figure7(ctx: RunContext) -> list[Row]:
    preset = image_preset("DisCo-Diff", ctx.scale)
    n, groups = N_TRIPLES[ctx.scale], GROUPS[ctx.scale]
    if ctx.dry_run:
        det = load_detector(ctx.fid_detector)
        print(f"{preset.label} [{ctx.scale}]: {n} triples (seed, z_a, z_b) in {groups} groups, switch after "
              f"{', '.join(f'{f:.0%}' for f in FRACTIONS)} of {preset.sampler_steps} Heun steps; "
              f"{n * len(FRACTIONS)} images; distances in {det.info.describe()} features and pixels")
        return []
    device = torch.device(ctx.device)
    out = Path(ctx.out) / ctx.scale
    detector = load_detector(ctx.fid_detector)   # checked before anything trains
    train = load_preset_dataset(preset, "train")
    model = train_model(preset, train, ctx.cache, ctx.seed, device, ctx.shard)
    if not ctx.shard.is_main:
        return []
    u = preset.model.unet
    seeds = list(range(n))
    stage(f"figure7 [{ctx.scale}]: {n} triples x {len(FRACTIONS)} switch points, {preset.sampler_steps} Heun steps")
    t0 = time.perf_counter()
    sw = switched_samples(model.stage1.ema.denoiser, model.stage2.prior, seeds, [SEED_B_OFFSET + s for s in seeds],
                          FRACTIONS, SamplerSpec("heun", preset.sampler_steps),
                          img_shape=(u.in_channels, u.img_resolution, u.img_resolution), label_dim=u.label_dim,
                          device=device)
    sample_s = time.perf_counter() - t0
    stage(f"figure7 [{ctx.scale}]: detector features of {n * len(FRACTIONS)} images ({detector.info.describe()})")
    feats = {f: detector.features(sw.images[f]) for f in FRACTIONS}
    dist = {}   # (metric, fraction) -> [n]
    for metric, (space, to) in METRICS.items():
        end = 1.0 if to == "a" else 0.0
        for f in FRACTIONS:
            dist[metric, f] = (feature_l2(feats[f], feats[end]) if space == "feature"
                               else pixel_rms(sw.images[f], sw.images[end]))
    common = dict(scale=ctx.scale, dataset=train.name, device=device_name(ctx.device), git_sha=git_sha(),
                  nfe=str(sw.nfe))
    feature_name = detector_features_name(detector)
    rows: list[Row] = []
    # Only triples whose z_b differs from z_a switch anything; they are split into groups of consecutive seeds
    # (a prior that is near-deterministic given the class leaves few: identical_latent_pairs says how many not)
    switched = np.flatnonzero((sw.codes_a != sw.codes_b).any(1))
    for part in (np.array_split(switched, min(groups, len(switched))) if len(switched) else []):
        seeds_said = ", ".join(str(s) for s in part) + f" (z_b: seed + {SEED_B_OFFSET})"
        whole = dist["latent_switch_change", 0.0][part].mean()   # the full z_a -> z_b change of the group
        for f in FRACTIONS:
            for metric, (space, _) in METRICS.items():
                rows.append(Row("figure7", "", "DisCo-Diff", VARIANT, setting(f), metric,
                                float(dist[metric, f][part].mean()), n_samples=len(part), seeds=seeds_said,
                                feature_extractor=feature_name if space == "feature" else "", **common))
            if whole > 0:   # (z_b gave the very same image: no change to take a fraction of)
                rows.append(Row("figure7", "", "DisCo-Diff", VARIANT, setting(f), "latent_switch_change_fraction",
                                float(dist["latent_switch_change", f][part].mean() / whole), n_samples=len(part),
                                seeds=seeds_said, feature_extractor=feature_name, **common))
    rows.append(Row("figure7", "", "DisCo-Diff", VARIANT, PANEL, "identical_latent_pairs", float(sw.identical),
                    n_samples=n, seeds=f"0-{n - 1}", **common))
    rows.append(Row("figure7", "", "DisCo-Diff", VARIANT, PANEL, "sample_images_per_s",
                    n * len(FRACTIONS) / sample_s, n_samples=n * len(FRACTIONS), seeds=f"0-{n - 1}",
                    seconds=sample_s, **common))
    loss = Path(ctx.out) / ctx.scale / "figure10_data.npz"
    shown = np.concatenate([switched, np.setdiff1d(np.arange(n), switched)])[:GRID_ROWS]   # switched triples first
    npz = atomic.save_npz(out / "figure7_data.npz", fractions=np.array(FRACTIONS), git_sha=np.array(git_sha()),
                          grid=np.stack([sw.images[f][shown] for f in FRACTIONS], 1),   # [rows, fractions, C, H, W]
                          **{f"{m}__{f:g}": dist[m, f][switched] for m in METRICS for f in FRACTIONS},
                          **_loss_panel(loss))
    plots.figure7(npz, out / "figure7.png", f"{ctx.scale} scale, {train.name}; DisCo-Diff, {preset.sampler_steps} "
                  f"Heun steps, cfg 0; {len(switched)} of {n} triples switch (in {n - len(switched)} "
                  "the prior drew z_b = z_a)")
    return rows


def _loss_panel(npz: Path) -> dict[str, np.ndarray]:
    """figure10's loss-versus-sigma arrays for the left panel, when figure10 has run at this scale (its
    commit kept beside them); none otherwise (the panel then says so)."""
    if not npz.is_file():
        return {}
    d = np.load(npz)
    return {"loss_sigmas": d["sigmas"], "loss_git_sha": d["git_sha"],
            **{k: d[k] for k in d.files if k.startswith("loss__")}}
