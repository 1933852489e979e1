"""What the FID tables (table1, table3) share: one row spec per paper row, training the models a table
needs (each once, from the config-hash cache, which figure10 shares), scoring each row over the
scale's seed ranges, the rows, and the paper-scale dry run with its GPU-hour estimate."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from baselines.edm.preset import PRECISION
from bench import plots
from bench.data.images import DatasetError
from bench.images.evaluation import REF_ENV, ImageScorer, budget_for, build_scorer, floor_scores
from bench.images.model import ImageDiffusionModel
from bench.images.pipeline import (EDM64_CHECKPOINT_ENV, TrainedImageModel, load_preset_dataset,
                                   train_model)
from bench.images.presets import ImagePreset, image_preset
from bench.images.sampling import SamplerSpec
from bench.metrics.detectors import DetectorError, load_detector
from bench.metrics.fid import StatsError, load_stats
from bench.progress import stage
from bench.provenance import device_name, git_sha
from bench.registry import RunContext
from bench.rows import Row
from bench.tolerance import Tolerance

# How far a rerun may move a FID-table number (`python -m bench check`): distances by 4 standard errors of
# their seed ranges (at least 1: FID of a few hundred samples), code usage by small absolute bounds.
FID_TOLERANCES = (("fid*", Tolerance("spread", 4, floor=1.0)), ("fd_*", Tolerance("spread", 4, floor=0.5)),
                  ("code_perplexity", Tolerance("relative", 0.1)), ("codes_used_of_k", Tolerance("absolute", 2)),
                  ("prior_nll_nats_per_latent", Tolerance("absolute", 0.1)))

# The GPU rate behind the dry run's estimate. Not a measurement: no GPU was available where this
# suite was built. A100 bf16 dense peak (NVIDIA's datasheet) at a utilisation we assume.
GPU_PEAK_FLOPS, GPU_UTILISATION, GPU_NAME = 312e12, 0.30, "A100 (bf16 dense peak 312 TFLOP/s)"
TRAIN_FLOPS_PER_FORWARD = 3   # forward + backward ~ 3 forward passes (Kaplan et al. 2020's 6N vs 2N)


@dataclasses.dataclass(frozen=True)
class RowSpec:
    """One measured row of a FID table."""
    ref_id: str                      # the paper row in reference/ ("" if none)
    method: str                      # as the paper names it
    setting: str                     # as reference/ has it (table3), or Table 1's group
    preset: str                      # image preset label
    latents: Optional[str] = None    # None | "oracle" | "generative"
    cfg: float = 0.0                 # latent guidance D(z) + cfg (D(z) - D(null))
    sampler: str = "heun"            # heun | restart
    conditional: bool = True
    heun_steps: tuple[tuple[str, int], ...] = ()   # (scale, steps): Heun steps other than the preset's there

    @property
    def model(self) -> tuple[str, bool]:
        return self.preset, self.conditional


def sampler_spec(row: RowSpec, preset: ImagePreset, restart) -> SamplerSpec:
    if row.sampler == "restart":
        return SamplerSpec("restart", restart=restart, cfg=row.cfg)
    return SamplerSpec("heun", dict(row.heun_steps).get(preset.scale, preset.sampler_steps), cfg=row.cfg)


def check_fid_inputs(ctx: RunContext, resolution: int) -> None:
    """The detector and reference-statistics paths, checked before anything trains (one line each)."""
    if ctx.fid_detector is not None:
        load_detector(ctx.fid_detector)            # DetectorError: missing, corrupt, refused
    if ctx.fid_ref is not None:
        load_stats(ctx.fid_ref).check_resolution(resolution)   # StatsError: missing, no mu/sigma, resolution


def dataset_key(preset: ImagePreset) -> str:
    return preset.dataset.replace("-", "")


@dataclasses.dataclass
class TableRun:
    """A FID table's run at one scale: data, the scorer, and the trained models (trained on first use).
    Under torchrun every rank trains and scores (each its share of the seeds); rank 0 writes."""
    ctx: RunContext
    harness: str
    variant: str
    models: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        first = image_preset("EDM", self.ctx.scale)
        check_fid_inputs(self.ctx, first.model.unet.img_resolution)
        self.device = torch.device(self.ctx.device)
        self.train = load_preset_dataset(first, "train")
        self.test = load_preset_dataset(first, "test")
        self.common = dict(scale=self.ctx.scale, dataset=self.train.name, device=device_name(self.ctx.device),
                           git_sha=git_sha())
        self.scorer: Optional[ImageScorer] = None

    def model(self, label: str, conditional: bool = True) -> TrainedImageModel:
        key = (label, conditional)
        if key not in self.models:
            p = image_preset(label, self.ctx.scale, conditional)
            t0 = time.perf_counter()   # (an unconditional model reads the same images, not their labels)
            m = train_model(p, self.train, self.ctx.cache, self.ctx.seed, self.device, self.ctx.shard)
            stage(f"{self.harness} [{self.ctx.scale}]: {p.label}{'' if conditional else ' (unconditional)'} ready "
                  f"({time.perf_counter() - t0:.0f} s; trained {m.stage1.info['seconds']:.0f} s"
                  f"{', found in the cache' if m.stage1.info.get('cached') else ''})", self.ctx.shard.is_main)
            self.models[key] = m
        return self.models[key]

    def get_scorer(self) -> ImageScorer:
        if self.scorer is None:
            first, shard = image_preset("EDM", self.ctx.scale), self.ctx.shard

            def build() -> ImageScorer:
                return build_scorer(self.train, self.test, self.ctx.scale, self.ctx.cache, self.ctx.fid_detector,
                                    self.ctx.fid_ref, self.ctx.fid_min_of_three, dataset_key(first))

            # rank 0 computes the cached reference statistics and fd network; the others then load them
            self.scorer = build() if shard.is_main else None
            shard.barrier()
            self.scorer = self.scorer or build()
        return self.scorer

    def rows_for(self, row: RowSpec, restart=None) -> tuple[list[Row], dict[str, list[float]], np.ndarray]:
        m = self.model(*row.model)
        spec = sampler_spec(row, m.preset, restart)
        scorer = self.get_scorer()
        stage(f"{self.harness} [{self.ctx.scale}]: {row.method}, {row.setting or 'no setting'}: "
              f"{scorer.budget.ranges} x {scorer.budget.n_per_range} samples ({row.sampler}, cfg {row.cfg:g})",
              self.ctx.shard.is_main)
        sc = scorer.score(lambda seeds: m.generate(seeds, spec, row.latents, self.device),
                          what=f"{row.method}, {row.setting}", shard=self.ctx.shard)
        rows = self.value_rows(row.ref_id, row.method, row.setting, sc.values, sc.seeds, str(sc.nfe), sc.n,
                               sc.sample_seconds)
        rows.append(Row(self.harness, "", row.method, self.variant, row.setting, "sample_images_per_s",
                        sc.n * len(sc.seeds) / max(sc.sample_seconds, 1e-9), nfe=str(sc.nfe),
                        n_samples=sc.n * len(sc.seeds), seconds=sc.sample_seconds, **self.common))
        return rows, sc.values, sc.images

    def value_rows(self, ref_id: str, method: str, setting: str, values: dict[str, list[float]], seeds: list[str],
                   nfe: str, n: int, seconds: float = 0.0) -> list[Row]:
        """A row per metric and seed range (FID rows carry the paper's ref id; fd rows never do)."""
        scorer = self.get_scorer()
        out = []
        for metric, vs in values.items():
            is_fid = metric == "fid"
            extractor = scorer.fid_extractor if is_fid or metric.startswith("fid_") else scorer.fd_extractor
            for v, s in zip(vs, seeds):
                out.append(Row(self.harness, ref_id if is_fid else "", method, self.variant, setting, metric, v,
                               nfe=nfe, n_samples=n, seeds=s, feature_extractor=extractor,
                               seconds=seconds / max(len(vs), 1), **self.common))
        return out

    def floor_rows(self) -> list[Row]:
        """The distances of real training images outside the reference subset at the same sample size."""
        sc = floor_scores(self.get_scorer(), self.train, self.ctx.shard)
        if sc is None:
            return []
        return self.value_rows("", "real training images", "metric floor", sc.values, sc.seeds, "", sc.n)

    def grid(self, images: dict[str, np.ndarray], name: str, per_row: int = 8) -> None:
        """One grid: a line of samples per table row (the first seeds), for a look beside the numbers."""
        if not images or not self.ctx.shard.is_main:
            return
        out = Path(self.ctx.out) / self.ctx.scale / name
        stacked = np.concatenate([im[:per_row] for im in images.values()])
        plots.image_grid(stacked, out, columns=per_row)


# ------------------------------------------------------------------------------ dry run

def _flops_per_forward(preset: ImagePreset, guided: bool = False) -> float:
    """FLOPs of one denoiser evaluation of one image, counted by torch's FlopCounterMode on the meta
    device (no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    u = preset.model.unet
    with torch.device("meta"):
        model = ImageDiffusionModel(preset.model)
        x = torch.zeros(1, u.in_channels, u.img_resolution, u.img_resolution)
        cond = {"class_labels": torch.zeros(1, u.label_dim)} if u.label_dim else {}
        if preset.model.disco:
            cond["latent"] = torch.zeros(1, *preset.model.context.latent_shape)
        with FlopCounterMode(display=False) as counter:
            model.denoiser(x, torch.ones(1), **cond)
    return counter.get_total_flops() * (2 if guided else 1)


def _gpu_hours(flops: float) -> float:
    return flops / (GPU_PEAK_FLOPS * GPU_UTILISATION) / 3600


def dry_run(ctx: RunContext, harness: str, rows: list[RowSpec], restart=None) -> None:
    """Resolve the table's whole configuration, check its inputs, print what it would train and
    sample and an estimate of GPU-hours; train nothing."""
    import os

    budget = budget_for(ctx.scale, ctx.fid_min_of_three)
    problems = []
    try:
        det = load_detector(ctx.fid_detector)
        print(f"FID detector: {det.info.describe()}")
    except DetectorError as e:
        problems.append(f"FID detector: {e}")
    if ctx.fid_ref is not None or (ctx.scale == "paper" and os.environ.get(REF_ENV)):
        path = ctx.fid_ref or Path(os.environ[REF_ENV])
        try:
            st = load_stats(path)
            print(f"reference statistics: {path} ({st.describe()})")
        except StatsError as e:
            problems.append(f"reference statistics: {e}")
    else:
        print(f"reference statistics: computed from the training set ({budget.n_ref or 'all'} images) and cached"
              + (f" (or pass --fid-ref / set {REF_ENV} to EDM's imagenet-64x64.npz)" if ctx.scale == "paper" else ""))
    first = image_preset("EDM", ctx.scale)
    try:
        data = load_preset_dataset(first, "train")
        print(f"data: {data.name} ({len(data):,} images, {data.resolution}x{data.resolution})")
    except DatasetError as e:
        problems.append(f"data: {e}")
    if ctx.scale == "paper" and first.init_from_edm:
        path = os.environ.get(EDM64_CHECKPOINT_ENV)
        if not path:
            problems.append(f"EDM's network: set {EDM64_CHECKPOINT_ENV} to `python -m bench import-edm` output")
        elif not Path(path).is_file():
            problems.append(f"EDM's network: {EDM64_CHECKPOINT_ENV}={path}: no such file")
        else:
            print(f"EDM's network: {path}")
    total_train = total_sample = 0.0
    seen: set = set()
    print(f"\nmodels ({PRECISION if ctx.scale == 'paper' else 'fp32'}):")
    for r in rows:
        if r.model in seen:
            continue
        seen.add(r.model)
        p = image_preset(r.preset, ctx.scale, r.conditional)
        f = _flops_per_forward(p)
        train_flops = TRAIN_FLOPS_PER_FORWARD * f * p.train.steps * p.train.batch_size
        total_train += train_flops
        start = "fine-tuned from EDM's network" if p.init_from_edm and p.train.steps else (
            "EDM's published network, not trained" if not p.train.steps else "from scratch")
        print(f"  {p.label}{'' if r.conditional else ' (unconditional)'}: {p.train.steps:,} steps x batch "
              f"{p.train.batch_size:,} ({start}); {f / 1e9:.1f} GFLOP per denoiser call; "
              f"~{_gpu_hours(train_flops):,.0f} GPU-h to train")
    print(f"\nsamples ({budget.protocol} per row, {budget.ranges} seed range(s) of {budget.n_per_range:,}):")
    for r in rows:
        p = image_preset(r.preset, ctx.scale, r.conditional)
        spec = sampler_spec(r, p, restart)
        nfe = spec.restart.nfe() if spec.kind == "restart" else 2 * spec.num_steps - 1   # (the sampler counts them when run)
        n = budget.ranges * budget.n_per_range
        flops = _flops_per_forward(p, guided=r.cfg != 0) * nfe * n
        total_sample += flops
        print(f"  {r.ref_id or r.method}: {r.method} | {r.setting}: {n:,} images x {nfe} NFE ({spec.kind}"
              f"{', cfg %g: cond + null per call' % r.cfg if r.cfg else ''}) ~{_gpu_hours(flops):,.1f} GPU-h")
    print(f"\nestimate: ~{_gpu_hours(total_train):,.0f} GPU-hours of training + ~{_gpu_hours(total_sample):,.1f} of "
          f"sampling on {GPU_NAME} at an assumed {GPU_UTILISATION:.0%} utilisation (FLOPs counted by "
          "torch.utils.flop_counter on the resolved networks; the GPU rate is an assumption, not a measurement; "
          "Inception features, ~6 GFLOP per image, are not counted)")
    if problems:
        raise DatasetError("; ".join(problems))
