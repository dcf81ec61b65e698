"""The command-line flags both search spaces share, with the original scripts' names and
defaults, and their conversion into the typed configuration of common/config.py.

Flags given twice take the last value, so the exp_scripts can set defaults and still let
users override any of them (`bash exp_scripts/darts-201.sh --seed 3`).
"""
from __future__ import annotations

import argparse
import copy
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import (
    COMPILE_MODES,
    MEMORY_FORMATS,
    SAMPLINGS,
    AlphaConfig,
    ConfigError,
    DataConfig,
    OptimConfig,
    ProjectionConfig,
    RunConfig,
    SearchConfig,
    SpeedConfig,
)
from .data import DATASETS
from .experiment import REPO_ROOT
from .methods import add_method_flags, method_options, search_run_flags


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help names every flag's default (argparse's formatter names it only for flags with a
    help text); a flag whose default is None explains it in its help."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and action.default is not argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (`error: argument --flag: why`, exit 2),
    like every other refusal of a bad input; `--help` shows the usage and every default.

    Flags must be spelt out (no prefix abbreviations: `--epoch 2` is not `--epochs 2`), and an
    unknown flag is answered with the closest known ones.
    """

    def __init__(self, description: str) -> None:
        super().__init__(description=description, formatter_class=HelpFormatter, allow_abbrev=False)
        self.search_run_defaults: dict[str, Any] = {}

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see --help\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        unset = [dest for dest in self.search_run_defaults if getattr(ns, dest) is None]
        for dest in unset:
            setattr(ns, dest, self.search_run_defaults[dest])
        ns.search_run_flags, ns.from_search_run = tuple(self.search_run_defaults), tuple(unset)
        return ns, extras

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self._unknown(extras))
        return ns

    def _unknown(self, extras: list[str]) -> str:
        flag = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), None)
        if flag is None:
            return f"unexpected argument {extras[0]!r} (flags are --name value pairs)"
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        return f"{flag}: no such flag" + did_you_mean(flag, known)

    def take_from_search_run(self, *dests: str) -> None:
        """Mark flags whose value a projection takes from the search run it projects unless
        given (the search run's result.json records them): unset (None) until parsed, then the
        flag's default, with `from_search_run` naming those the command left out."""
        for action in self._actions:
            if action.dest in dests:
                self.search_run_defaults[action.dest] = action.default
                action.help = (f"{action.help} " if action.help else "") + \
                    f"(default: {action.default}; a projection's: the search run's)"
                action.default = None


def did_you_mean(flag: str, known: Sequence[str]) -> str:
    """` (did you mean --epochs?)` naming the known flags closest to a mistyped one; '' if none is."""
    close = difflib.get_close_matches(flag, known, n=3, cutoff=0.75)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def search_parser(description: str, *, epochs: int, ckpt_interval: int, seed: int,
                  methods: Sequence[str]) -> Parser:
    """The flags every search and projection command takes, those of the `methods` the space
    offers (common/methods) among them."""
    p = Parser(description)
    g = p.add_argument_group("data")
    add_data_flags(g, datasets=DATASETS)
    g.add_argument("--cutout_ramp", action="store_true", default=False,
                   help="search: ramp the cutout probability from 0 at the first epoch to --cutout_prob at the "
                        "last, on every dataset (what the original's code set out to do); off: as the original "
                        "ran, --cutout_prob from the first epoch, and ImageNet16-120 never cut")
    g.add_argument("--train_portion", type=float, default=0.5,
                   help="first part of the training set trains weights, the rest trains alpha and scores projections")
    g.add_argument("--sampling", default="fresh", choices=SAMPLINGS,
                   help="fresh: as the original, every search step draws a new random batch from each half "
                        "(next(iter(queue))), and tuning draws each alpha batch so; epoch: real epochs "
                        "(every image once per epoch)")

    g = p.add_argument_group("supernet training")
    choices = [*methods, *(f"{m}-proj" for m in methods)]
    g.add_argument("--method", default="darts", choices=choices, help="*-proj: projection of a supernet")
    g.add_argument("--epochs", type=int, default=epochs,
                   help="search epochs; a projection of an earlier checkpoint first trains the supernet up to this")
    g.add_argument("--init_channels", type=int, default=16, help="supernet channels (C)")
    add_optim_flags(g)
    g.add_argument("--learning_rate_min", type=float, default=0.001)
    g.add_argument("--nesterov", action="store_true", default=False)
    g.add_argument("--arch_learning_rate", type=float, default=3e-4)
    g.add_argument("--arch_weight_decay", type=float, default=1e-3)
    g.add_argument("--unrolled", action="store_true", default=False,
                   help="second-order DARTS: alpha's gradient through a virtual weight step, as quark0/darts' "
                        "architect (unrolled=True); about 2.5x a first-order step (benchmarks/RESULTS.md)")
    add_method_flags(g, methods)

    g.add_argument("--eval_freq", type=int, default=-1,
                   help="evaluate the supernet on the test set every N search and tuning epochs (0: never); "
                        "-1: as the original, every search epoch in the DARTS space, never on NAS-Bench-201 "
                        "and never while tuning (the alpha half is evaluated every epoch regardless)")

    g = p.add_argument_group("projection (architecture selection by perturbation)")
    g.add_argument("--dev", default="", choices=["", "proj"],
                   help="'proj': run projection on the checkpoint given by --resume_*")
    g.add_argument("--proj_intv", type=int, default=5, help="tuning epochs between two projections")
    g.add_argument("--edge_decision", default="random", choices=["random"])
    g.add_argument("--dev_resume_epoch", type=int, default=-1,
                   help="resume projection from its checkpoint at this tuning epoch (-1: latest one, if any)")
    g.add_argument("--no_resume", action="store_true", default=False,
                   help="refuse to continue an interrupted projection whose folder exists (--overwrite moves it "
                        "aside and starts afresh)")

    g = p.add_argument_group("speed (the defaults are exact; see benchmarks/RESULTS.md)")
    add_kernel_flags(g)
    g.add_argument("--amp", action="store_true", default=False,
                   help="CHANGES NUMERICS: bf16 autocast of the forward passes of search, tuning and "
                        "projection scoring (alpha, weights, optimisers and losses stay float32)")
    g.add_argument("--compile", action="store_true", default=False,
                   help="CHANGES NUMERICS (fused kernels round differently): torch.compile the supernet's "
                        "forward for search and tuning steps; each projection pattern compiles once more, "
                        "masked scoring passes run uncompiled; the first steps are slow (compiling)")
    g.add_argument("--compile_mode", default="default", choices=COMPILE_MODES,
                   help="torch.compile mode for --compile (reduce-overhead: CUDA graphs)")
    g.add_argument("--proj_batch_size", type=int, default=0,
                   help="CHANGES RESULTS (BatchNorm uses batch statistics while scoring): batch size of the "
                        "projection scoring passes; 0: --batch_size, as the original")
    g.add_argument("--proj_batches", type=int, default=0,
                   help="CHANGES RESULTS when > 0: score each projection decision on the first N batches of "
                        "the alpha half (the same N batches for every op of a decision); 0: the whole alpha "
                        "half for acc/loss, as the original, and one batch for a zero-cost proxy, as Zero-Cost-PT")
    g.add_argument("--proj_pool", type=int, default=1,
                   help="zero-cost criteria only: project N times, each in its own random edge order, and keep "
                        "the candidate whose projected supernet scores best (Zero-Cost-PT's --pool_size)")
    g.add_argument("--proj_pool_batches", type=int, default=100,
                   help="batches of the alpha half each --proj_pool candidate is scored on (Zero-Cost-PT's "
                        "--validate_rounds)")

    add_launcher_flags(p)
    g = add_run_flags(p, seed=seed, save="exp", ckpt_interval=ckpt_interval)
    g.add_argument("--alpha_heatmaps", action="store_true", default=False,
                   help="also draw softmax(alpha) as a TensorBoard figure each epoch (about 0.2 s per cell kind "
                        "and epoch on a CPU; the values are in history.jsonl and the report draws them)")
    g.add_argument("--log_tag", default="", help="suffix of the projection folder name")
    g.add_argument("--resume_expid", default="",
                   help="projection: the search run to project, a folder name in the space's experiments folder "
                        "or a path (default: the matching search script's run with the same seed)")
    g.add_argument("--sync_bn", action="store_true", default=False,
                   help="under torchrun (--nproc N of the exp_scripts): batch norm over the whole batch of all "
                        "processes, as one process; off: each process normalises its own shard")
    p.take_from_search_run("dataset", "epochs", "init_channels", "unrolled", *search_run_flags(methods))
    resume = next(a for a in p._actions if a.dest == "resume_epoch")
    resume.help = ("search: the checkpoint epoch to continue from (-1: the latest); projection: the search checkpoint "
                   "to project (-1: the latest; left out: the search run's last epoch)")
    return p


def add_switch(g: argparse._ArgumentGroup, name: str, help: str) -> None:
    """`--NAME` turns a feature on and `--no_NAME` off again (the last one given wins), so that a
    command can undo what its exp_script turns on (eval.sh's --auxiliary and --cutout)."""
    g.add_argument(f"--{name}", action="store_true", default=False, help=help)
    g.add_argument(f"--no_{name}", dest=name, action="store_false", default=argparse.SUPPRESS,
                   help=f"undo --{name} (e.g. a script's own)")


def add_data_flags(g: argparse._ArgumentGroup, datasets: Sequence[str]) -> None:
    g.add_argument("--data", default=str(REPO_ROOT / "data"),
                   help="data folder (for imagefolder: the folder holding train/ and test/)")
    g.add_argument("--dataset", default="cifar10", choices=list(datasets))
    g.add_argument("--image_size", type=int, default=32, help="imagefolder only: images are resized to this")
    g.add_argument("--batch_size", type=int, default=64)
    add_switch(g, "cutout", "cut a random square out of training images")
    g.add_argument("--cutout_length", type=int, default=16, help="side of the square")
    g.add_argument("--cutout_prob", type=float, default=1.0, help="per-image cutout probability")


def add_optim_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--learning_rate", type=float, default=0.025)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight_decay", type=float, default=3e-4)
    g.add_argument("--grad_clip", type=float, default=5.0)


