"""The CLI, driven in a subprocess as a user would."""
import csv

from conftest import run_cli


def test_list_names_every_label_and_status():
    r = run_cli("list")
    assert r.returncode == 0
    for label in ["table1", "table2", "table3", "table4", "table5", "figure3", "figure4", "figure6",
                  "figure7", "figure9", "figure10", "figure13", "w2", "timing"]:
        assert label in r.stdout
    assert "[built]" in r.stdout and "not built yet" in r.stdout


def test_unknown_harness_exits_2_with_choices():
    r = run_cli("table99")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "figure4" in r.stderr


def test_bad_flags_exit_2():
    assert run_cli("w2", "--scale", "huge").returncode == 2
    assert run_cli("w2", "--seed", "-1").returncode == 2
    assert run_cli("w2", "--bogus").returncode == 2


def test_unbuilt_harness_exits_2_and_says_so():
    r = run_cli("table2", "--scale", "smoke")
    assert r.returncode == 2 and "not built yet" in r.stderr


def test_report_on_missing_folder_exits_2(tmp_path):
    r = run_cli("report", "--out", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "no results folder" in r.stderr


def test_dry_run_writes_nothing(tmp_path):
    r = run_cli("w2", "--scale", "small", "--dry-run", "--out", str(tmp_path / "res"), "--cache", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    assert "DM parameters" in r.stdout and "8000 points" in r.stdout
    assert not (tmp_path / "res").exists()


def _table(path, drop=("seconds",)):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def test_smoke_study_twice_same_seed_same_csv(tmp_path):
    """The whole 2D path through the CLI; a second run from scratch (fresh cache) with the same
    seed writes the same CSVs (wall-clock `seconds` aside)."""
    outs = []
    for i in range(2):
        out = tmp_path / f"res{i}"
        r = run_cli("w2", "--scale", "smoke", "--out", str(out), "--cache", str(tmp_path / f"runs{i}"))
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(out)
    for name in ["w2.csv"]:
        a, b = _table(outs[0] / "smoke" / name), _table(outs[1] / "smoke" / name)
        assert a == b and len(a) > 0
    smoke = outs[0] / "smoke"
    assert (smoke / "figure3.csv").exists() and (smoke / "figure4.csv").exists()  # one shared run
    for f in ["w2.md", "figure3.png", "figure4.png", "toy2d_samples.npz", "claims.csv"]:
        assert (smoke / f).exists(), f
    from bench.registry import load_all
    unbuilt = sum(not h.built for h in load_all().values())
    assert unbuilt >= 1 and (outs[0] / "REPORT.md").read_text().count("not built yet") >= unbuilt
    verdicts = _table(smoke / "claims.csv", drop=())
    assert any(v["claim_id"] == "2a" and v["verdict"] in ("held", "not held") for v in verdicts)


def test_samples_npz_recomputes_w2(tmp_path):
    import numpy as np
    from bench.metrics.w2 import wasserstein2

    out = tmp_path / "res"
    r = run_cli("w2", "--scale", "smoke", "--out", str(out), "--cache", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr[-2000:]
    d = np.load(out / "smoke" / "toy2d_samples.npz")
    rows = _table(out / "smoke" / "w2.csv")
    dm = next(x for x in rows if x["method"] == "DM" and x["setting"] == "seed=0")
    w = wasserstein2(d["generated_DM__app-f_prior_seed0"], d["true_seed0"])
    assert abs(w - float(dm["value"])) < 1e-9


def test_table5_harness_checks_the_preset(tmp_path):
    r = run_cli("table5", "--scale", "smoke", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _table(tmp_path / "smoke" / "table5.csv")
    checks = [x for x in rows if x["metric"] == "matches_table5"]
    assert len(checks) == 4 and all(float(x["value"]) == 1.0 for x in checks)
    adm = next(x for x in rows if x["method"] == "ADM U-Net (EDM baseline)")
    # EDM's ImageNet-64 ADM; our layout was checked bit-identical against a transcription of EDM's code.
    assert int(float(adm["value"])) == 295_899_267
