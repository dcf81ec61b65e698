"""One bilevel training loop for every supernet: alpha step, weight step, evaluation passes.

Both search spaces (and both phases, search and projection tuning) run through this
class; what differs between spaces comes in through `Space`, what differs between methods
(DARTS, second-order DARTS, fix-alpha, SDARTS) through `Method` (common/method.py).

Speed (see benchmarks/RESULTS.md). Exact, always on: after its first step a first-order alpha
step computes alpha's gradient only; the model skips `none` and zero-weight ops using host-side `active` lists
(no device sync) and shares one ReLU per cell state; batches come from device-resident
data (common/data.py) and are never re-created per step; loss and accuracy stay on the
device until a progress line is due (common/progress.py); SGD runs its multi-tensor (foreach)
update; evaluation runs under inference mode; on CPU the model and batches use the channels-last layout
(`--memory_format`), whose results differ from NCHW only by float summation order.
Optional, off by default because they change numerics: `--amp` (bf16 autocast of the
forward passes), `--compile` (torch.compile of the model), `--proj_batch_size`.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .arch import Active
from .config import SearchConfig
from .data import TRAIN, TUNE_TRAIN, TUNE_VALID, VALID, Batches
from .device import memory_format
from .distributed import Group
from .experiment import LOGGER
from .method import EVAL, Batch, Method, Phase
from .methods import build_method
from .metrics import Midway, Stats, check_finite
from .progress import Progress, run_progress
from .runstate import stop_point
from .space import Space, Weights

log = logging.getLogger(LOGGER)


@dataclass
class SearchData:
    train: Batches          # first part of the training set: trains the weights
    valid: Batches          # the rest: trains alpha, scores projections
    test: Batches | None
    proj: Batches | None = None   # the alpha half at --proj_batch_size (None: `valid`)

    @property
    def score(self) -> Batches:
        """Batches of the projection scoring passes."""
        return self.valid if self.proj is None else self.proj




# torch.compile backend of --compile; tests switch it to a cheap one.
COMPILE_BACKEND = "inductor"


class Trainer:
    """Steps and passes of one process. In a run of several (`group`), each process computes
    its shard of every batch; the gradients of weights and alpha are averaged over the
    processes, SDARTS perturbations are process 0's, and accuracies and losses are summed over
    the processes, so that every process holds the same supernet and takes the same decisions."""

    def __init__(self, space: Space, data: SearchData | None, cfg: SearchConfig, device: torch.device,
                 weight_lr: float | None = None, group: Group | None = None, method: Method | None = None) -> None:
        self.space, self._data, self.cfg, self.device = space, data, cfg, device
        self.group = group or Group()
        self.model, self.arch = space.model, space.arch
        self.method = method or build_method(cfg)  # common/methods: the run's --method
        self.memory_format = memory_format(cfg.speed.memory_format, device)
        self.model.to(memory_format=self.memory_format)  # in place: parameters keep their identity
        self.criterion = nn.CrossEntropyLoss()
        optim = cfg.optim
        self.w_opt = torch.optim.SGD(self.model.parameters(), weight_lr or optim.learning_rate,
                                     momentum=optim.momentum, weight_decay=optim.weight_decay,
                                     nesterov=optim.nesterov, foreach=True)
        self.a_opt = torch.optim.Adam(self.alpha_parameters, lr=cfg.alpha.arch_learning_rate,
                                      betas=(0.5, 0.999), weight_decay=cfg.alpha.arch_weight_decay)
        # Optional, numerics-changing speed-ups (off by default).
        self.amp = cfg.speed.amp
        self.forward: Callable = self.model
        self._weight_grads_exist = False
        if cfg.speed.compile:
            self.forward = compile_model(self.model, cfg.speed.compile_mode)
        self.method.attach(self)

    @property
    def data(self) -> SearchData:
        """The run's batches (step-level tests drive a Trainer without any)."""
        if self._data is None:
            raise RuntimeError("this Trainer was built without data")
        return self._data

    @data.setter
    def data(self, data: SearchData) -> None:
        self._data = data

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _layout(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return x
        return x.contiguous(memory_format=self.memory_format)  # no copy if already so

    # -- one step -------------------------------------------------------------------------
    @property
    def alpha_parameters(self) -> list[nn.Parameter]:
        """What alpha's optimiser trains: alpha, and a method's other architecture parameters."""
        return [*self.arch.parameters(), *self.method.parameters()]

    def weights(self, phase: Phase) -> Weights:
        """The method's mixing weights of `phase` (common/method.py)."""
        return self.method.weights(self.arch, phase)

    def alpha_step(self, x: Tensor, y: Tensor, batch: int | None = None, train: Batch | None = None) -> None:
        """The method's architecture step on a batch of the alpha half (`batch` images in all
        processes, of which this process has `x`; None: all of them); `train`: the step's weight
        batch, as (images, targets, images in all processes), for a second-order step."""
        self.method.alpha_step(self, (x, y, batch or len(y)), train)

    def forward_loss(self, x: Tensor, y: Tensor, weights: Weights, active: Active | None,
                     batch: int | None = None) -> tuple[Tensor, Tensor]:
        """Logits and mean loss of this process's images, its shard of a batch of `batch` images
        (None: `x` is the whole batch), under the given mixing weights."""
        with self._autocast(), self.group.computing(batch or len(y)):
            logits = self.forward(self._layout(x), weights, active)
            return logits, self.criterion(logits, y)

    def alpha_backward(self, loss: Tensor, reach_weights: bool = False) -> None:
        """The gradient of `loss` (this process's, weighted by its share of the batch) with respect
        to the architecture parameters, averaged over the processes, in their `.grad`.

        Only their gradient is computed: the weight gradients the original also accumulated in
        its alpha step were zeroed before the weight step, so skipping them is exact. A parameter
        the loss does not depend on (e.g. every op downstream of its cells is `noise`) gets no
        gradient and Adam leaves it alone, as after `loss.backward()`. `reach_weights`: every
        alpha step may compute ops no step computed before (GDAS' samples): the weights it
        reaches that have no gradient tensor yet get a zero-filled one, as the first step gives
        them all (see `_full_backward`).
        """
        params = self.alpha_parameters
        if not self._weight_grads_exist:
            self._full_backward(loss, params)
        else:
            gradless = [p for p in self.model.parameters() if p.grad is None] if reach_weights else []
            grads = (torch.autograd.grad(loss, params + gradless, allow_unused=True) if loss.requires_grad
                     else [None] * (len(params) + len(gradless)))
            for p, g in zip(params, grads):
                p.grad = g
            for p, g in zip(gradless, grads[len(params):]):
                if g is not None:
                    p.grad = torch.zeros_like(p)
        self.group.average_gradients(params)

    def _full_backward(self, loss: Tensor, alphas: list[nn.Parameter]) -> None:
        """The first alpha step backpropagates into the weights too, as every alpha step of the
        original did. That gives each weight the loss reaches a gradient tensor, which the weight
        step's `zero_grad(set_to_none=False)` then keeps as zeros (PyTorch 1.x's `zero_grad()`):
        an op skipped by a later step because its (perturbed) weight is exactly 0 still gets
        weight decay and momentum, as in the original. Once the tensors exist, later alpha steps
        compute alpha's gradient only; the weight gradients they would add were zeroed anyway."""
        for p in alphas:
            p.grad = None
        if loss.requires_grad:
            loss.backward()
        self._weight_grads_exist = True

    def weight_step(self, x: Tensor, y: Tensor, batch: int | None = None) -> tuple[Tensor, Tensor]:
        """One SGD step of the weights on a batch of the weight half (`batch` images in all
        processes, of which this process has `x`), under the method's mixing weights; this
        process's logits and mean loss."""
        x = self._layout(x)
        with self._autocast(), self.group.computing(batch or len(y)):
            weights, active = self.method.weight_step_weights(self, x, y)
        self.w_opt.zero_grad(set_to_none=False)  # see _full_backward
        extra = self.method.clipped_parameters(self)
        held = [p.grad for p in extra] if self.method.accumulates_alpha_grad else []
        for p in extra:
            p.grad = None  # this loss's gradient alone is averaged across processes
        clipped = [*self.model.parameters(), *extra]
        logits, loss = self.forward_loss(x, y, weights, active, batch)
        self.group.weighted(loss, len(y), batch or len(y)).backward()
        self.group.average_gradients(clipped)
        for p, g in zip(extra, held):  # accumulated, as the original's backward into alpha
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        nn.utils.clip_grad_norm_(clipped, self.cfg.optim.grad_clip)
        self.w_opt.step()
        return logits, loss

    # -- passes ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int, *, train_alpha: bool, cutout_prob: float,
                    tuning: bool = False, progress: Progress | None = None,
                    midway: Midway | None = None) -> tuple[float, float]:
        """One epoch (from `midway` on: its step and running stats; the whole epoch without it);
        `progress`: the run's, for its ETA in the log lines (None: this epoch alone). Every step
        boundary is a stop point (common/runstate.py), where `midway.write` saves the epoch so far."""
        self.model.train()
        midway = midway or Midway(Stats(self.device))
        stats, steps = midway.stats, len(self.data.train)
        lines = (progress or self.progress(epoch + 1, epoch)).epoch(epoch, steps, midway.step)
        pairs = self._pairs(epoch, cutout_prob, tuning, midway.step)
        alpha_first = train_alpha and not self.method.alpha_step_last
        for step, ((x, y, n), (xa, ya, na)) in enumerate(pairs, midway.step):
            if alpha_first:
                self.alpha_step(xa, ya, na, train=(x, y, n))
            logits, loss = self.weight_step(x, y, n)
            if train_alpha and not alpha_first:
                self.alpha_step(xa, ya, na, train=(x, y, n))
            stats.add(logits, y, loss)
            if lines.due(step):
                acc, avg = self.group.result(stats)  # the only host sync inside an epoch
                check_finite(avg, f"training loss at epoch {epoch} step {step}")
                lines.log(step, f"loss {avg:.4f} acc {acc:.2f}")
            if step + 1 < steps:  # the epoch's end is its run's stop point
                stop_point(self.group, functools.partial(self._save_midway, midway, epoch, step + 1))
        return self.group.result(stats)

    def _save_midway(self, midway: Midway, epoch: int, step: int) -> str:
        """The epoch so far, as a stop point saves it (never a diverged one)."""
        check_finite(self.group.result(midway.stats)[1], f"training loss at epoch {epoch} step {step - 1}")
        midway.write(epoch, step, midway.stats)
        return f"epoch {epoch} step {step}"

    def progress(self, epochs: int, start: float) -> Progress:
        """The progress lines of `epochs` epochs from `start` (a fraction: from the middle of one).
        Several processes log at the same steps only: a line reads the loss of all of them (a
        collective), and their clocks differ."""
        return run_progress(self.cfg.run, epochs, start, timed=not self.group.distributed)

    def _pairs(self, epoch: int, cutout_prob: float, tuning: bool, start: int = 0) -> Iterator:
        """(weight batch, alpha batch) per step, from step `start` to `len(train)`; each batch as
        (images, targets, images in all processes). Batches are drawn from (seed, epoch, step),
        so the steps before `start` are skipped without drawing them.

        `--sampling fresh` (default) samples as the original: a search step draws both batches
        from new iterators (`next(iter(queue))`: a random batch, images repeat across steps);
        projection tuning iterates a real epoch of the weight half and draws each alpha batch
        so. `--sampling epoch`: real epochs of both halves, the alpha half restarting if shorter.
        """
        train_key, valid_key = (TUNE_TRAIN, TUNE_VALID) if tuning else (TRAIN, VALID)
        train, valid = self.data.train, self.data.valid
        if self.cfg.sampling == "epoch":
            first, skip = divmod(start, len(valid))
            alpha = (b for rep in itertools.count(first)
                     for b in _sized(valid, (valid_key, epoch, rep), cutout_prob, skip if rep == first else 0))
            return zip(_sized(train, (train_key, epoch), cutout_prob, start), alpha)
        if tuning:
            weight = _sized(train, (train_key, epoch), cutout_prob, start)
        else:
            weight = (_sampled(train, (train_key, epoch, step), cutout_prob) for step in range(start, len(train)))
        return zip(weight, (_sampled(valid, (valid_key, epoch, step), cutout_prob) for step in itertools.count(start)))

    def evaluate(self, batches: Batches, key: tuple[int, ...], weights: Weights | None = None,
                 active: Active | None = None, train_mode: bool = False,
                 cutout_prob: float = 0.0) -> tuple[float, float]:
        """Accuracy (%) and mean loss over one pass. Projection scores in train mode
        (BatchNorm batch statistics), as the original did.

        Masked scoring passes (explicit `weights`) run the model uncompiled: each mask is a
        new active-op pattern, which torch.compile would have to recompile.
        """
        forward: Callable[..., Tensor] = self.model
        if weights is None:
            forward = self.forward
            with torch.no_grad():  # outside inference mode: Architecture caches tensors it makes here
                weights, active = self.weights(EVAL), self.arch.active()
        if not train_mode:  # per-process batch norm: every process evaluates with process 0's statistics
            self.group.broadcast(self.model.buffers())
        self.model.train(train_mode)
        stats = Stats(self.device)
        with torch.inference_mode(), self._autocast():
            for step, (x, y) in enumerate(batches(key, cutout_prob)):
                with self.group.computing(batches.batch_size_of(step)):
                    logits = forward(self._layout(x), weights, active)
                stats.add(logits, y, self.criterion(logits, y))
        self.model.train()
        return self.group.result(stats)

    # -- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        method = self.method.state()
        return {"state_dict": self.model.state_dict(), "alpha": self.arch.alpha_list(),
                "optimizer": self.w_opt.state_dict(), "arch_optimizer": self.a_opt.state_dict(),
                "grads": [n for n, p in self.model.named_parameters() if p.grad is not None],
                **({"method_state": method} if method else {}), **self._held_alpha_grads()}

    def _held_alpha_grads(self) -> dict[str, Any]:
        """With `accumulates_alpha_grad`, the next weight step's clipping counts the gradient alpha
        holds: a checkpoint keeps it (`alpha_grads`), so that a resumed run clips as an
        uninterrupted one."""
        if not self.method.accumulates_alpha_grad:
            return {}
        return {"alpha_grads": [None if p.grad is None else p.grad.detach().clone()
                                for p in self.method.clipped_parameters(self)]}

    def synchronise(self) -> None:
        """Process 0's weights, batch-norm buffers and alpha on every process, as a run of
        several starts. They agree already (one seed, the same checkpoints); the broadcast makes
        sure of it, as DistributedDataParallel does."""
        self.group.broadcast([*self.model.parameters(), *self.model.buffers(), *self.alpha_parameters])

    def restore_grads(self, names: list[str]) -> None:
        """Zero-filled gradient tensors for the weights that had one when the checkpoint was
        written. A weight with a gradient tensor gets weight decay and momentum in every step,
        even one that skips its op (see `_full_backward`); SGD leaves a weight without one
        alone. Ops that projection has killed are never computed again, so without this a
        resumed projection would stop moving the ones the uninterrupted run still moves."""
        params = dict(self.model.named_parameters())
        for name in names:
            p = params[name]
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def restore_alpha_grads(self, grads: list[Tensor | None]) -> None:
        """alpha's held gradient from a checkpoint (`_held_alpha_grads`)."""
        for p, g in zip(self.method.clipped_parameters(self), grads, strict=True):
            p.grad = None if g is None else g.to(p.device, p.dtype)


def _sized(batches: Batches, key: tuple[int, ...], cutout_prob: float,
           start: int = 0) -> Iterator[tuple[Tensor, Tensor, int]]:
    """A pass of `batches` from its batch `start` on, each batch with its number of images in
    all processes."""
    for step, (x, y) in enumerate(batches(key, cutout_prob, start), start):
        yield x, y, batches.batch_size_of(step)


def _sampled(batches: Batches, key: tuple[int, ...], cutout_prob: float) -> tuple[Tensor, Tensor, int]:
    """`batches.sample(key)`, with its number of images in all processes."""
    x, y = batches.sample(key, cutout_prob)
    return x, y, min(batches.batch_size, batches.num_samples)


def compile_model(model: nn.Module, mode: str = "default") -> Callable:
    """torch.compile of the model's forward (--compile).

    The active-op lists are part of what is compiled: a new projection pattern compiles
    once more. Past the recompile limit, or if compilation fails, torch runs the forward
    uncompiled and says so in the log.
    """
    import torch._dynamo

    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), 64))  # one graph per projection pattern and mode
    config.suppress_errors = True  # fall back to eager (with a logged warning) rather than stop a search
    log.info("--compile: torch.compile(model, backend=%s, mode=%s); the first steps compile", COMPILE_BACKEND, mode)
    inductor_mode = mode if COMPILE_BACKEND == "inductor" and mode != "default" else None
    return torch.compile(model, backend=COMPILE_BACKEND, mode=inductor_mode)
