"""Atomic writes, the row contract, Markdown rendering and claim verdicts."""
import csv
import os
from pathlib import Path

import pytest

from bench import atomic
from bench.reference import Claim, load_claims, load_reference
from bench.report import evaluate_claim, harness_markdown
from bench.rows import FIELDS, LEGACY_FIELDS, Row, read_csv, write_csv

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "x.csv"
    atomic.write_text(p, "old\n")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic.write_text(p, "new\n")
    assert p.read_text() == "old\n"
    assert [f.name for f in tmp_path.iterdir()] == ["x.csv"]   # no temp file left behind


def _row(method, variant, setting, metric, value, paper_row="", seeds="", train_seed=""):
    return Row("w2", paper_row, method, variant, setting, metric, value, seeds=seeds, train_seed=train_seed,
               scale="smoke", git_sha="abc")


def _reps(method, variant, values, metric="w2", setting=None, by="seeds"):
    """Replicate rows: one per value, by sampling seed range (by="seeds") or training run (by="train_seed")."""
    return [_row(method, variant, setting if setting is not None else f"seed={i}", metric, v, **{by: str(i)})
            for i, v in enumerate(values)]


def test_rows_roundtrip(tmp_path):
    rows = [_row("DM", "app-f", "seed=0", "w2", 0.25), _row("DisCo-Diff", "app-f", "seed=0", "w2", 0.125)]
    write_csv(tmp_path / "w2.csv", rows)
    assert read_csv(tmp_path / "w2.csv") == rows
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="row contract"):
        read_csv(tmp_path / "bad.csv")


def test_committed_results_read_and_rewrite_identically(tmp_path):
    """Every committed results CSV reads as the csv module reads it (values typed as the contract
    says; "" stays "") and writes back byte for byte."""
    headers = {",".join(FIELDS), ",".join(LEGACY_FIELDS)}   # legacy: written before rows named their training run
    paths = [p for p in sorted(RESULTS.glob("*/*.csv")) if p.read_text().split("\n", 1)[0] in headers]
    assert paths
    for p in paths:
        with open(p, newline="", encoding="utf-8") as f:
            want = [Row(**{**d, "value": float(d["value"]), "n_samples": int(d["n_samples"] or 0),
                           "seconds": float(d["seconds"] or 0)}) for d in csv.DictReader(f)]
        got = read_csv(p)
        assert [repr(r) for r in got] == [repr(r) for r in want], p   # repr: NaN == NaN, types checked
        again = write_csv(tmp_path / p.name, got)
        if p.read_text().startswith(",".join(FIELDS) + "\n"):
            assert again.read_bytes() == p.read_bytes(), p
        else:
            assert [repr(r) for r in read_csv(again)] == [repr(r) for r in want], p


CLAIM = Claim("2a", "lower W2", "w2", "w2", "lower", "DisCo-Diff", "DM", "", "mean", "")


def test_claim_held_not_held_not_run():
    rows = _reps("DM", "app-f", [0.27, 0.25, 0.26]) + _reps("DisCo-Diff", "app-f", [0.12, 0.13, 0.11])
    rows += _reps("DisCo-Diff", "tuned", [0.35, 0.36, 0.34])
    verdicts = {v["variant"]: v["verdict"] for v in evaluate_claim(CLAIM, rows)}
    assert verdicts == {"app-f": "held", "tuned": "not held"}
    assert evaluate_claim(CLAIM, None)[0]["verdict"] == "not run"
    assert evaluate_claim(CLAIM, [r for r in rows if r.method == "DM"])[0]["verdict"] == "not run"


def test_claim_every_setting_names_failures():
    c = Claim("2b", "lower curvature", "figure4", "curvature", "lower", "DisCo-Diff", "DM", "", "every_setting", "")
    reps = lambda m, t, vals: _reps(m, "app-f", vals, "curvature", f"t={t}", by="train_seed")  # noqa: E731
    rows = reps("DM", 1, [1.0, 1.1, 0.9]) + reps("DM", 2, [1.0, 1.1, 0.9])
    rows += reps("DisCo-Diff", 1, [0.5, 0.6, 0.4]) + reps("DisCo-Diff", 2, [1.5, 1.6, 1.4])
    (v,) = evaluate_claim(c, rows)
    assert v["verdict"] == "not held" and "t=2" in v["detail"] and "1/2" in v["detail"]
    assert v["replicates"] == "3 training runs vs 3 training runs per setting"


