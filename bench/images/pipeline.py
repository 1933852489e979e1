"""Image DisCo-Diff end to end, on any preset: data -> stage 1 (EDM, or encoder + denoiser
jointly, Algorithm 1) -> stage 2 (latents at tau = 0.01, autoregressive prior by maximum
likelihood, Algorithm 2) -> a sampling checkpoint (sampling itself: bench/images/sampling.py).

Data takes one path at every scale: a DataLoader over an `ImageSet` (bench/data/images.py) --
ImageNet-64 streamed from EDM's zip, the stand-ins from memory -- uint8 until it reaches the
training device. Stage 1 reads each step's global batch from a seeded `InfiniteOrder` (every
image once per lap; a pure function of (seed, step), so a resumed run reads on from its step),
each rank loading only its slice.

Trained models are cached under `<cache>/images/` by the hash of their configs (bench.train).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from bench.data.images import (DatasetError, EDMImages, GlobalBatchSampler, ImageSet, InfiniteOrder, image_loader,
                               load_digits_standin, load_fashion_mnist)
from bench.diffusion.loss import EDMLossConfig
from bench.disco.continuous import LatentDiffusionPrior
from bench.disco.gumbel import gumbel_noise
from bench.disco.latents import one_hot
from bench.disco.prior import AutoregressivePrior
from bench.distributed import Shard
from bench.images.checkpoints import DenoiserCheckpoint
from bench.images.model import BatchDraw, ImageDiffusionModel, draw_batch
from bench.images.presets import ImagePreset
from bench.images.sampling import (AutoregressiveLatents, ContinuousPriorLatents, LatentSource, OracleLatents,
                                   SamplerSpec, generate)
from bench.nets import meta_parameter_count
from bench.nets.adm_unet import load_edm_state_dict
from bench.progress import stage
from bench.train import build_seeded, checkpoint_step, fit, run_dir_for

IMAGENET64_ENV = "DISCO_BENCH_IMAGENET64"   # path to EDM's imagenet-64x64.zip (dataset_tool.py)
IMAGENET64_VAL_ENV = "DISCO_BENCH_IMAGENET64_VAL"   # optional: ImageNet's validation set, same format
IMAGENET64_HELD_OUT = 10_000   # without it: the training zip's last 10,000 images, never trained on
IMAGENET64_TRAIN_IMAGES = 1_281_167   # ImageNet-1k's training set (for the dry run's memory plan)
STANDIN_TRAIN_IMAGES = {"digits": 1500, "fashion-mnist": 60_000}   # load_preset_dataset's "train" splits
DATA_WORKERS_ENV = "DISCO_BENCH_DATA_WORKERS"   # DataLoader worker processes (default: see LoaderConfig)
# Stage 1's reading order, part of its cache key (a change of order is a different training run).
DATA_ORDER = ("InfiniteOrder: laps of seeded permutations, global batch = next batch_size positions; "
              "the step generator draws no rows")
EDM64_CHECKPOINT_ENV = "DISCO_BENCH_EDM64"   # EDM's pre-trained network, converted by import-edm


def edm_initialisation(preset: ImagePreset) -> Optional[dict]:
    """App. D: paper-scale models start from EDM's pre-trained ADM. Returns its state dict in
    EDMPrecond layout ("net.*"), or None when the preset trains from scratch."""
    if not preset.init_from_edm:
        return None
    path = os.environ.get(EDM64_CHECKPOINT_ENV)
    if not path:
        raise DatasetError(f"{preset.label} [{preset.scale}] starts from EDM's pre-trained network: set "
                           f"{EDM64_CHECKPOINT_ENV} to the output of `python -m bench import-edm "
                           "edm-imagenet-64x64-cond-adm.pkl --out edm64.pt`")
    ckpt = DenoiserCheckpoint.load(Path(path))
    if ckpt.unet != dataclasses.replace(preset.model.unet, xattn_dim=0):
        raise DatasetError(f"{path}: its U-Net config differs from the preset's ({ckpt.unet} vs {preset.model.unet})")
    return ckpt.denoiser


def load_preset_dataset(preset: ImagePreset, split: str = "train") -> ImageSet:
    """The preset's data, checked against its resolution, channels and conditioning.

    Held-out data (split "test"): digits' last 297 images; Fashion-MNIST's test split; for
    ImageNet-64, ImageNet's validation set when $DISCO_BENCH_IMAGENET64_VAL names one (an EDM
    zip or folder), else the training zip's last 10,000 images (a tenth of a smaller zip), which
    split "train" then leaves out. The held-out set's name says which. ImageNet-64 is streamed
    (EDMImages: only its index in memory); the stand-ins are held in memory."""
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if preset.dataset == "digits":
        data = load_digits_standin()
        if split == "test":   # digits has no split: the last 297 images are held out
            data = data.subset(slice(1500, None)).named(f"{data.name}: its last 297 images (held out of training)")
        else:
            data = data.subset(slice(0, 1500))
    elif preset.dataset == "fashion-mnist":
        data = load_fashion_mnist(split=split, resolution=preset.model.unet.img_resolution)
        if split == "test":
            data = data.named(f"{data.name}: its test split")
    elif preset.dataset == "imagenet64":
        val = os.environ.get(IMAGENET64_VAL_ENV)
        if split == "test" and val:
            data = EDMImages(val)
            data = data.named(f"{data.name} (ImageNet validation, ${IMAGENET64_VAL_ENV})")
        else:
            path = os.environ.get(IMAGENET64_ENV)
            if not path:
                raise DatasetError(f"ImageNet-64 is not available: set {IMAGENET64_ENV} to the zip or folder "
                                   "written by EDM's dataset_tool.py (--resolution=64x64 --transform=center-crop)")
            data = EDMImages(path)
            if not val:
                if len(data) < 2:
                    raise DatasetError(f"{path}: {len(data)} image(s): nothing to train on after holding some out")
                held = max(1, min(IMAGENET64_HELD_OUT, len(data) // 10))
                cut = len(data) - held
                data = (data.subset(slice(0, cut)).named(f"{data.name} less its last {held:,} images (held out)")
                        if split == "train" else
                        data.subset(slice(cut, None)).named(f"{data.name}: its last {held:,} images (held out "
                                                            f"of training; ${IMAGENET64_VAL_ENV} unset)"))
    else:
        raise DatasetError(f"unknown dataset {preset.dataset!r}")
    u = preset.model.unet
    return data.check(u.img_resolution, u.in_channels, conditional=preset.conditional)


def held_out_description(preset: ImagePreset) -> str:
    """Which images load_preset_dataset(preset, "test") holds out, in words (for --dry-run)."""
    if preset.dataset == "digits":
        return "digits' last 297 images (never trained on)"
    if preset.dataset == "fashion-mnist":
        return "Fashion-MNIST's test split"
    if os.environ.get(IMAGENET64_VAL_ENV):
        return f"ImageNet's validation set from ${IMAGENET64_VAL_ENV} ({os.environ[IMAGENET64_VAL_ENV]})"
    return (f"the training zip's last {IMAGENET64_HELD_OUT:,} images, left out of training "
            f"(set {IMAGENET64_VAL_ENV} to an EDM-format zip of ImageNet's validation set to use that instead)")


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """How the DataLoader reads -- not what: the order is the sampler's, so results do not depend
    on it (hence not in any cache key)."""
    num_workers: int = 0
    prefetch_factor: int = 2            # EDM train.py: data_loader_kwargs prefetch_factor=2

    @classmethod
    def default(cls, streamed: bool) -> "LoaderConfig":
        """$DISCO_BENCH_DATA_WORKERS workers when set; else EDM's default of one worker (train.py
        --workers=1) for streamed data, and none (read in the training process) for data in memory."""
        env = os.environ.get(DATA_WORKERS_ENV, "").strip()
        if env:
            if not env.isdigit():
                raise DatasetError(f"{DATA_WORKERS_ENV}={env!r}: expected a whole number of worker processes (0: none)")
            return cls(int(env))
        return cls(1 if streamed else 0)

    @classmethod
    def for_data(cls, data: ImageSet) -> "LoaderConfig":
        return cls.default(data.streamed)

    def prefetch_bytes(self, local_batch: int, image_bytes: int) -> int:
        """uint8 batches the loader holds ready: workers x prefetch factor of them (one without workers)."""
        return max(1, self.num_workers * self.prefetch_factor) * local_batch * image_bytes


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 in [-1, 1], converted on `device` (EDM training_loop.py:
    images.to(device).to(torch.float32) / 127.5 - 1)."""
    return images.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1


