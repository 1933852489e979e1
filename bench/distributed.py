"""torch.distributed under `torchrun`: gloo on CPU, NCCL on CUDA; one `Shard` per process.

`torchrun --nproc_per_node=N -m bench ...` sets RANK / WORLD_SIZE / LOCAL_RANK; without them
everything runs in one process and `Shard()` is the whole batch.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous rows of a global-batch tensor [B, ...] (B divisible by world)."""
        if self.world == 1:
            return t
        if t.shape[0] % self.world:
            raise ValueError(f"global batch {t.shape[0]} is not divisible by {self.world} processes")
        n = t.shape[0] // self.world
        return t[self.rank * n:(self.rank + 1) * n]

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float) -> float:
        """Average of a number over the processes (e.g. the running loss, for logging)."""
        if self.world == 1:
            return value
        nccl = torch.distributed.get_backend() == "nccl"      # NCCL reduces CUDA tensors only
        t = torch.tensor([float(value)], device=torch.device("cuda") if nccl else None)
        torch.distributed.all_reduce(t)
        return t.item() / self.world

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def init_from_env(device: str = "cpu") -> tuple[Shard, torch.device]:
    """Join the process group torchrun describes (if any); returns (shard, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Shard(), torch.device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return Shard(rank, world), dev
