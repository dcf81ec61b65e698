"""Shared test fixtures: tiny datasets in the real formats, and a runner for exp_scripts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The end-to-end runs use the CPU (as CI does); DARTS_PT_TEST_GPU=auto runs them on a GPU.
TEST_GPU = os.environ.get("DARTS_PT_TEST_GPU", "cpu")
# Devices the step-level tests compare on: the CPU, and CUDA where present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: end-to-end runs that take minutes (deselect with -m 'not slow')")


def _script_env(env: dict[str, str] | None) -> dict[str, str]:
    # One thread: the tiny test networks run 10-100x slower with two on a busy 2-core machine.
    return {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}


def run_script(script: str, *args: str, env: dict[str, str] | None = None,
               check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run exp_scripts/<script> from an unrelated working directory, as a user would."""
    proc = subprocess.run(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/",
                          env=_script_env(env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def fails(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a script that must fail with one clear message (no traceback); its output."""
    proc = run_script(script, *args, env=env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in out, out[-4000:]
    return out


def kill_when(script: str, args: list[str], marker: Path, timeout: float = 300) -> None:
    """Start a script and SIGKILL it as soon as `marker` appears: a real interruption."""
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_script_env(None))
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert marker.exists(), f"{script} ended without writing {marker}"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory) -> Path:
    from tests.fixtures.datasets import write_cifar10

    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10(root, n_train=96, n_test=32, seed=0)
    return root


@pytest.fixture(scope="session")
def svhn_dir(tmp_path_factory) -> Path:
    from tests.fixtures.datasets import write_svhn

    root = tmp_path_factory.mktemp("svhn")
    write_svhn(root, n_train=96, n_test=32, seed=0)
    return root
