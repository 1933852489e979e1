"""Image presets, named by the paper's labels, at the three scales (DESIGN.md "Scales").

`EDM` is the baseline as baselines/edm/preset.py defines it. `DisCo-Diff` is that baseline plus
discrete latents (App. D): a ViT encoder, m latents of k categories, a latent context
(Transformer -> cross-attention tokens) and the class-conditional autoregressive prior. At paper
scale: ViT-B/8 encoder, m = 10 latents of k = 100, 6 x 192 latent context, 12 x 512 prior,
fine-tuned from EDM's pre-trained network with EDM's recipe. `DisCo-Diff (hierarchical)` splits
the latents into groups, each feeding one decoder resolution (Fig. 5).

Table 3's continuous-latent ablation, `continuous latent, KLD weight 0.1` and `... 1`, is
DisCo-Diff with the discrete latents replaced by a Gaussian latent from the same ViT backbone (its m
output tokens give a mean and a log-variance each, d numbers per token), fed through the same latent
context and cross-attention, with the KL divergence to N(0, I) added to the loss at that weight.
Its size: m x d = m x k dimensions, as the paper's 1000 = 10 x 100 ("capacity at least as high as
the m = 10, k = 100 discrete latents"). Its prior: a DiT-style diffusion model over the latent with
the autoregressive prior's Transformer size and schedule (bench/disco/continuous.py).

`image_preset(label, scale, conditional=False)` is the unconditional model of Table 1: no class
labels; at paper scale trained from scratch with EDM's recipe (there is no published unconditional
ImageNet-64 EDM network to fine-tune).

Where the paper is silent (the prior's training schedule, the fine-tuning length) the choice is
marked "ours".
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

from baselines.edm.preset import LABEL as EDM_LABEL
from baselines.edm.preset import EDMPreset, edm_preset
from bench.diffusion.loss import EDMLossConfig
from bench.disco.continuous import LatentDiffusionPriorConfig
from bench.disco.latent_context import LatentContextConfig
from bench.disco.prior import ARPriorConfig
from bench.images.model import ImageModelConfig
from bench.nets.vit_encoder import ViTEncoderConfig
from bench.train import TrainConfig

CONTINUOUS = {"continuous latent, KLD weight 0.1": 0.1, "continuous latent, KLD weight 1": 1.0}   # Table 3
LABELS = (EDM_LABEL, "DisCo-Diff", "DisCo-Diff (hierarchical)", *CONTINUOUS)


@dataclasses.dataclass(frozen=True)
class ImagePreset:
    label: str                                  # the paper's name for the model
    scale: str
    dataset: str                                # "digits" | "fashion-mnist" | "imagenet64"
    model: ImageModelConfig
    loss: EDMLossConfig
    train: TrainConfig
    prior: Optional[ARPriorConfig | LatentDiffusionPriorConfig] = None   # the second stage
    prior_train: Optional[TrainConfig] = None
    tau_extract: float = 0.01                   # App. D: latents for stage 2 at tau = 0.01
    init_from_edm: bool = False                 # App. D: start from EDM's pre-trained ADM
    sampler_steps: int = 18                     # Heun steps for the harness's samples

    @property
    def conditional(self) -> bool:
        return self.model.unet.label_dim > 0

    @property
    def run_name(self) -> str:
        """The model's name in the checkpoint cache, e.g. "disco-diff-small" or "edm-uncond-paper"."""
        return f"{file_name(self.label).lower().replace('_', '-')}{'' if self.conditional else '-uncond'}-{self.scale}"


@dataclasses.dataclass(frozen=True)
class DisCoParts:
    """What DisCo-Diff adds to EDM at one scale."""
    latents: LatentContextConfig
    encoder: ViTEncoderConfig                   # m, k as `latents`
    prior: ARPriorConfig                        # m, k as `latents`
    prior_train: TrainConfig
    train_steps: Optional[int] = None           # stage 1's length; None: EDM's recipe as is
    extra_attn: tuple[int, ...] = ()            # hierarchical: resolutions that gain attention


