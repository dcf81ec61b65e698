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

from .checkpoint import checkpoint_path, later_checkpoints, partial_path, prune_checkpoints, save_checkpoint
from .config import CRITERIA, PROXY_CRITERIA, ProjectionConfig
from .data import SCORE
from .experiment import LOGGER, Board, Timer, append_jsonl, set_aside, truncate_history, write_json
from .method import EVAL, GENOTYPE
from .metrics import Midway, Stats
from .progress import Clock, time_left
from .proxies import proxy_score
from .runstate import deferred, stop_point, stoppable
from .search import epoch_report, load_search_checkpoint, log_test_freq, resume_point, save_trained
from .space import Plan, Score, Space
from .trainer import Trainer

log = logging.getLogger(LOGGER)


class Scorer:
    """Scoring passes over the alpha half (at --proj_batch_size), in train mode: each over the whole
    half with its own data key or, with --proj_batches N, all over the same first N batches of one
    key per projection round; a zero-cost proxy (`proxy`) scores one batch unless N says more.
    In several processes each scores its shard of every batch and the accuracies and losses are
    summed over the processes (Trainer.evaluate), so all take the same decision.

    The log gets one line per decision with every value it was made on (`close` ends the last
    one), and a pass's own line (what it masked, its result, and, given the round's number of
    passes `total` from the plan, how many remain and when the round ends) only when --report_secs
    seconds have passed since the last such line; else that line is at debug level."""

    def __init__(self, trainer: Trainer, epoch: int, total: int = 0, clock: Clock = time.monotonic) -> None:
        self.trainer, self.epoch, self.passes, self.total = trainer, epoch, 0, total
        self.clock = clock
        self.started = self.last_line = clock()
        self._pace = ""  # seconds per pass and what remains, as of the last pass
        self.every_s = trainer.cfg.run.report_secs
        self.limit = trainer.cfg.projection.proj_batches
        self._proxy_batches: list[tuple[Tensor, Tensor]] | None = None
        # the decision being scored: (kind, edge; None for a node's inputs), what its values measure,
        # and (edge, op, value) per pass
        self._decision: tuple[str, int | None] | None = None
        self._measure = ""
        self._values: list[tuple[int, int | None, str]] = []

    def _cutout_prob(self) -> float:
        data = self.trainer.cfg.data
        return data.cutout_prob if data.cutout else 0.0

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        t = self.trainer
        self.passes += 1
        batches, key = t.data.score, (SCORE, self.epoch, self.passes)
        if self.limit:  # the same first batches for every op of the round
            batches, key = batches.with_limit(self.limit), (SCORE, self.epoch, 0)
        active = t.arch.masked_active(kind, edge, op)
        scores = [t.evaluate(batches, key, w, active, train_mode=True, cutout_prob=self._cutout_prob())
                  for w in self._without(kind, edge, op)]
        acc, loss = (sum(v) / len(scores) for v in zip(*scores))
        self._record(kind, edge, op, "valid_acc/loss", f"{acc:.2f}/{loss:.4f}",
                     f"valid_acc {acc:.4f} valid_loss {loss:.4f}")
        return acc, loss

    def proxy(self, name: str, kind: str, edge: int, op: int | None) -> float:
        """Zero-cost proxy `name` of the supernet with that op (edge) removed (common/proxies.py)."""
        t = self.trainer
        self.passes += 1
        if self._proxy_batches is None:  # drawn once: every op of the round sees the same images
            batches = t.data.score.with_limit(self.limit or 1)
            self._proxy_batches = list(batches((SCORE, self.epoch, 0), self._cutout_prob()))
        values = [proxy_score(name, t.model, w, t.arch.masked_active(kind, edge, op), self._proxy_batches)
                  for w in self._without(kind, edge, op)]
        value = sum(values) / len(values)
        self._record(kind, edge, op, name, f"{value:.6g}", f"{name} {value:.6g}")
        return value

    def _record(self, kind: str, edge: int, op: int | None, measure: str, value: str, detail: str) -> None:
        """Keep a pass's value for its decision's line; log the pass itself (a progress line when
        due, else at debug level)."""
        decision = (kind, None if op is None else edge)
        if decision != self._decision:
            self.close()
            self._decision, self._measure = decision, measure
        self._values.append((edge, op, value))
        now = self.clock()
        self._pace = self._pace_at(now)
        due = 0 < self.every_s <= now - self.last_line
        if due:
            self.last_line = now
        log.log(logging.INFO if due else logging.DEBUG, "  scoring pass %s: %s masked: %s | %s", self._count(),
                _masked(self.trainer.space, kind, edge, op), detail, self._pace)

    def close(self) -> None:
        """Log the decision scored last in one line: each op's (edge's) value without it."""
        if self._decision is None:
            return
        (kind, edge), space = self._decision, self.trainer.space
        if edge is not None:
            where, each = _masked(space, kind, edge, None), "op"
            values = ", ".join(f"{space.op_name(kind, e, int(op or 0))} {v}" for e, op, v in self._values)
        else:  # a node's inputs: the remaining edges scored again after each drop
            rounds: list[list[str]] = [[]]
            for e, _, v in self._values:
                if any(item.startswith(f"{e} ") for item in rounds[-1]):
                    rounds.append([])
                rounds[-1].append(f"{e} {v}")
            where, each = f"{kind} node of edges {', '.join(i.split()[0] for i in rounds[0])}", "edge"
            values = " | ".join(", ".join(r) for r in rounds)
        log.info("  %s: %s without each %s: %s (%s)", where, self._measure, each, values, self._pace)
        self._decision, self._values = None, []

    def _without(self, kind: str, edge: int, op: int | None) -> list[dict[str, Tensor]]:
        """The method's scoring mixing weights (one set, or several whose scores a pass averages:
        common/method.py `scoring_weights`) with that op (edge) removed."""
        t = self.trainer
        with torch.no_grad():
            return [t.arch.masked(kind, edge, op, w) for w in t.method.scoring_weights(t.arch, self.epoch)]

    def _count(self) -> str:
        return f"{self.passes} of {self.total}" if self.total else str(self.passes)

    def _pace_at(self, now: float) -> str:
        """Seconds per pass so far, and what remains of the round."""
        elapsed = now - self.started
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


