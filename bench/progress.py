"""Stage lines: one flushed line when a stage of a run starts ("training X", "sampling Y",
"evaluating Z"), with the time since the process started. Progress bars (tqdm) switch themselves
off when output goes to a file; these lines do not, so a log always shows where a long run is.
Under torchrun only rank 0 prints (callers pass `enabled=shard.is_main`)."""
from __future__ import annotations

import time

_START = time.perf_counter()


def stage(text: str, enabled: bool = True) -> None:
    if enabled:
        s = int(time.perf_counter() - _START)
        print(f"[{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}] {text}", flush=True)
