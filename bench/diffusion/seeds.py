"""Per-sample seeds: every sample draws its noise from its own generator (as EDM's
StackedRandomGenerator), so outputs do not depend on batch size or the number of workers."""
from __future__ import annotations

from typing import Sequence

import torch


class PerSampleRandom:
    def __init__(self, seeds: Sequence[int], device: str | torch.device = "cpu"):
        self.seeds = list(seeds)
        # seed mod 2^32, as EDM's StackedRandomGenerator, so a seed gives EDM's noise.
        self.generators = [torch.Generator(device).manual_seed(int(s) % (1 << 32)) for s in self.seeds]
        self.device = device

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[len(seeds), *shape], row i from generator i."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype)
                            for g in self.generators])

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(*x.shape[1:], dtype=x.dtype if x.is_floating_point() else torch.float32).to(x.device)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.stack([torch.randint(high, shape, generator=g, device=self.device)
                            for g in self.generators])

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.stack([torch.rand(shape, generator=g, device=self.device, dtype=dtype)
                            for g in self.generators])


def parse_seeds(spec: str) -> list[int]:
    """'0-63' or '0,5,7' or '0-3,10' -> list of ints (EDM's --seeds syntax)."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise ValueError(f"bad seed range {part!r}")
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(part))
    if not out:
        raise ValueError(f"no seeds in {spec!r}")
    return out


def format_seeds(seeds: Sequence[int]) -> str:
    s = list(seeds)
    if s and s == list(range(s[0], s[0] + len(s))):
        return f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0])
    return ",".join(map(str, s))
