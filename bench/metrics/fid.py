"""FID following NVlabs/edm's fid.py: Inception statistics in float64, Fréchet distance with
scipy's sqrtm (real part), EDM-format `.npz` statistics (`mu` [2048], `sigma` [2048, 2048]), and the
paper-scale protocol (50,000 samples, seeds 0-49999, against the training set; optionally EDM's
minimum over three seed ranges).

The detector (bench/metrics/detectors.py) maps uint8 images to 2048-d features; every result
records its file's sha256 and the number of images on each side.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from bench.metrics.detectors import FEATURE_DIM, Detector, as_detector_input

ImageBatches = Iterable[Union[np.ndarray, torch.Tensor]]


class StatsError(ValueError):
    """A statistics file or array is not usable FID statistics (one-line message)."""


# ---------------------------------------------------------------------------------------------
# Fréchet distance.

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), real part (EDM fid.py,
    calculate_fid_from_inception_stats; Heusel et al. 2017, Dowson & Landau 1982)."""
    import scipy.linalg

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (len(mu1),) * 2 or sigma2.shape != sigma1.shape:
        raise StatsError(f"statistics do not match: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {sigma1.shape} / {sigma2.shape}")
    m = np.square(mu1 - mu2).sum()
    with warnings.catch_warnings():   # singular products (n < 2048 images) warn; EDM passes disp=False
        warnings.simplefilter("ignore")
        s = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if isinstance(s, tuple):          # scipy versions where disp defaults differently
        s = s[0]
    return float(np.real(m + np.trace(sigma1 + sigma2 - 2 * s)))


def frechet_distance_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """The same Fréchet distance between the Gaussians fitted to two feature sets [n1, d], [n2, d]
    (unbiased covariances), computed exactly and cheaply when n << d: with centred, scaled
    A = (F1 - mu1) / sqrt(n1 - 1) and B likewise, S1 = A^T A and S2 = B^T B, the non-zero eigenvalues
    of S1 S2 are those of (A B^T)(A B^T)^T, so tr sqrtm(S1 S2) = sum of singular values of A B^T
    (an n1 x n2 matrix) and tr S1 = |A|_F^2. For tests and small sets; reported FIDs use
    `frechet_distance` (EDM's sqrtm), which a 2048-d matrix makes slow on a CPU."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise StatsError(f"need feature sets [n1, d] and [n2, d] with n >= 2, got {f1.shape} and {f2.shape}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a = (f1 - mu1) / np.sqrt(len(f1) - 1)
    b = (f2 - mu2) / np.sqrt(len(f2) - 1)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(np.square(mu1 - mu2).sum() + np.square(a).sum() + np.square(b).sum() - 2 * nuclear)


def frechet_distance_to_stats(features: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance between the Gaussian fitted to `features` [n, d] (unbiased covariance) and
    reference statistics (mu2, sigma2), exact and fast when n < d: with A = (F - mu1) / sqrt(n - 1),
    S1 = A^T A, and the non-zero eigenvalues of S1 S2 = A^T (A S2) are those of A S2 A^T (n x n,
    symmetric PSD), so tr sqrtm(S1 S2) = sum of their square roots. The value equals
    `frechet_distance` (scipy's sqrtm of the d x d product, EDM's route) to rounding; the harnesses
    use this one below d generated images (a 2048-d sqrtm takes ~30-100 s on this CPU), sqrtm above."""
    f = np.asarray(features, np.float64)
    mu2, sigma2 = np.asarray(mu2, np.float64), np.asarray(sigma2, np.float64)
    if f.ndim != 2 or len(f) < 2 or mu2.shape != (f.shape[1],) or sigma2.shape != (f.shape[1],) * 2:
        raise StatsError(f"need features [n >= 2, d] and statistics of dimension d: got {f.shape}, mu {mu2.shape}, "
                         f"sigma {sigma2.shape}")
    mu1 = f.mean(0)
    a = (f - mu1) / np.sqrt(len(f) - 1)
    eig = np.linalg.eigvalsh(a @ sigma2 @ a.T).clip(min=0)   # PSD up to rounding
    return float(np.square(mu1 - mu2).sum() + np.square(a).sum() + np.trace(sigma2) - 2 * np.sqrt(eig).sum())