def add_kernel_flags(g: argparse._ArgumentGroup) -> None:
    """How tensors are laid out and convolved: --memory_format (exact), --tf32 (not)."""
    g.add_argument("--memory_format", default="auto", choices=MEMORY_FORMATS,
                   help="layout of the model and batches; auto: channels_last on CPU (faster there), "
                        "contiguous (NCHW) on CUDA. Results differ only by float summation order")
    g.add_argument("--tf32", action="store_true", default=False,
                   help="CHANGES NUMERICS: let CUDA convolutions and matmuls use TF32 (10-bit mantissa "
                        "products) on Ampere and newer GPUs; off: float32 as on the original's GPUs")


def add_run_flags(p: argparse.ArgumentParser, *, seed: int, save: str,
                  ckpt_interval: int) -> argparse._ArgumentGroup:
    """Flags every entry point shares: seed, device, folders, resume, logging; the group."""
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=seed)
    g.add_argument("--gpu", default="auto", help="auto (least-used GPU, else CPU) | cpu | GPU index")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads of each process; 0: OMP_NUM_THREADS if set, else the cores this process may "
                        "run on divided among the run's processes on this machine")
    g.add_argument("--save", default=save, help="run name; exp_scripts pass the script name")
    g.add_argument("--exp_root", default=str(REPO_ROOT / "experiments"), help="where experiment folders go")
    g.add_argument("--expid_tag", default="", help="suffix of the experiment folder name")
    g.add_argument("--resume_epoch", type=int, default=0, help="checkpoint epoch to resume from (-1: latest)")
    g.add_argument("--overwrite", action="store_true", default=False,
                   help="move an existing experiment folder aside and start again")
    g.add_argument("--ckpt_interval", type=int, default=ckpt_interval,
                   help="checkpoint every N epochs (and at the end)")
    g.add_argument("--ckpt_keep_every", type=int, default=1,
                   help="keep the checkpoints of epochs that are multiples of N, and the latest (what a resume "
                        "needs); delete the others once a newer one is written. 0: only the latest")
    g.add_argument("--report_freq", type=int, default=50, help="log a training line every N steps ...")
    g.add_argument("--report_secs", type=float, default=30.0,
                   help="... and whenever N seconds passed since the last line (0: every --report_freq steps only)")
    g.add_argument("--fast", action="store_true", default=False,
                   help="smoke test: one batch per epoch and per evaluation pass, no benchmark queries")
    g.add_argument("--deter", action="store_true", default=False, help="deterministic cuDNN kernels")
    g.add_argument("--no_tensorboard", action="store_true", default=False)
    return g