def test_threshold_claim():
    c = Claim("7a", "cheap prior", "timing", "overhead_pct", "below", "DisCo-Diff", "", "5", "mean", "")
    verdict = lambda vals: evaluate_claim(c, _reps("DisCo-Diff", "app-f", vals, "overhead_pct", ""))[0]  # noqa: E731
    assert verdict([0.6, 0.5, 0.7])["verdict"] == "held"
    assert verdict([9.0, 8.0, 10.0])["verdict"] == "not held"
    assert verdict([4.0, 6.0, 5.5])["verdict"] == "inconclusive"          # the interval covers 5
    one = verdict([0.6])
    assert one["verdict"] == "inconclusive" and "one replicate" in one["detail"]


def test_markdown_shows_paper_value_and_seed_spread():
    ref = load_reference()
    rows = [_row("DM", "app-f", f"seed={s}", "w2", v, "toy2d.w2.dm") for s, v in enumerate([0.2, 0.3])]
    md = harness_markdown("w2", "smoke", rows, ref)
    line = next(l for l in md.splitlines() if l.startswith("| DM"))
    assert "0.25 ± 0.07071 (2 seeds)" in line
    assert f"{ref['toy2d.w2.dm'].number:.4g}" in [cell.strip() for cell in line.split("|")]


def test_every_claim_names_a_registered_harness():
    from bench.registry import load_all
    harnesses = load_all()
    claims = load_claims()
    assert claims and all(c.harness in harnesses for c in claims)


def test_claim_compares_matched_variants():
    rows = _reps("DM", "app-f", [0.30, 0.31, 0.29]) + _reps("DM", "tuned", [0.20, 0.21, 0.19])
    rows += _reps("DisCo-Diff", "app-f", [0.25, 0.26, 0.24]) + _reps("DisCo-Diff", "tuned", [0.23, 0.24, 0.22])
    rows += _reps("DisCo-Diff", "tuned, stratified latents", [0.05, 0.06, 0.04])
    got = {v["variant"]: (v["verdict"], v["baseline"]) for v in evaluate_claim(CLAIM, rows)}
    assert got["app-f"] == ("held", "0.3")
    assert got["tuned"] == ("not held", "0.2")          # vs the tuned DM, not the app-f one
    assert got["tuned, stratified latents"] == ("held", "0.2")


def test_claim_meets_the_best_baseline_by_validation():
    """select_by: every treatment variant meets the baseline variant with the lowest validation metric, chosen
    on rows apart from the test rows (the pool of the scale), and the choice is named."""
    import dataclasses
    c = dataclasses.replace(CLAIM, select_by="validation_w2")
    rows = _reps("DM", "app-f", [0.30, 0.31, 0.29], by="train_seed") + _reps("DM", "tuned", [0.20, 0.21, 0.19], by="train_seed")
    rows += _reps("DisCo-Diff", "app-f", [0.25, 0.26, 0.24], by="train_seed")
    pool = rows + _reps("DM", "app-f", [0.5, 0.5, 0.5], "validation_w2", "validation", by="train_seed")
    pool += _reps("DM", "tuned", [0.6, 0.6, 0.6], "validation_w2", "validation", by="train_seed")
    (v,) = evaluate_claim(c, rows, pool)   # app-f is best by validation, though tuned is lower on test
    assert (v["verdict"], v["baseline"]) == ("held", "0.3") and "`app-f`" in v["detail"]
    assert v["replicates"] == "3 training runs vs 3 training runs" and not v["interval"].endswith("paired")
    pool2 = rows + _reps("DM", "tuned", [0.1, 0.1, 0.1], "validation_w2", "validation", by="train_seed")
    (v,) = evaluate_claim(c, rows, pool2)
    assert (v["verdict"], v["baseline"]) == ("not held", "0.2")
    (v,) = evaluate_claim(c, rows, rows)     # nothing to choose by: not run, and it says why
    assert v["verdict"] == "not run" and "validation_w2" in v["detail"]


