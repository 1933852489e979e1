"""Distances between two images of the same seed (latent switching, reconstructions): in pixels and
in the FID detector's pool features, one number per image pair."""
from __future__ import annotations

import numpy as np


def pixel_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 [n, C, H, W] x 2 -> [n]: root-mean-square difference per image, in units of the pixel range
    (0: identical, 1: black vs white everywhere)."""
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {a.shape} vs {b.shape}")
    d = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    return np.sqrt((d ** 2).reshape(len(a), -1).mean(1))


def feature_l2(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """[n, D] x 2 -> [n]: Euclidean distance between the two images' features (the detector's 2048-d pool
    features, the space FID measures in)."""
    if fa.shape != fb.shape:
        raise ValueError(f"feature batches differ in shape: {fa.shape} vs {fb.shape}")
    return np.linalg.norm(fa.astype(np.float64) - fb.astype(np.float64), axis=1)


def band_energies(diff: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """Where an image difference lives (claim 9): its energy per image in three bands, each as a share of
    their sum. float [n, C, H, W] -> {"colour": [n], "layout": [n], "texture": [n]}.

    colour: each channel's mean (a global tint or brightness change); layout: what a Gaussian low-pass of
    standard deviation `sigma` pixels keeps of the rest (shape and position); texture: the remainder (edges
    and fine detail). A Gaussian split is defined alike for greyscale stand-ins and RGB ImageNet and scales
    with the resolution through sigma; taking the channel means out first keeps a colour change from
    counting as layout."""
    from scipy.ndimage import gaussian_filter

    d = diff.astype(np.float64)
    dc = d.mean(axis=(2, 3), keepdims=True)
    rest = d - dc
    low = gaussian_filter(rest, sigma=(0, 0, sigma, sigma), mode="reflect")
    high = rest - low
    e = {"colour": (np.broadcast_to(dc, d.shape) ** 2).reshape(len(d), -1).sum(1),
         "layout": (low ** 2).reshape(len(d), -1).sum(1), "texture": (high ** 2).reshape(len(d), -1).sum(1)}
    total = sum(e.values())
    safe = np.where(total > 0, total, 1.0)
    return {k: np.where(total > 0, v / safe, np.nan) for k, v in e.items()}
