"""Image DisCo-Diff end to end, on any preset: data -> stage 1 (EDM, or encoder + denoiser
jointly, Algorithm 1) -> stage 2 (latents at tau = 0.01, autoregressive prior by maximum
likelihood, Algorithm 2) -> sampling with per-sample seeds and counted NFE.

Trained models are cached under `<cache>/images/` by the hash of their configs (bench.train).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from bench.data.images import DatasetError, ImageDataset, load_digits_standin, load_edm_dataset, load_fashion_mnist
from bench.diffusion.discretisation import edm_sigma_steps
from bench.diffusion.loss import EDMLossConfig
from bench.diffusion.samplers import RestartConfig, Stochasticity, edm_sampler, restart_sampler
from bench.diffusion.seeds import PerSampleRandom
from bench.disco.gumbel import gumbel_noise
from bench.disco.latents import guided, one_hot
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
    """Fig. 7 left / Fig. 10: the training loss (EDM-weighted, DisCo-Diff with its encoder's
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
        out.append(total / n)
    return np.array(out)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    kind: str = "heun"           # heun | euler | edm-sde (EDM Alg. 2 with churn) | restart
    steps: int = 18              # ignored by restart, whose main grid is `restart.num_steps`
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    churn: Stochasticity = Stochasticity()
    cfg: float = 0.0             # latent guidance (App. B); 0 = the conditional model
    temperature: float = 1.0     # the prior's sampling temperature
    restart: Optional[RestartConfig] = None   # kind = restart (e.g. RESTART_IMAGENET64[623])

    def __post_init__(self) -> None:
        if self.kind not in ("heun", "euler", "edm-sde", "restart"):
            raise ValueError(f"unknown sampler {self.kind!r}: heun, euler, edm-sde or restart")
        if (self.kind == "restart") != (self.restart is not None):
            raise ValueError("the restart sampler needs a RestartConfig, and only it takes one")

    @property
    def num_steps(self) -> int:
        return self.restart.num_steps if self.restart is not None else self.steps


@dataclasses.dataclass
class Generated:
    images: np.ndarray           # uint8 [n, C, H, W]
    seeds: list[int]
    class_labels: Optional[np.ndarray]
    latents: Optional[np.ndarray]
    nfe: int


@torch.no_grad()
def generate(denoiser: nn.Module, seeds: Sequence[int], spec: SamplerSpec, *, img_shape: tuple[int, int, int],
             label_dim: int = 0, class_idx: Optional[int] = None, prior: Optional[AutoregressivePrior] = None,
             latent_shape: Optional[tuple[int, int]] = None, batch: int = 64,
             device: torch.device = torch.device("cpu"),
             progress: Optional[Callable[[int], None]] = None) -> Generated:
    """Images for `seeds`, each from its own generator in EDM generate.py's order (initial noise
    [C, H, W], then the class label, then (DisCo-Diff) the prior's m uniforms, then the sampler's
    noise), so a seed gives the same image whatever the batch size or process count.
    NFE is counted by the sampler for one batch (batches are identical in length)."""
    disco = latent_shape is not None
    if disco and prior is None:
        raise ValueError("a DisCo-Diff denoiser needs its autoregressive prior to sample latents")
    t_steps = edm_sigma_steps(spec.num_steps, spec.sigma_min, spec.sigma_max, spec.rho)
    imgs, labs, lats, nfe = [], [], [], 0
    for i in range(0, len(seeds), batch):
        rnd = PerSampleRandom(seeds[i:i + batch], device)
        x_T = rnd.randn(*img_shape).to(torch.float64) * t_steps[0]
        cond: dict = {}
        y_idx = None
        if label_dim:
            y_idx = rnd.randint(label_dim)     # drawn even with class_idx, as EDM does
            if class_idx is not None:
                y_idx = torch.full_like(y_idx, class_idx)
            cond["class_labels"] = torch.eye(label_dim, device=device)[y_idx]
        D = denoiser
        if disco:
            z = prior.sample(rnd.rand(latent_shape[0]), y_idx, spec.temperature)
            cond["latent"] = one_hot(z, latent_shape[1]).to(device)
            D = guided(denoiser, spec.cfg)
            lats.append(z.cpu().numpy())
        if spec.kind == "restart":
            x, n = restart_sampler(D, x_T, t_steps.to(device), spec.restart, rnd.randn_like, cond, spec.rho)
        else:
            solver = "euler" if spec.kind == "euler" else "heun"
            churn = spec.churn if spec.kind == "edm-sde" else Stochasticity()
            x, n = edm_sampler(D, x_T, t_steps.to(device), cond, solver, churn,
                               randn_like=rnd.randn_like if churn.S_churn > 0 else None)
        nfe = n
        imgs.append((x * 127.5 + 128).clip(0, 255).to(torch.uint8).cpu().numpy())   # EDM generate.py
        if y_idx is not None:
            labs.append(y_idx.cpu().numpy())
        if progress is not None:
            progress(len(rnd.seeds))
    return Generated(np.concatenate(imgs), list(seeds), np.concatenate(labs) if labs else None,
                     np.concatenate(lats) if lats else None, nfe)


def to_checkpoint(preset: ImagePreset, stage1: Stage1, stage2: Optional[Stage2]) -> DenoiserCheckpoint:
    """The EMA denoiser (+ prior) as a self-describing sampling checkpoint."""
    den = stage1.ema.denoiser
    return DenoiserCheckpoint(unet=preset.model.unet, sigma_data=preset.model.sigma_data,
                              denoiser=den.state_dict(), context=preset.model.context,
                              prior_config=preset.prior if stage2 else None,
                              prior=stage2.prior.state_dict() if stage2 else None,
                              source=f"{stage1.run_dir.name} ({preset.label}, {preset.scale})")

