"""Image diffusion model for training: the EDM baseline, or DisCo-Diff's first stage (ViT
encoder + Gumbel-Softmax latents + the latent-conditioned ADM denoiser, trained end to end,
Algorithm 1 / App. D).

`forward` returns the per-sample EDM loss for randomness drawn outside (`draw_batch`), so that
under DDP every rank draws the whole global batch from one generator and keeps its slice: N
processes compute exactly what one process would.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from bench.diffusion.loss import EDMLossConfig, edm_loss, sample_sigma
from bench.diffusion.preconditioning import EDMPrecond
from bench.disco.continuous import gaussian_latent, with_presence
from bench.disco.gumbel import gumbel_noise
from bench.disco.image_denoiser import DisCoADMDenoiser
from bench.disco.latent_context import LatentContextConfig
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig
from bench.nets.vit_encoder import ViTEncoder, ViTEncoderConfig
from bench.provenance import NEW_OPTION


@dataclasses.dataclass(frozen=True)
class ImageModelConfig:
    unet: ADMUNetConfig
    sigma_data: float = 0.5                        # EDM: 0.5 for images in [-1, 1]
    encoder: Optional[ViTEncoderConfig] = None     # None: the EDM baseline (no latents)
    context: Optional[LatentContextConfig] = None  # required with an encoder
    tau: float = 1.0                               # Gumbel-Softmax temperature in training (App. D)
    latent_dropout: float = 0.1                    # p(null latent) in training (App. B)
    # Table 3's continuous latents (context.continuous_dim > 0): the KL term's weight in the loss
    kld_weight: float = dataclasses.field(default=0.0, metadata=NEW_OPTION)

    def __post_init__(self) -> None:
        if (self.encoder is None) != (self.context is None):
            raise ValueError("a DisCo-Diff model needs both an encoder and a latent context; EDM neither")
        if self.encoder is None:
            if self.unet.xattn_dim:
                raise ValueError("the EDM baseline has no latents: set unet.xattn_dim = 0")
            return
        e, c = self.encoder, self.context
        if c.continuous_dim:
            if (e.m, e.k) != (c.m, 2 * c.continuous_dim):
                raise ValueError(f"a continuous latent of m={c.m} tokens x d={c.continuous_dim} needs an encoder with "
                                 f"m={c.m} tokens of k = 2d = {2 * c.continuous_dim} outputs (mean, log-variance), "
                                 f"got m={e.m}, k={e.k}")
            if self.kld_weight <= 0:
                raise ValueError("continuous latents need kld_weight > 0 (Table 3: 0.1 or 1)")
        elif (e.m, e.k) != (c.m, c.k):
            raise ValueError(f"encoder latents (m={e.m}, k={e.k}) != context latents (m={c.m}, k={c.k})")
        elif self.kld_weight:
            raise ValueError("kld_weight is for continuous latents (context.continuous_dim > 0)")
        if (e.img_resolution, e.in_channels) != (self.unet.img_resolution, self.unet.in_channels):
            raise ValueError("encoder and U-Net disagree on resolution or channels")

    @property
    def disco(self) -> bool:
        return self.encoder is not None

    @property
    def continuous(self) -> bool:
        return self.context is not None and self.context.continuous_dim > 0


@dataclasses.dataclass
class BatchDraw:
    """The randomness of one global training batch (every tensor [B, ...]). Which images form the
    batch is the data sampler's (bench.data.images.GlobalBatchSampler), not drawn here."""
    sigma: torch.Tensor             # [B] noise levels
    noise: torch.Tensor             # [B, C, H, W] unit Gaussian noise
    gumbel: Optional[torch.Tensor]  # [B, m, k] Gumbel(0, 1) noise (discrete latents), or [B, m, d]
    #                                 N(0, 1) noise of the reparameterised sample (continuous latents)
    keep: Optional[torch.Tensor]    # [B] 1 = keep the latents, 0 = null latent

    def _map(self, f) -> "BatchDraw":
        g = lambda t: None if t is None else f(t)  # noqa: E731
        return BatchDraw(g(self.sigma), g(self.noise), g(self.gumbel), g(self.keep))

    def take(self, shard) -> "BatchDraw":
        """This process's rows of the global batch."""
        return self._map(shard.take)

    def to(self, device: torch.device) -> "BatchDraw":
        return self._map(lambda t: t.to(device))


