"""Second stage: an autoregressive prior p(z_1..z_m | y) over the discrete latents (Eq. 4).

A causal Transformer decoder: position 0 holds the condition (class embedding, or a learned
start token when unconditional); position i predicts z_{i+1} from z_<=i. Trained by maximum
likelihood on latents extracted by the frozen encoder at tau = 0.01 (Algorithm 2).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class ARPriorConfig:
    m: int                 # number of latents
    k: int                 # codebook size
    num_classes: int = 0   # 0: unconditional
    width: int = 64        # paper (ImageNet): 512
    depth: int = 2         # paper: 12
    heads: int = 4         # paper: 8


class AutoregressivePrior(nn.Module):
    def __init__(self, cfg: ARPriorConfig):
        super().__init__()
        self.cfg = cfg
        self.start = nn.Embedding(max(cfg.num_classes, 1), cfg.width)  # row 0 = start if uncond
        self.token = nn.Embedding(cfg.k, cfg.width)
        self.pos = nn.Parameter(torch.zeros(cfg.m, cfg.width))
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.k)

    def _condition(self, batch: int, y: Optional[torch.Tensor], device) -> torch.Tensor:
        if self.cfg.num_classes == 0:
            return self.start(torch.zeros(batch, dtype=torch.long, device=device))
        if y is None:
            raise ValueError("this prior is class-conditional: pass class labels y")
        return self.start(y.long())

    def logits(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """z [B, m] integer latents -> logits [B, m, k] for p(z_i | z_<i, y)."""
        B, m = z.shape
        h = torch.cat([self._condition(B, y, z.device)[:, None], self.token(z[:, :-1].long())], 1)
        h = h + self.pos[:m]
        mask = nn.Transformer.generate_square_subsequent_mask(m, device=z.device)
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """= log_prob (what training calls, so DDP can wrap the prior)."""
        return self.log_prob(z, y)

    def log_prob(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B]: sum_i log p(z_i | z_<i, y)."""
        logp = F.log_softmax(self.logits(z, y), -1)
        return logp.gather(-1, z.long()[..., None]).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sample(self, uniforms: torch.Tensor, y: Optional[torch.Tensor] = None,
               temperature: float = 1.0, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Ancestral sampling by inverse CDF: uniforms [n, m] in [0, 1) (one row per sample,
        from that sample's own seed) -> z [n, m]. Temperature divides the logits. `prefix` [n, j]:
        the first j latents fixed, the rest drawn given them (Fig. 16; their uniforms go unused)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        n = uniforms.shape[0]
        z = torch.zeros(n, self.cfg.m, dtype=torch.long, device=self.pos.device)
        start = 0
        if prefix is not None:
            if prefix.shape[0] != n or prefix.shape[1] > self.cfg.m:
                raise ValueError(f"prefix {tuple(prefix.shape)}: expected [{n}, <= {self.cfg.m}]")
            start = prefix.shape[1]
            z[:, :start] = prefix.to(z)
        for i in range(start, self.cfg.m):
            cdf = F.softmax(self.logits(z, y)[:, i] / temperature, -1).cumsum(-1)
            z[:, i] = (cdf < uniforms[:, i : i + 1].to(cdf)).sum(-1).clamp_max(self.cfg.k - 1)
        return z


def stratified_empirical(codes: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n latents whose code counts match the training codes' frequencies as closely as integers
    allow (largest remainder), in a random order: sampling the empirical prior *without* the
    multinomial count noise of i.i.d. draws. codes [N, m] -> [n, m]. With n = N it is a random
    permutation of the training codes (each used once)."""
    uniq, counts = torch.unique(codes, dim=0, return_counts=True)
    quota = counts.double() * n / len(codes)
    take = quota.floor().long()
    short = n - int(take.sum())
    if short:
        order = torch.argsort(quota - take, descending=True, stable=True)
        take[order[:short]] += 1
    z = uniq.repeat_interleave(take, dim=0)
    return z[torch.randperm(n, generator=generator)]
