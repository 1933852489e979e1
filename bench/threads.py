"""Intra-op thread control. Tiny models (2D MLPs) run fastest on one thread: on a busy 2-core
machine two threads made a 128-wide MLP 50x slower (measured), so they pin one and restore."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