def frechet_distance_auto(features: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray) -> float:
    """`frechet_distance_to_stats` below d images, EDM's sqrtm route (`frechet_distance`) from d on."""
    f = np.asarray(features, np.float64)
    if len(f) < f.shape[1]:
        return frechet_distance_to_stats(f, ref_mu, ref_sigma)
    return frechet_distance(f.mean(0), np.cov(f, rowvar=False), ref_mu, ref_sigma)


# ---------------------------------------------------------------------------------------------
# Statistics.

@dataclasses.dataclass
class FIDStats:
    """Inception statistics of one image set. n / detector_sha256 are None for files that do not
    record them (EDM's published references)."""
    mu: np.ndarray
    sigma: np.ndarray
    n: Optional[int] = None
    detector_sha256: Optional[str] = None
    grayscale_repeated: bool = False   # 1-channel images were repeated to 3 channels (EDM fid.py)
    source: str = ""
    resolution: Optional[int] = None  # of the images measured (None: not recorded, e.g. EDM's files)

    def check_resolution(self, resolution: int) -> None:
        """A reference of images at another resolution cannot be compared with (resized images change FID)."""
        if self.resolution is not None and self.resolution != resolution:
            raise StatsError(f"reference statistics {self.source or ''}: made from {self.resolution}x{self.resolution} "
                             f"images; this run's images are {resolution}x{resolution}")

    def save(self, path: Union[str, Path]) -> Path:
        """EDM-format npz (`mu`, `sigma`) plus `n`, `detector_sha256`, `grayscale_repeated`; atomic."""
        from bench.atomic import save_npz

        return save_npz(Path(path), mu=self.mu, sigma=self.sigma, n=np.int64(-1 if self.n is None else self.n),
                        detector_sha256=np.str_(self.detector_sha256 or ""),
                        grayscale_repeated=np.bool_(self.grayscale_repeated),
                        resolution=np.int64(-1 if self.resolution is None else self.resolution))

    def describe(self) -> str:
        n = "n unknown" if self.n is None else f"n={self.n}"
        det = f", detector sha256 {self.detector_sha256[:12]}" if self.detector_sha256 else ", detector not recorded"
        return f"statistics ({n}{det})"


def is_stats_npz(keys: Iterable[str]) -> bool:
    keys = set(keys)
    return "mu" in keys or "sigma" in keys


