"""FID (and, below paper scale, `fd_<network>`) of image models, for the FID tables.

`ImageScorer` holds a detector and the reference statistics of the training set, and scores a
generator (seeds -> uint8 images) over the scale's seed ranges: one value per range, so the
tables and verdicts show the spread over sampling seeds.

Budgets (`FIDBudget`): at paper scale EDM's protocol (50,000 samples, seeds 0-49999, against the
whole training set or EDM's reference npz; optionally EDM's min over three seed ranges). On this
CPU the Inception network extracts ~4 images/s per thread, so small scale scores three ranges of a
few hundred samples against a fixed training subset, and adds the Fréchet distance in the
features of a small classifier trained on the stand-in (bench/metrics/feature_net.py), named
`fd_<network>`, which costs almost nothing per image.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from bench.data.images import ImageSet, image_loader
from bench.distributed import Shard
from bench.metrics.detectors import Detector, load_detector
from bench.metrics.feature_net import FeatureExtractor, FeatureNetConfig, train_feature_net
from bench.metrics.fid import (FIDStats, StatsAccumulator, StatsError, cached_stats, compute_stats, frechet_distance,
                               frechet_distance_auto, load_stats, stats_cache_key, stats_from_features)
from bench.progress import stage

REF_ENV = "DISCO_BENCH_IMAGENET64_REF"   # EDM's imagenet-64x64.npz (reference statistics), when not given by flag


@dataclasses.dataclass(frozen=True)
class FIDBudget:
    n_per_range: int                 # generated images per seed range
    ranges: int                      # seed ranges: the replicates behind the spread
    n_ref: Optional[int]             # training images in the reference statistics (None: all)
    feature_net: bool                # also fd_<network> (a classifier trained on the stand-in)
    min_of_ranges: bool = False      # EDM's paper protocol: report the minimum over the ranges

    @property
    def protocol(self) -> str:
        n = f"{self.n_per_range // 1000}k" if self.n_per_range % 1000 == 0 else str(self.n_per_range)
        return (f"fid{n}-min-of-{self.ranges}" if self.min_of_ranges else
                f"fid{n} x {self.ranges} seed ranges" if self.ranges > 1 else f"fid{n}")

    def seed_ranges(self, first: int = 0) -> list[range]:
        return [range(first + r * self.n_per_range, first + (r + 1) * self.n_per_range) for r in range(self.ranges)]


# smoke: the path runs; small: fits ~90 min per table on 2 CPU cores with its training (the detector: ~4 images/s
# on 2 busy cores); paper: EDM's fid50k.
BUDGETS = {"smoke": FIDBudget(4, 3, 32, True), "small": FIDBudget(100, 3, 4000, True),
           "paper": FIDBudget(50_000, 1, None, False)}


# The fd network per scale (smoke: just the path; small: a few minutes of training on 2 cores).
FEATURE_NETS = {"smoke": FeatureNetConfig(channels=(8, 16), feature_dim=32, steps=60, batch_size=64),
                "small": FeatureNetConfig(channels=(16, 32, 64), feature_dim=128, steps=800)}


def budget_for(scale: str, min_of_three: bool = False) -> FIDBudget:
    b = BUDGETS[scale]
    if min_of_three:
        if scale != "paper":
            raise ValueError("--fid-min-of-3 is EDM's paper-scale protocol; below it every range is reported")
        b = dataclasses.replace(b, ranges=3, min_of_ranges=True)
    return b


@dataclasses.dataclass
class Scored:
    """One generator's scores: a value per seed range for each metric."""
    values: dict[str, list[float]]   # metric -> [range 0, range 1, ...]
    seeds: list[str]                 # "0-299", ...
    nfe: int
    n: int                           # images per range
    sample_seconds: float
    images: np.ndarray               # the first range's images (uint8), for grids


@dataclasses.dataclass
class ImageScorer:
    detector: Detector
    ref: FIDStats
    budget: FIDBudget
    fd: Optional[FeatureExtractor] = None
    fd_ref: Optional[tuple[np.ndarray, np.ndarray]] = None

    @property
    def fid_extractor(self) -> str:
        gray = ", grayscale repeated to 3 channels" if self.ref.grayscale_repeated else ""
        return (f"inception-v3 FID ({Path(self.detector.info.path).name}, sha256 {self.detector.info.short_sha}; "
                f"{self.budget.protocol}; reference {self.ref.n if self.ref.n else 'unrecorded'} images{gray})")

    @property
    def fd_extractor(self) -> str:
        return self.fd.describe() if self.fd else ""

    def distances(self, images: np.ndarray, shard: Shard = Shard()) -> dict[str, float]:
        """FID (and fd) of `images` against the reference. Under torchrun each rank passes its share:
        from 2048 images on, the Inception statistics are all-reduced (EDM fid.py's sums) and EDM's sqrtm
        route is used; below that, and for the small fd features, the features themselves are gathered."""
        fid_feats = self.detector.features(images, batch_size=64)
        if shard.world == 1:
            out = {"fid": frechet_distance_auto(fid_feats, self.ref.mu, self.ref.sigma)}
        else:
            acc = StatsAccumulator(fid_feats.shape[1])
            acc.add(fid_feats)
            acc.all_reduce()
            if acc.n >= fid_feats.shape[1]:
                mu, sigma = acc.finalize()
                out = {"fid": frechet_distance(mu, sigma, self.ref.mu, self.ref.sigma)}
            else:
                out = {"fid": frechet_distance_auto(_gather(fid_feats, shard), self.ref.mu, self.ref.sigma)}
        if self.fd is not None:
            out[self.fd.metric] = frechet_distance_auto(_gather(self.fd.features(images), shard), *self.fd_ref)
        return out

    def score(self, generate: Callable[[list[int]], tuple[np.ndarray, int]], first_seed: int = 0,
              what: str = "", shard: Shard = Shard()) -> Scored:
        """generate(seeds) -> (uint8 images [n, C, H, W], counted NFE); scored per seed range. Under
        torchrun every rank calls this and generates every world-th seed of each range."""
        values: dict[str, list[float]] = {}
        seeds, nfe, t_sample, first = [], 0, 0.0, None
        for i, r in enumerate(self.budget.seed_ranges(first_seed)):
            t0 = time.perf_counter()
            images, nfe = generate(list(r)[shard.rank::shard.world])
            t_sample += time.perf_counter() - t0
            stage(f"  {what}: seeds {r.start}-{r.stop - 1} sampled in {time.perf_counter() - t0:.0f} s; scoring",
                  shard.is_main)
            for k, v in self.distances(images, shard).items():
                values.setdefault(k, []).append(v)
            seeds.append(f"{r.start}-{r.stop - 1}")
            first = images if i == 0 else first
        return Scored(values, seeds, nfe, self.budget.n_per_range, t_sample, first)


