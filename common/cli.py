"""The command-line flags both search spaces share, with the original scripts' names and defaults.

Flags given twice take the last value, so the exp_scripts can set defaults and still let
users override any of them (`bash exp_scripts/darts-201.sh --seed 3`).
"""
from __future__ import annotations

import argparse

from .experiment import REPO_ROOT


def search_parser(description: str, *, epochs: int, ckpt_interval: int, seed: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", default=str(REPO_ROOT / "data"),
                   help="data folder (for imagefolder: the folder holding train/ and test/)")
    g.add_argument("--dataset", default="cifar10")
    g.add_argument("--image_size", type=int, default=32, help="imagefolder only: images are resized to this")
    g.add_argument("--train_portion", type=float, default=0.5,
                   help="first part of the training set trains weights, the rest trains alpha and scores projections")
    g.add_argument("--cutout", action="store_true", default=False)
    g.add_argument("--cutout_length", type=int, default=16)
    g.add_argument("--cutout_prob", type=float, default=1.0, help="reached at the last epoch, ramped from 0")

    g = p.add_argument_group("supernet training")
    g.add_argument("--method", default="darts", help="darts | blank | sdarts, or *-proj for projection")
    g.add_argument("--epochs", type=int, default=epochs)
    g.add_argument("--batch_size", type=int, default=64)
    g.add_argument("--learning_rate", type=float, default=0.025)
    g.add_argument("--learning_rate_min", type=float, default=0.001)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--nesterov", action="store_true", default=False)
    g.add_argument("--weight_decay", type=float, default=3e-4)
    g.add_argument("--grad_clip", type=float, default=5.0)
    g.add_argument("--arch_learning_rate", type=float, default=3e-4)
    g.add_argument("--arch_weight_decay", type=float, default=1e-3)
    g.add_argument("--init_channels", type=int, default=16)
    g.add_argument("--sampling", default="fresh", choices=["fresh", "epoch"],
                   help="fresh: as the original, every search step draws a new random batch from each half "
                        "(next(iter(queue))), and tuning draws each alpha batch so; epoch: real epochs "
                        "(every image once per epoch)")

    g = p.add_argument_group("projection (architecture selection by perturbation)")
    g.add_argument("--dev", default="", help="'proj': run projection on the checkpoint given by --resume_*")
    g.add_argument("--proj_intv", type=int, default=5, help="tuning epochs between two projections")
    g.add_argument("--edge_decision", default="random", choices=["random"])
    g.add_argument("--dev_resume_epoch", type=int, default=-1,
                   help="resume projection from its checkpoint at this tuning epoch (-1: latest one, if any)")
    g.add_argument("--no_resume", action="store_true", default=False,
                   help="start the projection afresh even if its folder holds projection checkpoints")

    g = p.add_argument_group("speed (the defaults are exact; see benchmarks/RESULTS.md)")
    add_kernel_flags(g)
    g.add_argument("--amp", action="store_true", default=False,
                   help="CHANGES NUMERICS: bf16 autocast of the forward passes of search, tuning and "
                        "projection scoring (alpha, weights, optimisers and losses stay float32)")
    g.add_argument("--compile", action="store_true", default=False,
                   help="CHANGES NUMERICS (fused kernels round differently): torch.compile the supernet's "
                        "forward for search and tuning steps; each projection pattern compiles once more, "
                        "masked scoring passes run uncompiled; the first steps are slow (compiling)")
    g.add_argument("--compile_mode", default="default",
                   choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode for --compile (reduce-overhead: CUDA graphs)")
    g.add_argument("--proj_batch_size", type=int, default=0,
                   help="CHANGES RESULTS (BatchNorm uses batch statistics while scoring): batch size of the "
                        "projection scoring passes; 0: --batch_size, as the original")

    g = add_run_flags(p, seed=seed, save="exp", ckpt_interval=ckpt_interval)
    g.add_argument("--log_tag", default="", help="suffix of the projection folder name")
    g.add_argument("--resume_expid", default="", help="experiment folder to load (projection)")
    return p


def add_kernel_flags(g: argparse._ArgumentGroup) -> None:
    """How tensors are laid out and convolved: --memory_format (exact), --tf32 (not)."""
    g.add_argument("--memory_format", default="auto", choices=["auto", "channels_last", "contiguous"],
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
    g.add_argument("--save", default=save, help="run name; exp_scripts pass the script name")
    g.add_argument("--exp_root", default=str(REPO_ROOT / "experiments"), help="where experiment folders go")
    g.add_argument("--expid_tag", default="", help="suffix of the experiment folder name")
    g.add_argument("--resume_epoch", type=int, default=0, help="checkpoint epoch to resume from (-1: latest)")
    g.add_argument("--overwrite", action="store_true", default=False,
                   help="move an existing experiment folder aside and start again")
    g.add_argument("--ckpt_interval", type=int, default=ckpt_interval,
                   help="checkpoint every N epochs (and at the end)")
    g.add_argument("--report_freq", type=int, default=50)
    g.add_argument("--fast", action="store_true", default=False,
                   help="smoke test: one batch per epoch and per evaluation pass, no benchmark queries")
    g.add_argument("--deter", action="store_true", default=False, help="deterministic cuDNN kernels")
    g.add_argument("--no_tensorboard", action="store_true", default=False)
    return g


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.method.endswith("-proj"):
        args.dev = "proj"
    args.base_method = args.method.removesuffix("-proj")
    if args.proj_batch_size < 0:
        parser.error(f"--proj_batch_size must be >= 0 (0: --batch_size), got {args.proj_batch_size}")
    return args
