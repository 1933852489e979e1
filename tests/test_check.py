"""`python -m bench check`: tolerances, the comparison of committed and rerun rows, and the CLI (a hand-edited
committed number must fail the check)."""
import csv
import dataclasses
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.check import compare_rows
from bench.registry import Harness
from bench.rows import Row
from bench.tolerance import EXACT, TIMING, Tolerance, tolerance_for

REPO = Path(__file__).resolve().parents[1]


def _rows(metric, values, method="DM", by_run=False):
    return [Row("w2", "", method, "app-f", f"seed={i}", metric, v, train_seed=str(i) if by_run else "",
                seeds=str(i)) for i, v in enumerate(values)]


def test_tolerance_bounds():
    assert EXACT.allowed([3.0]) == 0.0
    assert Tolerance("relative", 0.1).allowed([2.0, 2.0]) == pytest.approx(0.2)
    assert Tolerance("absolute", 5).allowed([100.0]) == 5
    # spread: 4 standard errors of a difference of means, sqrt(2) sd / sqrt(n)
    assert Tolerance("spread", 4).allowed([1.0, 2.0, 3.0]) == pytest.approx(4 * math.sqrt(2) * 1.0 / math.sqrt(3))
    assert Tolerance("spread", 4, floor=0.5).allowed([1.0, 1.0]) == 0.5      # replicates that agree: the floor
    assert TIMING.allowed([1.0]) == math.inf
    with pytest.raises(ValueError, match="kind"):
        Tolerance("roughly")


def test_tolerance_patterns():
    declared = (("fid*", Tolerance("spread", 4)), ("parameters", EXACT))
    assert tolerance_for(declared, "fid_generative_oracle_gap").kind == "spread"
    assert tolerance_for(declared, "parameters") is EXACT
    assert tolerance_for(declared, "sample_images_per_s") is TIMING         # wall time: never a regression
    assert tolerance_for(declared, "something_new").kind == "relative"      # undeclared: float rounding only


def test_compare_rows_statuses():
    h = Harness("w2", "", (), tolerances=(("w2", Tolerance("spread", 4)), ("count", EXACT)))
    old = _rows("w2", [0.30, 0.32, 0.28], by_run=True) + _rows("count", [8.0, 8.0]) + _rows("gone", [1.0])
    old += _rows("x_per_s", [10.0]) + _rows("nan", [float("nan")] * 2)
    new = _rows("w2", [0.31, 0.33, 0.29], by_run=True) + _rows("count", [8.0, 7.0]) + _rows("fresh", [1.0])
    new += _rows("x_per_s", [1.0]) + _rows("nan", [float("nan")] * 2)
    got = {m.metric: m for m in compare_rows("w2", h, old, new)}
    assert got["w2"].status == "ok" and got["w2"].change().startswith("up +0.01")
    assert got["count"].status == "MOVED"       # exact: one replicate changed, though means differ by 0.5 only
    assert got["gone"].status == "gone" and got["fresh"].status == "new"
    assert got["x_per_s"].status == "timing" and not got["x_per_s"].regression
    assert got["nan"].status == "ok"            # undefined then, undefined now
    moved = {m.metric: m for m in compare_rows("w2", h, old, _rows("w2", [0.50, 0.52, 0.48], by_run=True))}
    assert moved["w2"].status == "MOVED" and moved["w2"].change().startswith("up +0.2")


def test_compare_rows_matched_replicates():
    """--training-runs: the rerun made run 0 only; it meets the committed run 0 (a mean over the 3 runs would
    not be the same number), within a tolerance whose spread comes from the rerun and the runs not rerun."""
    h = Harness("w2", "", (), tolerances=(("w2", Tolerance("spread", 4)),))
    old = _rows("w2", [0.30, 0.50, 0.70], by_run=True)
    allowed = Tolerance("spread", 4).allowed([0.30, 0.50, 0.70], sd=statistics.stdev([0.30, 0.50, 0.70]))
    same = compare_rows("w2", h, old, _rows("w2", [0.30], by_run=True), matched_replicates=True)
    assert [(m.status, m.committed) for m in same] == [("ok", 0.30)] and same[0].allowed == pytest.approx(allowed)
    pooled = compare_rows("w2", h, old, _rows("w2", [0.30], by_run=True))   # the full check's way: 0.30 vs 0.50
    assert pooled[0].committed == pytest.approx(0.50)
    edited = [dataclasses.replace(old[0], value=0.30 + 1.5 * allowed)] + old[1:]   # a hand-edited run-0 number
    moved = compare_rows("w2", h, edited, _rows("w2", [0.30], by_run=True), matched_replicates=True)
    assert moved[0].status == "MOVED" and moved[0].allowed == pytest.approx(allowed)   # its edit did not widen it
    gone = compare_rows("w2", h, old + _rows("count", [1.0]), _rows("w2", [0.30], by_run=True), matched_replicates=True)
    assert {m.metric: m.status for m in gone} == {"w2": "ok", "count": "gone"}


