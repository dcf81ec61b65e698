"""Projection time per number of processes (torchrun: gloo on the CPU, NCCL on GPUs).

    python benchmarks/bench_projection_ddp.py                      # CPU, 1 2 4 processes
    python benchmarks/bench_projection_ddp.py --quick --nproc 1,2  # smoke test, about a minute
    python benchmarks/bench_projection_ddp.py --device cuda --nproc 1,2,4,8 --sync_bn

A NAS-Bench-201 supernet is searched once (one process, one epoch), then projected by
`python -m common.launch --nproc_per_node N -m nasbench201.train_search --method darts-proj
--proj_intv 1` for each N: 6 rounds of 5 scoring passes over the alpha half, 6 tuning epochs,
what exp_scripts/darts-proj-201.sh --nproc N runs. Sizes (default; --quick in brackets): 32x32
synthetic images, C=8 with 2 cells per stage [C=4, 1], 1024 training images (two halves) [128],
batch 64 [32], 64 test images [32].

One line per N: the projection's own time (result.json's projection_time_s: scoring and tuning),
the command's wall-clock (start-up, data and checks included), the speed-up of the projection time
over the first N, and the genotype chosen. On the CPU every process runs --threads torch threads:
N processes need N x threads cores to gain anything.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_pipeline import write_cifar10  # noqa: E402
from benchmarks.bench_search import machine, synthetic_set  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    channels: int
    cells: int          # per stage
    train_images: int   # split into the weight half and the alpha half
    test_images: int
    batch: int


def sizes(quick: bool) -> Sizes:
    return Sizes(4, 1, 128, 32, 32) if quick else Sizes(8, 2, 1024, 64, 64)


def launch(nproc: int, args: list[str], threads: int) -> tuple[float, str]:
    """Run nasbench201.train_search in `nproc` processes; its wall-clock and output."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "common.launch", "--nproc_per_node", str(nproc),
               "-m", "nasbench201.train_search", *args]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return wall, proc.stdout


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda (one GPU per process)")
    p.add_argument("--nproc", default="1,2,4", help="comma-separated numbers of processes")
    p.add_argument("--sync_bn", action="store_true", help="project with --sync_bn")
    p.add_argument("--quick", action="store_true", help="smoke test at tiny sizes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    return p


def main(argv: list[str] | None = None) -> int:
    cfg = build_parser().parse_args(argv)
    counts = [int(n) for n in cfg.nproc.split(",") if n]
    if cfg.device == "cuda" and torch.cuda.device_count() < max(counts):
        raise SystemExit(f"--nproc {cfg.nproc}: {torch.cuda.device_count()} GPU(s) visible, one per process needed")
    s = sizes(cfg.quick)
    torch.set_num_threads(cfg.threads)
    print(f"# torch {torch.__version__}; {cfg.device}: {machine(torch.device(cfg.device))} per process; "
          f"{s}; sync_bn={cfg.sync_bn}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_projection_ddp_") as tmp:
        work = Path(tmp)
        write_cifar10(work / "data", synthetic_set(s.train_images, seed=0), synthetic_set(s.test_images, seed=1))
        common = ["--data", str(work / "data"), "--exp_root", str(work / "exp"), "--gpu", cfg.device,
                  "--init_channels", str(s.channels), "--num_cells", str(s.cells), "--batch_size", str(s.batch),
                  "--epochs", "1", "--no_tensorboard", "--report_freq", "1000",
                  "--api_path", str(work / "no-benchmark.pth")]
        launch(1, [*common, "--method", "darts", "--save", "darts-201"], cfg.threads)
        first = None
        for n in counts:
            wall, _ = launch(n, [*common, "--method", "darts-proj", "--save", "darts-proj-201", "--resume_epoch", "1",
                                 "--resume_expid", "search-darts-201-1", "--proj_intv", "1", "--log_tag", f"n{n}",
                                 *(["--sync_bn"] if cfg.sync_bn else [])], cfg.threads)
            result = json.loads((work / "exp" / "nasbench201" / "search-darts-201-1" /
                                 f"darts-proj-201-seed1-acc-intv1-ep1-n{n}" / "result.json").read_text())
            seconds = float(result["projection_time_s"])
            first = first or seconds
            print(f"nproc {n}: projection {seconds:.1f} s, wall {wall:.1f} s, speedup {first / seconds:.2f}x, "
                  f"genotype {result['genotype']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
