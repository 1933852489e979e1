"""The prior-versus-DM timing harness (claim 7): through the CLI at smoke, and its paper dry run."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import run_cli

from bench.harnesses.timing import REPEATS, counted_nfe
from bench.images.sampling import SamplerSpec
from bench.rows import read_csv


def test_counted_nfe_is_the_samplers_count():
    assert counted_nfe(SamplerSpec("heun", 40)) == 79 and counted_nfe(SamplerSpec("heun", 6)) == 11
    assert counted_nfe(SamplerSpec("euler", 6)) == 6


def test_timing_smoke_through_the_cli(tmp_path):
    r = run_cli("timing", "--scale", "smoke", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_csv(tmp_path / "smoke" / "timing.csv")
    by = {}
    for row in rows:
        by.setdefault(row.metric, []).append(row)
    for metric in ("prior_seconds", "dm_seconds_per_nfe", "dm_seconds", "overhead_pct"):
        assert [x.seeds for x in by[metric]] == [f"timed repeat {i}" for i in range(1, REPEATS + 1)], metric
        assert all(x.value > 0 and math.isfinite(x.value) for x in by[metric]), metric
    assert {x.nfe for x in by["dm_seconds"]} == {"11"}                      # 6 Heun steps at smoke, counted
    assert all("timed whole" in x.setting for x in by["dm_seconds"])         # smoke: whole runs fit
    for p, d, o in zip(by["prior_seconds"], by["dm_seconds"], by["overhead_pct"]):
        assert o.value == pytest.approx(100 * p.value / d.value)
    (med,) = by["overhead_pct_median"]
    assert med.paper_row == "timing.overhead_pct" and med.seeds == f"median of {REPEATS}"
    assert "cpu" in med.setting and "32 images" in med.setting
    v = pd.read_csv(tmp_path / "smoke" / "claims.csv", dtype=str, keep_default_na=False)
    got = v[v.claim_id == "7a"].iloc[0]
    assert got.verdict in ("held", "not held", "inconclusive") and got.replicates == f"{REPEATS} timed repeats"
    assert got.interval.startswith("mean in [")


def test_timing_paper_dry_run_counts_and_trains_nothing(tmp_path):
    r = run_cli("timing", "--scale", "paper", "--dry-run", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Heun 40 steps (79 NFE, counted)" in r.stdout and "prior 12 x 512 (10 latents of 100)" in r.stdout
    assert not (tmp_path / "paper" / "timing.csv").exists()
