"""What the image-figure harnesses share (figure2, figure6, figure9, figure11, figure12, figure14, figure15,
figure16): the scale's trained model from the config-hash cache (the one table1, table3 and figure10
train), sampling with latents the figure chooses, the FID detector's pool features, and distances
between images in them."""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from bench.data.images import ImageSet
from bench.disco.latents import one_hot
from bench.images.pipeline import TrainedImageModel, load_preset_dataset, train_model
from bench.images.presets import ImagePreset, image_preset
from bench.images.sampling import Latents, LatentSource, SamplerSpec, generate
from bench.metrics.detectors import Detector, load_detector
from bench.provenance import device_name, git_sha
from bench.registry import RunContext

# Class labels the figures fix. Paper scale: ImageNet's (Fig. 2 and 9 name malamute 249 and coffeepot 505;
# the others are ours). Below it the stand-in's first classes.
IMAGENET_CLASSES = (249, 505, 88, 980)   # malamute, coffeepot, macaw, volcano
IMAGE_FIGURE_CODE = ("bench/harnesses/image_figures.py", "bench/images/", "bench/metrics/image_distance.py",
                     "bench/metrics/detectors.py", "baselines/edm/", "bench/disco/", "bench/nets/",
                     "bench/data/images.py", "bench/train.py", "bench/diffusion/")


def figure_classes(preset: ImagePreset, n: int) -> list[int]:
    if preset.dataset == "imagenet64":
        return list(IMAGENET_CLASSES[:n])
    return list(range(min(n, preset.model.unet.label_dim)))


@dataclasses.dataclass
class SharedLatent(LatentSource):
    """Every sample of the batch takes the same latent z [m] (Fig. 2(b), 14, 15)."""
    z: torch.Tensor
    k: int
    name = "shared"

    def draw(self, rnd, y_idx, device) -> Latents:
        z = self.z.expand(len(rnd.seeds), -1)
        return Latents(one_hot(z, self.k).to(device), z.cpu().numpy())


@dataclasses.dataclass
class PrefixLatents(LatentSource):
    """The first j latents fixed, the rest drawn by the autoregressive prior given them, from each
    sample's own uniforms (Fig. 16)."""
    prior: torch.nn.Module
    prefix: torch.Tensor   # [j]
    name = "prefix"

    def draw(self, rnd, y_idx, device) -> Latents:
        u = rnd.rand(self.prior.cfg.m)
        z = self.prior.sample(u, y_idx, prefix=self.prefix.expand(len(rnd.seeds), -1))
        return Latents(one_hot(z, self.prior.cfg.k).to(device), z.cpu().numpy())


@dataclasses.dataclass
class FigureRun:
    """One image figure's run: the trained model, its data and the detector."""
    ctx: RunContext
    preset: ImagePreset
    train: ImageSet
    model: TrainedImageModel
    detector: Detector

    @property
    def device(self) -> torch.device:
        return torch.device(self.ctx.device)

    @property
    def out(self) -> Path:
        return Path(self.ctx.out) / self.ctx.scale

    def common(self, **extra) -> dict:
        return dict(scale=self.ctx.scale, dataset=self.train.name, device=device_name(self.ctx.device),
                    git_sha=git_sha(), **extra)

    def sample(self, seeds: Sequence[int], latents: Optional[LatentSource | str] = "generative",
               class_idx: Optional[int] = None, cfg: float = 0.0) -> tuple[np.ndarray, Optional[np.ndarray], int]:
        """uint8 images [n, C, H, W], their latents and the counted NFE: Heun at the preset's steps, each
        image its own seed; latents "generative" (the prior), "oracle" or a LatentSource."""
        u = self.preset.model.unet
        if isinstance(latents, str):
            latents = self.model.latents(latents)
        g = generate(self.model.stage1.ema.denoiser, list(seeds), SamplerSpec("heun", self.preset.sampler_steps, cfg=cfg),
                     img_shape=(u.in_channels, u.img_resolution, u.img_resolution), label_dim=u.label_dim,
                     class_idx=class_idx, latents=latents, device=self.device)
        return g.images, g.latents, g.nfe

    def features(self, images: np.ndarray) -> np.ndarray:
        return self.detector.features(images)

    @property
    def feature_name(self) -> str:
        return detector_features_name(self.detector)

    def caption(self, what: str) -> str:
        return f"{self.ctx.scale} scale, {self.train.name}; {self.preset.label}, {self.preset.sampler_steps} Heun steps: {what}"


def detector_features_name(detector: Detector) -> str:
    """The feature_extractor column of distances measured in the FID detector's pool features."""
    return f"inception-v3 pool features ({Path(detector.info.path).name}, sha256 {detector.info.short_sha})"


def figure_run(ctx: RunContext, label: str = "DisCo-Diff") -> FigureRun:
    """The detector (checked first: a bad path fails before anything trains), the training data and the
    scale's model (from the cache, or trained into it)."""
    preset = image_preset(label, ctx.scale)
    detector = load_detector(ctx.fid_detector)
    train = load_preset_dataset(preset, "train")
    model = train_model(preset, train, ctx.cache, ctx.seed, torch.device(ctx.device), ctx.shard)
    return FigureRun(ctx, preset, train, model, detector)


def mean_pairwise(f: np.ndarray) -> float:
    """Mean Euclidean distance over the distinct pairs of rows of f [n, D] (n >= 2)."""
    pairs = list(itertools.combinations(range(len(f)), 2))
    if not pairs:
        raise ValueError("a pairwise distance needs at least two images")
    return float(np.mean([np.linalg.norm(f[i] - f[j]) for i, j in pairs]))


def mean_cross(fa: np.ndarray, fb: np.ndarray) -> float:
    """Mean Euclidean distance between every row of fa and every row of fb."""
    return float(np.linalg.norm(fa[:, None, :] - fb[None, :, :], axis=-1).mean())


def distinct_latents(prior, seeds: Sequence[int], y: int, n: int, at_least: int = 2) -> torch.Tensor:
    """Up to n different latents [<= n, m] for class y, from the prior: the first distinct draws of `seeds`, in
    order (a prior that is near-deterministic given the class may hold fewer: at least `at_least` are needed)."""
    from bench.diffusion.seeds import PerSampleRandom

    found: list[torch.Tensor] = []
    for s in seeds:
        z = prior.sample(PerSampleRandom([s]).rand(prior.cfg.m), torch.tensor([y]))[0].cpu()
        if not any(torch.equal(z, f) for f in found):
            found.append(z)
        if len(found) == n:
            break
    if len(found) < at_least:
        raise LatentsError(f"the prior drew only {len(found)} distinct latent(s) for class {y} from {len(seeds)} "
                           f"seeds; the figure needs {at_least}: its latents carry no choice for this class")
    return torch.stack(found)


class LatentsError(ValueError):
    """A figure asked for more distinct latents than the trained prior draws (a collapsed codebook)."""
