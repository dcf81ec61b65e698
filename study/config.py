"""The study command line, parsed once into a frozen StudyConfig."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from common.experiment import REPO_ROOT

from .flags import DEFAULT_STAGES, STAGES, FlagError, RunFlags
from .plan import METHODS, SPACES

LISTS = ("space", "dataset", "method", "seed")
SLURM_FLAGS = ("partition", "time", "gpus_per_job", "nodes_per_job", "cpus_per_job", "mem_gb", "slurm_extra")


class StudyError(Exception):
    """A bad command: one `error: ...` line, exit code 2, nothing written."""


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = None
    time_min: int = 1440
    gpus_per_job: int = 1
    nodes_per_job: int = 1        # evaluations (their scripts' --nnodes); other runs take one machine
    cpus_per_job: int = 8
    mem_gb: float | None = None
    extra: tuple[tuple[str, str], ...] = ()   # anything else sbatch takes: (key, value)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    study_dir: Path
    spaces: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    stages: tuple[str, ...] = DEFAULT_STAGES
    run_flags: RunFlags = RunFlags()
    executor: str = "local"
    jobs: int | None = None       # local: runs at once (default: one per visible GPU, one on CPU)
    slurm: SlurmConfig = SlurmConfig()
    dry_run: bool = False
    retry_failed: bool = False
    status: bool = False

    @property
    def planned(self) -> bool:
        """The lists are given: plan them (otherwise: continue the study's own runs)."""
        return bool(self.spaces)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bash exp_scripts/study.sh", allow_abbrev=False,
        description="Run a study: search, projection and evaluation for every (space, dataset, method, "
                    "seed). Any other --name value pair is passed to every run whose script takes it "
                    "(--STAGE.name value: to that stage only, e.g. --eval.epochs 100).")
    p.add_argument("--name", required=True, help="the study: <exp_root>/studies/NAME/")
    p.add_argument("--space", help=f"comma-separated: {', '.join(SPACES)} (nb201: NAS-Bench-201)")
    p.add_argument("--dataset", help="comma-separated: cifar10, cifar100, svhn (DARTS spaces); "
                                     "cifar10, cifar100, imagenet16-120 (nb201); imagefolder (both; with --data DIR)")
    p.add_argument("--method", help=f"comma-separated: {', '.join(METHODS)} (sdarts-*: DARTS spaces only)")
    p.add_argument("--seed", help="comma-separated integers")
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help="comma-separated: search, proj, eval, eval-imagenet (the ImageNet transfer of the "
                        "genotype, DARTS spaces: `--data` of that stage, e.g. --eval-imagenet.data DIR)")
    p.add_argument("--exp_root", default=str(REPO_ROOT / "experiments"),
                   help="experiments folder; the study goes to <exp_root>/studies/NAME/")
    p.add_argument("--executor", default="local", choices=["local", "slurm"])
    p.add_argument("--dry_run", action="store_true", help="print the plan, run and write nothing")
    p.add_argument("--retry_failed", action="store_true", help="run failed runs again (resuming where they can)")
    p.add_argument("--status", action="store_true",
                   help="print the runs' states and exit (with the lists and run flags of a command: its runs)")
    g = p.add_argument_group("local executor")
    g.add_argument("--jobs", type=int, help="runs at once (default: one per visible GPU, one on CPU)")
    g = p.add_argument_group("slurm executor (through submitit)")
    g.add_argument("--partition")
    g.add_argument("--time", type=int, help="time limit per job in minutes (default 1440); a job that "
                   "reaches it is requeued and resumes from its latest checkpoint")
    g.add_argument("--gpus_per_job", type=int, help="GPUs per machine of a job")
    g.add_argument("--nodes_per_job", type=int,
                   help="machines per evaluation job (default 1): each runs its script with --nnodes N and "
                        "torchrun's c10d rendezvous on the job's first machine; pass the GPUs each uses with "
                        "--eval.nproc G / --eval-imagenet.nproc G (and --gpus_per_job G)")
    g.add_argument("--cpus_per_job", type=int)
    g.add_argument("--mem_gb", type=float)
    g.add_argument("--slurm_extra", action="append", default=[],
                   help="KEY=VALUE[,KEY=VALUE]: any other sbatch option (account=..., qos=..., constraint=...)")
    p.exit_on_error = False

    def error(message: str) -> None:  # one line, not argparse's usage block
        raise StudyError(message)

    p.error = error  # type: ignore[method-assign]
    return p


