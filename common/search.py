"""Supernet training (the search phase), shared by both spaces: epochs, logs, checkpoints."""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    partial_path,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
    split_model_state,
)
from .config import ConfigError, SearchConfig, flag_value
from .data import EVAL_TEST, EVAL_VALID
from .experiment import LOGGER, Board, Timer, append_jsonl, truncate_history, write_json
from .method import GENOTYPE, Method
from .metrics import Midway, Stats
from .runstate import deferred, stop_point, stoppable
from .space import Space
from .trainer import Trainer

log = logging.getLogger(LOGGER)

Scheduler = torch.optim.lr_scheduler.CosineAnnealingLR
SUPERNET = "supernet"  # checkpoints of the search epochs a projection runs first, in its folder


def scheduler_for(trainer: Trainer) -> Scheduler:
    """The search's learning-rate schedule: cosine from --learning_rate to --learning_rate_min."""
    cfg = trainer.cfg
    # float T_max, as the original: its checkpoints' scheduler states hold a float
    return Scheduler(trainer.w_opt, float(cfg.epochs), eta_min=cfg.optim.learning_rate_min)  # type: ignore[arg-type]


def load_search_checkpoint(trainer: Trainer, path: Path, scheduler: Scheduler | None = None,
                           with_optimizers: bool = True, resume: bool = False) -> dict[str, Any]:
    """Load weights, alpha, optimizers (and scheduler) from a search checkpoint; one that
    this run continues (`resume`) must be resumable (`check_resumable`).

    Accepts checkpoints written by the original DARTS-PT code (same keys, no RNG state).
    """
    state = load_checkpoint(path)
    if resume:
        check_resumable(trainer, state, path)
    sd, inner_alpha = split_model_state(state, ("_arch_parameters", "alphas_normal", "alphas_reduce"))
    try:
        trainer.method.load_state(state.get("method_state", {}))  # first: it may change the supernet (DrNAS' stages)
        trainer.model.load_state_dict(sd)
        alpha = state.get("alpha", inner_alpha)
        if alpha is None:
            raise CheckpointError(f"{path} holds no alpha")
        trainer.arch.load_alpha_list(list(alpha) if isinstance(alpha, (list, tuple)) else [alpha])
        if with_optimizers:  # the run continues: its weights' gradient tensors too
            trainer.w_opt.load_state_dict(state["optimizer"])
            trainer.restore_grads(state.get("grads", []))
            if "alpha_grads" in state and trainer.method.accumulates_alpha_grad:
                trainer.restore_alpha_grads(state["alpha_grads"])
        if "arch_optimizer" in state:
            trainer.a_opt.load_state_dict(state["arch_optimizer"])
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as e:
        # torch lists every missing and unexpected key: hundreds of lines for a wrong size
        why = " ".join(line.strip() for line in str(e).splitlines()[:2])
        why = why if len(why) <= 200 else why[:200] + " ..."
        flags = " ".join(f"--{flag}" for flag in trainer.cfg.search_run_flags
                         if flag not in ("epochs", "unrolled"))  # those two never change the supernet
        raise CheckpointError(f"{path} does not fit this supernet; pass the search's {flags} ({why})") from e
    rng = trainer.group.process_rng(state)
    if rng is not None:
        set_rng_state(rng, trainer.device)
    return state


def check_resumable(trainer: Trainer, state: dict[str, Any], path: Path) -> None:
    """A checkpoint this run continues must come from a run of as many processes, and a
    mid-epoch one from a run of this batch size (its steps are of batches of that size)."""
    trainer.group.check_nproc(state, path)
    batch_size = int(state.get("batch_size", trainer.cfg.data.batch_size))
    if state.get("step") and batch_size != trainer.cfg.data.batch_size:
        raise ConfigError("batch_size", trainer.cfg.data.batch_size,
                          f"{path} stopped in the middle of an epoch of batches of {batch_size}: pass "
                          f"--batch_size {batch_size} to resume it")


def load_resumed_search(trainer: Trainer, path: Path, scheduler: Scheduler) -> dict[str, Any]:
    """A search checkpoint to continue the same search from: its schedule must be this one."""
    state = load_search_checkpoint(trainer, path, scheduler, resume=True)
    epochs = trainer.cfg.epochs
    if scheduler.T_max != epochs:  # the loaded scheduler would silently keep its own length
        raise CheckpointError(f"--epochs {epochs}: the checkpoint {path.name} was trained for "
                              f"--epochs {scheduler.T_max:g}; resume it with the same --epochs")
    return state