def load_stats(path: Union[str, Path], dim: int = FEATURE_DIM) -> FIDStats:
    """Our or EDM's statistics npz (e.g. fid-refs/imagenet-64x64.npz); validated, never unpickled."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"mu", "sigma"} <= keys:
                raise StatsError(f"{path}: a statistics npz needs arrays 'mu' and 'sigma'; it holds "
                                 f"{sorted(keys) or 'nothing'}")
            mu, sigma = np.asarray(z["mu"]), np.asarray(z["sigma"])
            n = int(z["n"]) if "n" in keys and np.ndim(z["n"]) == 0 else None
            sha = str(z["detector_sha256"]) if "detector_sha256" in keys else None
            gray = bool(z["grayscale_repeated"]) if "grayscale_repeated" in keys else False
            res = int(z["resolution"]) if "resolution" in keys and np.ndim(z["resolution"]) == 0 else -1
    except StatsError:
        raise
    except (OSError, ValueError, EOFError) as e:   # not a zip / truncated / object arrays
        raise StatsError(f"{path}: not a readable npz ({type(e).__name__}: {e})") from e
    check_stats(mu, sigma, dim, str(path))
    return FIDStats(mu.astype(np.float64), sigma.astype(np.float64), None if n is None or n < 0 else n,
                    sha or None, gray, str(path), res if res > 0 else None)


def check_stats(mu: np.ndarray, sigma: np.ndarray, dim: int = FEATURE_DIM, where: str = "statistics") -> None:
    if mu.shape != (dim,) or sigma.shape != (dim, dim):
        raise StatsError(f"{where}: expected mu [{dim}] and sigma [{dim}, {dim}], got mu {list(mu.shape)} "
                         f"and sigma {list(sigma.shape)}")
    if not (np.issubdtype(mu.dtype, np.floating) and np.issubdtype(sigma.dtype, np.floating)):
        raise StatsError(f"{where}: mu/sigma must be floating point, got {mu.dtype}/{sigma.dtype}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise StatsError(f"{where}: mu/sigma contain NaN or inf")


class StatsAccumulator:
    """Sum and outer-product sum of features in float64, then mu and the unbiased sigma
    (EDM fid.py, calculate_inception_stats: mu += f.sum(0); sigma += f.T @ f;
    sigma = (sigma - n mu mu^T) / (n - 1)). `all_reduce` sums the partial sums across ranks."""

    def __init__(self, dim: int = FEATURE_DIM):
        self.n = 0
        self.sum = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def add(self, features: np.ndarray) -> None:
        f = np.asarray(features, np.float64)
        self.n += len(f)
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def all_reduce(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            t = torch.from_numpy(np.concatenate([[self.n], self.sum, self.outer.ravel()]))
            torch.distributed.all_reduce(t)
            d = len(self.sum)
            self.n = int(round(t[0].item()))
            self.sum, self.outer = t[1:1 + d].numpy(), t[1 + d:].numpy().reshape(d, d)

    def finalize(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise StatsError(f"need at least 2 images for FID statistics, got {self.n}")
        mu = self.sum / self.n
        sigma = (self.outer - np.outer(mu, mu) * self.n) / (self.n - 1)
        return mu, sigma


def compute_stats(images: Union[np.ndarray, torch.Tensor, ImageBatches], detector: Detector, batch_size: int = 64,
                  total: Optional[int] = None, progress: bool = True, desc: str = "FID features",
                  source: str = "", distributed: bool = False) -> FIDStats:
    """FID statistics of uint8 images [N, C, H, W] (C = 1 or 3) — an array or an iterable of such
    batches (then `total` sizes the progress bar). Grayscale is repeated to 3 channels, and the
    returned stats say so. With `distributed`, each rank passes its share and the sums are all-reduced."""
    from tqdm import tqdm

    if isinstance(images, (np.ndarray, torch.Tensor)):
        total = len(images)
        batches: ImageBatches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = images
    acc = StatsAccumulator()
    channels: set[int] = set()
    sizes: set[int] = set()
    with tqdm(total=total, desc=desc, unit="img", disable=None if progress else True, leave=False) as bar:
        for b in batches:
            if len(b) == 0:
                continue
            channels.add(int(b.shape[1]))
            sizes.add(int(b.shape[-1]))
            acc.add(detector(as_detector_input(b)).numpy())
            bar.update(len(b))
    if len(channels) > 1:
        raise StatsError(f"images of mismatched kinds: channel counts {sorted(channels)} in one set")
    if distributed:
        acc.all_reduce()
    mu, sigma = acc.finalize()
    return FIDStats(mu, sigma, acc.n, detector.info.sha256, channels == {1}, source,
                    sizes.pop() if len(sizes) == 1 else None)


def stats_from_features(features: np.ndarray, detector_sha256: Optional[str] = None) -> FIDStats:
    acc = StatsAccumulator(features.shape[1])
    acc.add(features)
    mu, sigma = acc.finalize()
    return FIDStats(mu, sigma, acc.n, detector_sha256)


# ---------------------------------------------------------------------------------------------
# Cache of reference statistics.

def stats_cache_key(dataset: str, resolution: int, detector_sha256: str, n: int) -> str:
    """E.g. `imagenet64-train-64x64-det7ff4a85c3a63-n1281167`."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-") or "dataset"
    return f"{slug}-{resolution}x{resolution}-det{detector_sha256[:12]}-n{n}"


def stats_cache_path(cache_dir: Union[str, Path], key: str) -> Path:
    return Path(cache_dir) / "fid-refs" / f"{key}.npz"


def cached_stats(cache_dir: Union[str, Path], key: str, compute: Callable[[], FIDStats]) -> FIDStats:
    """The statistics stored under `key` in `cache_dir`, else `compute()` them and store them."""
    path = stats_cache_path(cache_dir, key)
    if path.is_file():
        try:
            return load_stats(path)
        except StatsError:
            pass   # a damaged cache entry is recomputed and replaced
    stats = compute()
    stats.save(path)
    stats.source = str(path)
    return stats


# ---------------------------------------------------------------------------------------------
# Protocol and results.

