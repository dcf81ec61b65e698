"""Shared test fixtures: tiny datasets in the real formats, and a runner for exp_scripts."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The end-to-end runs use the CPU (as CI does); DARTS_PT_TEST_GPU=auto runs them on a GPU.
TEST_GPU = os.environ.get("DARTS_PT_TEST_GPU", "cpu")
# Devices the step-level tests compare on: the CPU, and CUDA (shown as skipped without it).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.fixture(autouse=True, scope="session")
def offline():
    """No test may hit the network: a run that misses its data refuses instead of letting
    torchvision download it, in this process and in every script and subprocess it starts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DARTS_PT_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One CPU thread per test process: in this one, and (OMP_NUM_THREADS, which the runs'
    default follows: common/threads.py) in every script and subprocess it starts. The tiny test
    networks gain nothing from threads, and on a busy machine threads that wait for cores made
    them 10-100x slower. A test that wants more sets them itself (--threads N, or
    torch.set_num_threads, restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


def _script_env(env: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, **(env or {})}


def run_script(script: str, *args: str, env: dict[str, str] | None = None,
               check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run exp_scripts/<script> from an unrelated working directory, as a user would."""
    proc = subprocess.run(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/",
                          env=_script_env(env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def fails(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    """Run a script that must fail with one clear message (no traceback); its output."""
    proc = run_script(script, *args, env=env, check=False, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in out, out[-4000:]
    return out


def kill_when(script: str, args: list[str], marker: Path | Callable[[], bool], timeout: float = 300) -> None:
    """Start a script and SIGKILL it, with every process it started (torchrun's workers too), as
    soon as `marker` appears (or, a function, says True): a real interruption."""
    seen = marker if callable(marker) else marker.exists
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_script_env(None))
    deadline = time.time() + timeout
    while not seen() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    for pid in _process_tree(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert seen(), f"{script} ended before it was to be killed ({getattr(marker, '__name__', marker)})"


def partial_after(run: Path, epoch: int) -> Callable[[], bool]:
    """Whether `run`'s mid-epoch checkpoint (sota/train.py --ckpt_steps) is newer than its
    checkpoint of epoch `epoch`: written in the epoch after it (a kill_when condition)."""
    def written() -> bool:
        try:
            return ((run / "checkpoint_partial.pth.tar").stat().st_mtime_ns
                    > (run / f"checkpoint_{epoch}.pth.tar").stat().st_mtime_ns)
        except FileNotFoundError:
            return False
    return written


def _process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, read from Linux's /proc (torchrun starts its workers in
    sessions of their own, out of reach of a process group kill)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "(command name)": state, ppid
            children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    """Fail with a TimeoutError, rather than hang, when the block runs longer than `seconds`
    (SIGALRM: main thread only; no pytest-timeout plugin here)."""
    def expire(signum, frame):
        raise TimeoutError(f"{what} ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class FakeClock:
    """Time that moves by `tick` seconds each time it is read (progress lines without waiting)."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture
def log_lines():
    """The messages the run's logger emits during the test."""
    from common.experiment import LOGGER

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger, handler = logging.getLogger(LOGGER), Keep()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def dataset_dir(tmp_path_factory, name: str, n_train: int, n_test: int) -> Path:
    """A folder holding a tiny `name` dataset (cifar10, svhn, ...) in its real on-disk format."""
    from tests.fixtures import datasets

    root = tmp_path_factory.mktemp(f"{name}-{n_train}")
    getattr(datasets, f"write_{name}")(root, n_train=n_train, n_test=n_test, seed=0)
    return root


def _dataset_fixture(name: str, n_train: int, n_test: int):
    @pytest.fixture(scope="session")
    def folder(tmp_path_factory) -> Path:
        return dataset_dir(tmp_path_factory, name, n_train, n_test)
    return folder


cifar10_dir = _dataset_fixture("cifar10", 96, 32)
svhn_dir = _dataset_fixture("svhn", 96, 32)
small_cifar10 = _dataset_fixture("cifar10", 32, 16)  # one batch of 16 per half
small_svhn = _dataset_fixture("svhn", 32, 16)


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny NAS-Bench-201 benchmark file (every arch) and its accuracies."""
    from tests.fixtures.nb201_bench import nb201_archs, write_tiny_benchmark

    path = tmp_path_factory.mktemp("bench") / "NAS-Bench-201-tiny.pth"
    return path, write_tiny_benchmark(path, nb201_archs())
