"""Gumbel-Softmax relaxation of categorical latents (Jang et al. 2017; Maddison et al. 2017).

DisCo-Diff (Sec. 3.1, App. D): tau = 1 while training the encoder jointly with the denoiser,
tau = 0.01 when extracting latents from training images for the second stage.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def gumbel_noise(shape: torch.Size, generator: Optional[torch.Generator] = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    # -log(-log U), U ~ Uniform(0,1); clamped so U is never exactly 0 or 1.
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-10, 1 - 1e-10)
    return -torch.log(-torch.log(u))


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, hard: bool = False,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """logits [..., k] -> weights [..., k] summing to 1.

    hard=True: one-hot forward, soft gradient (straight-through estimator).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    g = gumbel_noise(logits.shape, generator, logits.device)
    soft = F.softmax((logits + g) / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft
