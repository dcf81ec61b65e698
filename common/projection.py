"""Perturbation-based architecture selection (the paper's contribution), shared by both spaces.

An op is chosen on an edge by masking each candidate in turn (its mixing weight set to 0,
nothing renormalised) and keeping the one whose removal hurts the supernet most; a node's
inputs are chosen by dropping, one at a time, the edge whose removal hurts least. Between
projections the supernet is tuned, with projected weights, for `--proj_intv` epochs.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .checkpoint import checkpoint_epochs, checkpoint_path, prune_checkpoints, save_checkpoint
from .config import CRITERIA, PROXY_CRITERIA, ProjectionConfig
from .data import SCORE
from .experiment import LOGGER, Board, Timer, append_jsonl, truncate_history, write_json
from .method import EVAL, GENOTYPE
from .progress import Clock, time_left
from .proxies import proxy_score
from .search import epoch_report, load_search_checkpoint, log_test_freq
from .space import Plan, Score, Space
from .trainer import Trainer

log = logging.getLogger(LOGGER)


class Scorer:
    """Scoring passes over the alpha half (at --proj_batch_size), in train mode: each over the whole
    half with its own data key or, with --proj_batches N, all over the same first N batches of one
    key per projection round; a zero-cost proxy (`proxy`) scores one batch unless N says more.
    Each pass logs what it masked, its result, and, given the round's number of passes (`total`,
    from the plan), how many remain and when the round ends. In several processes each scores its
    shard of every batch and the accuracies and losses are summed over the processes
    (Trainer.evaluate), so all take the same decision."""

    def __init__(self, trainer: Trainer, epoch: int, total: int = 0, clock: Clock = time.monotonic) -> None:
        self.trainer, self.epoch, self.passes, self.total = trainer, epoch, 0, total
        self.clock, self.started = clock, clock()
        self.limit = trainer.cfg.projection.proj_batches
        self._proxy_batches: list[tuple[Tensor, Tensor]] | None = None

    def _cutout_prob(self) -> float:
        data = self.trainer.cfg.data
        return data.cutout_prob if data.cutout else 0.0

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        t = self.trainer
        self.passes += 1
        batches, key = t.data.score, (SCORE, self.epoch, self.passes)
        if self.limit:  # the same first batches for every op of the round
            batches, key = batches.with_limit(self.limit), (SCORE, self.epoch, 0)
        acc, loss = t.evaluate(batches, key, self._without(kind, edge, op), t.arch.masked_active(kind, edge, op),
                               train_mode=True, cutout_prob=self._cutout_prob())
        log.info("  scoring pass %s: %s masked: valid_acc %.4f valid_loss %.4f | %s", self._count(),
                 _masked(t.space, kind, edge, op), acc, loss, self._pace())
        return acc, loss

    def proxy(self, name: str, kind: str, edge: int, op: int | None) -> float:
        """Zero-cost proxy `name` of the supernet with that op (edge) removed (common/proxies.py)."""
        t = self.trainer
        self.passes += 1
        if self._proxy_batches is None:  # drawn once: every op of the round sees the same images
            batches = t.data.score.with_limit(self.limit or 1)
            self._proxy_batches = list(batches((SCORE, self.epoch, 0), self._cutout_prob()))
        value = proxy_score(name, t.model, self._without(kind, edge, op), t.arch.masked_active(kind, edge, op),
                            self._proxy_batches)
        log.info("  scoring pass %s: %s masked: %s %.6g | %s", self._count(), _masked(t.space, kind, edge, op),
                 name, value, self._pace())
        return value

    def _without(self, kind: str, edge: int, op: int | None) -> dict[str, Tensor]:
        """The method's evaluation mixing weights with that op (edge) removed."""
        with torch.no_grad():
            return self.trainer.arch.masked(kind, edge, op, self.trainer.weights(EVAL))

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


def _value(score: Score, crit: str, kind: str, edge: int, op: int | None) -> float:
    """The criterion of the supernet with the op (edge) removed; lower means it hurt more
    (the loss is negated)."""
    if crit in PROXY_CRITERIA:
        return score.proxy(crit, kind, edge, op)
    if crit not in CRITERIA:
        raise ValueError(f"projection criterion must be one of {CRITERIA}, not '{crit}'")
    acc, loss = score(kind, edge, op)
    return acc if crit == "acc" else -loss


