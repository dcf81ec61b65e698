"""The entry point both spaces' `train_search` share: checks, folders, data, then search or projection.

Everything that can fail on a bad command (flags, folders, resume targets, data, the
model, checkpoints that do not fit it) is checked before anything is written, so a bad
command leaves earlier results untouched and ends with one `error: ...` line, exit code 2.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .batchnorm import SyncBatchNorm2d
from .checkpoint import checkpoint_epochs, checkpoint_path, load_checkpoint
from .cli import parse_config
from .config import ConfigError, SearchConfig, check
from .data import Batches, ImageSet, load_dataset, split_indices
from .device import memory_format
from .distributed import Group
from .entry import exit_code, mark_failed, read_result, seed_everything
from .experiment import (
    LOGGER,
    Board,
    ExperimentError,
    log_to_file,
    new_run_dir,
    resolve_epoch,
    run_target,
    start_logging,
)
from .projection import run_projection
from .search import (
    SUPERNET,
    continue_search,
    load_resumed_search,
    load_search_checkpoint,
    run_identity,
    run_search,
    scheduler_for,
)
from .space import SearchSpace, Space
from .trainer import SearchData, Trainer

log = logging.getLogger(LOGGER)


def main(space: SearchSpace, argv: list[str] | None = None) -> int:
    """Search or projection in this process, or in each of the processes torchrun started
    (exp_scripts' --nproc N): process 0 says what went wrong, every process ends with its code."""
    group = Group.start()
    try:
        with group.quiet():
            cfg = parse_config(space.parser(), lambda args: dataclasses.replace(space.config(args), nproc=group.size),
                               argv)
        code = exit_code(lambda: run(cfg, space, group), report=group.main)
    except SystemExit as e:  # argparse: a refused flag, or --help
        code = int(e.code or 0)
    group.close()
    return code


@dataclass(frozen=True)
class Target:
    """Where a run writes, and what it continues from."""

    folder: Path
    resume_epoch: int = 0                 # search: checkpoint epoch to continue (0: none)
    supernet: Path | None = None          # projection: the search checkpoint it projects
    projection_epoch: int | None = None   # projection: its own checkpoint to continue from


def run(cfg: SearchConfig, space_def: SearchSpace, group: Group | None = None) -> dict:
    group = group or Group()
    start_logging(main=group.main)
    # Everything that can fail on a bad command runs, on every process, before anything is written.
    job = group.agree(lambda: prepare(cfg, space_def, group))
    return job()


def prepare(cfg: SearchConfig, space_def: SearchSpace, group: Group) -> Callable[[], dict]:
    """Every check a bad command can fail, and the run set up; writes nothing. The run itself
    (which writes) is returned."""
    device = group.device(cfg.run.gpu)
    # One seed for every process: each builds the same supernet and alpha, and draws what one
    # process draws (SDARTS' noise, which process 0 broadcasts all the same).
    seed_everything(cfg.run.seed, cfg.run.deter, cfg.speed.tf32)
    target = projection_target(cfg, space_def) if cfg.project else search_target(cfg, space_def)
    train_set, test_set = (load_dataset(cfg.data.dataset, cfg.data.data, train=t, image_size=cfg.data.image_size)
                           for t in (True, False))
    data = search_data(cfg, train_set, test_set, device, group)
    space = space_def.build(cfg, train_set.num_classes, device)
    if cfg.sync_bn:  # before the optimizers take the parameters: the replacements hold new ones
        space.model = SyncBatchNorm2d.convert(space.model)
    if cfg.project:
        return _project(cfg, space_def, space, data, device, target, group)
    trainer = Trainer(space, data, cfg, device, group=group)
    scheduler = scheduler_for(trainer)
    state = None
    if target.resume_epoch:  # read (and checked against the model) before anything is written
        state = load_resumed_search(trainer, checkpoint_path(target.folder, target.resume_epoch), scheduler)

    def search() -> dict:
        with run_folder(cfg, target.folder, resume=target.resume_epoch > 0, device=device, group=group) as board:
            trainer.synchronise()
            return run_search(trainer, scheduler, target.folder, state, board)
    return search


def _project(cfg: SearchConfig, space_def: SearchSpace, space: Space, data: SearchData, device: torch.device,
             target: Target, group: Group) -> Callable[[], dict]:
    """Projection of a search checkpoint, checked; one from before --epochs is first trained up
    to it (an interrupted run of this command may have done part of that already)."""
    folder, supernet = target.folder, target.supernet
    assert supernet is not None
    searched = read_result(supernet.parent).get("space", space.label)
    if searched != space.label:  # the space's own flag is named by its label (--space for the DARTS space)
        raise ConfigError("space", space.label, f"the supernet in {supernet.parent} was searched in space "
                                                f"{searched}; pass --space {searched}")
    search = Trainer(space, data, cfg, device, group=group)
    scheduler = scheduler_for(search)
    source = (None if cfg.run.overwrite else _latest(folder, SUPERNET)) or supernet
    # checked against the model (and, continuing this command's own run, its processes) before writing
    state = load_search_checkpoint(search, source, scheduler, resume=source != supernet)
    if target.projection_epoch is not None:
        path = checkpoint_path(folder, target.projection_epoch)
        group.check_nproc(load_checkpoint(path), path)
    resume = target.projection_epoch is not None or folder.exists() and not cfg.run.overwrite

    def project() -> dict:
        with run_folder(cfg, folder, resume=resume, device=device, group=group) as board:
            result: dict[str, Any] = {**run_identity(cfg, space), "supernet": str(supernet)}
            tuned = source
            search.synchronise()
            if target.projection_epoch is None and continue_search(search, scheduler, state, folder, board):
                tuned = checkpoint_path(folder, cfg.epochs, SUPERNET)
            if tuned != supernet:
                result["supernet_trained_to"] = cfg.epochs
            for p in space.model.parameters():  # projection starts as in a new process (see README)
                p.grad = None
            # Projection tunes with a fresh weight optimiser at a tenth of the learning rate,
            # kept constant; alpha's optimiser continues from the supernet checkpoint.
            trainer = Trainer(space, data, cfg, device, weight_lr=cfg.optim.learning_rate / 10, group=group)
            tuned_state = load_search_checkpoint(trainer, tuned, with_optimizers=False)
            trainer.synchronise()
            result.update(supernet_epoch=int(tuned_state.get("epoch", 0)),
                          search_time_s=_search_time(supernet.parent, tuned_state))
            seed_everything(cfg.run.seed, cfg.run.deter, cfg.speed.tf32)  # the projection's own randomness
            return run_projection(trainer, folder, space_def.plan(cfg, space), board, target.projection_epoch,
                                  result)
    return project


@contextlib.contextmanager
def run_folder(cfg: SearchConfig, folder: Path, resume: bool, device: torch.device,
               group: Group | None = None) -> Iterator[Board]:
    """Create (or reopen) the run's folder, log into it, and mark the run failed in result.json
    if it stops with an error (process 0; the others only log to stdout)."""
    group = group or Group()
    group.on_main(lambda: new_run_dir(folder, resume=resume, overwrite=cfg.run.overwrite))
    if group.main:
        log_to_file(folder / "log.txt")
    log.info("config = %s", cfg)
    log.info("device = %s, experiment folder = %s%s", device, folder,
             f", {group.size} processes" if group.distributed else "")
    board = Board(folder, enabled=cfg.run.tensorboard and group.main, heatmaps=cfg.alpha_heatmaps)
    try:
        yield board
    except BaseException as e:
        if group.main:
            mark_failed(folder, e)
        raise
    finally:
        board.close()


def search_data(cfg: SearchConfig, train_set: ImageSet, test_set: ImageSet, device: torch.device,
                group: Group | None = None) -> SearchData:
    """The batches of both halves of the training set and of the test set; in several
    processes, this process's shards of them."""
    group = group or Group()
    weight_idx, alpha_idx = split_indices(len(train_set.labels), cfg.train_portion)
    if len(weight_idx) == 0 or len(alpha_idx) == 0:
        raise ConfigError("train_portion", cfg.train_portion, f"leaves one half of the {len(train_set)} training "
                                                              "images empty; use a value nearer 0.5")
    batch, cutout = cfg.data.batch_size, cfg.data.cutout_size
    batches = functools.partial(Batches, device=device, seed=cfg.run.seed, limit=1 if cfg.run.fast else None,
                                memory_format=memory_format(cfg.speed.memory_format, device),
                                shard=(group.rank, group.size))
    valid = batches(train_set, alpha_idx, batch, augment=True, cutout_length=cutout)
    proj_batch = cfg.projection.proj_batch_size
    data = SearchData(
        train=batches(train_set, weight_idx, batch, augment=True, cutout_length=cutout),
        valid=valid,
        test=batches(test_set, None, batch, augment=False, shuffle=False),
        proj=valid.with_batch_size(proj_batch) if proj_batch and proj_batch != batch else None)
    for b, flag in ((data.train, "batch_size"), (data.valid, "batch_size"), (data.test, "batch_size"),
                    (data.proj, "proj_batch_size")):
        if b is not None:
            _check_shards(b, flag, group.size)
    return data


def _check_shards(batches: Batches, flag: str, nproc: int) -> None:
    """Every process needs images of every batch (a batch norm of none is undefined)."""
    last = batches.batch_size_of(len(batches) - 1)
    check(last >= nproc, flag, batches.batch_size,
          f"the last batch of a pass over {batches.num_samples} images holds {last}, fewer than the --nproc "
          f"{nproc} processes: choose a batch size that leaves at least {nproc}")


def search_target(cfg: SearchConfig, space: SearchSpace) -> Target:
    folder = space.layout.space_dir(cfg) / space.layout.search_name(cfg)
    return Target(folder, resume_epoch=run_target(folder, cfg.run.resume_epoch, cfg.run.overwrite))


def projection_target(cfg: SearchConfig, space: SearchSpace) -> Target:
    expid = cfg.projection.resume_expid
    if not expid:  # the supernet of the matching search script, same seed
        run = dataclasses.replace(cfg.run, save=cfg.run.save.replace("-proj", ""), expid_tag="")
        expid = space.layout.search_name(dataclasses.replace(cfg, run=run))
    base = space.layout.space_dir(cfg) / expid
    if not base.is_dir():
        raise ConfigError("resume_expid", expid, f"folder {base} does not exist; pass the search's folder name "
                                                 f"(under {base.parent})")
    if cfg.run.resume_epoch == 0:
        raise ConfigError("resume_epoch", 0, "projection needs a supernet checkpoint: pass --resume_epoch N "
                                             "(-1: the latest)")
    epoch = resolve_epoch(base, cfg.run.resume_epoch)
    folder = base / space.layout.projection_name(cfg, epoch)
    return Target(folder, supernet=checkpoint_path(base, epoch), projection_epoch=_projection_resume(cfg, folder))


def _projection_resume(cfg: SearchConfig, folder: Path) -> int | None:
    """An interrupted projection continues from its latest checkpoint; a finished one is kept."""
    if not folder.exists() or cfg.run.overwrite:
        return None
    if _status(folder) == "finished":
        raise ExperimentError(f"projection {folder} already finished. Use --log_tag TAG for another "
                              f"projection of this supernet, or --overwrite to move it aside and redo it.")
    if cfg.projection.no_resume:
        raise ExperimentError(f"projection folder {folder} exists; pass --overwrite to start it afresh")
    wanted, available = cfg.projection.dev_resume_epoch, checkpoint_epochs(folder)
    if wanted >= 0:
        if wanted not in available:
            raise ConfigError("dev_resume_epoch", wanted, f"no such projection checkpoint in {folder} "
                                                          f"(have {available})")
        return wanted
    return available[-1] if available else None


def _latest(folder: Path, prefix: str) -> Path | None:
    epochs = checkpoint_epochs(folder, prefix)
    return checkpoint_path(folder, epochs[-1], prefix) if epochs else None


def _status(folder: Path) -> str | None:
    return read_result(folder).get("status")


def _search_time(search_folder: Path, state: dict) -> float | None:
    if "search_time" in state:
        return round(float(state["search_time"]), 1)
    return read_result(search_folder).get("search_time_s")