def draw_batch(cfg: ImageModelConfig, loss: EDMLossConfig, batch: int, generator: torch.Generator) -> BatchDraw:
    """All random draws of one step, in a fixed order, on the CPU (device-independent)."""
    u = cfg.unet
    sigma = sample_sigma(loss, batch, generator)
    noise = torch.randn(batch, u.in_channels, u.img_resolution, u.img_resolution, generator=generator)
    gumbel = keep = None
    if cfg.continuous:
        gumbel = torch.randn(batch, cfg.context.m, cfg.context.continuous_dim, generator=generator)
    elif cfg.disco:
        gumbel = gumbel_noise(torch.Size([batch, cfg.encoder.m, cfg.encoder.k]), generator)
    if cfg.disco:
        keep = (torch.rand(batch, generator=generator) >= cfg.latent_dropout).float()
    return BatchDraw(sigma, noise, gumbel, keep)


class ImageDiffusionModel(nn.Module):
    def __init__(self, cfg: ImageModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.disco:
            self.denoiser = DisCoADMDenoiser(cfg.unet, cfg.context, cfg.sigma_data)
            self.encoder: Optional[ViTEncoder] = ViTEncoder(cfg.encoder)
        else:
            self.denoiser = EDMPrecond(ADMUNet(cfg.unet), cfg.sigma_data)
            self.encoder = None

    def latent_weights(self, y: torch.Tensor, gumbel: torch.Tensor, tau: float) -> torch.Tensor:
        """Clean images [B, C, H, W] -> Gumbel-Softmax weights [B, m, k] (Jang et al. 2017)."""
        return torch.softmax((self.encoder(y) + gumbel.to(y)) / tau, dim=-1)

    def forward(self, y: torch.Tensor, class_labels: Optional[torch.Tensor], draw: BatchDraw,
                loss: EDMLossConfig) -> torch.Tensor:
        """y [B, C, H, W] in [-1, 1], class_labels one-hot [B, label_dim] or None, draw on y's
        device -> per-sample EDM loss [B] (EDM Eq. 2 with lambda(sigma), DisCo-Diff Eq. 3), summed
        over the C*H*W pixels as EDM trains (its gradient scale, which Adam's eps sees); the
        training step averages it over the batch."""
        cond = {"class_labels": class_labels}
        kld = None
        if self.cfg.continuous:   # Table 3's ablation: a reparameterised Gaussian sample and its KL term
            u, kld = gaussian_latent(self.encoder(y), draw.gumbel)
            cond["latent"] = with_presence(u) * draw.keep.to(u)[:, None, None]
        elif self.encoder is not None:
            w = self.latent_weights(y, draw.gumbel, self.cfg.tau)
            cond["latent"] = w * draw.keep.to(w)[:, None, None]      # all-zero rows = null latent
        out = edm_loss(self.denoiser, y, loss, sigma=draw.sigma, noise=draw.noise, reduce="sum", **cond)
        # The KL term per image, on every image (dropped latents too: it regularises the encoder), added
        # to the per-image loss summed over pixels; the weight is relative to that sum (our reading of
        # "KLD weight" 0.1 / 1, App. G.5).
        return out if kld is None else out + self.cfg.kld_weight * kld

    @torch.no_grad()
    def extract_latents(self, y: torch.Tensor, gumbel: torch.Tensor, tau: float = 0.01) -> torch.Tensor:
        """Stage 2 input (Algorithm 2): z = argmax of the Gumbel-Softmax sample at tau (0.01 in
        App. D; at that temperature the soft sample is one-hot to float precision) -> [B, m].
        Continuous latents: a sample of the encoder's Gaussian (gumbel = its N(0, 1) noise [B, m, d]),
        as the discrete latent at tau = 0.01 is a sample of the encoder's categorical -> [B, m, d]."""
        if self.cfg.continuous:
            return gaussian_latent(self.encoder(y), gumbel)[0]
        return self.latent_weights(y, gumbel, tau).argmax(-1)
