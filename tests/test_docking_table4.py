"""Table 4 harness: failure accounting in the evaluation, the paper preset's protocol, and the smoke run
through the CLI (both methods, the confidence model, rows beside the paper's, claim 8's verdicts)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("e3nn")
pytest.importorskip("rdkit")
from bench.docking.confidence import ConfidenceModel, ConfidenceModelConfig  # noqa: E402
from bench.docking.data import synthetic_complex  # noqa: E402
from bench.docking.pipeline import DockingData, evaluate_method  # noqa: E402
from bench.docking.presets import docking_preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_failed_complexes_stay_in_the_denominator():
    a = synthetic_complex("CCOc1ccccc1", 8, 0, "good")
    b = synthetic_complex("CCCCO", 8, 1, "breaks")
    data = DockingData(train=[a, b], test=[a, b], failed={"absent": "did not load"},
                       test_names=["good", "breaks", "absent"], unseen=set(), description="synthetic",
                       residue_input="residue-type embeddings (no ESM)")

    def sampler(c, seeds):   # the crystal pose, slightly moved, for "good"; an error for "breaks"
        if c.name == "breaks":
            raise RuntimeError("boom")
        pos = torch.as_tensor(c.ligand_coords, dtype=torch.float64)
        return torch.stack([pos + 0.1 * (i + 1) for i in range(len(seeds))]), 7

    torch.manual_seed(0)
    conf = ConfidenceModel(ConfidenceModelConfig.tiny())
    res = evaluate_method("m", sampler, data, conf, n_samples=3)
    assert res.nfe == 7 and res.names == ["good", "breaks", "absent"]
    assert np.all(np.isfinite(res.rmsds[0])) and np.all(np.isnan(res.rmsds[1:]))
    np.testing.assert_allclose(res.rmsds[0], [0.1 * np.sqrt(3) * k for k in (1, 2, 3)], rtol=1e-6)
    assert res.failures == {"breaks": "RuntimeError: boom", "absent": "did not load"}
    rates = res.rates()
    assert rates["n_complexes"] == 3 and rates["all_samples"] == pytest.approx(1 / 3)
    assert rates["n_failed_complexes"] == 2


def test_rows_cover_the_full_test_set_and_the_unseen_proteins(tmp_path):
    """Paper-scale rows from a made-up result: 4 test complexes, 2 of them unseen proteins; one fails."""
    from bench.docking.pipeline import MethodResult
    from bench.harnesses.table4 import _rows
    from bench.registry import RunContext
    nan = np.nan
    rmsds = np.array([[1.0, 5.0], [4.0, 1.5], [3.0, 6.0], [nan, nan]])
    conf = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [nan, nan]])
    res = MethodResult("DisCo-DiffDock-S", ["a", "b", "c", "d"], rmsds, conf, np.array([2.0, 4.0, 6.0, nan]),
                       {"d": "did not load"}, nfe=20, rmsd_fallbacks=1)
    data = DockingData(train=[], test=[], failed={"d": "did not load"}, test_names=res.names, unseen={"b", "d"},
                       description="PDBBind time split (x)", residue_input="residue-type embeddings (no ESM)")
    rows = {(r.setting, r.metric): r for r in _rows(res, data, docking_preset("paper"),
                                                    RunContext(scale="paper", out=tmp_path))}
    full, unseen = ("full test set", "top1_rmsd_lt2_pct"), ("unseen proteins", "top1_rmsd_lt2_pct")
    assert rows[full].value == pytest.approx(25.0) and rows[full].n_samples == 4       # a only; d is a miss
    assert rows[full].paper_row == "table4.disco_diffdock_s.full_test_set"
    assert rows[unseen].value == 0.0 and rows[unseen].n_samples == 2                    # b's top-1 is 4.0
    assert rows[unseen].paper_row == "table4.disco_diffdock_s.unseen_proteins"
    assert rows[("unseen proteins", "any_sample_rmsd_lt2_pct")].value == pytest.approx(50.0)
    assert rows[("full test set", "median_best_rmsd_A")].value == pytest.approx(2.25)   # 1.0, 1.5, 3.0, inf
    assert rows[("full test set", "failed_complexes")].value == 1.0
    assert rows[("unseen proteins", "failed_complexes")].value == 1.0
    assert rows[("full test set", "rmsd_fallback_complexes")].value == 1.0
    runtime = next(r for (setting, m), r in rows.items() if m == "runtime_s")
    # on the CPU the paper's GPU seconds are not set beside ours; on a GPU with the paper's samples they are
    assert runtime.value == pytest.approx(4.0) and runtime.paper_row == ""
    assert "not comparable" in runtime.setting
    on_gpu = _rows(res, data, docking_preset("paper"), RunContext(scale="paper", out=tmp_path, device="cuda"))
    assert [r.paper_row for r in on_gpu if r.metric == "runtime_s"] == ["table4.disco_diffdock_s.runtime"]
    on_gpu_small = _rows(res, data, docking_preset("small"), RunContext(scale="small", out=tmp_path, device="cuda"))
    assert [r.paper_row for r in on_gpu_small if r.metric == "runtime_s"] == [""]
    assert not any(m == "top5_rmsd_lt2_pct" for _, m in rows)    # 2 samples: no top-5
    per = [r for r in _rows(res, data, docking_preset("paper"), RunContext(scale="paper", out=tmp_path))
           if r.metric == "top1_rmsd_lt2_pct_by_complex"]
    full = {r.seeds: r.value for r in per if r.setting == "full test set"}
    assert full == {"complex a": 100.0, "complex b": 0.0, "complex c": 0.0, "complex d": 0.0}   # mean: the 25 %
    assert {r.seeds for r in per if r.setting == "unseen proteins"} == {"complex b", "complex d"}


def test_complexes_without_a_conformer_are_left_out_and_named():
    from bench.docking.data import DockingDataError
    from bench.docking.disco_diffdock import PointerConformers
    from bench.docking.pipeline import with_conformers
    a, b = synthetic_complex("CCOc1ccccc1", 8, 0, "a"), synthetic_complex("CCCCO", 8, 1, "b")

    class FailsOnB(PointerConformers):
        def __call__(self, c):
            if c.name == "b":
                raise DockingDataError("ETKDG could not embed CCCCO (seed 0)")
            return super().__call__(c)

    skipped: dict = {}
    conformers = FailsOnB()
    assert with_conformers([a, b], conformers, skipped) == [a]
    assert skipped == {"b": "ETKDG could not embed CCCCO (seed 0)"} and "a" in conformers._cache


def test_the_conformer_check_is_recorded_and_not_redone(tmp_path):
    from bench.docking.data import DockingDataError
    from bench.docking.disco_diffdock import PointerConformers
    from bench.docking.pipeline import with_conformers
    a, b = synthetic_complex("CCOc1ccccc1", 8, 0, "a"), synthetic_complex("CCCCO", 8, 1, "b")

    class Fails(PointerConformers):
        def __init__(self, names):
            super().__init__()
            self.names, self.calls = names, 0

        def __call__(self, c):
            self.calls += 1
            if c.name in self.names:
                raise DockingDataError(f"ETKDG could not embed {c.name}")
            return super().__call__(c)

    record = tmp_path / "no_conformer.json"
    first: dict = {}
    assert with_conformers([a, b], Fails({"b"}), first, record) == [a] and record.exists()
    again, conformers = {}, Fails({"a", "b"})   # would fail on both if it embedded again
    assert with_conformers([a, b], conformers, again, record) == [a]
    assert again == first == {"b": "ETKDG could not embed b"} and conformers.calls == 0


def test_paper_preset_is_the_table4_protocol():
    p = docking_preset("paper")
    assert p.n_samples == 40 and p.nfe == 20 and p.data == "pdbbind"
    assert (p.score.ns, p.score.nv, p.score.num_conv_layers, p.score.sh_lmax) == (24, 6, 5, 1)
    assert (p.encoder.ns, p.encoder.nv, p.encoder.num_conv_layers, p.encoder.m) == (24, 4, 3, 2)
    assert p.disco.score.extra_node_dim == 3 and p.prior_train.freeze_epochs == 5 and p.disco.drop_p == 0.1
    assert p.prior_temperature == pytest.approx(np.exp(1.5)) and p.prior_temperature > 1
    assert p.disco_temperatures.tr.temperature > 1      # temp_sampling > 1 = diffusion temperature < 1
    with pytest.raises(KeyError, match="no docking preset"):
        docking_preset("huge")


def test_pocket_presets_crop_every_complex_and_say_so():
    import dataclasses
    from bench.docking.pipeline import load_docking_data
    smoke = docking_preset("smoke")
    assert smoke.pocket_radius is not None and docking_preset("small").pocket_radius is not None
    assert docking_preset("paper").pocket_radius is None        # blind docking on the whole protein
    cut = load_docking_data(smoke)
    whole = load_docking_data(dataclasses.replace(smoke, pocket_radius=None))
    if not whole.test:
        pytest.skip("no offline complex on this machine")
    assert [c.name for c in cut.test] == [c.name for c in whole.test] and cut.train is cut.test
    for a, b in zip(cut.test, whole.test):
        assert a.num_residues < b.num_residues
        d = np.linalg.norm(a.ca_coords[:, None] - a.ligand_coords[None], axis=-1).min(1)
        assert d.max() < smoke.pocket_radius
    assert f"within {smoke.pocket_radius:g} A of the crystal ligand" in cut.description
    assert "pocket" not in whole.description and "re-docking" in whole.description


def test_confidence_data_resumes_complex_by_complex(tmp_path, monkeypatch):
    """An interrupted confidence-data step keeps each finished complex (its own atomic file) and resumes at the
    next one; the joined result equals an uninterrupted run's."""
    import bench.docking.pipeline as pipeline
    from bench.docking.score_model import TensorProductScoreModel
    p = docking_preset("smoke")
    train = [synthetic_complex("CCOc1ccccc1", 8, 0, "a"), synthetic_complex("CCCCO", 8, 1, "b")]
    torch.manual_seed(0)
    score = TensorProductScoreModel(p.score)
    real = pipeline.confidence_dataset
    calls = []

    def crash_on_b(model, complexes, *a, **k):
        calls.append(complexes[0].name)
        if complexes[0].name == "b":
            raise KeyboardInterrupt
        return real(model, complexes, *a, **k)
    monkeypatch.setattr(pipeline, "confidence_dataset", crash_on_b)
    with pytest.raises(KeyboardInterrupt):
        pipeline.confidence_examples(score, train, p, tmp_path / "run", progress=False)
    assert (tmp_path / "run/confidence_examples/a.npz").exists()
    assert not (tmp_path / "run/confidence_examples.npz").exists()
    monkeypatch.setattr(pipeline, "confidence_dataset", lambda *a, **k: (calls.append(a[1][0].name), real(*a, **k))[1])
    resumed = pipeline.confidence_examples(score, train, p, tmp_path / "run", progress=False)
    assert calls == ["a", "b", "b"]                    # "a" was not sampled again
    fresh = pipeline.confidence_examples(score, train, p, tmp_path / "fresh", progress=False)
    assert [e.complex.name for e in resumed] == ["a"] * p.confidence_samples + ["b"] * p.confidence_samples
    for x, y in zip(resumed, fresh):
        np.testing.assert_array_equal(x.pose, y.pose)
        assert x.rmsd == y.rmsd or (np.isnan(x.rmsd) and np.isnan(y.rmsd))
    again = pipeline.confidence_examples(score, train, p, tmp_path / "run", progress=False)   # the joined file
    assert calls == ["a", "b", "b", "a", "b"] and len(again) == len(fresh)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=900)


