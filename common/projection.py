"""Perturbation-based architecture selection (the paper's contribution), shared by both spaces.

An op is chosen on an edge by masking each candidate in turn (its mixing weight set to 0,
nothing renormalised) and keeping the one whose removal hurts the supernet most; a node's
inputs are chosen by dropping, one at a time, the edge whose removal hurts least. Between
projections the supernet is tuned, with projected weights, for `--proj_intv` epochs.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import checkpoint_epochs, checkpoint_path, save_checkpoint
from .config import CRITERIA
from .data import SCORE
from .experiment import LOGGER, Board, Timer, append_jsonl, truncate_history, write_json
from .search import epoch_report, load_search_checkpoint, log_test_freq
from .space import Plan, Score, Space
from .trainer import Trainer

log = logging.getLogger(LOGGER)


class Scorer:
    """Scoring passes over the alpha half (at --proj_batch_size), in train mode, each with its
    own data key. In several processes each scores its shard of every batch and the accuracies
    and losses are summed over the processes (Trainer.evaluate), so all take the same decision."""

    def __init__(self, trainer: Trainer, epoch: int) -> None:
        self.trainer, self.epoch, self.passes = trainer, epoch, 0

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        t = self.trainer
        self.passes += 1
        data = t.cfg.data
        acc, loss = t.evaluate(t.data.score, (SCORE, self.epoch, self.passes),
                               t.arch.masked(kind, edge, op), t.arch.masked_active(kind, edge, op),
                               train_mode=True, cutout_prob=data.cutout_prob if data.cutout else 0.0)
        log.info("  mask %s edge %d %s: valid_acc %.4f valid_loss %.4f", kind, edge,
                 "whole edge" if op is None else f"op {op}", acc, loss)
        return acc, loss


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


def random_choice(seed: int, epoch: int, salt: int, options: Sequence[int]) -> int:
    """A random undecided edge or node, drawn from (seed, epoch, salt) so resumes repeat it."""
    rng = np.random.default_rng([seed, epoch, salt])
    return int(options[int(rng.integers(len(options)))])


def run_projection(trainer: Trainer, folder: Path, plan: Plan, board: Board, resume_from: int | None,
                   result: dict[str, Any]) -> dict[str, Any]:
    """Project at the plan's projection epochs, tune in between (one epoch per tuning epoch);
    process 0 writes, the others project and tune along."""
    cfg, space, group = trainer.cfg, trainer.space, trainer.group
    start, rounds, timer = 0, 0, Timer()
    if resume_from is not None:
        start, rounds, timer = _load(trainer, folder, resume_from)
        log.info("resumed projection at tuning epoch %d (%d projections done)", start, rounds)
    group.on_main(lambda: write_json(folder / "result.json", {**result, "status": "running"}))
    cutout_prob = cfg.data.cutout_prob if cfg.data.cutout else 0.0
    log_test_freq(trainer, tuning=True)
    for epoch in range(start, plan.tune_epochs):
        log.info("tuning epoch %d", epoch)
        if plan.is_projection_epoch(epoch):
            _save(trainer, folder, epoch, rounds, timer)
            plan.project(Scorer(trainer, epoch), plan.stage(rounds), rounds)
            rounds += 1
            log.info("genotype after projection %d = %s", rounds,
                     space.genotype_str(space.genotype(trainer.arch.weights())))
        train_acc, train_loss = trainer.train_epoch(epoch, train_alpha=cfg.trains_alpha, tuning=True,
                                                    cutout_prob=cutout_prob, epsilon=space.epsilon_alpha)
        row = epoch_report(trainer, epoch, board, {"train_acc": train_acc, "train_loss": train_loss,
                                                   "projections": rounds}, tuning=True)
        group.on_main(functools.partial(append_jsonl, folder / "history.jsonl", row))
    if start < plan.tune_epochs:  # the tuned, fully projected supernet
        _save(trainer, folder, plan.tune_epochs, rounds, timer)
    genotype = space.genotype(trainer.arch.weights())
    result.update(status="finished", genotype=space.genotype_str(genotype), benchmark=space.query(genotype),
                  projection_time_s=round(timer.elapsed(), 1))
    group.on_main(lambda: _write_result(space, folder, genotype, result))
    log.info("projection finished: genotype = %s", result["genotype"])
    return result


def latest_projection_epoch(folder: Path) -> int | None:
    epochs = checkpoint_epochs(folder)
    return epochs[-1] if epochs else None


def _write_result(space: Space, folder: Path, genotype: Any, result: dict[str, Any]) -> None:
    if space.finalize is not None:
        space.finalize(folder, genotype, result)
    write_json(folder / "result.json", result)


def _save(trainer: Trainer, folder: Path, epoch: int, rounds: int, timer: Timer) -> None:
    rngs = trainer.group.rng_states(trainer.device)  # every process's (a collective); None but on process 0
    trainer.group.on_main(lambda: save_checkpoint(
        {"epoch": epoch, "projections": rounds, **trainer.state(), "projection": trainer.arch.projection_state(),
         **(rngs or {}), "projection_time": timer.elapsed()}, checkpoint_path(folder, epoch)))


def _load(trainer: Trainer, folder: Path, epoch: int) -> tuple[int, int, Timer]:
    state = load_search_checkpoint(trainer, checkpoint_path(folder, epoch), resume=True)
    trainer.arch.load_projection_state(state["projection"])
    trainer.group.on_main(lambda: truncate_history(folder / "history.jsonl", epoch))
    return int(state["epoch"]), int(state["projections"]), Timer(float(state["projection_time"]))