def _disco_paper(hier: bool) -> DisCoParts:
    latents = LatentContextConfig(m=10, k=100, width=192, depth=6, heads=4)
    if hier:
        latents = dataclasses.replace(latents, m=30, group_resolutions=(8, 16, 32))   # Fig. 5
    return DisCoParts(latents, dataclasses.replace(ViTEncoderConfig.imagenet64(), m=latents.m, k=latents.k),
                      ARPriorConfig(m=latents.m, k=latents.k, num_classes=1000, width=512, depth=12, heads=8),
                      TrainConfig(steps=200_000, batch_size=1024, lr=1e-4, lr_rampup_kimg=1000,
                                  checkpoint_every=5000, log_every=100, bf16=True),     # ours
                      # Fine-tuning length is not given in the paper: ours, 20 % of EDM's schedule.
                      train_steps=edm_preset("paper").recipe.steps // 5)


def _disco_small(hier: bool) -> DisCoParts:
    latents = LatentContextConfig(m=6 if hier else 4, k=16, width=64, depth=2, heads=4,
                                  group_resolutions=(8, 16) if hier else ())
    return DisCoParts(latents,
                      ViTEncoderConfig(img_resolution=32, in_channels=1, patch=4, width=64, depth=2, heads=4,
                                       m=latents.m, k=latents.k),
                      ARPriorConfig(m=latents.m, k=latents.k, num_classes=10, width=64, depth=2, heads=4),
                      TrainConfig(steps=1500, batch_size=256, lr=1e-3, checkpoint_every=500, log_every=50),
                      extra_attn=(16,) if hier else ())


def _disco_smoke(hier: bool) -> DisCoParts:
    latents = LatentContextConfig(m=4 if hier else 2, k=8, width=32, depth=1, heads=4,
                                  group_resolutions=(4, 8) if hier else ())
    return DisCoParts(latents,
                      ViTEncoderConfig(img_resolution=8, in_channels=1, patch=2, width=32, depth=1, heads=4,
                                       m=latents.m, k=latents.k),
                      ARPriorConfig(m=latents.m, k=latents.k, num_classes=10, width=32, depth=1, heads=4),
                      TrainConfig(steps=40, batch_size=64, lr=1e-3, checkpoint_every=20, log_every=10),
                      extra_attn=(8,) if hier else ())


_DISCO = {"smoke": _disco_smoke, "small": _disco_small, "paper": _disco_paper}


def _edm(base: EDMPreset) -> ImagePreset:
    return ImagePreset(EDM_LABEL, base.scale, base.dataset, ImageModelConfig(base.unet), base.loss, base.train,
                       init_from_edm=base.published, sampler_steps=base.sampler_steps)


def _continuous(parts: DisCoParts, kld_weight: float) -> tuple[DisCoParts, float]:
    """Table 3's continuous latent in place of the discrete one: d = k numbers per latent token (m x k
    dimensions in all: 1000 at paper scale), the encoder's head giving a mean and a log-variance for
    each, and a diffusion prior with the autoregressive prior's Transformer (App. G.5; our reading)."""
    c, e, p = parts.latents, parts.encoder, parts.prior
    d = c.k
    prior = LatentDiffusionPriorConfig(m=c.m, d=d, num_classes=p.num_classes, width=p.width, depth=p.depth,
                                       heads=p.heads)
    return dataclasses.replace(parts, latents=dataclasses.replace(c, continuous_dim=d),
                               encoder=dataclasses.replace(e, k=2 * d), prior=prior), kld_weight


def _disco(label: str, base: EDMPreset) -> ImagePreset:
    """DisCo-Diff = the EDM preset of the scale + discrete latents (App. D)."""
    parts = _DISCO[base.scale](label.endswith("(hierarchical)"))
    kld_weight = 0.0
    if label in CONTINUOUS:
        parts, kld_weight = _continuous(parts, CONTINUOUS[label])
    c = parts.latents
    unet = dataclasses.replace(base.unet, xattn_dim=c.width,
                               attn_resolutions=tuple(base.unet.attn_resolutions) + parts.extra_attn)
    # the fine-tuning length applies when starting from EDM's network; from scratch, the whole recipe
    fine_tune = parts.train_steps is not None and base.published
    train = dataclasses.replace(base.recipe, steps=parts.train_steps) if fine_tune else base.recipe
    if base.published:   # fine-tuning EDM's network: EDM's --transfer turns the EMA ramp-up off (train.py)
        train = dataclasses.replace(train, ema_rampup_ratio=None)
    return ImagePreset(label, base.scale, base.dataset,
                       ImageModelConfig(unet, encoder=parts.encoder, context=c, kld_weight=kld_weight),
                       base.loss, train, parts.prior, parts.prior_train, init_from_edm=base.published,
                       sampler_steps=base.sampler_steps)


def _unconditional(base: EDMPreset) -> EDMPreset:
    """Table 1's unconditional models: no class labels; trained from scratch with the scale's recipe
    (at paper scale EDM's ImageNet-64 recipe: no published unconditional network exists to start from)."""
    train = base.recipe if base.published else base.train
    return dataclasses.replace(base, unet=dataclasses.replace(base.unet, label_dim=0), train=train, published=False)


def file_name(label: str) -> str:
    """A preset label as a file name: "DisCo-Diff (hierarchical)" -> "DisCo_Diff_hierarchical"."""
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")


def image_preset(label: str, scale: str, conditional: bool = True) -> ImagePreset:
    if label not in LABELS:
        raise KeyError(f"unknown image preset {label!r}; known: {', '.join(LABELS)}")
    base = edm_preset(scale)
    if not conditional:
        base = _unconditional(base)
    p = _edm(base) if label == EDM_LABEL else _disco(label, base)
    if not conditional and p.prior is not None:
        p = dataclasses.replace(p, prior=dataclasses.replace(p.prior, num_classes=0))
    return p