def parse_config(argv: list[str] | None = None) -> StudyConfig:
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        raise StudyError(str(e)) from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        raise StudyError(f"--name {args.name!r}: use letters, digits, '.', '_' and '-'")
    given = [k for k in LISTS if getattr(args, k) is not None]
    if given and len(given) < len(LISTS):
        missing = ", ".join(f"--{k}" for k in LISTS if k not in given)
        raise StudyError(f"a plan needs --space, --dataset, --method and --seed (missing {missing})")
    _check_modes(args, given)
    try:
        run_flags = RunFlags.parse(rest, [s for a in parser._actions for s in a.option_strings])
    except FlagError as e:
        raise StudyError(str(e)) from None
    return StudyConfig(
        name=args.name, study_dir=Path(args.exp_root).resolve() / "studies" / args.name,
        spaces=_list(args.space, "space", SPACES), datasets=_list(args.dataset, "dataset"),
        methods=_list(args.method, "method", METHODS), seeds=tuple(int(s) for s in _list(args.seed, "seed", int)),
        stages=_stages(args.stages), run_flags=run_flags, executor=args.executor, jobs=args.jobs,
        slurm=_slurm(args), dry_run=args.dry_run, retry_failed=args.retry_failed, status=args.status)


def _check_modes(args: argparse.Namespace, given: list[str]) -> None:
    if args.status and (args.dry_run or args.retry_failed):
        raise StudyError("--status shows the study and runs nothing: leave out --dry_run and --retry_failed")
    if args.jobs is not None and (args.executor != "local" or args.jobs < 1):
        raise StudyError("--jobs N (N >= 1) is for --executor local")
    slurm_given = [f"--{k}" for k in SLURM_FLAGS if getattr(args, k) not in (None, [])]
    if slurm_given and args.executor != "slurm":
        raise StudyError(f"{', '.join(slurm_given)}: for --executor slurm")


def _list(text: str | None, what: str, choices: tuple[str, ...] | type | None = None) -> tuple:
    if text is None:
        return ()
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not items:
        raise StudyError(f"--{what} is empty")
    for item in items:
        if choices is int and not re.fullmatch(r"-?\d+", item):
            raise StudyError(f"--{what} {item!r}: not an integer")
        if isinstance(choices, tuple) and item not in choices:
            raise StudyError(f"--{what} {item!r}: choose from {', '.join(choices)}")
    return items


def _stages(text: str) -> tuple[str, ...]:
    chosen = set(_list(text, "stages", STAGES))
    return tuple(s for s in STAGES if s in chosen)


def _slurm(args: argparse.Namespace) -> SlurmConfig:
    extra: dict[str, str] = {}
    for text in args.slurm_extra:
        # split at commas that start a new KEY= (so that exclude=node1,node2 stays whole)
        for item in re.split(r",(?=[A-Za-z][\w-]*=)", text):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise StudyError(f"--slurm_extra {item!r}: expected KEY=VALUE")
            extra[key.strip()] = value.strip()
    for name in ("time", "gpus_per_job", "nodes_per_job", "cpus_per_job", "mem_gb"):
        value = getattr(args, name)
        positive = name in ("time", "nodes_per_job")
        if value is not None and value < (1 if positive else 0):
            raise StudyError(f"--{name} {value}: must be {'positive' if positive else '>= 0'}")
    d = SlurmConfig()
    return SlurmConfig(partition=args.partition, time_min=args.time or d.time_min,
                       gpus_per_job=d.gpus_per_job if args.gpus_per_job is None else args.gpus_per_job,
                       nodes_per_job=args.nodes_per_job or d.nodes_per_job,
                       cpus_per_job=args.cpus_per_job or d.cpus_per_job, mem_gb=args.mem_gb,
                       extra=tuple(extra.items()))