def resume_point(trainer: Trainer, state: dict[str, Any]) -> tuple[int, Midway]:
    """Where a loaded checkpoint continues: its epoch, and the step and running statistics of
    that epoch a mid-epoch one (checkpoint_partial) reached."""
    midway = Midway(Stats(trainer.device), int(state.get("step", 0)))
    if midway.step:
        midway.stats.load(trainer.group.own(state, "stats"))
    return int(state["epoch"]), midway


def run_search(trainer: Trainer, scheduler: Scheduler, folder: Path, state: dict[str, Any] | None,
               board: Board) -> dict[str, Any]:
    """Train the supernet (from `state`, a loaded checkpoint, if resuming), then report the
    magnitude-based genotype in result.json (process 0 writes; the others train along)."""
    cfg, space, group = trainer.cfg, trainer.space, trainer.group
    start, timer, midway = 0, Timer(), None
    if state is not None:
        (start, midway), timer = resume_point(trainer, state), Timer(float(state.get("search_time", 0.0)))
        group.on_main(lambda: truncate_history(folder / "history.jsonl", start))
        log.info("resumed from epoch %d%s", start, f" step {midway.step}" if midway.step else "")
    result = result_base(trainer, "running")
    group.on_main(lambda: write_json(folder / "result.json", result))
    search_epochs(trainer, scheduler, start, timer, folder, board, midway=midway)
    genotype = space.genotype(trainer.weights(GENOTYPE))
    result.update(status="finished", epochs_done=cfg.epochs, genotype=space.genotype_str(genotype),
                  benchmark=space.query(genotype), search_time_s=round(timer.elapsed(), 1))
    group.on_main(lambda: write_json(folder / "result.json", result))
    log.info("search finished: genotype = %s", result["genotype"])
    return result


def search_epochs(trainer: Trainer, scheduler: Scheduler, start: int, timer: Timer, folder: Path, board: Board,
                  prefix: str = "checkpoint", history: str = "history.jsonl", midway: Midway | None = None) -> None:
    """Supernet training from epoch `start` (from `midway` in it) to --epochs, a checkpoint
    `{prefix}_{epoch}.pth.tar` every --ckpt_interval epochs and at the end. A signal stops it at
    the next step or epoch end, saved there (`{prefix}_partial.pth.tar`) unless a checkpoint is."""
    cfg, method, device = trainer.cfg, trainer.method, trainer.device
    log_test_freq(trainer, tuning=False)
    write = functools.partial(_write_partial, trainer, scheduler, timer, partial_path(folder, prefix))
    first = midway or Midway(Stats(device))
    progress = trainer.progress(cfg.epochs, start + (first.step / len(trainer.data.train) if first.step else 0))
    with deferred():
        for epoch in range(start, cfg.epochs):
            schedule = method.start_epoch(epoch, cfg.epochs, tuning=False)
            lr = trainer.w_opt.param_groups[0]["lr"]  # the scheduler's, unless the method's schedule set it (DrNAS)
            cutout_prob = cfg.cutout_prob(epoch) if cfg.cutout_length else 0.0
            log.info("epoch %d lr %e%s%s", epoch, lr, f" cutout_prob {cutout_prob:e}" if cfg.cutout_length else "",
                     schedule)
            at = first if epoch == start else Midway(Stats(device))
            train_acc, train_loss = trainer.train_epoch(epoch, train_alpha=method.trains_alpha,
                                                        cutout_prob=cutout_prob, progress=progress,
                                                        midway=Midway(at.stats, at.step, write))
            with stoppable(trainer.group, device, functools.partial(save_trained, trainer, write, epoch, at.stats)):
                row = epoch_report(trainer, epoch, board, {"train_acc": train_acc, "train_loss": train_loss,
                                                           "lr": lr})
            scheduler.step()  # after the report, which a signal may stop: the epoch's steps left it as it is
            checkpoint = None
            if checkpoints_at(cfg, epoch):
                rngs = trainer.group.rng_states(trainer.device)  # every process's (a collective); None but on process 0
                checkpoint = rngs and {"epoch": epoch + 1, **trainer.state(), "scheduler": scheduler.state_dict(),
                                       **rngs, "search_time": timer.elapsed()}
            trainer.group.on_main(functools.partial(_write_epoch, folder, history, row, checkpoint, epoch + 1, prefix,
                                                    cfg.run.ckpt_keep_every))
            stop_point(trainer.group, functools.partial(_save_epoch_end, trainer, write, epoch,
                                                        checkpoints_at(cfg, epoch)))