def test_a_hand_edit_does_not_widen_its_own_tolerance():
    """One committed replicate edited far away inflates the committed spread; the rerun's spread bounds it."""
    h = Harness("w2", "", (), tolerances=(("w2", Tolerance("spread", 4)),))
    rerun = _rows("w2", [0.30, 0.32, 0.28], by_run=True)
    edited = _rows("w2", [0.90, 0.32, 0.28], by_run=True)
    (m,) = compare_rows("w2", h, edited, rerun)
    assert m.status == "MOVED" and m.allowed == pytest.approx(4 * math.sqrt(2) * 0.02 / math.sqrt(3))
    (ok,) = compare_rows("w2", h, rerun, _rows("w2", [0.31, 0.33, 0.29], by_run=True))
    assert ok.status == "ok"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_check_cli_passes_then_fails_on_a_hand_edited_number(tmp_path):
    """table5 (seconds): commit a run into a results folder, check it (passes), edit one number by hand, check
    again (fails, naming the number and its direction)."""
    out = tmp_path / "results"
    r = _cli("table5", "--scale", "small", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    r = _cli("check", "--scale", "small", "--only", "table5", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "no regression" in r.stdout and "0 MOVED" not in r.stdout
    path = out / "small" / "table5.csv"
    rows = list(csv.DictReader(open(path, newline="")))
    target = next(x for x in rows if x["method"] == "ViT encoder")
    target["value"] = repr(float(target["value"]) + 1)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    r = _cli("check", "--scale", "small", "--only", "table5", "--out", str(out))
    assert r.returncode == 1, r.stdout[-3000:]
    line = next(l for l in r.stdout.splitlines() if "ViT encoder" in l)
    assert "MOVED" in line and "down -1" in line and "exact" in line
    assert "REGRESSION" in r.stdout


def _unbuilt() -> str:
    from bench.registry import load_all
    return next((k for k, h in load_all().items() if not h.built), "")


@pytest.mark.parametrize("args,message", [
    (["check", "--only", "nope"], "unknown harness 'nope'"),
    (["check", "--only", "<unbuilt>"], "not built yet"),
    (["w2", "--only", "w2"], "--only belongs to `check`"),
    (["w2", "--training-runs", "1"], "--training-runs belongs to `check`"),
])
def test_check_cli_bad_input(tmp_path, capsys, args, message):
    if "<unbuilt>" in args:
        if not _unbuilt():
            pytest.skip("every harness is built")
        args = [_unbuilt() if a == "<unbuilt>" else a for a in args]
    from bench.cli import main   # in process: bad input never reaches a harness (the CLI runs in a subprocess above)
    assert main([*args, "--scale", "small", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_check_cli_without_committed_results(tmp_path, capsys):
    from bench.cli import main
    assert main(["check", "--scale", "small", "--only", "table5", "--out", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert "nothing committed to check against" in out.err


def test_stale_picks_missing_and_older_results(tmp_path):
    """`all --stale` refreshes results that are missing or made before a change to their code."""
    import subprocess as sp

    from bench.cli import _stale
    from bench.registry import load_all
    from bench.rows import write_csv

    head = sp.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    first = sp.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not head or not first:
        pytest.skip("no git history (a shallow or exported checkout)")
    h = load_all()
    write_csv(tmp_path / "table5.csv", [Row("table5", "", "x", "app-f", "", "parameters", 1.0, git_sha=head)])
    write_csv(tmp_path / "w2.csv", [Row("w2", "", "x", "app-f", "", "w2", 1.0, git_sha=first[0])])
    assert _stale(["table5", "w2", "figure3"], h, tmp_path) == ["w2", "figure3"]   # old code; missing
