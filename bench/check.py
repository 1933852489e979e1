"""`python -m bench check --scale S [--only LABELS] [--reuse-cache] [--training-runs N]`: regression runs.

Reruns the harnesses (or a named subset, with the harnesses that share their run) into a temporary
folder, then compares every metric with the committed `results/<scale>/`: rows that differ only by
their replicate (sampling seed range, training run) form one group, compared by its mean within the
tolerance its harness declares (bench/tolerance.py). Prints what moved, by how much and in which
direction; exits 1 on a regression (a move beyond tolerance, a group gone or a group new).
Training starts from scratch in a temporary cache unless --reuse-cache names the checkpoints to reuse.
--training-runs N reruns only the first N training runs of the harnesses that replicate training (the 2D
study: CI's budget) and compares them replicate by replicate with the committed rows of the same runs.
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


def _replicate(r: Row) -> tuple[str, str]:
    """Which replicate a row is: its training run and its seeds."""
    return (r.train_seed, r.seeds)


def _sd(values: Sequence[float]) -> Optional[float]:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.stdev(finite) if len(finite) > 1 else None


def _spread_sd(committed: list[float], compared: list[float], rerun: list[float], matched: bool) -> Optional[float]:
    """The replicate spread behind a `spread` tolerance, chosen so that a hand-edited committed number cannot
    widen its own tolerance: with matched replicates, the spread of the rerun replicates together with the
    committed replicates that were not rerun (a full set of runs, none of them a number under judgement);
    else the smaller of the committed and the rerun spread (each needs two replicates). None: the committed
    spread."""
    if matched:
        rest = list(committed)
        for v in compared:
            if v in rest:
                rest.remove(v)
        return _sd(rest + list(rerun))
    both = [s for s in (_sd(committed), _sd(rerun)) if s is not None]
    return min(both) if both else None


def compare_rows(label: str, h: Harness, committed: list[Row], now: list[Row],
                 matched_replicates: bool = False) -> list[Moved]:
    """Every group of `committed` and `now` rows (replicates pooled), judged by the harness's tolerances.
    matched_replicates: the rerun made only some of the replicates (`--training-runs`): each group compares
    the committed rows of those replicates (same training run, same seeds) with the rerun, within the
    tolerance of the whole committed group."""
    old, new, spread = defaultdict(list), defaultdict(list), defaultdict(list)
    made = {(_group(r), _replicate(r)) for r in now}
    for r in committed:
        spread[_group(r)].append(r.value)
        if not matched_replicates or (_group(r), _replicate(r)) in made:
            old[_group(r)].append(r.value)
    for r in now:
        new[_group(r)].append(r.value)
    out = []
    for key in list(spread) + [k for k in new if k not in spread]:
        tol = tolerance_for(h.tolerances, key[3])
        o, n = old.get(key), new.get(key)
        if o is None and key in spread:   # not one of its replicates was rerun: gone
            o = spread[key]
        finite = [v for v in spread.get(key, []) if not math.isnan(v)]
        allowed = tol.allowed(finite, _spread_sd(finite, o or [], n or [], matched_replicates)) if finite else 0.0
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
        if ctx.training_runs is not None:
            replicated = [l for l in labels if "training_runs" in harnesses[l].options]
            print(f"  --training-runs {ctx.training_runs}: {', '.join(replicated) or 'no harness here'} "
                  f"train{'s' if len(replicated) == 1 else ''} only the first {ctx.training_runs} training run(s) of "
                  f"every model and compare{'s' if len(replicated) == 1 else ''} them with the same runs' committed "
                  f"rows; the other harnesses run whole")
        moved: list[Moved] = []
        for label in labels:
            t0 = time.perf_counter()
            rows = harnesses[label].run(ctx)
            print(f"  {label}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s")
            partial = ctx.training_runs is not None and "training_runs" in harnesses[label].options
            moved += compare_rows(label, harnesses[label], read_csv(committed_root / scale / f"{label}.csv"), rows,
                                  matched_replicates=partial)
    print()
    print(table(moved, everything))
    bad = [m for m in moved if m.regression]
    if bad:
        print(f"\nREGRESSION: {len(bad)} group(s) moved beyond tolerance, appeared or disappeared "
              f"(tolerances are declared with each harness: @harness(..., tolerances=...))")
        return 1
    print("\nno regression: every committed number reproduced within its tolerance")
    return 0
