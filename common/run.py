"""The entry point both spaces' `train_search` share: folders, data, then search or projection.

Every check that can fail fast (folder exists, resume target missing, data missing) runs
before anything is written, so a bad command leaves earlier results untouched.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import CheckpointError, checkpoint_epochs
from .cli import parse
from .data import Batches, DataError, ImageSet, load_dataset, split_indices
from .device import select_device, set_tf32
from .experiment import Board, ExperimentError, new_run_dir, setup_logging, write_json
from .projection import Plan, latest_projection_epoch, run_projection
from .search import SUPERNET, checkpoint_path, continue_search, load_search_checkpoint, run_search
from .trainer import DivergedError, SearchData, Space, Trainer, memory_format

log = logging.getLogger("darts_pt")

# OSError: a file of the run cannot be written (disk full, folder removed or read-only).
USER_ERRORS = (DataError, ExperimentError, CheckpointError, DivergedError, ValueError, KeyError, OSError)


@dataclass
class Layout:
    """Where a space keeps its experiments, and how runs are named."""

    space_dir: Callable[[argparse.Namespace], Path]            # holds the search folders
    search_name: Callable[[argparse.Namespace], str]
    projection_name: Callable[[argparse.Namespace, int], str]  # (args, supernet epoch)


def main(parser: argparse.ArgumentParser, layout: Layout,
         build_space: Callable[[argparse.Namespace, int, torch.device], Space],
         build_plan: Callable[[argparse.Namespace, Space], Plan],
         argv: list[str] | None = None) -> int:
    args = parse(parser, argv)
    return exit_code(lambda: run(args, layout, build_space, build_plan))


def exit_code(job: Callable[[], object]) -> int:
    """Run a job; a user error (bad flag, missing data or checkpoint, ...) ends it with one
    clear line and exit code 2 instead of a traceback."""
    try:
        job()
    except USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        log.error("error: %s", msg) if log.handlers else print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace, layout: Layout, build_space, build_plan) -> dict:
    device = select_device(args.gpu)
    seed_everything(args.seed, args.deter, args.tf32)
    if args.dev == "proj":
        supernet_ckpt, folder, proj_resume = projection_target(args, layout)
    else:
        folder, resume_epoch = search_target(args, layout)
    train_set, test_set = (load_dataset(args.dataset, args.data, train=t, image_size=args.image_size)
                           for t in (True, False))
    data = search_data(args, train_set, test_set, device)
    resuming = proj_resume is not None if args.dev == "proj" else resume_epoch > 0
    new_run_dir(folder, resume=resuming or (args.dev == "proj" and folder.exists() and not args.overwrite),
                overwrite=args.overwrite)
    setup_logging(folder / "log.txt")
    log.info("args = %s", vars(args))
    log.info("device = %s, experiment folder = %s", device, folder)
    space = build_space(args, train_set.num_classes, device)
    board = Board(folder, enabled=not args.no_tensorboard)
    try:
        if args.dev != "proj":
            return run_search(Trainer(space, data, args, device), folder, resume_epoch, board)
        result = {"space": space.extra.get("space", space.name), "method": args.method,
                  "dataset": args.dataset, "seed": args.seed, "supernet": str(supernet_ckpt)}
        # A supernet from before --epochs is first trained up to it (an interrupted run of this
        # command may have done part of that already).
        tuned = _latest(folder, SUPERNET) or supernet_ckpt
        if proj_resume is None:
            tuned = continue_search(Trainer(space, data, args, device), tuned, folder, board)
            for p in space.model.parameters():  # projection starts as in a new process (see README)
                p.grad = None
        if tuned != supernet_ckpt:
            result["supernet_trained_to"], supernet_ckpt = args.epochs, tuned
        # Projection tunes with a fresh weight optimiser at a tenth of the learning rate,
        # kept constant; alpha's optimiser continues from the supernet checkpoint.
        trainer = Trainer(space, data, args, device, weight_lr=args.learning_rate / 10)
        state = load_search_checkpoint(trainer, supernet_ckpt, with_optimizers=False)
        result.update(supernet_epoch=int(state.get("epoch", 0)),
                      search_time_s=_search_time(Path(result["supernet"]).parent, state))
        seed_everything(args.seed, args.deter, args.tf32)  # the projection's randomness depends on its own seed
        return run_projection(trainer, folder, build_plan(args, space), board, proj_resume, result)
    except BaseException as e:
        mark_failed(folder, e)
        raise
    finally:
        board.close()


def seed_everything(seed: int, deterministic: bool, tf32: bool = False) -> None:
    """Seed every RNG; set cuDNN to autotuned (or deterministic) kernels, and CUDA to float32
    arithmetic unless `tf32` (torch lets cuDNN use TF32 by default, which changes results)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    set_tf32(tf32)


