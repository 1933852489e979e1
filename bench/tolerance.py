"""How far a rerun may move a committed number before `python -m bench check` calls it a regression.

Each harness declares its tolerances next to its code (`@harness(..., tolerances=...)`): a tuple of
(metric pattern, Tolerance), the first pattern that matches a metric wins (fnmatch: `fd_*`, `*_per_s`).
A metric no pattern names gets DEFAULT, which only float rounding passes: a new metric must say how it
may move.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import statistics
from typing import Optional, Sequence

KINDS = ("exact", "relative", "absolute", "spread", "timing")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """kind: exact (counts, configuration checks) | relative (|new - old| <= bound |old|) | absolute
    (|new - old| <= bound) | spread (the mean over replicates may move by bound standard errors of the
    committed replicates' difference, sqrt(2) sd / sqrt(n); at least `floor`) | timing (reported, never a
    regression: wall times depend on the machine)."""
    kind: str
    bound: float = 0.0
    floor: float = 0.0      # spread: the least allowed move (replicates that happen to agree exactly)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"tolerance kind {self.kind!r} is not one of {KINDS}")

    def allowed(self, committed: Sequence[float], sd: Optional[float] = None) -> float:
        """The largest move of the (mean) value that passes; inf for timing. sd: the replicates' standard
        deviation when the caller knows it better than `committed` alone (bench.check: a hand-edited
        committed number must not widen its own tolerance)."""
        old = statistics.fmean(committed)
        if self.kind == "timing":
            return math.inf
        if self.kind == "exact":
            return 0.0
        if self.kind == "relative":
            return self.bound * abs(old)
        if self.kind == "absolute":
            return self.bound
        if sd is None:
            sd = statistics.stdev(committed) if len(committed) > 1 else 0.0
        return max(self.bound * math.sqrt(2) * sd / math.sqrt(len(committed)), self.floor)

    def describe(self) -> str:
        return {"exact": "exact", "relative": f"±{self.bound:g} relative", "absolute": f"±{self.bound:g}",
                "spread": f"±{self.bound:g} s.e. of the replicates (at least {self.floor:g})",
                "timing": "timing: not checked"}[self.kind]


EXACT = Tolerance("exact")
TIMING = Tolerance("timing")
ROUNDING = Tolerance("relative", 1e-9)
DEFAULT = ROUNDING
# wall-clock metrics every harness may write
TIMING_PATTERNS = (("*_per_s", TIMING), ("*seconds*", TIMING), ("runtime_s", TIMING))


def tolerance_for(declared: Sequence[tuple[str, Tolerance]], metric: str) -> Tolerance:
    for pattern, tol in tuple(declared) + TIMING_PATTERNS:
        if fnmatch.fnmatchcase(metric, pattern):
            return tol
    return DEFAULT
