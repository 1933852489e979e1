"""`python -m bench check --scale S [--only LABELS] [--reuse-cache]`: regression runs.

Reruns the harnesses (or a named subset, with the harnesses that share their run) into a temporary
folder, then compares every metric with the committed `results/<scale>/`: rows that differ only by
their replicate (sampling seed range, training run) form one group, compared by its mean within the
tolerance its harness declares (bench/tolerance.py). Prints what moved, by how much and in which
direction; exits 1 on a regression (a move beyond tolerance, a group gone or a group new).
Training starts from scratch in a temporary cache unless --reuse-cache names the checkpoints to reuse.
"""
from __future__ import annotations

import dataclasses
import math
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from bench.registry import Harness
from bench.rows import Row, read_csv
from bench.tolerance import Tolerance, tolerance_for

REPLICATE_SETTING = re.compile(r"^seed=\d+$")


def _group(r: Row) -> tuple[str, str, str, str]:
    return (r.method, r.variant, "" if REPLICATE_SETTING.match(r.setting) else r.setting, r.metric)


@dataclasses.dataclass(frozen=True)
class Moved:
    """One group of rows, committed against rerun."""
    harness: str
    method: str
    variant: str
    setting: str
    metric: str
    committed: Optional[float]    # the mean over its replicates; None: the group is new
    now: Optional[float]          # None: the group is gone
    tolerance: Tolerance
    allowed: float

    @property
    def status(self) -> str:
        if self.committed is None:
            return "new"
        if self.now is None:
            return "gone"
        if math.isnan(self.committed) and math.isnan(self.now):
            return "ok"
        if self.tolerance.kind == "timing":   # shown, never a regression: wall time depends on the machine
            return "ok" if self.now == self.committed else "timing"
        if math.isnan(self.committed) != math.isnan(self.now) or abs(self.now - self.committed) > self.allowed:
            return "MOVED"
        return "ok"

    @property
    def regression(self) -> bool:
        return self.status in ("MOVED", "gone", "new")

    def change(self) -> str:
        if self.committed is None or self.now is None or math.isnan(self.committed) or math.isnan(self.now):
            return ""
        d = self.now - self.committed
        rel = f" ({d / self.committed:+.1%})" if self.committed else ""
        return ("up " if d > 0 else "down " if d < 0 else "") + f"{d:+.4g}{rel}"


def compare_rows(label: str, h: Harness, committed: list[Row], now: list[Row]) -> list[Moved]:
    """Every group of `committed` and `now` rows (replicates pooled), judged by the harness's tolerances."""
    old, new = defaultdict(list), defaultdict(list)
    for rows, into in ((committed, old), (now, new)):
        for r in rows:
            into[_group(r)].append(r.value)
    out = []
    for key in list(old) + [k for k in new if k not in old]:
        tol = tolerance_for(h.tolerances, key[3])
        o, n = old.get(key), new.get(key)
        finite = [v for v in (o or []) if not math.isnan(v)]
        allowed = tol.allowed(finite) if finite else 0.0
        if tol.kind == "exact" and o and n and sorted(o) != sorted(n):
            allowed = -1.0   # every replicate must agree, not only the mean
        mean = lambda vs: statistics.fmean(vs) if vs else None  # noqa: E731
        out.append(Moved(label, *key, mean(o), mean(n), tol, allowed))
    return out


def _fmt(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:.6g}"


def table(moved: Sequence[Moved], everything: bool = False) -> str:
    """What moved (or, with everything, every group) as a Markdown table; then counts."""
    shown = [m for m in moved if everything or m.status not in ("ok", "timing")]   # timings: counted only
    lines = []
    if shown:
        lines.append(pd.DataFrame([{
            "harness": m.harness, "method": m.method, "variant": m.variant, "setting": m.setting,
            "metric": m.metric, "committed": _fmt(m.committed), "now": _fmt(m.now), "change": m.change(),
            "tolerance": m.tolerance.describe() + (f" = {m.allowed:.3g}" if m.tolerance.kind in ("spread", "relative")
                                                    and m.allowed >= 0 else ""),
            "status": m.status} for m in shown]).to_markdown(index=False, tablefmt="github", disable_numparse=True))
    counts = defaultdict(int)
    for m in moved:
        counts[m.status] += 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" ({len(moved)} groups)")
    return "\n".join(lines)


def run_check(labels: Sequence[str], scale: str, committed_root: Path, cache: Optional[Path], ctx_kwargs: dict,
              everything: bool = False) -> int:
    """Rerun `labels` into a temporary folder, compare with committed_root/<scale>/, print the table.
    Returns 0 (nothing moved beyond tolerance), 1 (a regression) or 2 (nothing committed to compare with)."""
    from bench.registry import RunContext, load_all

    harnesses = load_all()
    missing = [l for l in labels if not (committed_root / scale / f"{l}.csv").is_file()]
    if missing:
        print(f"error: nothing committed to check against: {', '.join(f'{committed_root}/{scale}/{l}.csv' for l in missing)}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        out = Path(tmp) / "results"
        ctx = RunContext(scale=scale, out=out, cache=cache if cache is not None else Path(tmp) / "runs", **ctx_kwargs)
        print(f"check [{scale}]: rerunning {', '.join(labels)} into {out} "
              f"({'reusing checkpoints in ' + str(cache) if cache is not None else 'training from scratch'})")
        moved: list[Moved] = []
        for label in labels:
            t0 = time.perf_counter()
            rows = harnesses[label].run(ctx)
            print(f"  {label}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s")
            moved += compare_rows(label, harnesses[label], read_csv(committed_root / scale / f"{label}.csv"), rows)
    print()
    print(table(moved, everything))
    bad = [m for m in moved if m.regression]
    if bad:
        print(f"\nREGRESSION: {len(bad)} group(s) moved beyond tolerance, appeared or disappeared "
              f"(tolerances are declared with each harness: @harness(..., tolerances=...))")
        return 1
    print("\nno regression: every committed number reproduced within its tolerance")
    return 0
