"""Scoring under torchrun (bench/images/evaluation.py): two gloo ranks, each generating every other
seed of a range, give the one-process distances, below 2048 samples (features gathered) and above the
feature dimension (EDM's all-reduced statistics and sqrtm)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys
import numpy as np
import torch.distributed as dist
from bench.distributed import Shard
from bench.images.evaluation import FIDBudget, ImageScorer
from bench.metrics.fid import FIDStats


class Features:
    """A stand-in detector: 16 fixed random projections of the pixels."""
    def __init__(self):
        self.w = np.random.default_rng(1).normal(size=(3 * 4 * 4, 16))

    def features(self, images, batch_size=64):
        return images.reshape(len(images), -1).astype(np.float64) @ self.w / 255.0


def generate(seeds):
    imgs = np.stack([np.random.default_rng(s).integers(0, 256, (3, 4, 4)) for s in seeds]).astype(np.uint8)
    return imgs, 7


def main(out, n):
    world = int(sys.argv[3])
    shard = Shard()
    if world > 1:
        dist.init_process_group("gloo")
        shard = Shard(dist.get_rank(), dist.get_world_size())
    ref = np.random.default_rng(2).normal(size=(200, 16))
    stats = FIDStats(ref.mean(0), np.cov(ref, rowvar=False), 200)
    scorer = ImageScorer(Features(), stats, FIDBudget(n, 2, None, False))
    sc = scorer.score(generate, shard=shard)
    if shard.is_main:
        np.save(out, np.array(sc.values["fid"]))
    if world > 1:
        dist.destroy_process_group()


main(sys.argv[1], int(sys.argv[2]))
'''


@pytest.mark.parametrize("n", [10, 40])   # below and above the 16 feature dimensions
def test_two_ranks_score_like_one(tmp_path, n):
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.npy"), str(n), "1"], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "two.npy"), str(n), "2"], cwd=REPO, capture_output=True,
                         text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert a.shape == (2,) and np.all(a > 0)
    np.testing.assert_allclose(b, a, rtol=1e-8)
