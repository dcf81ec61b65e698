"""CPU threads (common/threads.py): --threads, OMP_NUM_THREADS, else a share of the cores; the log says which."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from common.config import ConfigError
from common.threads import USER_OMP_ENV, WORK_PER_THREAD, choose_threads, use_threads
from tests.conftest import REPO
from tests.fixtures.configs import search_cfg


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on `n` cores."""
    def pretend(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))
    return pretend


@pytest.mark.parametrize("n,environ,count,why", [
    (8, {}, 8, "8 cores available to 1 process"),
    (8, {"LOCAL_WORLD_SIZE": "3"}, 2, "8 cores available to 3 processes"),   # torchrun's processes on this machine
    (2, {"LOCAL_WORLD_SIZE": "4"}, 1, "2 cores available to 4 processes"),   # at least one
    (1, {}, 1, "1 core available to 1 process"),
    (8, {"OMP_NUM_THREADS": "3"}, 3, "OMP_NUM_THREADS=3 in the environment"),
    (8, {"OMP_NUM_THREADS": "3,1"}, 3, "OMP_NUM_THREADS=3 in the environment"),  # nested levels: the first
    (8, {"OMP_NUM_THREADS": "many"}, 8, "8 cores available to 1 process"),      # not a number: not a choice
    # under common/launch.py: torchrun's OMP_NUM_THREADS=1 is not the user's
    (8, {"OMP_NUM_THREADS": "1", USER_OMP_ENV: "", "LOCAL_WORLD_SIZE": "2"}, 4, "8 cores available to 2 processes"),
    (8, {"OMP_NUM_THREADS": "1", USER_OMP_ENV: "1", "LOCAL_WORLD_SIZE": "2"}, 1,
     "OMP_NUM_THREADS=1 in the environment"),
])
def test_the_default_is_a_share_of_the_cores_unless_omp_num_threads_is_set(cores, n, environ, count, why):
    cores(n)
    assert choose_threads(0, None, environ).count == count
    assert choose_threads(0, None, environ).line() == f"threads {count} ({why}; --threads N to change)"


@pytest.mark.parametrize("n,activations,count", [(2, 32 * 4 * 32 * 32, 1),    # README's first run: 1
                                                 (2, 64 * 16 * 32 * 32, 2),   # a default-size search: the share
                                                 (8, 3 * WORK_PER_THREAD + 1, 3), (8, None, 8)])
def test_small_batches_take_fewer_threads(cores, n, activations, count):
    cores(n)
    threads = choose_threads(0, activations, {})
    assert threads.count == count
    small = f", {count} for a batch this small: {activations} activations, batch x channels x pixels, 524288 a thread"
    assert threads.why == f"{n} cores available to 1 process" + (small if count < n else "")
    # OMP_NUM_THREADS and --threads are taken as they are
    assert choose_threads(0, activations, {"OMP_NUM_THREADS": "2"}).count == 2
    assert choose_threads(2, activations, {}).count == 2


def test_activations_of_a_batch():
    data = search_cfg("--batch_size", "32").data
    assert data.activations(4) == 32 * 4 * 32 * 32 and data.activations(4, processes=2) == 16 * 4 * 32 * 32
    assert search_cfg("--dataset", "imagenet16-120").data.activations(16) == 64 * 16 * 16 * 16


def test_the_flag_wins(cores):
    cores(8)
    assert choose_threads(5, None, {"OMP_NUM_THREADS": "1"}).line() == "threads 5 (--threads; --threads N to change)"
    with pytest.raises(ConfigError, match="--threads -1: must be at least 0"):
        search_cfg("--threads", "-1")


def test_use_threads_sets_torch(cores, monkeypatch):
    cores(3)
    monkeypatch.delenv("OMP_NUM_THREADS")
    try:
        assert use_threads(0).count == 3 and torch.get_num_threads() == 3
        assert use_threads(2).count == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_a_search_logs_its_threads_first(tmp_path, small_cifar10, log_lines):
    from common.distributed import Group
    from common.run import prepare
    from nasbench201.train_search import SEARCH_SPACE

    cfg = search_cfg("--data", str(small_cifar10), "--exp_root", str(tmp_path), "--gpu", "cpu", "--threads", "2",
                     "--init_channels", "2", "--num_cells", "1", "--batch_size", "16")
    try:
        prepare(cfg, SEARCH_SPACE, Group())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert log_lines[0] == "threads 2 (--threads; --threads N to change)"
    assert not tmp_path.joinpath("nasbench201").exists()  # prepared, nothing written


LAUNCHED = """
import os, sys
import torch
from common.threads import use_threads
line = use_threads(0).line()
with open(os.path.join(sys.argv[1], os.environ["LOCAL_RANK"]), "w") as f:
    f.write(f"{line} {torch.get_num_threads()}")
"""


@pytest.mark.parametrize("user_omp", [None, "1"])
def test_processes_under_the_launcher_share_the_cores(tmp_path, user_omp):
    """torchrun sets OMP_NUM_THREADS=1 for its processes when the user has not: the processes
    still take their share of the cores (a 2-core machine: 1 each, for the cores' reason), and a
    user's OMP_NUM_THREADS is kept."""
    script = tmp_path / "job.py"
    script.write_text(LAUNCHED)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=str(REPO), **({"OMP_NUM_THREADS": user_omp} if user_omp else {}))
    out = subprocess.run([sys.executable, "-m", "common.launch", "--nproc_per_node", "2", str(script),
                          str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [(tmp_path / str(rank)).read_text() for rank in range(2)]
    cores = len(os.sched_getaffinity(0))
    expected = ("threads 1 (OMP_NUM_THREADS=1 in the environment; --threads N to change) 1" if user_omp else
                f"threads {max(cores // 2, 1)} ({cores} core{'s' * (cores > 1)} available to 2 processes; "
                f"--threads N to change) {max(cores // 2, 1)}")
    assert lines == [expected] * 2