# -- namespace -> typed configuration -----------------------------------------------------------

def data_config(args: argparse.Namespace) -> DataConfig:
    return DataConfig(data=Path(args.data), dataset=args.dataset, image_size=args.image_size,
                      batch_size=args.batch_size, cutout=args.cutout, cutout_length=args.cutout_length,
                      cutout_prob=args.cutout_prob)


def run_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(exp_root=Path(args.exp_root), save=args.save, seed=args.seed, gpu=args.gpu,
                     expid_tag=args.expid_tag, resume_epoch=args.resume_epoch, overwrite=args.overwrite,
                     ckpt_interval=args.ckpt_interval, ckpt_keep_every=args.ckpt_keep_every,
                     report_freq=args.report_freq, report_secs=args.report_secs, fast=args.fast,
                     deter=args.deter, tensorboard=not args.no_tensorboard, threads=args.threads)


def speed_config(args: argparse.Namespace, **extra: Any) -> SpeedConfig:
    return SpeedConfig(memory_format=args.memory_format, tf32=args.tf32, **extra)


def search_config(args: argparse.Namespace, space: Any = None, methods: Sequence[str] = ()) -> SearchConfig:
    """The typed configuration of a search or projection command; `space` holds the search
    space's own options, `methods` names those it offers. Raises ConfigError (one line naming
    the flag) on a bad value."""
    method = args.method.removesuffix("-proj")
    # the flags of the methods not run (their defaults) say nothing of this run's supernet
    foreign = set(search_run_flags(methods or [method])) - set(search_run_flags([method]))
    return SearchConfig(
        method=method, project=args.method.endswith("-proj") or args.dev == "proj",
        epochs=args.epochs, init_channels=args.init_channels, data=data_config(args), run=run_config(args),
        optim=OptimConfig(learning_rate=args.learning_rate, learning_rate_min=args.learning_rate_min,
                          momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
                          grad_clip=args.grad_clip),
        alpha=AlphaConfig(arch_learning_rate=args.arch_learning_rate, arch_weight_decay=args.arch_weight_decay,
                          unrolled=args.unrolled),
        method_options=method_options(args, methods or [method], method),
        speed=speed_config(args, amp=args.amp, compile=args.compile, compile_mode=args.compile_mode),
        projection=ProjectionConfig(proj_intv=args.proj_intv, edge_decision=args.edge_decision,
                                    dev_resume_epoch=args.dev_resume_epoch, no_resume=args.no_resume,
                                    resume_expid=args.resume_expid, log_tag=args.log_tag,
                                    proj_batch_size=args.proj_batch_size, proj_batches=args.proj_batches,
                                    proj_pool=args.proj_pool, proj_pool_batches=args.proj_pool_batches),
        train_portion=args.train_portion, sampling=args.sampling, eval_freq=args.eval_freq,
        alpha_heatmaps=args.alpha_heatmaps, cutout_ramp=args.cutout_ramp, space=space, sync_bn=args.sync_bn,
        search_run_flags=tuple(f for f in args.search_run_flags if f not in foreign),
        from_search_run=frozenset(args.from_search_run) - foreign)


