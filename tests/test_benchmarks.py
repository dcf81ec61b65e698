"""The benchmarks device_check.sh runs on a GPU, run here at tiny sizes on the CPU, each in its own
process: a benchmark that no longer fits the code it measures fails here, not on the lent GPU.
(bench_search and bench_pipeline: tests/test_fast_path.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def bench(module: str, *args: str) -> list[str]:
    """The `key=value` lines of one benchmark run (exit code 0 asserted)."""
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if not line.startswith("#")]


def figure(line: str, key: str) -> float:
    return float(dict(kv.split("=") for kv in line.split() if "=" in kv)[key])


@pytest.mark.slow
def test_imagenet_benchmark_measures_the_loader_and_the_training_step():
    lines = bench("bench_imagenet", "--device", "cpu", "--quick", "--workers", "0,1", "--loader_batches", "1",
                  "--steps", "1", "--batch_size", "2", "--autocast", "none")
    loader = [line for line in lines if line.startswith("imagenet loader ")]
    network = [line for line in lines if line.startswith("imagenet network ")]
    assert [figure(line, "workers") for line in loader] == [0, 1] and len(network) == 1, lines
    assert all(figure(line, "images_per_s") > 0 for line in loader + network), lines


@pytest.mark.slow
def test_projection_benchmark_times_and_ranks_every_criterion():
    lines = bench("bench_projection", "--device", "cpu", "--init_channels", "4", "--num_cells", "1",
                  "--train_images", "32", "--batch_size", "8", "--epochs", "1", "--proj_batches", "1",
                  "--threads", "1")
    timed = {line.split()[1].split("=")[1] for line in lines if line.startswith("time criterion=")}
    ranked = {line.split()[1].split("=")[1] for line in lines if line.startswith("rank criterion=")}
    assert {"acc", "nwot", "synflow", "grad_norm", "jacob_cov", "acc@b1"} <= timed, lines
    assert {"nwot", "synflow", "grad_norm", "jacob_cov", "acc@b1", "loss"} <= ranked, lines
    assert all(-1 <= figure(line, "kendall_edge") <= 1 for line in lines if line.startswith("rank ")), lines


@pytest.mark.slow
def test_multi_process_projection_benchmark_runs_one_and_two_processes():
    lines = bench("bench_projection_ddp", "--quick", "--nproc", "1,2", "--threads", "1")
    assert [line.split(":")[0] for line in lines if line.startswith("nproc ")] == ["nproc 1", "nproc 2"], lines


@pytest.mark.slow
def test_threads_benchmark_times_the_first_run_and_reports_the_threads():
    lines = bench("bench_threads", "--commands", "1", "--load", "1", "--extra", "--epochs 1")
    [line] = [line for line in lines if line.startswith("command=")]
    assert figure(line, "wall_s") > 0 and figure(line, "cpu_s") > 0, lines
    # OMP_NUM_THREADS left out: the runs' own choice, one thread for the first run's tiny batches
    assert "threads=(1 (" in line and "1 for a batch this small" in line, lines
    assert figure(next(line for line in lines if line.startswith("total ")), "wall_s") == figure(line, "wall_s")