def select_op(score: Score, kind: str, edge: int, ops: int | Sequence[int], crit: str) -> int:
    """The op whose removal hurts the supernet most, among `ops` (a number: the first that many;
    a pruned op is no candidate), the first one on ties; a nan score, which a zero-cost proxy may
    give, never wins over a number."""
    candidates = range(ops) if isinstance(ops, int) else ops
    best, extreme = candidates[0], math.nan
    for op in candidates:
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


def run_projection(trainer: Trainer, folder: Path, plan: Plan, board: Board, resume_from: Path | None,
                   result: dict[str, Any]) -> dict[str, Any]:
    """Project at the plan's projection epochs, tune in between (one epoch per tuning epoch); a
    plan that does not tune (zero-cost proxies) runs its rounds back to back, --proj_pool times.
    Continues from the projection checkpoint `resume_from` if given. Process 0 writes, the others
    project and tune along."""
    cfg, space, group = trainer.cfg, trainer.space, trainer.group
    start, rounds, timer, midway = 0, 0, Timer(), Midway(Stats(trainer.device))
    if resume_from is not None:
        start, rounds, timer, midway = _load(trainer, folder, resume_from)
        log.info("resumed projection at tuning epoch %d%s (%d projections done)", start,
                 f" step {midway.step}" if midway.step else "", rounds)
    proj = cfg.projection
    result.update(proj_crit=plan.criterion, proj_batches=proj.proj_batches)
    if proj.proj_pool > 1:
        result.update(proj_pool=proj.proj_pool, proj_pool_batches=proj.proj_pool_batches)
    group.on_main(lambda: write_json(folder / "result.json", {**result, "status": "running"}))
    if plan.tunes:
        log_test_freq(trainer, tuning=True)
        log.info("softmax(alpha) of each tuning epoch, and the weights the supernet mixes with: %s "
                 "('softmax', 'projected')", folder / "history.jsonl")
    else:
        log.info("zero-cost criteria only (%s): no tuning between projections", plan.criterion)
    if proj.proj_pool > 1 and start < plan.tune_epochs:
        rounds, result["pool"] = _project_pool(trainer, plan, proj.proj_pool, proj.proj_pool_batches)
    else:
        rounds = _project_and_tune(trainer, folder, plan, board, start, rounds, timer, midway)
    if start < plan.tune_epochs:  # the tuned, fully projected supernet
        _save(trainer, folder, plan.tune_epochs, rounds, timer)
    genotype = space.genotype(trainer.weights(GENOTYPE))
    result.update(status="finished", genotype=space.genotype_str(genotype), benchmark=space.query(genotype),
                  projection_time_s=round(timer.elapsed(), 1))
    group.on_main(lambda: _write_result(space, folder, genotype, result))
    log.info("projection finished: genotype = %s", result["genotype"])
    return result


def _project_and_tune(trainer: Trainer, folder: Path, plan: Plan, board: Board, start: int, rounds: int,
                      timer: Timer, midway: Midway) -> int:
    """The projection rounds from tuning epoch `start` on (from `midway` in it: past its round),
    a checkpoint before each; the rounds done. A signal during a round stops the run at once (it
    continues from the round's checkpoint); during tuning, at the next step or epoch end, saved
    there (checkpoint_partial.pth.tar, or the next round's checkpoint)."""
    cfg, space = trainer.cfg, trainer.space
    cutout_prob = cfg.data.cutout_prob if cfg.data.cutout else 0.0
    progress = trainer.progress(plan.tune_epochs, start + (midway.step / len(trainer.data.train) if midway.step else 0))
    n_rounds = sum(map(plan.is_projection_epoch, range(plan.tune_epochs)))
    for epoch in range(start, plan.tune_epochs):
        if plan.tunes:
            log.info("tuning epoch %d of %d%s", epoch, plan.tune_epochs,
                     trainer.method.start_epoch(epoch, plan.tune_epochs, tuning=True))
        if plan.is_projection_epoch(epoch) and not (epoch == start and midway.step):
            _save(trainer, folder, epoch, rounds, timer)
            stage = plan.stage(rounds)
            passes = plan.passes(stage, epoch)
            log.info("projection %d of %d (%s): %s scoring passes", rounds + 1, n_rounds, stage, passes or "?")
            score = Scorer(trainer, epoch, passes)
            plan.project(score, stage, rounds)
            score.close()
            rounds += 1
            log.info("genotype after projection %d = %s", rounds,
                     space.genotype_str(space.genotype(trainer.weights(GENOTYPE))))
        if not plan.tunes:
            continue
        write = functools.partial(_write_partial, trainer, folder, rounds, timer)
        with deferred():
            at = midway if epoch == start else Midway(Stats(trainer.device))
            train_acc, train_loss = trainer.train_epoch(epoch, train_alpha=trainer.method.trains_alpha, tuning=True,
                                                        cutout_prob=cutout_prob, progress=progress,
                                                        midway=Midway(at.stats, at.step, write))
            trained = functools.partial(save_trained, trainer, write, epoch, at.stats)
            with stoppable(trainer.group, trainer.device, trained):
                row = epoch_report(trainer, epoch, board, {"train_acc": train_acc, "train_loss": train_loss,
                                                           "projections": rounds}, tuning=True)
            trainer.group.on_main(functools.partial(append_jsonl, folder / "history.jsonl", row))
            stop_point(trainer.group, functools.partial(_save_tuning_end, trainer, folder, plan, epoch, rounds, timer))
    return rounds


def _save_tuning_end(trainer: Trainer, folder: Path, plan: Plan, epoch: int, rounds: int, timer: Timer) -> str:
    """What a stop point at the end of tuning epoch `epoch` saves: the checkpoint the next
    projection round (or the end) starts with, else the start of the next epoch."""
    if epoch + 1 == plan.tune_epochs or plan.is_projection_epoch(epoch + 1):
        _save(trainer, folder, epoch + 1, rounds, timer)
    else:
        _write_partial(trainer, folder, rounds, timer, epoch + 1, 0, Stats(trainer.device))
    return f"the end of tuning epoch {epoch}"


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
                score = Scorer(trainer, epoch + member * plan.tune_epochs)
                plan.project(score, plan.stage(rounds), rounds)
                score.close()
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


def _write_result(space: Space, folder: Path, genotype: Any, result: dict[str, Any]) -> None:
    if space.finalize is not None:
        space.finalize(folder, genotype, result)
    write_json(folder / "result.json", result)


def _save(trainer: Trainer, folder: Path, epoch: int, rounds: int, timer: Timer) -> None:
    rngs = trainer.group.rng_states(trainer.device)  # every process's (a collective); None but on process 0
    trainer.group.on_main(lambda: _write_checkpoint(
        {"epoch": epoch, "projections": rounds, **trainer.state(), "projection": trainer.arch.projection_state(),
         **(rngs or {}), "projection_time": timer.elapsed()}, folder, epoch, trainer.cfg.run.ckpt_keep_every))


def _write_partial(trainer: Trainer, folder: Path, rounds: int, timer: Timer, epoch: int, step: int,
                   stats: Stats) -> None:
    """The checkpoint of tuning epoch `epoch` at step `step`, past its round (a collective:
    every process gives its RNG states and running statistics; process 0 writes)."""
    group = trainer.group
    rngs, per_process = group.rng_states(trainer.device), group.per_process("stats", stats.state())
    group.on_main(lambda: save_checkpoint(
        {"epoch": epoch, "step": step, "projections": rounds, **trainer.state(),
         "projection": trainer.arch.projection_state(), **(rngs or {}), **(per_process or {}),
         "batch_size": trainer.cfg.data.batch_size, "projection_time": timer.elapsed()}, partial_path(folder)))


def _write_checkpoint(state: dict[str, Any], folder: Path, epoch: int, keep_every: int) -> None:
    save_checkpoint(state, checkpoint_path(folder, epoch))
    partial_path(folder).unlink(missing_ok=True)  # older than the checkpoint just written
    prune_checkpoints(folder, keep_every, epoch)


def _load(trainer: Trainer, folder: Path, path: Path) -> tuple[int, int, Timer, Midway]:
    """Continue from projection checkpoint `path`: the tuning epoch, projections done, time and
    (a mid-epoch one) the step and running statistics reached. Continuing from an epoch's
    checkpoint moves the later trajectory's checkpoints aside."""
    state = load_search_checkpoint(trainer, path, resume=True)
    trainer.arch.load_projection_state(state["projection"])
    epoch, midway = resume_point(trainer, state)
    trainer.group.on_main(lambda: truncate_history(folder / "history.jsonl", epoch))
    if path != partial_path(folder):
        trainer.group.on_main(lambda: set_aside(folder, later_checkpoints(folder, epoch),
                                                f"continuing from tuning epoch {epoch}"))
    return epoch, int(state["projections"]), Timer(float(state["projection_time"])), midway
