"""Perturbation-based architecture selection (the paper's contribution), shared by both spaces.

An op is chosen on an edge by masking each candidate in turn (its mixing weight set to 0,
nothing renormalised) and keeping the one whose removal hurts the supernet most; a node's
inputs are chosen by dropping, one at a time, the edge whose removal hurts least. Between
projections the supernet is tuned, with projected weights, for `--proj_intv` epochs.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import checkpoint_epochs, checkpoint_path, prune_checkpoints, rng_state, save_checkpoint
from .config import CRITERIA
from .data import SCORE
from .experiment import LOGGER, Board, Timer, append_jsonl, truncate_history, write_json
from .progress import Clock, run_progress, time_left
from .search import epoch_report, load_search_checkpoint, log_test_freq
from .space import Plan, Score, Space
from .trainer import Trainer

log = logging.getLogger(LOGGER)


class Scorer:
    """Scoring passes over the alpha half (at --proj_batch_size), in train mode, each with its
    own data key. Each pass logs what it masked, its result, and, given the round's number of
    passes (`total`, from the plan), how many remain and when the round ends."""

    def __init__(self, trainer: Trainer, epoch: int, total: int = 0, clock: Clock = time.monotonic) -> None:
        self.trainer, self.epoch, self.passes, self.total = trainer, epoch, 0, total
        self.clock, self.started = clock, clock()

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        t = self.trainer
        self.passes += 1
        data = t.cfg.data
        acc, loss = t.evaluate(t.data.score, (SCORE, self.epoch, self.passes),
                               t.arch.masked(kind, edge, op), t.arch.masked_active(kind, edge, op),
                               train_mode=True, cutout_prob=data.cutout_prob if data.cutout else 0.0)
        log.info("  scoring pass %s: %s masked: valid_acc %.4f valid_loss %.4f | %s", self._count(),
                 _masked(t.space, kind, edge, op), acc, loss, self._pace())
        return acc, loss

    def _count(self) -> str:
        return f"{self.passes} of {self.total}" if self.total else str(self.passes)

    def _pace(self) -> str:
        elapsed = self.clock() - self.started
        pace = f"{elapsed / self.passes:.1f} s/pass"
        if not self.total:
            return pace
        return f"{pace}, {self.total - self.passes} left, ETA {time_left(elapsed, self.passes, self.total)}"


def _masked(space: Space, kind: str, edge: int, op: int | None) -> str:
    """What a scoring pass removes: `cell edge 2 (2<-1) op 3 (nor_conv_3x3)`, `normal edge 3: 1->3`."""
    name = space.edge_names[edge] if edge < len(space.edge_names) else ""
    if not name.startswith(f"{edge}:"):  # the DARTS space's names start with the index, NAS-Bench-201's not
        name = f"{edge} ({name})" if name else str(edge)
    what = f"{kind} edge {name}"
    return what if op is None else f"{what} op {op} ({space.op_name(kind, edge, op)})"


def _crit(stats: tuple[float, float], crit: str) -> float:
    if crit not in CRITERIA:
        raise ValueError(f"projection criterion must be one of {CRITERIA}, not '{crit}'")
    return stats[0] if crit == "acc" else stats[1]


def _hurts_more(a: float, b: float, crit: str) -> bool:
    """Removing something hurts more if accuracy drops lower, or loss rises higher."""
    return a < b if crit == "acc" else a > b


def select_op(score: Score, kind: str, edge: int, n_ops: int, crit: str) -> int:
    """The op whose removal hurts the supernet most (first one on ties)."""
    best, extreme = 0, None
    for op in range(n_ops):
        c = _crit(score(kind, edge, op), crit)
        if extreme is None or _hurts_more(c, extreme, crit):
            best, extreme = op, c
    return best


def select_edges(score: Score, kind: str, edges: Sequence[int], crit: str, keep: int = 2) -> list[int]:
    """Drop, one at a time, the edge whose removal hurts least, until `keep` remain."""
    remaining = list(edges)
    while len(remaining) > keep:
        weakest, extreme = None, None
        for e in remaining:
            c = _crit(score(kind, e, None), crit)
            if extreme is None or not _hurts_more(c, extreme, crit):
                weakest, extreme = e, c
        assert weakest is not None  # `remaining` holds more than `keep` >= 0 edges
        remaining.remove(weakest)
    return remaining


def select_edges_passes(n_edges: int, keep: int = 2) -> int:
    """The scoring passes `select_edges` makes on a node of `n_edges` inputs: every remaining
    edge, once per edge it drops."""
    return sum(range(keep + 1, n_edges + 1))


def random_choice(seed: int, epoch: int, salt: int, options: Sequence[int]) -> int:
    """A random undecided edge or node, drawn from (seed, epoch, salt) so resumes repeat it."""
    rng = np.random.default_rng([seed, epoch, salt])
    return int(options[int(rng.integers(len(options)))])


def run_projection(trainer: Trainer, folder: Path, plan: Plan, board: Board, resume_from: int | None,
                   result: dict[str, Any]) -> dict[str, Any]:
    """Project at the plan's projection epochs, tune in between (one epoch per tuning epoch)."""
    cfg, space = trainer.cfg, trainer.space
    start, rounds, timer = 0, 0, Timer()
    if resume_from is not None:
        start, rounds, timer = _load(trainer, folder, resume_from)
        log.info("resumed projection at tuning epoch %d (%d projections done)", start, rounds)
    write_json(folder / "result.json", {**result, "status": "running"})
    cutout_prob = cfg.data.cutout_prob if cfg.data.cutout else 0.0
    log_test_freq(trainer, tuning=True)
    progress = run_progress(cfg.run, plan.tune_epochs, start)
    n_rounds = sum(map(plan.is_projection_epoch, range(plan.tune_epochs)))
    for epoch in range(start, plan.tune_epochs):
        log.info("tuning epoch %d of %d", epoch, plan.tune_epochs)
        if plan.is_projection_epoch(epoch):
            _save(trainer, folder, epoch, rounds, timer)
            stage = plan.stage(rounds)
            passes = plan.passes(stage, epoch)
            log.info("projection %d of %d (%s): %s scoring passes", rounds + 1, n_rounds, stage, passes or "?")
            plan.project(Scorer(trainer, epoch, passes), stage, rounds)
            rounds += 1
            log.info("genotype after projection %d = %s", rounds,
                     space.genotype_str(space.genotype(trainer.arch.weights())))
        train_acc, train_loss = trainer.train_epoch(epoch, train_alpha=cfg.trains_alpha, tuning=True,
                                                    cutout_prob=cutout_prob, epsilon=space.epsilon_alpha,
                                                    progress=progress)
        row = epoch_report(trainer, epoch, board, {"train_acc": train_acc, "train_loss": train_loss,
                                                   "projections": rounds}, tuning=True)
        append_jsonl(folder / "history.jsonl", row)
    if start < plan.tune_epochs:  # the tuned, fully projected supernet
        _save(trainer, folder, plan.tune_epochs, rounds, timer)
    genotype = space.genotype(trainer.arch.weights())
    result.update(status="finished", genotype=space.genotype_str(genotype), benchmark=space.query(genotype),
                  projection_time_s=round(timer.elapsed(), 1))
    if space.finalize is not None:
        space.finalize(folder, genotype, result)
    write_json(folder / "result.json", result)
    log.info("projection finished: genotype = %s", result["genotype"])
    return result


def latest_projection_epoch(folder: Path) -> int | None:
    epochs = checkpoint_epochs(folder)
    return epochs[-1] if epochs else None


def _save(trainer: Trainer, folder: Path, epoch: int, rounds: int, timer: Timer) -> None:
    save_checkpoint({"epoch": epoch, "projections": rounds, **trainer.state(),
                     "projection": trainer.arch.projection_state(), "rng": rng_state(trainer.device),
                     "projection_time": timer.elapsed()}, checkpoint_path(folder, epoch))
    prune_checkpoints(folder, trainer.cfg.run.ckpt_keep_every, epoch)


def _load(trainer: Trainer, folder: Path, epoch: int) -> tuple[int, int, Timer]:
    state = load_search_checkpoint(trainer, checkpoint_path(folder, epoch))
    trainer.arch.load_projection_state(state["projection"])
    truncate_history(folder / "history.jsonl", epoch)
    return int(state["epoch"]), int(state["projections"]), Timer(float(state["projection_time"]))