def test_verdict_sections():
    """A structural claim and a beyond-paper variant are reported apart from the paper's verdicts."""
    import dataclasses

    import bench.harnesses  # noqa: F401  (registers the beyond-paper variants)
    rows = _reps("DM", "tuned", [0.30, 0.31, 0.29]) + _reps("DisCo-Diff", "tuned", [0.20, 0.21, 0.19])
    rows += _reps("DisCo-Diff", "tuned, stratified latents", [0.05, 0.06, 0.04])
    got = {v["variant"]: v["section"] for v in evaluate_claim(CLAIM, rows)}
    assert got == {"tuned": "paper", "tuned, stratified latents": "beyond the paper"}
    got = {v["variant"]: v["section"] for v in evaluate_claim(dataclasses.replace(CLAIM, kind="structural"), rows)}
    assert got == {"tuned": "structural", "tuned, stratified latents": "beyond the paper"}


def test_undefined_measurement_is_not_held():
    c = Claim("2b", "lower curvature", "figure4", "curvature", "lower", "DisCo-Diff", "DM", "", "every_setting", "")
    rows = [_row("DM", "app-f", "t=1", "curvature", 1.0), _row("DisCo-Diff", "app-f", "t=1", "curvature", float("nan"))]
    (v,) = evaluate_claim(c, rows)
    assert v["verdict"] == "not held" and "diverged" in v["detail"]
    assert v["replicates"] == "1 sampling seed range of one training run, undefined in 1 rows vs 1 sampling seed " \
                              "range of one training run"   # a claims.csv row always names what it rests on


def test_every_setting_claim_points_to_its_intervals():
    c = Claim("2b", "lower curvature", "figure4", "curvature", "lower", "DisCo-Diff", "DM", "", "every_setting", "")
    rows = [_row(m, "app-f", f"t={t}", "curvature", v + 0.01 * s, seeds=str(s)) for m, v in (("DM", 1.0), ("DisCo-Diff", 0.5))
            for t in (1, 2) for s in range(3)]
    (v,) = evaluate_claim(c, rows)
    assert v["interval"] == "one per setting (2): see detail" and v["verdict"] == "held"


def test_markdown_shows_undefined_measurements():
    rows = [_row("DisCo-Diff", "app-f", f"seed={s}", "w2", float("nan"), "toy2d.w2.disco_diff") for s in range(3)]
    md = harness_markdown("w2", "smoke", rows, load_reference())
    assert "undefined (NaN in 3/3 rows)" in md


def test_markdown_pivots_long_sweeps():
    """A metric swept over many settings by several methods gets one row per setting and one column
    per method; what the columns hold is said above; rows with a paper number and short sweeps stay long."""
    def sweep(method, n, k=8):
        return [Row("figure10", "", method, "scale preset", f"sigma={i / 2:g}", "loss", 0.5 + i, "", n, "0")
                for i in range(k)]
    rows = sweep("EDM", 1000) + sweep("DisCo-Diff", 500)
    rows += [Row("figure10", "", m, "scale preset", f"t={i}", "short", 1.0) for m in ("EDM", "DisCo-Diff")
             for i in range(3)]
    rows += [_row("DM", "app-f", f"seed={s}", "w2", v, "toy2d.w2.dm") for s, v in enumerate([0.2, 0.3])]
    md = harness_markdown("figure10", "small", rows, load_reference())
    assert "## `loss` by setting" in md and "## `short`" not in md and "## `w2`" not in md
    assert "Each column: variant = scale preset; n = 1000 (EDM), 500 (DisCo-Diff); seeds = 0" in md
    table = [[c.strip() for c in l.strip("|").split("|")] for l in md.split("## `loss` by setting")[1].splitlines()
             if l.startswith("|")]
    assert table[0] == ["setting", "EDM", "DisCo-Diff"] and table[2] == ["sigma=0", "0.5", "0.5"]
    assert [r[0] for r in table[2:]] == [f"sigma={i / 2:g}" for i in range(8)]   # in the harness's order
    long = md.split("## `loss`")[0]
    assert "| loss " not in long and long.count("| short ") == 6 and "0.25 ± 0.07071 (2 seeds)" in long