@dataclasses.dataclass(frozen=True)
class FIDProtocol:
    """How a model's FID is measured. Paper scale (EDM README "Calculating FID"): 50,000 generated
    images with seeds 0-49999 against statistics of the whole training set; `repeats=3` is EDM's
    protocol of three seed ranges (0-49999, 50000-99999, 100000-149999), reporting the minimum."""
    num_samples: int = 50_000
    first_seed: int = 0
    repeats: int = 1
    reference: str = "training set"

    def __post_init__(self) -> None:
        if self.num_samples < 2 or self.repeats < 1 or self.first_seed < 0:
            raise ValueError(f"invalid FID protocol {self}")

    @classmethod
    def paper(cls, min_of_three: bool = False) -> "FIDProtocol":
        return cls(repeats=3 if min_of_three else 1)

    @property
    def name(self) -> str:
        n = f"{self.num_samples // 1000}k" if self.num_samples % 1000 == 0 else str(self.num_samples)
        return f"fid{n}" + (f"-min-of-{self.repeats}" if self.repeats > 1 else "")

    def seed_ranges(self) -> list[range]:
        return [range(self.first_seed + r * self.num_samples, self.first_seed + (r + 1) * self.num_samples)
                for r in range(self.repeats)]


def format_seeds(r: range) -> str:
    return f"{r.start}-{r.stop - 1}"


@dataclasses.dataclass(frozen=True)
class FIDResult:
    fid: float                      # the reported value (the minimum over repeats)
    values: tuple[float, ...]       # one per seed range
    seeds: tuple[str, ...]          # "0-49999", ...
    protocol: str                   # FIDProtocol.name, e.g. "fid50k" or "fid50k-min-of-3"
    n_images: int                   # generated images per repeat
    n_ref: Optional[int]            # reference images (None: not recorded in the file)
    detector: str                   # path
    detector_sha256: str
    reference: str = ""
    grayscale_repeated: bool = False

    def row_fields(self) -> dict:
        """Columns for a harness row (DESIGN.md: n samples, seeds, feature extractor)."""
        return {"metric": "FID", "value": self.fid, "n_samples": self.n_images, "seeds": ";".join(self.seeds),
                "feature_extractor": f"inception-v3 FID ({Path(self.detector).name}, "
                                     f"sha256 {self.detector_sha256[:12]})",
                "fid_protocol": self.protocol, "fid_values": ";".join(f"{v:.4f}" for v in self.values),
                "n_ref": self.n_ref, "grayscale_repeated": self.grayscale_repeated}


def evaluate_fid(protocol: FIDProtocol, stats_for_seeds: Callable[[range], FIDStats], ref: FIDStats,
                 detector: Detector) -> FIDResult:
    """FID of the images that `stats_for_seeds(seeds)` generates and measures, against `ref`, under
    `protocol` (one value per seed range; the reported FID is their minimum, as in EDM's paper)."""
    if ref.detector_sha256 and ref.detector_sha256 != detector.info.sha256:
        warnings.warn(f"reference statistics {ref.source} were computed with detector sha256 "
                      f"{ref.detector_sha256[:12]}, not {detector.info.short_sha}")
    values, seeds, gray = [], [], False
    for r in protocol.seed_ranges():
        st = stats_for_seeds(r)
        if st.n is not None and st.n != len(r):
            raise StatsError(f"seeds {format_seeds(r)}: statistics of {st.n} images, expected {len(r)}")
        values.append(frechet_distance(st.mu, st.sigma, ref.mu, ref.sigma))
        seeds.append(format_seeds(r))
        gray = gray or st.grayscale_repeated
    return FIDResult(min(values), tuple(values), tuple(seeds), protocol.name, protocol.num_samples, ref.n,
                     detector.info.path, detector.info.sha256, ref.source or protocol.reference,
                     gray or ref.grayscale_repeated)


def fid_from_stats(a: FIDStats, b: FIDStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generated images in [-1, 1] -> uint8, as EDM generate.py does ((x * 127.5 + 128).clip(0, 255))."""
    return (images.to(torch.float32) * 127.5 + 128).clip(0, 255).to(torch.uint8)


__all__: Sequence[str] = (
    "FIDProtocol", "FIDResult", "FIDStats", "StatsAccumulator", "StatsError", "cached_stats", "check_stats",
    "compute_stats", "evaluate_fid", "fid_from_stats", "frechet_distance", "frechet_distance_auto",
    "frechet_distance_features", "frechet_distance_to_stats",
    "is_stats_npz", "load_stats", "stats_cache_key", "stats_cache_path", "stats_from_features", "to_uint8")