def _write_partial(trainer: Trainer, scheduler: Scheduler, timer: Timer, path: Path, epoch: int, step: int,
                   stats: Stats) -> None:
    """The checkpoint of epoch `epoch` at step `step` (a collective: every process gives its RNG
    states and running statistics; process 0 writes)."""
    group = trainer.group
    rngs, per_process = group.rng_states(trainer.device), group.per_process("stats", stats.state())
    group.on_main(lambda: save_checkpoint(
        {"epoch": epoch, "step": step, **trainer.state(), "scheduler": scheduler.state_dict(), **(rngs or {}),
         **(per_process or {}), "batch_size": trainer.cfg.data.batch_size, "search_time": timer.elapsed()}, path))


def save_trained(trainer: Trainer, write: Callable[[int, int, Stats], None], epoch: int, stats: Stats) -> str:
    """What a signal during epoch `epoch`'s report saves: the epoch past its last step."""
    write(epoch, len(trainer.data.train), stats)
    return f"the end of epoch {epoch}'s training steps"


def _save_epoch_end(trainer: Trainer, write: Callable[[int, int, Stats], None], epoch: int,
                    checkpointed: bool) -> str:
    """What a stop point at the end of epoch `epoch` saves: nothing more after its checkpoint,
    else the start of the next epoch (a mid-epoch checkpoint at its step 0)."""
    if not checkpointed:
        write(epoch + 1, 0, Stats(trainer.device))
    return f"the end of epoch {epoch}"


def _write_epoch(folder: Path, history: str, row: dict[str, Any], checkpoint: dict[str, Any] | None, epoch: int,
                 prefix: str, keep_every: int) -> None:
    """An epoch's history row, and its checkpoint `{prefix}_{epoch}` if it writes one (then the
    checkpoints --ckpt_keep_every does not keep go, and the older mid-epoch one)."""
    append_jsonl(folder / history, row)
    if checkpoint is not None:
        save_checkpoint(checkpoint, checkpoint_path(folder, epoch, prefix))
        partial_path(folder, prefix).unlink(missing_ok=True)
        prune_checkpoints(folder, keep_every, epoch, prefix)


def checkpoints_at(cfg: SearchConfig, epoch: int) -> bool:
    """Whether search epoch `epoch` ends with a checkpoint: every --ckpt_interval and the last."""
    return (epoch + 1) % cfg.run.ckpt_interval == 0 or epoch + 1 == cfg.epochs


def continue_search(trainer: Trainer, scheduler: Scheduler, state: dict[str, Any], folder: Path,
                    board: Board) -> bool:
    """Train a supernet loaded from a checkpoint (`state`) up to --epochs, as the original's
    projection command does before it projects; whether there was anything to train.

    The epochs run with the search's learning rate and the checkpoint's schedule, log to
    `search_history.jsonl` and write `supernet_{epoch}.pth.tar` into the projection folder, so
    an interrupted run continues from the latest of those.
    """
    epochs, (start, midway) = trainer.cfg.epochs, resume_point(trainer, state)
    if start >= epochs:
        return False
    log.info("the supernet checkpoint is from search epoch %d%s: %d more search epochs run before projecting, "
             "up to --epochs %d (pass --epochs %d to project it as it is)", start,
             f" step {midway.step}" if midway.step else "", epochs - start, epochs, start)
    trainer.group.on_main(lambda: truncate_history(folder / "search_history.jsonl", start))
    search_epochs(trainer, scheduler, start, Timer(float(state.get("search_time", 0.0))), folder, board,
                  prefix=SUPERNET, history="search_history.jsonl", midway=midway)
    return True


