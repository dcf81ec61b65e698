"""The entry point both spaces' `train_search` share: checks, folders, data, then search or projection.

Everything that can fail on a bad command (flags, folders, resume targets, data, the
model, checkpoints that do not fit it) is checked before anything is written, so a bad
command leaves earlier results untouched and ends with one `error: ...` line, exit code 2.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import commands
from .batchnorm import SyncBatchNorm2d
from .checkpoint import (
    checkpoint_epochs,
    checkpoint_path,
    later_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    partial_path,
)
from .cli import parse_config
from .config import PROXY_CRITERIA, ConfigError, SearchConfig, flag_value, with_flags
from .data import DATASETS, Batches, ImageSet, load_dataset, split_indices
from .device import memory_format
from .distributed import Group
from .entry import exit_code, read_result, seed_everything
from .experiment import (
    LOGGER,
    Board,
    ExperimentError,
    log_to_file,
    new_run_dir,
    record_config,
    resolve_epoch,
    resume_checkpoint,
    set_aside,
    start_logging,
)
from .methods import METHODS
from .projection import run_projection
from .runstate import (
    INTERRUPTED,
    RUNNING,
    STOPPED,
    continue_with,
    handling_signals,
    observed_status,
    resume_projection,
    resume_run,
    tracked,
)
from .search import (
    SUPERNET,
    check_resumable,
    continue_search,
    load_resumed_search,
    load_search_checkpoint,
    run_identity,
    run_search,
    scheduler_for,
)
from .space import SearchSpace, Space
from .threads import use_threads
from .trainer import SearchData, Trainer

log = logging.getLogger(LOGGER)


def main(space: SearchSpace, argv: list[str] | None = None) -> int:
    """Search or projection in this process, or in each of the processes torchrun started
    (exp_scripts' --nproc N): process 0 says what went wrong, every process ends with its code."""
    group = Group.start()
    try:
        with group.quiet():
            cfg = parse_config(space.parser(), lambda args: dataclasses.replace(space.config(args), nproc=group.size),
                               argv, processes=group.size)
        with handling_signals(main=group.main):
            code = exit_code(lambda: run(cfg, space, group), report=group.main)
    except SystemExit as e:  # argparse: a refused flag, or --help
        code = int(e.code or 0)
    group.close()
    return code


@dataclass(frozen=True)
class Target:
    """Where a run writes, and what it continues from."""

    folder: Path
    resume: Path | None = None            # search: the checkpoint to continue (None: none)
    supernet: Path | None = None          # projection: the search checkpoint it projects
    projection: Path | None = None        # projection: its own checkpoint to continue from


def run(cfg: SearchConfig, space_def: SearchSpace, group: Group | None = None) -> dict:
    group = group or Group()
    start_logging(main=group.main)
    # Everything that can fail on a bad command runs, on every process, before anything is written.
    job = group.agree(lambda: prepare(cfg, space_def, group))
    return job()


def prepare(cfg: SearchConfig, space_def: SearchSpace, group: Group) -> Callable[[], dict]:
    """Every check a bad command can fail, and the run set up; writes nothing. The run itself
    (which writes) is returned."""
    defaults = space_def.config(space_def.parser().parse_args([]))  # what the log's config block leaves out
    device = group.device(cfg.run.gpu)  # a flag no folder can fix is refused before the folders are looked at
    if cfg.project:  # the flags left out are the search run's; the first log line says what will run
        cfg, target = projection_target(cfg, space_def)
        space_def.check_projection(cfg, target.folder)
    else:
        target = search_target(cfg, space_def)
    # before any torch computation; the sizes a projection takes from its search run count
    log.info("%s", use_threads(cfg.run.threads, cfg.data.activations(cfg.init_channels, cfg.nproc)).line())
    # One seed for every process: each builds the same supernet and alpha, and draws what one
    # process draws (SDARTS' noise, which process 0 broadcasts all the same).
    seed_everything(cfg.run.seed, cfg.run.deter, cfg.speed.tf32)
    train_set, test_set = (load_dataset(cfg.data.dataset, cfg.data.data, train=t, image_size=cfg.data.image_size)
                           for t in (True, False))
    data = search_data(cfg, train_set, test_set, device, group)
    space = space_def.build(cfg, train_set.num_classes, device)
    if cfg.sync_bn:  # before the optimizers take the parameters: the replacements hold new ones
        space.model = SyncBatchNorm2d.convert(space.model)
    if cfg.project:
        return _project(cfg, defaults, space_def, space, data, device, target, group)
    trainer = Trainer(space, data, cfg, device, group=group)
    scheduler = scheduler_for(trainer)
    state = None
    if target.resume is not None:  # read (and checked against the model) before anything is written
        state = load_resumed_search(trainer, target.resume, scheduler)

    def search() -> dict:
        with run_folder(cfg, defaults, target.folder, resume=state is not None, device=device,
                        group=group) as board:
            if state is not None and target.resume != partial_path(target.folder):  # from an epoch's checkpoint
                group.on_main(lambda: set_aside(target.folder, later_checkpoints(target.folder, int(state["epoch"])),
                                                f"continuing from epoch {state['epoch']}"))
            trainer.synchronise()
            result = run_search(trainer, scheduler, target.folder, state, board)
            if space_def.layout.scripts:
                log.info("the supernet is in %s; project it with `%s`", target.folder,
                         commands.shell(projection_command(cfg, space_def.layout.scripts, target.folder)))
            return result
    return search


def projection_command(cfg: SearchConfig, scripts: str, folder: Path) -> list[str]:
    """The method's projection exp_script of the space's family `scripts` (with the arguments that
    make it the search's method) projecting the final checkpoint of the search in `folder`, with
    the folders and seed its command gave."""
    stem, *method = METHODS[cfg.method].script_of(cfg)
    given = commands.given(commands.typed(), ("--seed", "--exp_root", "--data", "--api_path"))
    return commands.exp_script(f"{stem}-proj-{scripts}.sh", "--resume_expid", folder.name, "--resume_epoch",
                               str(cfg.epochs), *method, *given)


def _project(cfg: SearchConfig, defaults: SearchConfig, space_def: SearchSpace, space: Space, data: SearchData,
             device: torch.device, target: Target, group: Group) -> Callable[[], dict]:
    """Projection of a search checkpoint, checked; one from before --epochs is first trained up
    to it (an interrupted run of this command may have done part of that already)."""
    folder, supernet = target.folder, target.supernet
    assert supernet is not None
    continue_with(lambda: resume_projection(folder, ("checkpoint", SUPERNET)))
    search = Trainer(space, data, cfg, device, group=group)
    scheduler = scheduler_for(search)
    source = (None if cfg.run.overwrite else latest_checkpoint(folder, SUPERNET)) or supernet
    # checked against the model (and, continuing this command's own run, its processes) before writing
    state = load_search_checkpoint(search, source, scheduler, resume=source != supernet)
    if target.projection is not None:
        check_resumable(search, load_checkpoint(target.projection), target.projection)
    resume = target.projection is not None or folder.exists() and not cfg.run.overwrite
    plan = space_def.plan(cfg, space)
    proxies = sorted({c for c in plan.criteria.values() if c in PROXY_CRITERIA})
    if proxies and group.distributed:  # a proxy of a shard is not the batch's: processes would disagree
        raise ConfigError("nproc", group.size, f"zero-cost criteria ({', '.join(proxies)}) score whole batches in one "
                                               "process (and take seconds): run them with --nproc 1")

    def project() -> dict:
        with run_folder(cfg, defaults, folder, resume=resume, device=device, group=group) as board:
            result: dict[str, Any] = {**run_identity(cfg, space, search.method), "supernet": str(supernet)}
            tuned = source
            search.synchronise()
            if target.projection is None and continue_search(search, scheduler, state, folder, board):
                tuned = checkpoint_path(folder, cfg.epochs, SUPERNET)
            if tuned != supernet:
                result["supernet_trained_to"] = cfg.epochs
            for p in space.model.parameters():  # projection starts as in a new process (docs/differences.md)
                p.grad = None
            # Projection tunes with a fresh weight optimiser at a tenth of the learning rate,
            # kept constant; alpha's optimiser continues from the supernet checkpoint.
            trainer = Trainer(space, data, cfg, device, weight_lr=cfg.optim.learning_rate / 10, group=group)
            tuned_state = load_search_checkpoint(trainer, tuned, with_optimizers=False)
            trainer.synchronise()
            result.update(supernet_epoch=int(tuned_state.get("epoch", 0)),
                          search_time_s=_search_time(supernet.parent, tuned_state))
            seed_everything(cfg.run.seed, cfg.run.deter, cfg.speed.tf32)  # the projection's own randomness
            return run_projection(trainer, folder, plan, board, target.projection, result)
    return project


@contextlib.contextmanager
def run_folder(cfg: SearchConfig, defaults: SearchConfig, folder: Path, resume: bool, device: torch.device,
               group: Group | None = None) -> Iterator[Board]:
    """Create (or reopen) the run's folder, log into it (the configuration where it differs from
    `defaults`, the entry point's, and all of it in config.json), and keep its run state
    (common/runstate.py: process record, heartbeat, `failed` or `interrupted` in result.json if it
    stops early), on process 0; the other processes only log warnings to stdout."""
    group = group or Group()
    group.on_main(lambda: new_run_dir(folder, resume=resume, overwrite=cfg.run.overwrite))
    if group.main:
        log_to_file(folder / "log.txt")
    record_config(cfg, defaults, folder, group.main)
    log.info("device = %s, experiment folder = %s%s", device, folder,
             f", {group.size} processes" if group.distributed else "")
    board = Board(folder, enabled=cfg.run.tensorboard and group.main, heatmaps=cfg.alpha_heatmaps)
    try:
        with tracked(folder, main=group.main):
            yield board
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
    batch, cutout = cfg.data.batch_size, cfg.cutout_length
    if cfg.data.cutout and not cutout:
        log.info("--cutout: no cutout on %s, as the original (its pipeline had none); --cutout_ramp cuts it",
                 cfg.data.dataset)
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
            b.check_shards(flag)
    return data


def search_target(cfg: SearchConfig, space: SearchSpace) -> Target:
    folder = space.layout.space_dir(cfg) / space.layout.search_name(cfg)
    continue_with(lambda: resume_run(folder))
    return Target(folder, resume=resume_checkpoint(folder, cfg.run.resume_epoch, cfg.run.overwrite))


@dataclass(frozen=True)
class Projection:
    """What a projection projects, and where it writes."""

    cfg: SearchConfig           # the command's, with the flags it left out taken from the search run
    search: Path                # the search run's folder
    epoch: int                  # the epoch of the search checkpoint it projects
    taken: dict[str, Any]       # flag -> value taken from the search run (its result.json)
    folder: Path
    epoch_from: str = "given"   # where `epoch` came from, for the first log line


def projection_target(cfg: SearchConfig, space: SearchSpace) -> tuple[SearchConfig, Target]:
    """The projection's configuration and folders, checked before anything is loaded; its first
    log lines say what it will do and which flags it took from the search run."""
    p = resolve_projection(cfg, space)
    target = Target(p.folder, supernet=checkpoint_path(p.search, p.epoch),
                    projection=_projection_resume(p.cfg, p.folder))
    log.info("%s", _plan_line(p, target))
    if p.taken:
        log.info("taken from the search run's result.json: %s", _flags(p.cfg, p.taken))
    if unrecorded := [flag for flag in p.cfg.search_run_flags if flag in p.cfg.from_search_run - p.taken.keys()]:
        log.info("not recorded by the search run, so the defaults: %s", _flags(p.cfg, unrecorded))
    return p.cfg, target


def _flags(cfg: SearchConfig, flags: Iterable[str]) -> str:
    return " ".join(f"--{flag} {flag_value(cfg, flag)}" for flag in flags)


def resolve_projection(cfg: SearchConfig, space: SearchSpace) -> Projection:
    """The search run and checkpoint a projection command projects, its configuration and its
    folder (named after its settings, inside the search run's folder). A search that has not
    finished (still running, or stopped before its last epoch) is projected only as it is: the
    projection would otherwise train the rest of the search itself, beside the search's own run."""
    search = search_folder(cfg, space)
    result = read_result(search)
    unfinished = _unfinished(search, result)
    epoch, epoch_from = _supernet_epoch(cfg, search, result, unfinished)
    cfg, taken = _from_search_run(cfg, space, search, epoch, result)
    if cfg.epochs > epoch:  # the projection would train the supernet up to --epochs first
        _check_trainable(cfg, search, result, epoch, unfinished)
    return Projection(cfg, search, epoch, taken, search / space.layout.projection_name(cfg, epoch), epoch_from)


@dataclass(frozen=True)
class Unfinished:
    """A search run that has not finished: what it is doing, and what to do about it."""

    state: str   # the end of a sentence that starts with the run's folder
    todo: str


def _unfinished(search: Path, result: dict[str, Any]) -> Unfinished | None:
    """How the search run in `search` has not finished; None if it has, or if it records nothing
    (a run of the original code)."""
    status, process = observed_status(search, result)
    if not result or status == "finished":
        return None
    wait = "project it once it has finished"
    if status == RUNNING:
        if process == "no process record":  # a run of a version that kept none
            return Unfinished("says it is running and keeps no process record, so it may still run", wait)
        return Unfinished(f"is still running ({process})", wait)
    stopped = {STOPPED: f"stopped before its last epoch ({process})",
               INTERRUPTED: f"was interrupted by {result.get('signal', 'a signal')} before its last epoch",
               "failed": f"failed before its last epoch ({str(result.get('error', ''))[:120]})"}
    return Unfinished(stopped.get(str(status), f"has not finished (status {status})"),
                      f"continue it (its search command with --resume_epoch -1) and {wait}")


def _supernet_epoch(cfg: SearchConfig, search: Path, result: dict[str, Any],
                    unfinished: Unfinished | None) -> tuple[int, str]:
    """The epoch of the search checkpoint to project, and where it came from: --resume_epoch, or
    by default the search run's last epoch (its result.json), else its latest checkpoint."""
    available = checkpoint_epochs(search)
    if not available:
        state = f"{unfinished.state} and" if unfinished else "holds no checkpoint_*.pth.tar:"
        raise ConfigError("resume_expid", _expid(cfg, search), f"the search run {search} {state} has written no "
                                                               f"search checkpoint; project it once it has one")
    if cfg.run.resume_epoch == -1:
        return available[-1], "the latest checkpoint (--resume_epoch -1)"
    if cfg.run.resume_epoch > 0:
        return resolve_epoch(search, cfg.run.resume_epoch), "given"
    last = result.get("epochs_done", result.get("epochs")) if unfinished is None else None
    if last is None:
        return available[-1], ("the search run's latest checkpoint" if result else
                               "the latest checkpoint, as the search run has no result.json")
    if last not in available:
        raise ConfigError("resume_expid", _expid(cfg, search),
                          f"the search run's last epoch is {last} (its result.json), but {search} holds no "
                          f"{checkpoint_path(search, last).name} (epochs: {_epoch_list(available)}); pass "
                          f"--resume_epoch N to project another")
    return last, "the search run's last, from its result.json"


def _check_trainable(cfg: SearchConfig, search: Path, result: dict[str, Any], epoch: int,
                     unfinished: Unfinished | None) -> None:
    """A projection that first trains the supernet from `epoch` up to --epochs (the original's
    behaviour) needs a search run known to have finished: an unfinished one is continued by its
    own command, or projected as it is; one without result.json only when asked explicitly."""
    as_is = f"--resume_epoch {epoch} --epochs {epoch} to project checkpoint {epoch} as it is"
    epochs = _epoch_list(checkpoint_epochs(search))
    if unfinished is not None:
        raise ConfigError("resume_expid", _expid(cfg, search),
                          f"the search run {search} {unfinished.state}: it has checkpoints of epochs {epochs} of its "
                          f"{result.get('epochs', '?')}, and projecting checkpoint {epoch} would train the rest of "
                          f"the search in the projection's folder; {unfinished.todo}, or pass {as_is}")
    if not result and cfg.run.resume_epoch == 0 and "epochs" in cfg.from_search_run:
        raise ConfigError("resume_expid", _expid(cfg, search),
                          f"{search} has no result.json (a search of the original code?), so its last epoch is "
                          f"not known: its latest checkpoint is epoch {epoch} (of {epochs}) and --epochs is "
                          f"{cfg.epochs} (the default); pass {as_is}, or --resume_epoch {epoch} to train it up to "
                          f"--epochs {cfg.epochs} first, as the original's projection")


def _expid(cfg: SearchConfig, search: Path) -> str:
    return cfg.projection.resume_expid or search.name


def _epoch_list(epochs: list[int]) -> str:
    """'10, 20, 30', or '1, 2, 3, ..., 39, 40' for a long list."""
    shown = [*map(str, epochs[:3]), "...", *map(str, epochs[-2:])] if len(epochs) > 6 else map(str, epochs)
    return ", ".join(shown) or "none"


def search_folder(cfg: SearchConfig, space: SearchSpace) -> Path:
    """The search run's folder: --resume_expid as a path, or as a folder name in the space's
    experiments folder (that of any dataset when --dataset is left out, --dataset's first);
    by default the folder of the matching search script's run with the same seed."""
    expid = cfg.projection.resume_expid
    if not expid:
        run = dataclasses.replace(cfg.run, save=cfg.run.save.replace("-proj", ""), expid_tag="")
        expid = space.layout.search_name(dataclasses.replace(cfg, run=run))
    path = Path(expid).expanduser()
    if os.sep in expid or path.is_absolute():  # a path, relative to the working directory
        if not path.is_dir():
            raise ConfigError("resume_expid", expid, f"folder {path.resolve()} does not exist; pass a search run's "
                                                     f"folder: a path, or its name in {space.layout.space_dir(cfg)}")
        return path.resolve()
    roots = [space.layout.space_dir(cfg)]
    if "dataset" in cfg.from_search_run:
        roots += [space.layout.space_dir(with_flags(cfg, {"dataset": d})) for d in DATASETS]
    found = [root / expid for root in dict.fromkeys(roots) if (root / expid).is_dir()]
    if not found:
        raise _missing_search(expid, roots[0])
    return found[0]


def _missing_search(expid: str, root: Path) -> ConfigError:
    runs = sorted(p.name for p in root.iterdir() if p.is_dir() and checkpoint_epochs(p)) if root.is_dir() else []
    close = difflib.get_close_matches(expid, runs, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(close)}?"
    elif runs:
        hint = f"the search runs there: {', '.join(runs[:10])}{' ...' if len(runs) > 10 else ''}"
    else:
        hint = f"{root} holds no search run"
    return ConfigError("resume_expid", expid, f"folder {root / expid} does not exist; {hint} "
                                              f"(--resume_expid also takes the search folder's path)")


def _from_search_run(cfg: SearchConfig, space: SearchSpace, search: Path, epoch: int,
                     result: dict[str, Any]) -> tuple[SearchConfig, dict[str, Any]]:
    """`cfg` with each flag the search run records (its result.json) and the command left out
    set to the search run's value; a flag the command gives must agree with it, except --epochs,
    the search-epoch target. Runs that record none (older ones, the original code's) keep the
    flags' values: a checkpoint that does not fit them is refused when loaded."""
    searched = result.get("space")
    if searched is not None and searched not in space.report.labels:
        raise ConfigError("resume_expid", cfg.projection.resume_expid or search.name,
                          f"{search} holds a supernet of space {searched}; project it with that space's script")
    trained_by = result.get("method")
    if trained_by is not None and trained_by != cfg.method:  # its weights, steps and checkpoint
        raise ConfigError("method", cfg.method_name,
                          f"the supernet in {search} was trained with --method {trained_by}: project it with "
                          f"--method {trained_by}-proj (its exp_scripts/*-proj-{space.layout.scripts}.sh script), "
                          f"which tunes and scores it as {trained_by} does")
    taken: dict[str, Any] = {}
    for flag in cfg.search_run_flags:
        if flag not in result:
            continue
        if flag in cfg.from_search_run:
            taken[flag] = result[flag]
        elif flag != "epochs" and flag_value(cfg, flag) != result[flag]:
            raise ConfigError(flag, flag_value(cfg, flag), f"the supernet in {search} was searched with --{flag} "
                                                           f"{result[flag]}; leave --{flag} out to take it from there")
    values = dict(taken)  # --epochs from the search run: its own length, up to which an earlier checkpoint trains
    if cfg.epochs < epoch and "epochs" not in taken:
        if "epochs" not in cfg.from_search_run:
            raise ConfigError("epochs", cfg.epochs, f"below the supernet checkpoint's epoch {epoch}; pass --epochs "
                                                    f"{epoch} to project it as it is, or more to train it on first")
        values["epochs"] = epoch  # a run that records no epochs, searched longer than the default
    return with_flags(cfg, values), taken


def _plan_line(p: Projection, target: Target) -> str:
    """What a projection will do, as its first log line."""
    checkpoint = checkpoint_path(p.search, p.epoch)
    if target.projection is not None:
        return f"continuing the projection {p.folder} of {checkpoint} from its {target.projection.name}"
    epochs, took = p.cfg.epochs, f"search epoch {p.epoch}: {p.epoch_from}"
    source = ("the search run's" if "epochs" in p.taken else
              "the search run records none" if "epochs" in p.cfg.from_search_run else "given")
    if epochs <= p.epoch:
        return f"projecting {checkpoint} as it is ({took}; --epochs {epochs}: {source})"
    return (f"projecting {checkpoint} ({took}) after training the supernet {epochs - p.epoch} more search epochs, "
            f"up to --epochs {epochs} ({source}); pass --epochs {p.epoch} to project it as it is")


def _projection_resume(cfg: SearchConfig, folder: Path) -> Path | None:
    """An interrupted projection continues from its latest checkpoint (a mid-epoch one
    included); a finished one is kept."""
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
        return checkpoint_path(folder, wanted)
    return latest_checkpoint(folder)


def _status(folder: Path) -> str | None:
    return read_result(folder).get("status")


def _search_time(search_folder: Path, state: dict) -> float | None:
    if "search_time" in state:
        return round(float(state["search_time"]), 1)
    return read_result(search_folder).get("search_time_s")


