"""Wall and CPU time of the README's first run (five tiny commands) on a busy CPU.

    python -m benchmarks.bench_threads                      # the runs' default threads, 2 busy loops beside
    python -m benchmarks.bench_threads --omp 1              # OMP_NUM_THREADS=1 in the runs' environment
    python -m benchmarks.bench_threads --threads 2 --load 0 # --threads 2, nothing else running
    python -m benchmarks.bench_threads --repo ../main       # another checkout's scripts (a "before")
    python -m benchmarks.bench_threads --commands 1 --extra "--init_channels 16 --num_cells 5 --batch_size 64"
                                                            # the first search at the default size

Runs README "First run on a laptop" as written: a tiny CIFAR-10 of random images (512 training,
128 test images, tests.fixtures.datasets), a 2-epoch NAS-Bench-201 supernet and its projection,
a DARTS-space S5 supernet, its projection and the evaluation of the selected genotype, each
through its exp_script with `--gpu cpu`, while `--load` processes spin in `while 1: pass` (other
jobs on a shared machine). One line per command, `key=value`: wall seconds, CPU seconds (user +
system, of the command and everything it started) and the `threads ...` line of its log; then
the totals. The machine's other load (1-minute load average) is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# README "First run on a laptop", after T="--data DATA --exp_root EXP --gpu cpu"
COMMANDS = (
    "darts-201.sh $T --epochs 2 --init_channels 4 --num_cells 1 --batch_size 32",
    "darts-proj-201.sh $T --resume_epoch 2 --batch_size 32 --proj_intv 1",
    "darts-sota.sh --space s5 $T --fast --epochs 2 --init_channels 4 --layers 5 --batch_size 16",
    "darts-proj-sota.sh $T --fast --resume_epoch 2 --batch_size 16 --proj_intv 1 --genotype_name first",
    "eval.sh --arch first $T --fast --epochs 2 --init_channels 4 --layers 3",
)


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def threads_line(output: str) -> str:
    line = next((line for line in output.splitlines() if " threads " in line and "--threads N" in line), "")
    return line.split(" threads ", 1)[1] if line else "(not logged)"


def run_commands(args: argparse.Namespace, data: Path, exp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if args.omp:
        env["OMP_NUM_THREADS"] = str(args.omp)
    env.setdefault("PYTHON", sys.executable)
    common = f"--data {data} --exp_root {exp} --gpu cpu" + (f" --threads {args.threads}" if args.threads else "")
    total_wall = total_cpu = 0.0
    for i, command in enumerate(COMMANDS, 1):
        if i not in args.commands:
            continue
        script, *rest = shlex.split(command.replace("$T", common) + " " + args.extra)
        cpu, start = cpu_of_children(), time.perf_counter()
        proc = subprocess.run(["bash", str(args.repo / "exp_scripts" / script), *rest], env=env, cwd=args.repo,
                              capture_output=True, text=True)
        wall, used = time.perf_counter() - start, cpu_of_children() - cpu
        if proc.returncode != 0:
            raise SystemExit(f"error: {script} failed ({proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        total_wall, total_cpu = total_wall + wall, total_cpu + used
        print(f"command={i} script={script} wall_s={wall:.1f} cpu_s={used:.1f} threads=({threads_line(proc.stdout)})",
              flush=True)
    print(f"total wall_s={total_wall:.1f} cpu_s={total_cpu:.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", type=int, default=2, help="busy-loop processes running beside the commands")
    p.add_argument("--omp", type=int, default=0, help="OMP_NUM_THREADS of the commands (0: unset)")
    p.add_argument("--threads", type=int, default=0, help="--threads of the commands (0: not passed)")
    p.add_argument("--commands", default="1,2,3,4,5", help="which of the five commands, e.g. 1 (later ones need "
                                                           "the earlier ones' results)")
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose exp_scripts run")
    p.add_argument("--extra", default="", help="flags added to every command (the last value of a flag wins)")
    args = p.parse_args(argv)
    args.commands = {int(c) for c in args.commands.split(",")}
    sys.path.insert(0, str(REPO))
    from tests.fixtures.datasets import write_cifar10

    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.load)]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
            write_cifar10(Path(tmp) / "data", n_train=512, n_test=128)
            print(f"# cores={len(os.sched_getaffinity(0))} load={args.load} omp={args.omp or 'unset'} "
                  f"threads_flag={args.threads or 'none'} repo={args.repo} loadavg={os.getloadavg()[0]:.2f}",
                  flush=True)
            run_commands(args, Path(tmp) / "data", Path(tmp) / "exp")
            print(f"# loadavg={os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for b in busy:
            b.kill()
            b.wait()


if __name__ == "__main__":
    main()