def epoch_report(trainer: Trainer, epoch: int, board: Board, row: dict[str, Any],
                 tuning: bool = False) -> dict[str, Any]:
    """Evaluate, log, query the benchmark and write TensorBoard for one finished epoch."""
    space, data = trainer.space, trainer.data
    valid_acc, valid_loss = trainer.evaluate(data.valid, (EVAL_VALID, epoch, int(tuning)))
    row.update(epoch=epoch, valid_acc=valid_acc, valid_loss=valid_loss)
    if data.test is not None and tests_at(trainer, epoch, tuning):
        row["test_acc"], row["test_loss"] = trainer.evaluate(data.test, (EVAL_TEST,))
    genotype = space.genotype(trainer.weights(GENOTYPE))
    row["genotype"] = space.genotype_str(genotype)
    row["benchmark"] = space.query(genotype)
    log.info("train_acc %.2f valid_acc %.2f%s", row["train_acc"], valid_acc,
             f" test_acc {row['test_acc']:.2f}" if "test_acc" in row else "")
    log.info("genotype = %s", row["genotype"])
    arch = trainer.arch
    softmax = arch.softmax()
    row["softmax"] = _rounded(softmax)
    for kind, w in softmax.items():  # while tuning: in history.jsonl, and in the log at debug level
        log.log(logging.DEBUG if tuning else logging.INFO, "softmax(alpha) %s:\n%s", kind, alpha_table(space, kind, w))
    # What the supernet mixes with: softmax(alpha) but, on an edge projection decided, its
    # projected row (one-hot; zeros for an edge topology projection dropped), as the genotype
    # and the cell diagram have it. Equal to softmax(alpha) while nothing is decided (DARTS).
    weights = trainer.weights(GENOTYPE)
    if tuning:
        row["projected"] = _rounded(weights)
    if row["benchmark"]:
        log.info("benchmark: %s", json.dumps(row["benchmark"]))
    prefix = "tune/" if tuning else ""
    board.scalars({f"{prefix}{k}": v for k, v in row.items() if isinstance(v, float)}, epoch)
    board.scalars({f"{prefix}benchmark/{k}": v for k, v in (row["benchmark"] or {}).items()}, epoch)
    for kind, w in weights.items():
        decided = arch.decided[kind]
        rows = [f"{name} *" if d else name for name, d in zip(space.edge_names, decided)]
        tag = f"{prefix}alpha/{kind}"
        board.heatmap(tag, w, rows, space.op_names[kind], epoch,
                      title=f"{tag}: softmax(alpha)" + (", * projected: as decided" if any(decided) else ""))
    return row


def _rounded(weights: dict[str, torch.Tensor]) -> dict[str, list[list[float]]]:
    return {kind: [[round(v, 5) for v in r] for r in w.detach().cpu().tolist()] for kind, w in weights.items()}


def test_freq(trainer: Trainer, tuning: bool) -> int:
    """Every how many epochs the test set is evaluated (0: never): --eval_freq, or what the
    original did (its DARTS-space search every epoch; its NAS-Bench-201 search and its
    tuning never)."""
    if trainer.cfg.eval_freq >= 0:
        return trainer.cfg.eval_freq
    return int(trainer.space.tests_each_search_epoch and not tuning)


def tests_at(trainer: Trainer, epoch: int, tuning: bool) -> bool:
    freq = test_freq(trainer, tuning)
    return freq > 0 and (epoch + 1) % freq == 0


def log_test_freq(trainer: Trainer, tuning: bool) -> None:
    freq = test_freq(trainer, tuning)
    when = "never" if freq == 0 else "every epoch" if freq == 1 else f"every {freq} epochs"
    log.info("test-set evaluation while %s: %s (%s)", "tuning" if tuning else "searching", when,
             "--eval_freq" if trainer.cfg.eval_freq >= 0 else "as the original; --eval_freq N to change")


def alpha_table(space: Space, kind: str, w: torch.Tensor) -> str:
    """softmax(alpha) of a cell kind as a table: a row per edge, named; a column per op, named
    in a header where every edge has the same ops, else each value after its op's name (S1)."""
    rows = w.detach().cpu().tolist()
    edges = [space.edge_names[e] if e < len(space.edge_names) else str(e) for e in range(len(rows))]
    ops = [[space.op_name(kind, e, o) for o in range(len(r))] for e, r in enumerate(rows)]
    indent = max(map(len, edges), default=0)
    if any(names != ops[0] for names in ops):
        return "\n".join(f"{edge:>{indent}}  " + "  ".join(f"{op} {v:.4f}" for op, v in zip(names, r))
                         for edge, names, r in zip(edges, ops, rows))
    width = [max(len(op), 6) for op in ops[0]]
    header = " " * indent + "".join(f"  {op:>{n}}" for op, n in zip(ops[0], width))
    return "\n".join([header] + [f"{edge:>{indent}}" + "".join(f"  {v:>{n}.4f}" for v, n in zip(r, width))
                                 for edge, r in zip(edges, rows)])


def result_base(trainer: Trainer, status: str) -> dict[str, Any]:
    """The result.json fields every search and projection run has."""
    return {"status": status, **run_identity(trainer.cfg, trainer.space, trainer.method), "epochs": trainer.cfg.epochs}


def run_identity(cfg: SearchConfig, space: Space, method: Method) -> dict[str, Any]:
    """What a search or projection result.json says the run is (what the method says of itself,
    e.g. SDARTS' perturbation, so that reports tell SDARTS-RS and SDARTS-ADV apart; `fast`: a
    --fast smoke run, which reports keep out of their comparisons; the search flags a projection
    reads, `unrolled` among them)."""
    return {"space": space.label, "method": cfg.method_name, "dataset": cfg.data.dataset, "seed": cfg.run.seed,
            "fast": cfg.run.fast, **{flag: flag_value(cfg, flag) for flag in cfg.search_run_flags},
            **method.identity()}