def search_data(args: argparse.Namespace, train_set: ImageSet, test_set: ImageSet,
                device: torch.device) -> SearchData:
    weight_idx, alpha_idx = split_indices(len(train_set.labels), args.train_portion)
    limit = 1 if args.fast else None
    cutout = args.cutout_length if args.cutout else 0
    common = dict(device=device, seed=args.seed, limit=limit, memory_format=memory_format(args, device))
    valid = Batches(train_set, alpha_idx, args.batch_size, augment=True, cutout_length=cutout, **common)
    proj_bs = getattr(args, "proj_batch_size", 0)
    return SearchData(
        train=Batches(train_set, weight_idx, args.batch_size, augment=True, cutout_length=cutout, **common),
        valid=valid,
        test=Batches(test_set, None, args.batch_size, augment=False, shuffle=False, **common),
        proj=valid.with_batch_size(proj_bs) if proj_bs and proj_bs != args.batch_size else None)


def search_target(args: argparse.Namespace, layout: Layout) -> tuple[Path, int]:
    folder = layout.space_dir(args) / layout.search_name(args)
    if args.resume_epoch == 0:
        if folder.exists() and not args.overwrite:
            new_run_dir(folder, resume=False, overwrite=False)  # raises the standard message
        return folder, 0
    if not folder.is_dir():
        raise ExperimentError(f"cannot resume: experiment folder {folder} does not exist "
                              f"(check --seed, --dataset, --expid_tag, --exp_root)")
    if not checkpoint_epochs(folder):  # stopped before its first checkpoint: nothing to continue
        raise CheckpointError(f"cannot resume {folder}: it holds no checkpoint yet (the run stopped before "
                              f"its first one). Start it again with --overwrite (moves the folder aside) "
                              f"instead of --resume_epoch, or use --expid_tag TAG for a separate run.")
    return folder, resolve_epoch(folder, args.resume_epoch)


def projection_target(args: argparse.Namespace, layout: Layout) -> tuple[Path, Path, int | None]:
    if not args.resume_expid:  # the supernet of the matching search script, same seed
        search_args = argparse.Namespace(**{**vars(args), "save": args.save.replace("-proj", ""),
                                            "expid_tag": ""})
        args.resume_expid = layout.search_name(search_args)
    base = layout.space_dir(args) / args.resume_expid
    if not base.is_dir():
        raise ExperimentError(f"--resume_expid {args.resume_expid}: folder {base} does not exist")
    if args.resume_epoch == 0:
        raise ExperimentError("projection needs a supernet checkpoint: pass --resume_epoch N (-1: latest)")
    epoch = resolve_epoch(base, args.resume_epoch)
    folder = base / layout.projection_name(args, epoch)
    return checkpoint_path(base, epoch), folder, _projection_resume(args, folder)


def _projection_resume(args: argparse.Namespace, folder: Path) -> int | None:
    """An interrupted projection continues from its latest checkpoint; a finished one is kept."""
    if not folder.exists() or args.overwrite:
        return None
    if _status(folder) == "finished":
        raise ExperimentError(f"projection {folder} already finished. Use --log_tag TAG for another "
                              f"projection of this supernet, or --overwrite to move it aside and redo it.")
    if args.no_resume:
        raise ExperimentError(f"projection folder {folder} exists; pass --overwrite to start it afresh")
    if args.dev_resume_epoch >= 0:
        if args.dev_resume_epoch not in checkpoint_epochs(folder):
            raise ExperimentError(f"--dev_resume_epoch {args.dev_resume_epoch}: no such projection "
                                  f"checkpoint in {folder} (have {checkpoint_epochs(folder)})")
        return args.dev_resume_epoch
    return latest_projection_epoch(folder)


def _latest(folder: Path, prefix: str) -> Path | None:
    epochs = checkpoint_epochs(folder, prefix)
    return folder / f"{prefix}_{epochs[-1]}.pth.tar" if epochs else None


def resolve_epoch(folder: Path, epoch: int) -> int:
    available = checkpoint_epochs(folder)
    if epoch == -1:
        if not available:
            raise CheckpointError(f"no checkpoint_*.pth.tar in {folder}")
        return available[-1]
    if epoch not in available:
        raise CheckpointError(f"checkpoint_{epoch}.pth.tar not found in {folder} "
                              f"(available epochs: {available or 'none'})")
    return epoch


def _status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "result.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def _search_time(search_folder: Path, state: dict) -> float | None:
    if "search_time" in state:
        return round(float(state["search_time"]), 1)
    try:
        return json.loads((search_folder / "result.json").read_text()).get("search_time_s")
    except (OSError, ValueError):
        return None


def mark_failed(folder: Path, error: BaseException) -> None:
    path = folder / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        result = {}
    if result.get("status") != "finished":
        result.update(status="failed", error=f"{type(error).__name__}: {error}")
        write_json(path, result)
