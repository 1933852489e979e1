"""The feature network behind fd_<network> (bench/metrics/feature_net.py): a small CNN classifier
trained on the stand-in dataset, whose penultimate features give a Fréchet distance.

One smoke-sized network (2 stages of 8 and 16 channels, 300 steps of 64 on 1,500 real 8x8 digits;
~3 s on one thread) is trained once per module into a tmp_path cache and shared by the tests.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.images import DatasetError, ImageDataset
from bench.metrics.feature_net import (FeatureExtractor, FeatureNet, FeatureNetConfig, feature_net_run_dir,
                                       train_feature_net)
from bench.metrics.fid import frechet_distance_features

SMOKE = FeatureNetConfig(channels=(8, 16), feature_dim=32, steps=300, batch_size=64, lr=2e-3, seed=0)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="scikit-learn (its bundled digits) is not installed")
    from bench.data.images import load_digits_standin

    return load_digits_standin()


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    cache = tmp_path_factory.mktemp("runs")
    train, test = digits.subset(slice(0, 1500)), digits.subset(slice(1500, None))
    ex = train_feature_net(train, test, "digits_cnn", cache, SMOKE)
    return ex, cache, train, test


def test_trained_on_digits_it_classifies_held_out_rows(trained):
    ex, _, _, test = trained
    assert not ex.train_info["cached"]
    assert ex.test_accuracy > 0.8, ex.describe()          # 0.95 measured
    assert ex.metric == "fd_digits_cnn"
    text = ex.describe()
    assert text.startswith("digits_cnn (2-stage CNN classifier trained on digits 8x8")
    assert f"sha256 {ex.sha256[:12]}" in text and "test accuracy 0.9" in text and "FID" not in text
    assert len(ex.sha256) == 64


def test_features_are_float64_and_batch_size_invariant(trained, digits):
    ex = trained[0]
    images = digits.images[:300]                          # uint8 [300, 1, 8, 8]
    f = ex.features(images)
    assert f.shape == (300, SMOKE.feature_dim) and f.dtype == np.float64 and np.isfinite(f).all()
    np.testing.assert_allclose(ex.features(images, batch_size=7), f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ex.features(torch.from_numpy(images), batch_size=300), f, rtol=1e-6, atol=1e-6)
    assert ex.features(images[:0]).shape == (0, SMOKE.feature_dim)
    assert not ex.net.training                            # eval mode; features do not change the net


def test_second_call_loads_the_cached_network(trained):
    ex, cache, train, test = trained
    again = train_feature_net(train, test, "digits_cnn", cache, SMOKE)
    assert again.train_info["cached"]
    assert again.sha256 == ex.sha256 and again.test_accuracy == ex.test_accuracy
    assert (feature_net_run_dir(train, "digits_cnn", cache, SMOKE) / "model.pt").exists()
    # The key holds the dataset: another training set (here: fewer rows, or another name) gets
    # its own run folder, never this network.
    run = feature_net_run_dir(train, "digits_cnn", cache, SMOKE)
    assert feature_net_run_dir(train.subset(slice(0, 1400)), "digits_cnn", cache, SMOKE) != run
    assert feature_net_run_dir(train.named("other digits"), "digits_cnn", cache, SMOKE) != run


def test_fd_sees_image_degradation(trained, digits):
    ex = trained[0]
    a, b = digits.images[0::2], digits.images[1::2]       # two disjoint halves of real digits
    noise = np.random.default_rng(0).normal(0.0, 60.0, a.shape)   # sigma 60 in uint8 units
    noisy = np.clip(np.round(a + noise), 0, 255).astype(np.uint8)
    fa = ex.features(a)
    real = frechet_distance_features(fa, ex.features(b))
    degraded = frechet_distance_features(fa, ex.features(noisy))
    assert 0 <= real < degraded / 5, (real, degraded)      # measured: 0.09 vs 2.5


def test_network_shapes_at_8x8_and_32x32():
    torch.manual_seed(0)
    for res, channels in ((8, (8, 16)), (8, (8, 16, 32)), (32, (32, 64, 128)), (28, (8, 8, 8))):
        cfg = FeatureNetConfig(channels=channels, feature_dim=24)
        net = FeatureNet(cfg, 1, res, 10).eval()
        x = torch.rand(3, 1, res, res) * 2 - 1
        assert net(x).shape == (3, 10) and net.features(x).shape == (3, 24)
    # 3 stages at 32x32 pool 32 -> 16 -> 8 -> 4 and flatten 128 x 4 x 4
    assert FeatureNet(FeatureNetConfig(), 3, 32, 10).embed.in_features == 128 * 16


def test_bad_inputs_are_clear_errors(trained):
    ex = trained[0]
    with pytest.raises(ValueError, match="uint8"):
        ex.features(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        ex.features(np.zeros((2, 1, 32, 32), np.uint8))
    unlabelled = ImageDataset("unlabelled", np.zeros((4, 1, 8, 8), np.uint8), None, 0)
    with pytest.raises(DatasetError, match="needs labels"):
        train_feature_net(unlabelled, unlabelled, "x", trained[1], SMOKE)
    assert isinstance(ex, FeatureExtractor)
