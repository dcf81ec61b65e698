"""Shared test fixtures: tiny datasets in the real formats, and a runner for exp_scripts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, env: dict[str, str] | None = None,
               check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run exp_scripts/<script> from an unrelated working directory, as a user would."""
    # One thread: the tiny test networks run 10-100x slower with two on a busy 2-core machine.
    full_env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/",
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


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
