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
    def __init__(self, unet: ADMUNetConfig, context: LatentContextConfig, sigma_data: float = 0.5,
                 **precond):   # EDMPrecond's use_fp16 / sigma_min / sigma_max
        super().__init__()
        if unet.xattn_dim != context.width:
            raise ValueError(f"U-Net xattn_dim {unet.xattn_dim} must equal the latent context width {context.width}")
        net = ADMUNet(unet)
        # Read from the built network: a block has cross-attention only where it has attention
        # heads (EDM: heads = channels // channels_per_head, which can be 0), so a group sent to a
        # resolution without any would be accepted and change nothing.
        attends = sorted({int(name.split("x")[0]) for name, block in {**net.enc, **net.dec}.items()
                          if getattr(block, "has_xattn", False)})
        if unet.xattn_dim and not attends:
            raise ValueError("the U-Net has no cross-attention layer (no block with attention heads): "
                             f"attn_resolutions {unet.attn_resolutions}, channels_per_head {unet.channels_per_head}")
        if not set(context.group_resolutions) <= set(attends):
            raise ValueError(f"latent groups go to resolutions {context.group_resolutions}, but the "
                             f"U-Net has cross-attention only at {attends} (a block attends where it has "
                             f"heads: channels // channels_per_head ({unet.channels_per_head}) >= 1)")
        self.denoiser = EDMPrecond(net, sigma_data, **precond)
        self.context = LatentContext(context)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, latent: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, C, H, W], sigma [B] or scalar, latent [B, m, k] -> D(x; sigma, z, y) [B, C, H, W]."""
        return self.denoiser(x, sigma, class_labels=class_labels, latent_tokens=self.context(latent))
