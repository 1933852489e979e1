"""Networks. One model per file; configs are typed dataclasses."""

from typing import Callable

import torch


def meta_parameter_count(make: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the module `make()` builds, built on the meta device (no memory, no init):
    how paper-size networks are counted on a laptop."""
    with torch.device("meta"):
        return sum(p.numel() for p in make().parameters())
