"""Image DisCo-Diff end to end, on any preset: data -> stage 1 (EDM, or encoder + denoiser
jointly, Algorithm 1) -> stage 2 (latents at tau = 0.01, autoregressive prior by maximum
likelihood, Algorithm 2) -> a sampling checkpoint (sampling itself: bench/images/sampling.py).

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

from bench.data.images import DatasetError, ImageDataset, load_digits_standin, load_edm_dataset, load_fashion_mnist
from bench.diffusion.loss import EDMLossConfig
from bench.disco.gumbel import gumbel_noise
from bench.disco.latents import one_hot
from bench.disco.prior import AutoregressivePrior
from bench.distributed import Shard
from bench.images.checkpoints import DenoiserCheckpoint
from bench.images.model import BatchDraw, ImageDiffusionModel, draw_batch
from bench.images.presets import ImagePreset, file_name
from bench.nets.adm_unet import load_edm_state_dict
from bench.progress import stage
from bench.train import build_seeded, fit, run_dir_for

IMAGENET64_ENV = "DISCO_BENCH_IMAGENET64"   # path to EDM's imagenet-64x64.zip (dataset_tool.py)
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


def load_preset_dataset(preset: ImagePreset, split: str = "train") -> ImageDataset:
    """The preset's data, checked against its resolution, channels and conditioning."""
    if preset.dataset == "digits":
        data = load_digits_standin()
        if split == "test":   # digits has no split: the last 297 images are held out
            data = data.subset(slice(1500, None))
        else:
            data = data.subset(slice(0, 1500))
    elif preset.dataset == "fashion-mnist":
        data = load_fashion_mnist(split=split, resolution=preset.model.unet.img_resolution)
    elif preset.dataset == "imagenet64":
        path = os.environ.get(IMAGENET64_ENV)
        if not path:
            raise DatasetError(f"ImageNet-64 is not available: set {IMAGENET64_ENV} to the zip or folder "
                               "written by EDM's dataset_tool.py (--resolution=64x64 --transform=center-crop)")
        data = load_edm_dataset(path)
    else:
        raise DatasetError(f"unknown dataset {preset.dataset!r}")
    u = preset.model.unet
    return data.check(u.img_resolution, u.in_channels, conditional=preset.conditional)


@dataclasses.dataclass
class ImageTensors:
    """A dataset as tensors on the training device: y in [-1, 1], one-hot labels or None."""
    y: torch.Tensor                      # [N, C, H, W] float32
    labels: Optional[torch.Tensor]       # [N, label_dim] float32

    @classmethod
    def of(cls, data: ImageDataset, label_dim: int, device: torch.device) -> "ImageTensors":
        y = torch.from_numpy(data.as_float()).to(device)
        labels = one_hot(torch.from_numpy(data.labels), label_dim).to(device) if label_dim else None
        return cls(y, labels)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        index = index.to(self.y.device)
        return self.y[index], None if self.labels is None else self.labels[index]


@dataclasses.dataclass
class Stage1:
    model: ImageDiffusionModel           # raw weights
    ema: ImageDiffusionModel             # EMA weights: the ones to evaluate and sample
    run_dir: Path
    info: dict


def train_stage1(preset: ImagePreset, data: ImageDataset, cache: Path, seed: int = 0,
                 device: torch.device = torch.device("cpu"), shard: Shard = Shard(),
                 progress: bool = True, stop_after: Optional[int] = None) -> Stage1:
    """EDM, or DisCo-Diff's encoder + denoiser trained jointly (Algorithm 1); paper-scale
    presets start from EDM's pre-trained network (App. D; the new cross-attention layers start
    at zero, so the model starts at EDM's function)."""
    tcfg = dataclasses.replace(preset.train, seed=preset.train.seed + seed)
    model = build_seeded(lambda: ImageDiffusionModel(preset.model), tcfg.seed).to(device)
    init = edm_initialisation(preset)
    if init is not None:
        unet = model.denoiser.denoiser.net if preset.model.disco else model.denoiser.net
        load_edm_state_dict(unet, init, prefix="net.")
    ema = copy.deepcopy(model).requires_grad_(False) if tcfg.ema_halflife_kimg > 0 else None
    tensors = ImageTensors.of(data, preset.model.unet.label_dim, device)
    key = {"model": preset.model, "loss": preset.loss, "data": data.name, "n": len(data),
           "init": "edm" if init is not None else "scratch"}

    def loss_fn(m: nn.Module, gen: torch.Generator, sh: Shard) -> torch.Tensor:
        draw = draw_batch(preset.model, preset.loss, len(data), tcfg.batch_size, gen).take(sh).to(device)
        y, labels = tensors.rows(draw.index)
        return m(y, labels, draw, preset.loss).mean()

    run = run_dir_for(Path(cache) / "images", f"{file_name(preset.label).lower().replace('_', '-')}-{preset.scale}", key, tcfg)
    info = fit(model, loss_fn, tcfg, run, key, desc=f"{preset.label} [{preset.scale}]", progress=progress,
               ema=ema, shard=shard, stop_after=stop_after)
    return Stage1(model.eval(), (ema if ema is not None else model).eval(), run, info)