def parse_config(parser: argparse.ArgumentParser, to_config: Any, argv: Sequence[str] | None = None,
                 processes: int | None = None) -> Any:
    """Parse a command line and convert it; a ConfigError ends the program like an argparse
    error, with one `error: --flag VALUE: ...` line and exit code 2, before anything is written.
    `processes`: the size of the torchrun this process runs in, which launcher flags given to the
    module must agree with."""
    args = parser.parse_args(argv)
    try:
        if processes is not None:
            check_launcher(args, processes)
        return to_config(args)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")


# The exp_scripts' own flags: exp_scripts/common.sh (run_distributed) starts torchrun with them and
# passes them on to no module.
LAUNCHER_FLAGS = ("--nproc", "--nnodes", "--node_rank", "--rdzv_endpoint", "--rdzv_id")


def add_launcher_flags(p: argparse.ArgumentParser) -> None:
    """The exp_scripts' launcher flags, so that --help lists them; the module reads none of them
    (a module given --nproc or --nnodes only checks that its torchrun has that size)."""
    g = p.add_argument_group("processes and machines (flags of the exp_scripts, which start torchrun with them; "
                             "docs/multi-gpu.md)")
    g.add_argument("--nproc", type=int, default=None,
                   help="training processes on this machine, one per visible GPU (default 1)")
    g.add_argument("--nnodes", type=int, default=None,
                   help="machines, each running the same command with --nproc processes (default 1)")
    g.add_argument("--node_rank", type=int, default=None,
                   help="0 marks the machine that hosts the rendezvous (needed where the machines share a host name)")
    g.add_argument("--rdzv_endpoint", default=None, metavar="HOST:PORT",
                   help="where the machines meet (torchrun's c10d rendezvous); needed with --nnodes above 1")
    g.add_argument("--rdzv_id", default=None, help="the job's name (e.g. $SLURM_JOB_ID), so that two jobs meeting at "
                                                   "one endpoint stay apart")


def check_launcher(args: argparse.Namespace, processes: int) -> None:
    """A module run by hand with --nproc or --nnodes: its torchrun must have that many processes
    (the exp_scripts take these flags and start it so)."""
    nproc, nnodes = args.nproc or 1, args.nnodes or 1
    if (args.nproc or args.nnodes) and nproc * nnodes != processes:
        flag, value = ("nproc", args.nproc) if args.nproc else ("nnodes", args.nnodes)
        raise ConfigError(flag, value, f"this process runs in a group of {processes} process(es), not "
                                       f"{nproc * nnodes}: --nproc and --nnodes are the exp_scripts' flags (bash "
                                       f"exp_scripts/SCRIPT.sh --nproc {nproc}), or start the module under torchrun "
                                       f"with that many")
