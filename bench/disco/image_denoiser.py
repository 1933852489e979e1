"""DisCo-X for images: a baseline EDM denoiser (EDM preconditioning around the ADM U-Net) plus
discrete latents fed through the latent context into the U-Net's cross-attention (App. D).

With the cross-attention output projections at zero (as after loading EDM's weights), the
model computes exactly the baseline's function, whatever the latent."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from bench.diffusion.preconditioning import EDMPrecond
from bench.disco.latent_context import LatentContext, LatentContextConfig
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig


class DisCoADMDenoiser(nn.Module):
    def __init__(self, unet: ADMUNetConfig, context: LatentContextConfig, sigma_data: float = 0.5):
        super().__init__()
        if unet.xattn_dim != context.width:
            raise ValueError(f"U-Net xattn_dim {unet.xattn_dim} must equal the latent context width {context.width}")
        lowest = unet.img_resolution >> (len(unet.channel_mult) - 1)   # the bottleneck attends too
        attends = set(unet.attn_resolutions) | {lowest}
        if not set(context.group_resolutions) <= attends:
            raise ValueError(f"latent groups go to resolutions {context.group_resolutions}, but the "
                             f"U-Net has cross-attention only at {sorted(attends)}")
        self.denoiser = EDMPrecond(ADMUNet(unet), sigma_data)
        self.context = LatentContext(context)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, latent: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, C, H, W], sigma [B] or scalar, latent [B, m, k] -> D(x; sigma, z, y) [B, C, H, W]."""
        return self.denoiser(x, sigma, class_labels=class_labels, latent_tokens=self.context(latent))