@torch.no_grad()
def extract_latents(model: ImageDiffusionModel, data: ImageDataset, tau: float, seed: int,
                    batch: int = 512, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Algorithm 2, line 2: z = encoder sample at tau for every training image -> [N, m] (CPU).
    Gumbel noise per image from one generator, so the codes do not depend on `batch`."""
    enc = model.cfg.encoder
    gen = torch.Generator().manual_seed(seed)
    g = gumbel_noise(torch.Size([len(data), enc.m, enc.k]), gen)
    y = torch.from_numpy(data.as_float())
    return torch.cat([model.extract_latents(y[i:i + batch].to(device), g[i:i + batch].to(device), tau).cpu()
                      for i in range(0, len(data), batch)])


@dataclasses.dataclass
class Stage2:
    prior: AutoregressivePrior
    codes: torch.Tensor                  # [N, m] training latents
    run_dir: Path
    info: dict


def train_prior(preset: ImagePreset, stage1: Stage1, data: ImageDataset, seed: int = 0,
                device: torch.device = torch.device("cpu"), shard: Shard = Shard(),
                progress: bool = True) -> Stage2:
    """Algorithm 2: maximum likelihood of the frozen encoder's latents (tau = 0.01) given y."""
    stage(f"extracting {preset.label}'s latents of {len(data):,} training images (tau = {preset.tau_extract:g})",
          shard.is_main)
    codes = extract_latents(stage1.ema, data, preset.tau_extract, seed, device=device)
    labels = torch.from_numpy(data.labels) if preset.conditional else None
    tcfg = dataclasses.replace(preset.prior_train, seed=preset.prior_train.seed + seed)
    prior = build_seeded(lambda: AutoregressivePrior(preset.prior), tcfg.seed).to(device)
    codes_d = codes.to(device)
    labels_d = labels.to(device) if labels is not None else None

    def loss_fn(p: nn.Module, gen: torch.Generator, sh: Shard) -> torch.Tensor:
        idx = sh.take(torch.randint(len(codes), (tcfg.batch_size,), generator=gen)).to(device)
        nll = -p(codes_d[idx], None if labels_d is None else labels_d[idx])   # forward = log_prob
        return nll.mean() / preset.prior.m                                   # nats per latent

    key = {"prior": preset.prior, "stage1": stage1.run_dir.name, "tau": preset.tau_extract}
    run = run_dir_for(stage1.run_dir.parent, f"{stage1.run_dir.name}-prior", key, tcfg)
    info = fit(prior, loss_fn, tcfg, run, key, desc=f"prior [{preset.scale}]", progress=progress, shard=shard)
    return Stage2(prior.eval(), codes, run, info)


# ------------------------------------------------------------------------------ evaluation

@torch.no_grad()
def loss_versus_sigma(model: ImageDiffusionModel, tensors: ImageTensors, sigmas: Sequence[float],
                      loss: EDMLossConfig, seed: int, batch: int = 256) -> np.ndarray:
    """Fig. 7 left / Fig. 10: the training loss per pixel (EDM-weighted, DisCo-Diff with its encoder's
    tau = 1 Gumbel sample, no latent dropout) of every image at each fixed sigma, averaged.
    The same noise and Gumbel draws are used for every model (seeded per sigma)."""
    cfg, n, dev = model.cfg, len(tensors.y), tensors.y.device
    out = []
    for j, s in enumerate(sigmas):
        gen = torch.Generator().manual_seed(seed * 1000 + j)
        noise = torch.randn(tensors.y.shape, generator=gen)
        gum = (gumbel_noise(torch.Size([n, cfg.encoder.m, cfg.encoder.k]), gen) if cfg.disco else None)
        total = 0.0
        for i in range(0, n, batch):
            sl = slice(i, min(i + batch, n))
            b = sl.stop - sl.start
            draw = BatchDraw(torch.arange(sl.start, sl.stop), torch.full((b,), float(s), device=dev),
                             noise[sl].to(dev), None if gum is None else gum[sl].to(dev),
                             None if gum is None else torch.ones(b, device=dev))
            y, labels = tensors.rows(draw.index)
            total += float(model(y, labels, draw, loss).sum())
        out.append(total / (n * tensors.y[0].numel()))      # per pixel: comparable across resolutions
    return np.array(out)


def to_checkpoint(preset: ImagePreset, stage1: Stage1, stage2: Optional[Stage2]) -> DenoiserCheckpoint:
    """The EMA denoiser (+ prior) as a self-describing sampling checkpoint."""
    den = stage1.ema.denoiser
    return DenoiserCheckpoint(unet=preset.model.unet, sigma_data=preset.model.sigma_data,
                              denoiser=den.state_dict(), context=preset.model.context,
                              prior_config=preset.prior if stage2 else None,
                              prior=stage2.prior.state_dict() if stage2 else None,
                              source=f"{stage1.run_dir.name} ({preset.label}, {preset.scale})")

