import subprocess
import sys
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