def select_op(score: Score, kind: str, edge: int, n_ops: int, crit: str) -> int:
    """The op whose removal hurts the supernet most (first one on ties; a nan score, which a
    zero-cost proxy may give, never wins over a number)."""
    best, extreme = 0, math.nan
    for op in range(n_ops):
        c = _value(score, crit, kind, edge, op)
        if not math.isnan(c) and (math.isnan(extreme) or c < extreme):
            best, extreme = op, c
    return best


def select_edges(score: Score, kind: str, edges: Sequence[int], crit: str, keep: int = 2) -> list[int]:
    """Drop, one at a time, the edge whose removal hurts least (the last one on ties; a nan
    score is dropped only after every number), until `keep` remain."""
    remaining = list(edges)
    while len(remaining) > keep:
        weakest, extreme = remaining[0], math.nan
        for e in remaining:
            c = _value(score, crit, kind, e, None)
            if c >= extreme or math.isnan(extreme):
                weakest, extreme = e, c
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
    """Project at the plan's projection epochs, tune in between (one epoch per tuning epoch); a
    plan that does not tune (zero-cost proxies) runs its rounds back to back, --proj_pool times.
    Process 0 writes, the others project and tune along."""
    cfg, space, group = trainer.cfg, trainer.space, trainer.group
    start, rounds, timer = 0, 0, Timer()
    if resume_from is not None:
        start, rounds, timer = _load(trainer, folder, resume_from)
        log.info("resumed projection at tuning epoch %d (%d projections done)", start, rounds)
    proj = cfg.projection
    result.update(proj_crit=plan.criterion, proj_batches=proj.proj_batches)
    if proj.proj_pool > 1:
        result.update(proj_pool=proj.proj_pool, proj_pool_batches=proj.proj_pool_batches)
    group.on_main(lambda: write_json(folder / "result.json", {**result, "status": "running"}))
    if plan.tunes:
        log_test_freq(trainer, tuning=True)
    else:
        log.info("zero-cost criteria only (%s): no tuning between projections", plan.criterion)
    if proj.proj_pool > 1 and start < plan.tune_epochs:
        rounds, result["pool"] = _project_pool(trainer, plan, proj.proj_pool, proj.proj_pool_batches)
    else:
        rounds = _project_and_tune(trainer, folder, plan, board, start, rounds, timer)
    if start < plan.tune_epochs:  # the tuned, fully projected supernet
        _save(trainer, folder, plan.tune_epochs, rounds, timer)
    genotype = space.genotype(trainer.weights(GENOTYPE))
    result.update(status="finished", genotype=space.genotype_str(genotype), benchmark=space.query(genotype),
                  projection_time_s=round(timer.elapsed(), 1))
    group.on_main(lambda: _write_result(space, folder, genotype, result))
    log.info("projection finished: genotype = %s", result["genotype"])
    return result


def _project_and_tune(trainer: Trainer, folder: Path, plan: Plan, board: Board, start: int, rounds: int,
                      timer: Timer) -> int:
    """The projection rounds from tuning epoch `start` on, a checkpoint before each; the rounds done."""
    cfg, space = trainer.cfg, trainer.space
    cutout_prob = cfg.data.cutout_prob if cfg.data.cutout else 0.0
    progress = trainer.progress(plan.tune_epochs, start)
    n_rounds = sum(map(plan.is_projection_epoch, range(plan.tune_epochs)))
    for epoch in range(start, plan.tune_epochs):
        if plan.tunes:
            log.info("tuning epoch %d of %d%s", epoch, plan.tune_epochs,
                     trainer.method.start_epoch(epoch, plan.tune_epochs, tuning=True))
        if plan.is_projection_epoch(epoch):
            _save(trainer, folder, epoch, rounds, timer)
            stage = plan.stage(rounds)
            passes = plan.passes(stage, epoch)
            log.info("projection %d of %d (%s): %s scoring passes", rounds + 1, n_rounds, stage, passes or "?")
            plan.project(Scorer(trainer, epoch, passes), stage, rounds)
            rounds += 1
            log.info("genotype after projection %d = %s", rounds,
                     space.genotype_str(space.genotype(trainer.weights(GENOTYPE))))
        if not plan.tunes:
            continue
        train_acc, train_loss = trainer.train_epoch(epoch, train_alpha=trainer.method.trains_alpha, tuning=True,
                                                    cutout_prob=cutout_prob, progress=progress)
        row = epoch_report(trainer, epoch, board, {"train_acc": train_acc, "train_loss": train_loss,
                                                   "projections": rounds}, tuning=True)
        trainer.group.on_main(functools.partial(append_jsonl, folder / "history.jsonl", row))
    return rounds