def test_missing_esm_file_and_empty_pdbbind_are_one_line_errors(tmp_path):
    out = ["--out", str(tmp_path / "res"), "--cache", str(tmp_path / "runs")]
    r = _cli("table4", "--scale", "smoke", *out, env={"DISCO_BENCH_ESM": str(tmp_path / "missing.pt")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"ESM embeddings (DISCO_BENCH_ESM or esm_path) {tmp_path / 'missing.pt'}: file not found" in r.stderr
    (tmp_path / "pdbbind").mkdir()
    r = _cli("table4", "--scale", "paper", *out, env={"DISCO_BENCH_PDBBIND": str(tmp_path / "pdbbind")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no training complex is usable (16379 failed; first: " in r.stderr
    assert not (tmp_path / "res" / "paper").exists()    # nothing written


def test_pretrain_fills_the_cache_that_table4_reads(tmp_path):
    from bench.docking.pipeline import disco_run_dir, load_docking_data, score_run_dir
    preset = docking_preset("smoke")
    train = load_docking_data(preset).train
    for part, run in (("diffdock-s", score_run_dir(preset, train, tmp_path)),
                      ("disco", disco_run_dir(preset, train, tmp_path))):
        r = subprocess.run([sys.executable, "-m", "bench.docking.pretrain", part, "--scale", "smoke", "--cache",
                            str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (run / "model.pt").exists() and f"{part} [smoke]: trained in {run}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "bench.docking.pretrain", "disco", "--scale", "smoke", "--cache",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "disco [smoke]: cached" in r.stdout


def test_paper_dry_run_needs_pdbbind_and_checks_it(tmp_path):
    r = _cli("table4", "--scale", "paper", "--dry-run", env={"DISCO_BENCH_PDBBIND": ""})
    assert r.returncode == 2 and "DISCO_BENCH_PDBBIND" in r.stderr and "Traceback" not in r.stderr
    assert "40 samples x 20 steps" in r.stdout and "DiffDock-S score model 2,075,436" in r.stdout
    r = _cli("table4", "--scale", "paper", "--dry-run", env={"DISCO_BENCH_PDBBIND": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test: 363 ids, 0 folders" in r.stdout and "unseen: 144 ids" in r.stdout and "FAILS" in r.stdout


def test_table4_smoke_through_the_cli(tmp_path):
    out, cache = tmp_path / "res", tmp_path / "runs"
    r = _cli("table4", "--scale", "smoke", "--out", str(out), "--cache", str(cache))
    assert r.returncode == 0, r.stderr[-3000:]
    smoke = out / "smoke"
    for f in ("table4.csv", "table4.md", "table4.png", "table4_data.npz", "table4_complexes.csv", "claims.csv"):
        assert (smoke / f).exists(), f
    rows = list(csv.DictReader(open(smoke / "table4.csv")))
    top1 = {r["method"]: r for r in rows if r["metric"] == "top1_rmsd_lt2_pct"}
    assert set(top1) == {"DiffDock-S", "DisCo-DiffDock-S"}
    assert top1["DiffDock-S"]["paper_row"] == "table4.diffdock_s.full_test_set"
    assert all(r["n_samples"] == "3" and r["nfe"] == "10" and 0 <= float(r["value"]) <= 100 for r in top1.values())
    assert "re-docking" in top1["DiffDock-S"]["dataset"] and "no ESM" in top1["DiffDock-S"]["dataset"]
    assert "pocket docking" in top1["DiffDock-S"]["dataset"]
    runtime = [r for r in rows if r["metric"] == "runtime_s"]
    assert len(runtime) == 2 and all(float(r["value"]) > 0 for r in runtime)
    per_complex = list(csv.DictReader(open(smoke / "table4_complexes.csv")))
    assert len(per_complex) == 6 and all(float(r["best_rmsd"]) <= float(r["top1_rmsd"]) for r in per_complex)
    verdicts = {v["claim_id"]: v["verdict"] for v in csv.DictReader(open(smoke / "claims.csv"))}
    # one training run, one sampling seed: no spread, so no verdict (the report's rule), whatever the numbers
    assert verdicts.get("8b") == "inconclusive"
    d = np.load(smoke / "table4_data.npz")
    assert d["rmsds__DiffDock-S"].shape == (3, 4)
    # a second run loads every trained model from the cache and reproduces the numbers exactly
    r2 = _cli("table4", "--scale", "smoke", "--out", str(tmp_path / "res2"), "--cache", str(cache))
    assert r2.returncode == 0, r2.stderr[-3000:]
    d2 = np.load(tmp_path / "res2" / "smoke" / "table4_data.npz")
    np.testing.assert_array_equal(d["rmsds__DisCo-DiffDock-S"], d2["rmsds__DisCo-DiffDock-S"])
    # figure8 reuses table4's DisCo-DiffDock-S (same cache): it samples, trains nothing
    r3 = _cli("figure8", "--scale", "smoke", "--out", str(out), "--cache", str(cache))
    assert r3.returncode == 0, r3.stderr[-3000:]
    assert "training DisCo-DiffDock" not in r3.stdout + r3.stderr
    rows = list(csv.DictReader(open(smoke / "figure8.csv")))
    pair = [r for r in rows if r["metric"] == "pose_rmsd_A"]
    assert {r["setting"] for r in pair} == {"within latent", "between latents"}
    assert len(pair) == 4 and all(r["seeds"].startswith("complex ") and float(r["value"]) >= 0 for r in pair)
    assert all(1 <= float(r["value"]) <= 64 for r in rows if r["metric"] == "distinct_latents")
    best = {r["seeds"]: float(r["value"]) for r in rows if r["metric"] == "best_rmsd_to_crystal_A"}
    med = {r["seeds"]: float(r["value"]) for r in rows if r["metric"] == "median_rmsd_to_crystal_A"}
    assert len(best) == 2 and all(0 < best[k] <= med[k] for k in best)
    f8 = np.load(smoke / "figure8_data.npz")
    assert f8["poses__0"].shape[:2] == (2, 2) and f8["rmsd__0"].shape == (2, 2)
    assert (smoke / "figure8.png").stat().st_size > 10_000
    verdicts = {v["claim_id"]: v["verdict"] for v in csv.DictReader(open(smoke / "claims.csv"))}
    assert verdicts.get("8c") in {"held", "not held", "inconclusive"}


def test_dry_run_checks_the_esm_file(tmp_path):
    r = _cli("table4", "--scale", "smoke", "--dry-run", env={"DISCO_BENCH_ESM": str(tmp_path / "missing.pt")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"ESM embeddings (DISCO_BENCH_ESM or esm_path) {tmp_path / 'missing.pt'}: file not found" in r.stderr
    from bench.docking.data import offline_complexes
    first = offline_complexes(docking_preset("smoke").offline_names, warn=False).complexes[0]
    np.savez(tmp_path / "esm.npz", **{first.name: np.zeros((first.num_residues, 8), np.float32)})
    plain = _cli("table4", "--scale", "smoke", "--dry-run")
    r = _cli("table4", "--scale", "smoke", "--dry-run", env={"DISCO_BENCH_ESM": str(tmp_path / "esm.npz")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ESM embeddings from" in r.stdout and f"ESM of {first.name}: {first.num_residues} residues x 8" in r.stdout
    assert "FAILS (" in r.stdout                               # the complexes the file has no entry for
    count = lambda out: out.split("DiffDock-S score model ")[1].split(",")[0:2]  # noqa: E731
    assert count(r.stdout) != count(plain.stdout)              # the networks widen for the ESM input


def test_docking_plot_range_and_note_for_a_run_with_no_success():
    """A run where nothing docks below 2 A (smoke) must not draw flat zeros without saying why."""
    import numpy as np
    from bench.plots import docking_range
    far = np.array([[12.0, 30.0], [18.0, np.nan]])
    x_max, note = docking_range([far], 2.0)
    assert 18.0 < x_max <= 30.0 and "no sample" in note
    x_max, note = docking_range([np.array([[1.5, 4.0]])], 2.0)
    assert (x_max, note) == (10.0, "")
    assert "failed" in docking_range([np.full((2, 3), np.nan)], 2.0)[1]