def _labels_on(labels: torch.Tensor, label_dim: int, device: torch.device) -> Optional[torch.Tensor]:
    return one_hot(labels, label_dim).to(device) if label_dim else None


class TrainingBatches:
    """Stage 1's data, one `next()` per step: this rank's slice of the step's global batch (the
    next batch_size positions of the seeded InfiniteOrder over `data`), read by a DataLoader
    from `start_step` on, uint8 until it is on the device. Nothing is read, and no worker
    started, before the first call (a cached run trains nothing)."""

    def __init__(self, data: ImageSet, batch_size: int, seed: int, shard: Shard, device: torch.device,
                 label_dim: int, start_step: int = 0, loader: Optional[LoaderConfig] = None):
        self.data, self.device, self.label_dim = data, device, label_dim
        self.sampler = GlobalBatchSampler(InfiniteOrder(len(data), seed), batch_size, shard, start_step)
        self.loader = loader or LoaderConfig.for_data(data)
        self._it = None

    def next(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self._it is None:
            self._it = iter(image_loader(self.data, batch_sampler=self.sampler, num_workers=self.loader.num_workers,
                                         prefetch_factor=self.loader.prefetch_factor,
                                         pin_memory=self.device.type == "cuda"))
        images, labels = next(self._it)
        return to_model_input(images, self.device), _labels_on(labels, self.label_dim, self.device)

    def close(self) -> None:
        self._it = None   # the iterator's finaliser stops its workers


def memory_plan(preset: ImagePreset, world: int = 1, loader: Optional[LoaderConfig] = None) -> list[str]:
    """Stage 1's memory per rank, in lines, for --dry-run: the resident data (uint8; for a
    streamed dataset the loader's prefetch and the index), the batch on the device, and the
    model + EMA + Adam's two moments in fp32 (gradients and activations on top)."""
    u = preset.model.unet
    local = preset.train.batch_size // world
    image_bytes = u.in_channels * u.img_resolution ** 2
    params = meta_parameter_count(lambda: ImageDiffusionModel(preset.model))
    ema = preset.train.ema_halflife_kimg > 0
    copies = 4 if ema else 3   # model, (EMA,) Adam's m and v
    if preset.dataset == "imagenet64":
        cfg = loader or LoaderConfig.default(streamed=True)
        held = max(1, cfg.num_workers * cfg.prefetch_factor)
        name_bytes = len("00000/img00000000.png")   # dataset_tool.py's member names
        # the zip's index (name, offset, size, flag, row, label) and the order's two current laps
        index = IMAGENET64_TRAIN_IMAGES * (name_bytes + 8 + 8 + 1 + 8 + 8 + 2 * 8)
        how = (f"{cfg.num_workers} worker{'s' if cfg.num_workers != 1 else ''} x prefetch factor {cfg.prefetch_factor}"
               if cfg.num_workers else "no workers: one batch at a time")
        data = (f"streamed from ${IMAGENET64_ENV} (EDMImages), never held whole: loader prefetch {held} x {local:,} x "
                f"{image_bytes:,} B uint8 = {_gb(cfg.prefetch_bytes(local, image_bytes))} ({how}; workers: "
                f"${DATA_WORKERS_ENV}); the zip's index and the order ~{_gb(index)} "
                f"({IMAGENET64_TRAIN_IMAGES:,} images)")
    else:
        n = STANDIN_TRAIN_IMAGES[preset.dataset]
        data = (f"{preset.dataset} (a small stand-in) in memory as uint8, {n:,} x {image_bytes:,} B = "
                f"{_gb(n * image_bytes)}, read through the same loader")
    return [f"{preset.label} [{preset.scale}] memory per rank ({world} process{'es' if world > 1 else ''}, "
            f"batch {local:,} of {preset.train.batch_size:,} each):",
            f"  data: {data}; the batch on the device, float32: {_gb(local * image_bytes * 4)}",
            f"  model{' + EMA' if ema else ''} + Adam (m, v), fp32: {copies} x {params:,} x 4 B = "
            f"{_gb(copies * params * 4)} (+ gradients {_gb(params * 4)}, + activations)"]


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@dataclasses.dataclass
class ImageTensors:
    """An evaluation set as tensors on the device: y in [-1, 1], one-hot labels or None (whole:
    10,000 ImageNet-64 images are 0.5 GB in float32; training never holds its data like this)."""
    y: torch.Tensor                      # [N, C, H, W] float32
    labels: Optional[torch.Tensor]       # [N, label_dim] float32

    @classmethod
    def of(cls, data: ImageSet, label_dim: int, device: torch.device) -> "ImageTensors":
        cfg = LoaderConfig.for_data(data)
        batches = image_loader(data, batch_size=1024, num_workers=cfg.num_workers, prefetch_factor=cfg.prefetch_factor)
        images, labels = (torch.cat(t) for t in zip(*batches))
        return cls(to_model_input(images, device), _labels_on(labels, label_dim, device))

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        index = index.to(self.y.device)
        return self.y[index], None if self.labels is None else self.labels[index]


@dataclasses.dataclass
class Stage1:
    model: ImageDiffusionModel           # raw weights
    ema: ImageDiffusionModel             # EMA weights: the ones to evaluate and sample
    run_dir: Path
    info: dict


def train_stage1(preset: ImagePreset, data: ImageSet, cache: Path, seed: int = 0,
                 device: torch.device = torch.device("cpu"), shard: Shard = Shard(),
                 progress: bool = True, stop_after: Optional[int] = None,
                 loader: Optional[LoaderConfig] = None) -> Stage1:
    """EDM, or DisCo-Diff's encoder + denoiser trained jointly (Algorithm 1); paper-scale
    presets start from EDM's pre-trained network (App. D; the new cross-attention layers start
    at zero, so the model starts at EDM's function). The images of step s are positions
    s*B .. s*B + B - 1 of the seeded order (TrainingBatches), whatever the step resumed from."""
    tcfg = dataclasses.replace(preset.train, seed=preset.train.seed + seed)
    model = build_seeded(lambda: ImageDiffusionModel(preset.model), tcfg.seed).to(device)
    init = edm_initialisation(preset)
    if init is not None:
        unet = model.denoiser.denoiser.net if preset.model.disco else model.denoiser.net
        load_edm_state_dict(unet, init, prefix="net.")
    ema = copy.deepcopy(model).requires_grad_(False) if tcfg.ema_halflife_kimg > 0 else None
    key = {"model": preset.model, "loss": preset.loss, "data": data.name, "n": len(data), "order": DATA_ORDER,
           "init": "edm" if init is not None else "scratch"}
    run = run_dir_for(Path(cache) / "images", preset.run_name, key, tcfg)
    batches = TrainingBatches(data, tcfg.batch_size, tcfg.seed, shard, device, preset.model.unet.label_dim,
                              start_step=checkpoint_step(run), loader=loader)

    def loss_fn(m: nn.Module, gen: torch.Generator, sh: Shard) -> torch.Tensor:
        # the images are the sampler's; the step's generator draws sigma, noise, Gumbel and dropout
        draw = draw_batch(preset.model, preset.loss, tcfg.batch_size, gen).take(sh).to(device)
        y, labels = batches.next()
        return m(y, labels, draw, preset.loss).mean()

    try:
        info = fit(model, loss_fn, tcfg, run, key, desc=f"{preset.label} [{preset.scale}]", progress=progress,
                   ema=ema, shard=shard, stop_after=stop_after)
    finally:
        batches.close()
    return Stage1(model.eval(), (ema if ema is not None else model).eval(), run, info)


@torch.no_grad()
def extract_latents(model: ImageDiffusionModel, data: ImageSet, tau: float, seed: int,
                    batch: int = 512, device: torch.device = torch.device("cpu"),
                    loader: Optional[LoaderConfig] = None) -> torch.Tensor:
    """Algorithm 2, line 2: z = encoder sample at tau for every training image -> [N, m] (CPU),
    the images streamed in order through the same loader. Gumbel noise per image from one
    generator, drawn batch by batch (the same numbers as one draw of all), so the codes do not
    depend on `batch`."""
    enc, ctx = model.cfg.encoder, model.cfg.context
    gen = torch.Generator().manual_seed(seed)
    cfg = loader or LoaderConfig.for_data(data)
    codes = []
    for images, _ in image_loader(data, batch_size=batch, num_workers=cfg.num_workers,
                                  prefetch_factor=cfg.prefetch_factor, pin_memory=device.type == "cuda"):
        g = (torch.randn(len(images), ctx.m, ctx.continuous_dim, generator=gen) if model.cfg.continuous else
             gumbel_noise(torch.Size([len(images), enc.m, enc.k]), gen))
        codes.append(model.extract_latents(to_model_input(images, device), g.to(device), tau).cpu())
    return torch.cat(codes)


@dataclasses.dataclass
class Stage2:
    prior: AutoregressivePrior | LatentDiffusionPrior
    codes: torch.Tensor                  # [N, m] training latents (continuous: [N, m, d] float)
    run_dir: Path
    info: dict


def train_prior(preset: ImagePreset, stage1: Stage1, data: ImageSet, seed: int = 0,
                device: torch.device = torch.device("cpu"), shard: Shard = Shard(),
                progress: bool = True) -> Stage2:
    """Algorithm 2: maximum likelihood of the frozen encoder's latents (tau = 0.01) given y. For
    Table 3's continuous latents: a DiT-style diffusion prior on encoder samples, trained with EDM's
    loss on the latents scaled to unit standard deviation (the scale is kept in the prior)."""
    continuous = preset.model.continuous
    stage(f"extracting {preset.label}'s latents of {len(data):,} training images "
          + ("(a sample of the encoder's Gaussian)" if continuous else f"(tau = {preset.tau_extract:g})"), shard.is_main)
    codes = extract_latents(stage1.ema, data, preset.tau_extract, seed, device=device)
    labels = torch.from_numpy(data.labels) if preset.conditional else None
    tcfg = dataclasses.replace(preset.prior_train, seed=preset.prior_train.seed + seed)
    make = (lambda: LatentDiffusionPrior(preset.prior)) if continuous else (lambda: AutoregressivePrior(preset.prior))
    prior = build_seeded(make, tcfg.seed).to(device)
    if continuous:
        prior.set_latent_scale(float(codes.std()))
    codes_d = codes.to(device)
    labels_d = labels.to(device) if labels is not None else None

    def loss_fn(p: nn.Module, gen: torch.Generator, sh: Shard) -> torch.Tensor:
        idx = sh.take(torch.randint(len(codes), (tcfg.batch_size,), generator=gen)).to(device)
        y = None if labels_d is None else labels_d[idx]
        if continuous:   # EDM's loss over the latent, its sigma and noise from the step's generator
            return prior_loss(p, codes_d[idx], y, gen)
        nll = -p(codes_d[idx], y)                   # forward = log_prob
        return nll.mean() / preset.prior.m          # nats per latent

    key = {"prior": preset.prior, "stage1": stage1.run_dir.name, "tau": preset.tau_extract}
    run = run_dir_for(stage1.run_dir.parent, f"{stage1.run_dir.name}-prior", key, tcfg)
    info = fit(prior, loss_fn, tcfg, run, key, desc=f"prior [{preset.scale}]", progress=progress, shard=shard)
    return Stage2(prior.eval(), codes, run, info)


# ------------------------------------------------------------------------------ evaluation

@torch.no_grad()
def loss_versus_sigma(model: ImageDiffusionModel, tensors: ImageTensors, sigmas: Sequence[float],
                      loss: EDMLossConfig, seed: int, batch: int = 256) -> np.ndarray:
    """Fig. 7 left / Fig. 10: the training loss per pixel at each fixed sigma, averaged over the images:
    [len(sigmas)] (loss_per_image_versus_sigma, averaged)."""
    return loss_per_image_versus_sigma(model, tensors, sigmas, loss, seed, batch).mean(1)


def loss_per_image_versus_sigma(model: ImageDiffusionModel, tensors: ImageTensors, sigmas: Sequence[float],
                                loss: EDMLossConfig, seed: int, batch: int = 256) -> np.ndarray:
    """The training loss per pixel (EDM-weighted, DisCo-Diff with its encoder's tau = 1 Gumbel sample, no
    latent dropout) of every image at each fixed sigma: [len(sigmas), n_images]. The same noise and Gumbel
    draws are used for every model (seeded per sigma), so two models' losses pair image by image."""
    cfg, n, dev = model.cfg, len(tensors.y), tensors.y.device
    out = np.zeros((len(sigmas), n))
    for j, s in enumerate(sigmas):
        gen = torch.Generator().manual_seed(seed * 1000 + j)
        noise = torch.randn(tensors.y.shape, generator=gen)
        gum = (gumbel_noise(torch.Size([n, cfg.encoder.m, cfg.encoder.k]), gen) if cfg.disco else None)
        for i in range(0, n, batch):
            sl = slice(i, min(i + batch, n))
            b = sl.stop - sl.start
            draw = BatchDraw(torch.full((b,), float(s), device=dev), noise[sl].to(dev),
                             None if gum is None else gum[sl].to(dev), None if gum is None else torch.ones(b, device=dev))
            y, labels = tensors.rows(torch.arange(sl.start, sl.stop))
            # per pixel: comparable across resolutions
            out[j, sl] = model(y, labels, draw, loss).detach().double().cpu().numpy() / tensors.y[0].numel()
    return out


def to_checkpoint(preset: ImagePreset, stage1: Stage1, stage2: Optional[Stage2]) -> DenoiserCheckpoint:
    """The EMA denoiser (+ prior) as a self-describing sampling checkpoint."""
    den = stage1.ema.denoiser
    return DenoiserCheckpoint(unet=preset.model.unet, sigma_data=preset.model.sigma_data,
                              denoiser=den.state_dict(), context=preset.model.context,
                              prior_config=preset.prior if stage2 else None,
                              prior=stage2.prior.state_dict() if stage2 else None,
                              source=f"{stage1.run_dir.name} ({preset.label}, {preset.scale})")



# ------------------------------------------------------------------------------ a trained model, whole

@dataclasses.dataclass
class TrainedImageModel:
    """Both stages of one preset, ready to sample: the EMA denoiser, and for latent models the prior
    and the training images' latents (for oracle rows) with their labels."""
    preset: ImagePreset
    stage1: Stage1
    stage2: Optional[Stage2]
    labels: Optional[torch.Tensor]       # [N] training labels (oracle latents keep their image's class)

    def latents(self, kind: Optional[str]) -> Optional[LatentSource]:
        """None (EDM), "generative" (the prior) or "oracle" (a training image's latents per sample)."""
        if kind is None or self.stage2 is None:
            if kind is not None:
                raise ValueError(f"{self.preset.label} has no latents: a {kind!r} row needs a latent model")
            return None
        if kind == "oracle":
            k = None if self.preset.model.continuous else self.preset.model.context.k
            return OracleLatents(self.stage2.codes, self.labels, k)
        if kind == "generative":
            prior = self.stage2.prior
            return ContinuousPriorLatents(prior) if self.preset.model.continuous else AutoregressiveLatents(prior)
        raise ValueError(f"unknown latent kind {kind!r}: oracle or generative")

    def generate(self, seeds: Sequence[int], spec: SamplerSpec, latents: Optional[str] = None,
                 device: torch.device = torch.device("cpu"), batch: int = 64) -> tuple[np.ndarray, int]:
        """uint8 images [n, C, H, W] for `seeds` (each its own seed) and the counted NFE."""
        u = self.preset.model.unet
        g = generate(self.stage1.ema.denoiser, list(seeds), spec, img_shape=(u.in_channels, u.img_resolution,
                                                                             u.img_resolution),
                     label_dim=u.label_dim, latents=self.latents(latents), batch=batch, device=device)
        return g.images, g.nfe


def train_model(preset: ImagePreset, data: ImageSet, cache: Path, seed: int = 0,
                device: torch.device = torch.device("cpu"), shard: Shard = Shard(),
                progress: bool = True) -> TrainedImageModel:
    """Stage 1 and, for latent models, stage 2 — each loaded from the cache when trained before, so
    table1, table3 and figure10 share every model they have in common."""
    s1 = train_stage1(preset, data, cache, seed, device, shard, progress=progress)
    s2 = train_prior(preset, s1, data, seed, device, shard, progress=progress) if preset.model.disco else None
    labels = torch.from_numpy(data.labels) if preset.conditional and data.labels is not None else None
    return TrainedImageModel(preset, s1, s2, labels)


def prior_loss(p: nn.Module, u: torch.Tensor, y: Optional[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """The continuous-latent prior's EDM loss for one batch, its sigma and noise drawn from the step's
    generator on the CPU (device-independent), through the module's forward (so DDP can wrap it)."""
    inner = p.module if hasattr(p, "module") else p
    return p(u, y, *inner.draw(u, gen)).mean()
