"""How many CPU threads a process computes with.

PyTorch's default is one thread per core of the machine in every process, whatever else runs
there. On a machine shared with other jobs (or with the other processes of a `--nproc N` run)
the threads then wait for cores at every parallel region: on a busy 2-core machine the README's
first NAS-Bench-201 search took 13.6 times longer with two threads than with one
(benchmarks/RESULTS.md, "Threads on a shared CPU"). So:

- `--threads N`, or OMP_NUM_THREADS when set, is what runs;
- else each process takes its share of the cores it may run on (its CPU affinity divided among
  the run's processes on this machine), but no more than one thread per WORK_PER_THREAD
  activations of its batch (batch x channels x pixels of the first feature maps): the tiny
  networks of smoke runs and first tries gain next to nothing from threads on an idle machine
  (their maps are a few of PyTorch's 32768-element grains) and lose many times over on a busy one.

    threads 2 (2 cores available to 1 process; --threads N to change)

DataLoader workers (ImageNet's streaming) are not counted: PyTorch runs each on one thread,
and they decode while the training process waits on the GPU or computes on the CPU, so the
training process keeps its share of the cores.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

WORK_PER_THREAD = 1 << 19  # activations per thread: 16 of PyTorch's grains (at::internal::GRAIN_SIZE)
# torchrun sets OMP_NUM_THREADS=1 for its processes when the user has not set it; common/launch.py
# keeps the user's value here, so that the processes tell the user's choice from torchrun's.
USER_OMP_ENV = "DARTS_PT_USER_OMP_NUM_THREADS"


@dataclass(frozen=True)
class Threads:
    count: int
    why: str

    def line(self) -> str:
        return f"threads {self.count} ({self.why}; --threads N to change)"


def choose_threads(flag: int, activations: int | None = None, environ: Mapping[str, str] = os.environ) -> Threads:
    """`--threads` if given (> 0), else OMP_NUM_THREADS as the user set it, else this process's
    share of the cores it may run on (those cores divided among the run's processes on this
    machine, torchrun's LOCAL_WORLD_SIZE), at most one per WORK_PER_THREAD of the `activations`
    of its share of a batch, and at least 1."""
    if flag > 0:
        return Threads(flag, "--threads")
    omp = _positive(environ.get(USER_OMP_ENV, environ.get("OMP_NUM_THREADS", "")))
    if omp:
        return Threads(omp, f"OMP_NUM_THREADS={omp} in the environment")
    cores, procs = len(os.sched_getaffinity(0)), _positive(environ.get("LOCAL_WORLD_SIZE", "")) or 1
    share = Threads(max(cores // procs, 1),
                    f"{cores} core{'s' * (cores > 1)} available to {procs} process{'es' * (procs > 1)}")
    if activations is None or activations // WORK_PER_THREAD >= share.count:
        return share
    count = max(activations // WORK_PER_THREAD, 1)
    return Threads(count, f"{share.why}, {count} for a batch this small: {activations} activations, batch x "
                          f"channels x pixels, {WORK_PER_THREAD} a thread")


def use_threads(flag: int, activations: int | None = None) -> Threads:
    """Choose this process's threads (choose_threads) and set them, before any torch work."""
    threads = choose_threads(flag, activations)
    torch.set_num_threads(threads.count)
    # Only possible before the first inter-op parallel work of the process (a second run in the
    # same process, as in the tests, keeps the first one's).
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads.count)
    return threads


def _positive(value: str) -> int:
    """A whole number > 0 (OMP_NUM_THREADS may also list nested levels: its first); 0 otherwise."""
    try:
        n = int(value.split(",")[0])
    except ValueError:
        return 0
    return max(n, 0)