def test_smoke_run_writes_its_own_report_and_leaves_committed_files_alone(tmp_path):
    import shutil

    from bench.report import render

    shutil.copytree(RESULTS, tmp_path / "results", ignore=shutil.ignore_patterns("smoke"))   # what git tracks
    out = tmp_path / "results"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_csv(out / "smoke" / "w2.csv", [_row("DM", "app-f", "seed=0", "w2", 0.25),
                                         _row("DisCo-Diff", "app-f", "seed=0", "w2", 0.125)])
    written = render(out)
    assert written == [out / "REPORT.md", out / "smoke" / "REPORT.md"]
    # the committed report and tables are rebuilt byte for byte: a smoke run leaves `git status` clean.
    # REPORT.md says whether each result predates its code, which needs the commits it names: in a
    # shallow checkout without them it says "unknown" instead, so only there it is left out.
    from bench.provenance import changed_since
    shas = {r.git_sha for scale in ("small", "paper") for f in (RESULTS / scale).glob("*.csv")
            if f.stem in {"w2", "figure3", "figure4", "figure10", "table4", "table5"} for r in read_csv(f)}
    assert shas
    if any(changed_since(sha, ("bench/",)) is None for sha in shas):
        before.pop(out / "REPORT.md")
    assert {p: p.read_bytes() for p in before} == before
    smoke = (out / "smoke" / "REPORT.md").read_text()
    assert "scale `smoke`" in smoke and "[smoke](w2.md)" in smoke and "## Claims at scale `smoke`" in smoke
    assert "`smoke`" not in (out / "REPORT.md").read_text().replace("`smoke/REPORT.md`", "")


def test_report_flags_results_older_than_their_code():
    import subprocess

    from bench.provenance import REPO_ROOT, code_note

    git = lambda *a: subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True)  # noqa: E731
    head = git("rev-parse", "HEAD").stdout.strip()
    last = git("log", "-1", "--format=%H", "--", "bench/report.py").stdout.strip()
    before = git("rev-parse", f"{last}~1").stdout.strip()
    if not head or not last or not before:
        pytest.skip("no git history (a shallow or exported checkout)")
    assert code_note({head}, ("bench/report.py",)) == f"git {head[:7]}; current"
    assert code_note({before}, ("bench/report.py",)).endswith("; older than its code (changed since)")
    assert code_note({before}, ()) == f"git {before[:7]}"                       # no code named: commit only
    assert "unknown" in code_note({"0" * 40}, ("bench/",))                      # a commit git does not know


def test_spread_rule_is_a_95_percent_interval():
    from scipy import stats

    from bench.report import Replicates, compare, interval

    R = lambda vals, unit="sampling seed ranges": Replicates({str(i): v for i, v in enumerate(vals)}, unit)  # noqa: E731
    assert compare(R([1.0, 1.1, 0.9]), R([2.0, 2.1, 1.9]), "lower")["verdict"] == "held"
    assert compare(R([2.0, 2.1, 1.9]), R([1.0, 1.1, 0.9]), "lower")["verdict"] == "not held"
    res = compare(R([1.0, 3.0, 2.0]), R([2.2, 0.4, 3.4]), "lower")       # means 2.0 vs 2.0
    assert res["verdict"] == "inconclusive" and "covers zero" in res["detail"]
    # paired by seeds: a consistent small gain over noisy replicates is seen, unpaired (training runs) it is not
    t, b = [10.0, 20.0, 30.0], [10.5, 20.6, 30.4]
    assert compare(R(t, "training runs"), R(b, "training runs"), "lower")["verdict"] == "inconclusive"
    res = compare(R(t), R(b), "lower")
    assert res["verdict"] == "held" and res["interval"].endswith("paired")
    # the paired interval is Student's t on the differences, 2 degrees of freedom
    d = [x - y for x, y in zip(t, b)]
    half = stats.t.ppf(0.975, 2) * stats.tstd(d) / 3 ** 0.5
    lo, hi, paired = interval(R(t), R(b))
    assert paired and lo == pytest.approx(sum(d) / 3 - half) and hi == pytest.approx(sum(d) / 3 + half)
    # Welch's interval matches scipy's Welch t-test: zero lies on its edge exactly at p = 0.05
    x, y = [1.0, 1.4, 0.7, 1.2], [1.9, 2.6, 2.2]
    lo, hi, paired = interval(R(x, "training runs"), R(y, "training runs"))
    p = stats.ttest_ind(x, y, equal_var=False).pvalue
    assert not paired and (hi < 0) == (p < 0.05)
    res = compare(R([1.0]), R([2.0, 2.1]), "lower")
    assert res["verdict"] == "inconclusive" and "one replicate" in res["detail"]


