"""EDM (Karras et al., NeurIPS 2022) as the suite runs it: the ADM network, the loss, the training
recipe and the sampler settings, at the three scales (DESIGN.md "Scales").

  smoke  scikit-learn digits (8x8), a tiny ADM: seconds; CI checks that the path runs
  small  Fashion-MNIST zero-padded to 32x32 (stand-in for ImageNet), an ADM sized to train in
         about 30 min on one CPU thread
  paper  ImageNet-64: EDM's published class-conditional ADM (192 x [1,2,3,4], attention at
         32/16/8) used as is; its training recipe (EDM's README for imagenet-64x64-cond-adm:
         batch 4096, lr 1e-4, lr ramp-up 10 Mimg, EMA half-life 50 Mimg, dropout 0.10,
         2500 Mimg; the loss summed over pixels, gradients through nan_to_num) is what
         DisCo-Diff fine-tunes with (App. D), with the EMA ramp-up off as EDM's --transfer sets it.

DisCo-Diff's image presets (bench/images/presets.py) are these plus discrete latents.
"""
from __future__ import annotations

import dataclasses

from bench.diffusion.loss import EDMLossConfig
from bench.nets.adm_unet import ADMUNetConfig
from bench.train import TrainConfig

LABEL = "EDM"
# EDM (Karras et al. 2022), Table 7: parameters of its ImageNet-64 ADM network, given to 0.01 M.
# Quoted, not re-read in this environment (the paper's text is not offline); our ADM build's
# count is checked against it in tests/test_image_pipeline.py.
ADM_IMAGENET64_PUBLISHED_PARAMS = 295.90e6

# EDM Table 1 / training/loss.py EDMLoss: log-normal training sigma, sigma_data 0.5 for [-1, 1] images.
LOSS = EDMLossConfig(P_mean=-1.2, P_std=1.2, sigma_data=0.5)
# EDM README, imagenet-64x64-cond-adm: --duration=2500 --batch=4096 --lr=1e-4 --ema=50 --dropout=0.10
# --augment=0 --fp16=1 --ls=100. training_loop.py steps until cur_nimg >= 2500 Mimg: ceil(2.5e9 / 4096)
# = 610,352 steps. Precision is ours: bf16 autocast on CUDA (PRECISION), where EDM runs the network in
# fp16 with loss scaling 100.
IMAGENET64_TRAIN = TrainConfig(steps=-(-2_500_000_000 // 4096), batch_size=4096, lr=1e-4,
                               lr_rampup_kimg=10_000, ema_halflife_kimg=50_000,
                               checkpoint_every=5000, log_every=100, bf16=True)
PRECISION = "bf16 autocast on CUDA, fp32 weights (EDM: fp16 network with loss scaling 100)"

@dataclasses.dataclass(frozen=True)
class EDMPreset:
    """EDM at one scale."""
    scale: str
    dataset: str            # "digits" | "fashion-mnist" | "imagenet64"
    unet: ADMUNetConfig     # xattn_dim = 0: no latents
    loss: EDMLossConfig
    train: TrainConfig      # the baseline's own training (0 steps: the published network as is)
    recipe: TrainConfig     # the schedule a model built on EDM trains with at this scale
    sampler_steps: int      # Heun steps of the harnesses' samples (NFE = 2 steps - 1)
    published: bool = False  # start from EDM's published ImageNet-64 network (import-edm)


def _smoke() -> EDMPreset:
    unet = ADMUNetConfig(img_resolution=8, in_channels=1, out_channels=1, label_dim=10, model_channels=16,
                         channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), channels_per_head=8,
                         dropout=0.0)
    train = TrainConfig(steps=40, batch_size=32, lr=1e-3, ema_halflife_kimg=0.5, checkpoint_every=20, log_every=10)
    return EDMPreset("smoke", "digits", unet, LOSS, train, train, sampler_steps=6)


def _small() -> EDMPreset:
    unet = ADMUNetConfig(img_resolution=32, in_channels=1, out_channels=1, label_dim=10, model_channels=16,
                         channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=(8,), channels_per_head=16,
                         dropout=0.0)
    train = TrainConfig(steps=1500, batch_size=64, lr=1e-3, lr_rampup_kimg=10, ema_halflife_kimg=5,
                        checkpoint_every=100, log_every=25)
    return EDMPreset("small", "fashion-mnist", unet, LOSS, train, train, sampler_steps=18)


def _paper() -> EDMPreset:
    # The baseline of Tables 1 and 3 is EDM's published network as is: 0 further steps.
    return EDMPreset("paper", "imagenet64", ADMUNetConfig.imagenet64(), LOSS,
                     dataclasses.replace(IMAGENET64_TRAIN, steps=0), IMAGENET64_TRAIN,
                     sampler_steps=40, published=True)


_BUILDERS = {"smoke": _smoke, "small": _small, "paper": _paper}


def edm_preset(scale: str) -> EDMPreset:
    if scale not in _BUILDERS:
        raise KeyError(f"unknown scale {scale!r}; known: {', '.join(_BUILDERS)}")
    return _BUILDERS[scale]()
