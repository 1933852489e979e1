"""Harness registry, keyed by the paper's labels (table1, figure4, w2, ...)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

from bench.distributed import Shard
from bench.rows import Row
from bench.tolerance import Tolerance

SCALES = ("smoke", "small", "paper")


@dataclasses.dataclass(frozen=True)
class RunContext:
    scale: str
    out: Path            # results root; a harness writes under out/<scale>/
    seed: int = 0
    device: str = "cpu"
    dry_run: bool = False
    cache: Path = Path("runs")  # trained checkpoints, keyed by config hash
    shard: Shard = Shard()      # this process under torchrun (rank 0 evaluates and writes)
    # FID harnesses only (Harness.options has "fid"): the detector, reference statistics, EDM's min-of-3
    fid_detector: Optional[Path] = None
    fid_ref: Optional[Path] = None
    fid_min_of_three: bool = False
    # Harnesses that replicate training (Harness.options has "training_runs"): train and evaluate only the
    # first N training runs of every model; None: all of them. `bench check --training-runs` only: a
    # result folder with fewer runs would not be the study the report's verdicts rest on.
    training_runs: Optional[int] = None


HarnessFn = Callable[[RunContext], list[Row]]


@dataclasses.dataclass(frozen=True)
class Harness:
    label: str
    reproduces: str                 # what of the paper, in words
    paper_rows: tuple[str, ...]     # ref_id prefixes in reference/ that it compares with
    run: Optional[HarnessFn] = None  # None: not built yet
    issue: str = ""                  # where the unbuilt work is tracked
    group: str = ""                  # harnesses of one group share one run and are written together
    code: tuple[str, ...] = ()       # repository paths whose code makes its results (REPORT.md flags
    #                                  results made before a later change to them)
    options: tuple[str, ...] = ()    # optional CLI flag groups it honours ("fid", "training_runs"); others are
    #                                  refused (check's --training-runs leaves the others whole)
    tolerances: tuple[tuple[str, Tolerance], ...] = ()  # (metric pattern, how far a rerun may move it):
    #                                  `python -m bench check` (bench/tolerance.py)

    @property
    def built(self) -> bool:
        return self.run is not None


HARNESSES: dict[str, Harness] = {}
VARIANTS: dict[str, str] = {"app-f": "the paper's text read literally (App. F for the 2D study)"}
BEYOND_PAPER: set[str] = set()   # variants that add something the paper does not do: verdicts of their own


def describe_variant(name: str, deviation: str, beyond_paper: bool = False) -> None:
    """Record what a non-faithful variant changes, so every report states it. `beyond_paper`: the variant
    adds a method the paper does not have (not merely a reading of what it leaves open); its claim
    verdicts are reported apart from the paper's."""
    VARIANTS[name] = deviation
    if beyond_paper:
        BEYOND_PAPER.add(name)


def register(h: Harness) -> Harness:
    if h.label in HARNESSES:
        raise ValueError(f"harness {h.label!r} registered twice")
    HARNESSES[h.label] = h
    return h


def harness(label: str, reproduces: str, paper_rows: tuple[str, ...], group: str = "", code: tuple[str, ...] = (),
            options: tuple[str, ...] = (), tolerances: tuple[tuple[str, Tolerance], ...] = ()):
    """Decorator registering a built harness function under a paper label."""
    def wrap(fn: HarnessFn) -> HarnessFn:
        register(Harness(label, reproduces, paper_rows, fn, group=group, code=code, options=options,
                         tolerances=tolerances))
        return fn
    return wrap


def with_siblings(labels: list[str]) -> list[str]:
    """Add the built harnesses that share a run with any of `labels` (same group)."""
    groups = {HARNESSES[l].group for l in labels if HARNESSES[l].group}
    extra = [k for k, h in HARNESSES.items() if h.built and h.group in groups and k not in labels]
    return list(labels) + extra


def load_all() -> dict[str, Harness]:
    import bench.harnesses  # noqa: F401  (modules register themselves on import)
    return dict(sorted(HARNESSES.items(), key=lambda kv: _order(kv[0])))


def _order(label: str) -> tuple:
    kind = 0 if label.startswith("table") else 1 if label.startswith("figure") else 2
    digits = "".join(c for c in label if c.isdigit())
    return (kind, int(digits) if digits else 0, label)