def _gather(features: np.ndarray, shard: Shard) -> np.ndarray:
    """Every rank's rows (the features of its seeds), concatenated on every rank."""
    if shard.world == 1:
        return features
    import torch.distributed as dist

    parts: list = [None] * shard.world
    dist.all_gather_object(parts, features)
    return np.concatenate(parts)


def reference_subset(train: ImageSet, budget: FIDBudget) -> ImageSet:
    """The reference images: the training set's first n_ref images (all at paper scale)."""
    if budget.n_ref is None or budget.n_ref >= len(train):
        return train
    return train.subset(slice(0, budget.n_ref)).named(f"{train.name}, its first {budget.n_ref:,} images")


def real_images(train: ImageSet, budget: FIDBudget) -> list[np.ndarray]:
    """Training images disjoint from the reference subset, one block per seed range (the FID floor
    of real data at the generated rows' sample size). [] when the training set has too few."""
    start = budget.n_ref or len(train)
    n = budget.n_per_range
    if start + budget.ranges * n > len(train):
        return []
    return [_uint8(train.subset(slice(start + r * n, start + (r + 1) * n))) for r in range(budget.ranges)]


def _uint8(data: ImageSet) -> np.ndarray:
    return np.concatenate([b[0].numpy() for b in image_loader(data, batch_size=1024)])


def load_reference(train: ImageSet, detector: Detector, budget: FIDBudget, cache: Path,
                   ref_path: Optional[Path] = None, dataset_key: str = "") -> FIDStats:
    """The reference statistics: `ref_path` (an EDM-format npz with mu and sigma, e.g. EDM's
    imagenet-64x64.npz) when given, else $DISCO_BENCH_IMAGENET64_REF for ImageNet-64, else computed from
    the reference subset of `train` and cached by dataset, resolution, detector and image count."""
    path = ref_path or (Path(os.environ[REF_ENV]) if dataset_key == "imagenet64" and os.environ.get(REF_ENV) else None)
    if path is not None:
        if not Path(path).is_file():
            raise StatsError(f"reference statistics {path}: no such file")
        return load_stats(path)
    sub = reference_subset(train, budget)
    key = stats_cache_key(sub.name, sub.resolution, detector.info.sha256, len(sub))

    def compute() -> FIDStats:
        stage(f"reference statistics: Inception features of {len(sub):,} images of {sub.name} (cached after)")
        batches = (b[0] for b in image_loader(sub, batch_size=64))
        return compute_stats(batches, detector, total=len(sub), source=sub.name)

    return cached_stats(cache, key, compute)


def build_scorer(train: ImageSet, test: ImageSet, scale: str, cache: Path, detector_path: Optional[Path] = None,
                 ref_path: Optional[Path] = None, min_of_three: bool = False, dataset_key: str = "") -> ImageScorer:
    """Detector, reference statistics and (below paper scale) the fd network with its reference."""
    budget = budget_for(scale, min_of_three)
    detector = load_detector(detector_path)
    ref = load_reference(train, detector, budget, cache, ref_path, dataset_key)
    ref.check_resolution(train.resolution)
    fd = fd_ref = None
    if budget.feature_net:
        stage(f"fd network: a classifier on {train.name} (cached after its first training)")
        fd = train_feature_net(train, test, f"{dataset_key or 'data'}_cnn", Path(cache), FEATURE_NETS[scale])
        sub = reference_subset(train, budget) if budget.n_ref and budget.n_ref < len(train) else train
        stats = stats_from_features(fd.features(_uint8(sub)))
        fd_ref = (stats.mu, stats.sigma)
    return ImageScorer(detector, ref, budget, fd, fd_ref)


def floor_scores(scorer: ImageScorer, train: ImageSet, shard: Shard = Shard()) -> Optional[Scored]:
    """The same distances for real training images outside the reference subset, per seed range:
    what a perfect generator would score at this sample size (the metric's floor and spread)."""
    blocks = real_images(train, scorer.budget)
    if not blocks:
        return None
    real = np.concatenate(blocks)   # "seed" i = the i-th of these images
    return scorer.score(lambda seeds: (real[seeds], 0), what="real training images", shard=shard)


__all__ = ["BUDGETS", "FIDBudget", "ImageScorer", "REF_ENV", "Scored", "budget_for", "build_scorer", "floor_scores",
           "load_reference", "real_images", "reference_subset"]