def test_replicates_are_training_runs_where_rows_name_them():
    from bench.report import replicates

    rows = [_row("DM", "app-f", f"seed={j}", "w2", v, seeds=f"s{j}", train_seed=str(j // 2))
            for j, v in enumerate([1.0, 3.0, 5.0, 7.0])]
    r = replicates(rows)
    assert r.unit == "training runs" and r.values == {"0": 2.0, "1": 6.0}   # sampling seeds averaged per run
    r = replicates([_row("DM", "app-f", "", "w2", v, seeds=f"s{j}") for j, v in enumerate([1.0, 2.0])])
    assert r.unit == "sampling seed ranges" and r.said() == "2 sampling seed ranges of one training run"


def test_fid_claims_are_also_checked_in_fd_metrics():
    from bench.report import with_fd_metrics

    c = next(c for c in load_claims() if c.claim_id == "5a")
    rows = [Row("table3", "", "DisCo-Diff", "v", s, m, v, seeds=seeds, scale="small", git_sha="abc")
            for s, off in (("generative, cfg=1", 0.0), ("generative, cfg=0", 1.0))
            for m in ("fid", "fd_fashionmnist_cnn") for seeds, v in (("0-9", 5 + off), ("10-19", 6 + off), ("20-29", 7 + off))]
    expanded = with_fd_metrics(c, rows)
    assert [x.metric for x in expanded] == ["fid", "fd_fashionmnist_cnn"]
    for x in expanded:
        (v,) = evaluate_claim(x, rows)
        assert v["verdict"] == "held" and v["interval"].endswith("paired")   # 1 lower in every seed range
    gap = next(c for c in load_claims() if c.claim_id == "6a")
    assert [x.metric for x in with_fd_metrics(gap, rows)] == ["fid_generative_oracle_gap",
                                                               "fd_fashionmnist_cnn_generative_oracle_gap"]
    w2 = next(c for c in load_claims() if c.claim_id == "2a")
    assert with_fd_metrics(w2, rows) == [w2]


def test_docking_claims_replicate_over_complexes_paired():
    """Per-complex rows (seeds "complex <name>") are the replicates of the docking claims, paired by complex."""
    c = next(c for c in load_claims() if c.claim_id == "8b")
    names = [f"c{i}" for i in range(12)]
    base = [0, 0, 100, 0, 100, 0, 0, 100, 0, 0, 0, 0]      # 3 of 12 docked
    disco = [100, 100, 100, 0, 100, 100, 0, 100, 100, 0, 100, 100]   # those 3 and 6 more
    rows = [Row("table4", "", m, "docking preset", "full test set", c.metric, float(v), seeds=f"complex {n}")
            for m, vals in (("DiffDock-S", base), ("DisCo-DiffDock-S", disco)) for n, v in zip(names, vals)]
    (v,) = [x for x in evaluate_claim(c, rows)]
    assert v["verdict"] == "held" and v["interval"].endswith("paired")
    assert v["replicates"] == "12 test complexes of one training run vs 12 test complexes of one training run"
    assert float(v["treatment"]) == pytest.approx(75.0) and float(v["baseline"]) == pytest.approx(25.0)
