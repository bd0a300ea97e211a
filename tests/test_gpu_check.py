"""scripts/gpu_check.sh: where there is no GPU it says so plainly and exits 2 (it runs on one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_the_check_says_so_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: run scripts/gpu_check.sh itself")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 2 and "no CUDA GPU here" in done.stderr
