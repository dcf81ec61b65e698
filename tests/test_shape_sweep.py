"""Every model at channels 1-8 and batches 1-9, in the CPU default layout (channels-last):
forward, backward and a masked scoring pass must not crash.

Some native CPU kernels of torch 2.14.1 corrupt the heap at small shapes (the 1x1 stride-2
conv that FactorizedReduce used to run aborted at odd batch sizes with 2 threads; benchmarks/RESULTS.md,
"Native kernel crashes"). Such a crash kills the process it happens in, so every case runs
in a subprocess of its own (tests/fixtures/shape_sweep.py): an abort fails that case and
names the shape, and pytest goes on. The subprocess runs with glibc's heap checks on, so
corruption surfaces as an abort instead of passing unnoticed.

Every channel count is valid for every model: FactorizedReduce (DARTS spaces) needs an even
channel count, and only ever gets the doubled ones of the reduction cells (2C, 4C).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.conftest import REPO
from tests.fixtures.shape_sweep import MODELS

pytestmark = pytest.mark.slow  # one subprocess per (model, channels): minutes on 2 cores

CHANNELS = range(1, 9)
BATCHES = range(1, 10)
PARALLEL = 2  # cases run at the same time: one per core of a small machine
MALLOC_DEBUG = "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"

ENV = {
    **os.environ,
    # glibc checks every free (MALLOC_CHECK_ needs the debug library since glibc 2.34) and fills
    # freed memory, so that writes out of bounds and reads of freed memory show.
    "MALLOC_CHECK_": "3", "MALLOC_PERTURB_": "165",
    **({"LD_PRELOAD": " ".join(filter(None, [os.environ.get("LD_PRELOAD"), MALLOC_DEBUG]))}
       if os.path.exists(MALLOC_DEBUG) else {}),
    # The cases run two threads (the crashes need them); passive waiting keeps a busy machine
    # from spending its cores on spinning threads (10x slower otherwise).
    "OMP_WAIT_POLICY": "PASSIVE",
}


def run_case(model: str, C: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.fixtures.shape_sweep", model, str(C), *map(str, BATCHES)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def started(request: pytest.FixtureRequest) -> Iterator[dict[tuple[str, int], Future]]:
    """The subprocesses of all selected cases, started PARALLEL at a time in test order: each test
    waits for its own, and the wall time halves on two cores."""
    cases = [(item.callspec.params["model"], item.callspec.params["C"]) for item in request.session.items
             if getattr(item, "function", None) is test_shapes_do_not_crash]
    pool = ThreadPoolExecutor(PARALLEL)
    try:
        yield {case: pool.submit(run_case, *case) for case in cases}
    finally:
        pool.shutdown(cancel_futures=True)


def failed_shape(stdout: str) -> str:
    """The shape the subprocess had started and not finished (or, when heap corruption surfaced
    only as it exited, the last one it ran)."""
    lines = stdout.splitlines()
    shapes = [line for line in lines if line.startswith("shape ")]
    if not shapes:
        return "before the first shape"
    return f"after {shapes[-1]}, at exit" if lines[-1] == "ok" else shapes[-1]


def describe(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


@pytest.mark.parametrize("C", CHANNELS, ids=lambda c: f"C{c}")
@pytest.mark.parametrize("model", MODELS)
def test_shapes_do_not_crash(model: str, C: int, started: dict[tuple[str, int], Future]) -> None:
    proc = started[model, C].result()
    if proc.returncode != 0:
        pytest.fail(f"{failed_shape(proc.stdout)}: {describe(proc.returncode)}\n{proc.stderr[-3000:]}")
    assert proc.stdout.splitlines().count("ok") == len(BATCHES), proc.stdout