def _project_pool(trainer: Trainer, plan: Plan, size: int, n_batches: int) -> tuple[int, list[dict[str, Any]]]:
    """Zero-Cost-PT's pool: `size` untuned projections of the supernet, member p drawing its edges
    as a projection whose epochs are numbered from p * tune_epochs (member 0 is the single
    projection), then the distinct candidates scored by the plan's first criterion on the
    supernet they project to, over the first `n_batches` batches of the alpha half; the best is
    kept. Returns the rounds of one projection and the candidates with their scores."""
    arch, space = trainer.arch, trainer.space
    initial = copy.deepcopy(arch.projection_state())
    candidates: dict[str, dict] = {}
    rounds = 0
    for member in range(size):
        arch.load_projection_state(initial)
        rounds = 0
        for epoch in range(plan.tune_epochs):
            if plan.is_projection_epoch(epoch):
                plan.project(Scorer(trainer, epoch + member * plan.tune_epochs), plan.stage(rounds), rounds)
                rounds += 1
        genotype = space.genotype_str(space.genotype(trainer.weights(GENOTYPE)))
        log.info("pool member %d: %s", member, genotype)
        candidates.setdefault(genotype, copy.deepcopy(arch.projection_state()))
    crit = next(iter(plan.criteria.values()))
    values = []
    for genotype, state in candidates.items():
        arch.load_projection_state(state)
        values.append(candidate_score(trainer, crit, n_batches))
        log.info("pool candidate %s: %s %.6g", genotype, crit, values[-1])
    best = int(np.nanargmax(values)) if not all(map(math.isnan, values)) else 0
    arch.load_projection_state(list(candidates.values())[best])
    scored = [{"genotype": g, crit: v} for g, v in zip(candidates, values)]
    return rounds, scored


def candidate_score(trainer: Trainer, crit: str, n_batches: int) -> float:
    """Zero-cost proxy `crit` of the supernet as projected, over the first `n_batches` batches of
    the alpha half (the same for every candidate)."""
    data = trainer.cfg.data
    batches = trainer.data.score.with_limit(n_batches)((SCORE, -1), data.cutout_prob if data.cutout else 0.0)
    with torch.no_grad():
        weights = trainer.weights(EVAL)
    return proxy_score(crit, trainer.model, weights, trainer.arch.active(), batches)


def selection_suffix(proj: ProjectionConfig) -> str:
    """Projection folder-name suffix of the selection settings that differ from the default
    (-b4: --proj_batches 4; -pool10: --proj_pool 10), so that such runs sit apart."""
    return (f"-b{proj.proj_batches}" if proj.proj_batches else "") + (f"-pool{proj.proj_pool}" if proj.proj_pool > 1
                                                                      else "")


def latest_projection_epoch(folder: Path) -> int | None:
    epochs = checkpoint_epochs(folder)
    return epochs[-1] if epochs else None


def _write_result(space: Space, folder: Path, genotype: Any, result: dict[str, Any]) -> None:
    if space.finalize is not None:
        space.finalize(folder, genotype, result)
    write_json(folder / "result.json", result)


def _save(trainer: Trainer, folder: Path, epoch: int, rounds: int, timer: Timer) -> None:
    rngs = trainer.group.rng_states(trainer.device)  # every process's (a collective); None but on process 0
    trainer.group.on_main(lambda: _write_checkpoint(
        {"epoch": epoch, "projections": rounds, **trainer.state(), "projection": trainer.arch.projection_state(),
         **(rngs or {}), "projection_time": timer.elapsed()}, folder, epoch, trainer.cfg.run.ckpt_keep_every))


def _write_checkpoint(state: dict[str, Any], folder: Path, epoch: int, keep_every: int) -> None:
    save_checkpoint(state, checkpoint_path(folder, epoch))
    prune_checkpoints(folder, keep_every, epoch)


def _load(trainer: Trainer, folder: Path, epoch: int) -> tuple[int, int, Timer]:
    state = load_search_checkpoint(trainer, checkpoint_path(folder, epoch), resume=True)
    trainer.arch.load_projection_state(state["projection"])
    trainer.group.on_main(lambda: truncate_history(folder / "history.jsonl", epoch))
    return int(state["epoch"]), int(state["projections"]), Timer(float(state["projection_time"]))
