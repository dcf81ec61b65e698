"""One bilevel training loop for every supernet: alpha step, weight step, evaluation passes.

Both search spaces (and both phases, search and projection tuning) run through this
class; what differs between spaces comes in through `Space`.

Speed (see benchmarks/RESULTS.md). Exact, always on: the alpha step computes alpha's
gradient only; the model skips `none` and zero-weight ops using host-side `active` lists
(no device sync) and shares one ReLU per cell state; batches come from device-resident
data (common/data.py) and are never re-created per step; loss and accuracy stay on the
device until `report_freq`; SGD runs its multi-tensor (foreach) update; evaluation runs
under inference mode; on CPU the model and batches use the channels-last layout
(`--memory_format`), whose results differ from NCHW only by float summation order.
Optional, off by default because they change numerics: `--amp` (bf16 autocast of the
forward passes), `--compile` (torch.compile of the model), `--proj_batch_size`.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from .arch import Architecture
from .data import Batches

log = logging.getLogger("darts_pt")

Weights = dict[str, Tensor]
Active = dict[str, list[list[int]]]
# SDARTS: (model, mixing weights, x, y, epsilon, projection) -> perturbed mixing weights
Perturbation = Callable[[nn.Module, Weights, Tensor, Tensor, float, Callable[[Weights], Weights]], Weights]


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Space:
    """What a search space hands to the shared search and projection loops."""

    name: str                                    # "nasbench201" or "sota"
    model: nn.Module
    arch: Architecture
    op_names: dict[str, list[str]]               # heat-map column labels per cell kind
    edge_names: list[str]                        # heat-map row labels
    genotype: Callable[[Weights], Any]           # mixing weights -> genotype
    genotype_str: Callable[[Any], str] = str
    query: Callable[[Any], dict[str, float] | None] = lambda g: None   # benchmark look-up
    perturb: Perturbation | None = None          # SDARTS weight-step perturbation
    finalize: Callable[[Path, Any, dict], None] | None = None   # after projection: (folder, genotype, result)
    extra: dict[str, Any] = field(default_factory=dict)


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


# Keys of the data streams, so every pass has its own reproducible order and augmentation.
TRAIN, VALID, EVAL_VALID, EVAL_TEST, TUNE_TRAIN, TUNE_VALID, SCORE = range(7)


def memory_format(args: Any, device: torch.device) -> torch.memory_format:
    """The layout of the model and its batches: `--memory_format` ('auto': channels-last
    on CPU, where it is measured to be faster for both supernets; NCHW on CUDA)."""
    choice = getattr(args, "memory_format", "auto")
    if choice == "auto":
        choice = "channels_last" if torch.device(device).type == "cpu" else "contiguous"
    if choice not in ("channels_last", "contiguous"):
        raise ValueError(f"--memory_format must be auto, channels_last or contiguous, not '{choice}'")
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


# torch.compile backend of --compile; tests switch it to a cheap one.
COMPILE_BACKEND = "inductor"


class Trainer:
    def __init__(self, space: Space, data: SearchData, args: Any, device: torch.device,
                 weight_lr: float | None = None) -> None:
        self.space, self.data, self.args, self.device = space, data, args, device
        self.model, self.arch = space.model, space.arch
        self.memory_format = memory_format(args, device)
        self.model.to(memory_format=self.memory_format)  # in place: parameters keep their identity
        self.criterion = nn.CrossEntropyLoss()
        self.w_opt = torch.optim.SGD(self.model.parameters(), weight_lr or args.learning_rate,
                                     momentum=args.momentum, weight_decay=args.weight_decay,
                                     nesterov=args.nesterov, foreach=True)
        self.a_opt = torch.optim.Adam(self.arch.parameters(), lr=args.arch_learning_rate,
                                      betas=(0.5, 0.999), weight_decay=args.arch_weight_decay)
        # Optional, numerics-changing speed-ups (off by default).
        self.amp = bool(getattr(args, "amp", False))
        self.forward = self.model
        self._weight_grads_exist = False
        if getattr(args, "compile", False):
            self.forward = compile_model(self.model, getattr(args, "compile_mode", "default"))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _layout(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return x
        return x.contiguous(memory_format=self.memory_format)  # no copy if already so

    # -- one step -------------------------------------------------------------------------
    def alpha_step(self, x: Tensor, y: Tensor) -> None:
        """First-order DARTS: alpha descends the loss on a batch of the alpha half.

        Only alpha's gradient is computed: the weight gradients the original also
        accumulated here were zeroed before the weight step, so skipping them is exact.
        An alpha the loss does not depend on (e.g. every op downstream of its cells is
        `noise`) gets no gradient and Adam leaves it alone, as after `loss.backward()`.
        """
        with self._autocast():
            loss = self.criterion(self.forward(self._layout(x), self.arch.weights(), self.arch.active()), y)
        params = self.arch.parameters()
        if not self._weight_grads_exist:
            self._full_backward(loss, params)
        else:
            grads = (torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad
                     else [None] * len(params))
            for p, g in zip(params, grads):
                p.grad = g
        self.a_opt.step()

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

    def weight_step(self, x: Tensor, y: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
        x = self._layout(x)
        weights = {k: w.detach() for k, w in self.arch.weights().items()}
        active: Active | None = self.arch.active()
        with self._autocast():
            if self.space.perturb is not None:
                project = self.arch.apply_projection  # decided edges stay fixed under perturbation
                weights = project(self.space.perturb(self.model, weights, x, y, epsilon, project))
                active = None  # perturbation may zero weights: the model reads which ones (one sync)
            self.w_opt.zero_grad(set_to_none=False)  # see _full_backward
            logits = self.forward(x, weights, active)
            loss = self.criterion(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.args.grad_clip)
        self.w_opt.step()
        return logits, loss

    # -- passes ---------------------------------------------------------------------------
    def train_epoch(self, epoch: int, *, train_alpha: bool, cutout_prob: float, epsilon: float = 0.0,
                    tuning: bool = False) -> tuple[float, float]:
        self.model.train()
        stats = Stats(self.device)
        n_steps = len(self.data.train)
        for step, ((x, y), (xa, ya)) in enumerate(self._pairs(epoch, cutout_prob, tuning)):
            if train_alpha:
                self.alpha_step(xa, ya)
            logits, loss = self.weight_step(x, y, epsilon)
            stats.add(logits, y, loss)
            if step % self.args.report_freq == 0 or step == n_steps - 1:
                acc, avg = stats.result()  # the only host sync inside an epoch
                check_finite(avg, f"training loss at epoch {epoch} step {step}")
                log.info("train %03d/%03d loss %.4f acc %.2f", step, n_steps, avg, acc)
        return stats.result()

    def _pairs(self, epoch: int, cutout_prob: float, tuning: bool) -> Iterator:
        """(weight batch, alpha batch) per step, `len(train)` steps.

        `--sampling fresh` (default) samples as the original: a search step draws both batches
        from new iterators (`next(iter(queue))`: a random batch, images repeat across steps);
        projection tuning iterates a real epoch of the weight half and draws each alpha batch
        so. `--sampling epoch`: real epochs of both halves, the alpha half restarting if shorter.
        """
        train_key, valid_key = (TUNE_TRAIN, TUNE_VALID) if tuning else (TRAIN, VALID)
        train, valid = self.data.train, self.data.valid
        if self.args.sampling == "epoch":
            alpha = (b for rep in itertools.count() for b in valid((valid_key, epoch, rep), cutout_prob))
            return zip(train((train_key, epoch), cutout_prob), alpha)
        if tuning:
            weight = train((train_key, epoch), cutout_prob)
        else:
            weight = (train.sample((train_key, epoch, step), cutout_prob) for step in range(len(train)))
        return zip(weight, (valid.sample((valid_key, epoch, step), cutout_prob) for step in itertools.count()))

    def evaluate(self, batches: Batches, key: tuple[int, ...], weights: Weights | None = None,
                 active: Active | None = None, train_mode: bool = False,
                 cutout_prob: float = 0.0) -> tuple[float, float]:
        """Accuracy (%) and mean loss over one pass. Projection scores in train mode
        (BatchNorm batch statistics), as the original did.

        Masked scoring passes (explicit `weights`) run the model uncompiled: each mask is a
        new active-op pattern, which torch.compile would have to recompile.
        """
        forward = self.model
        if weights is None:
            forward = self.forward
            with torch.no_grad():  # outside inference mode: Architecture caches tensors it makes here
                weights, active = self.arch.weights(), self.arch.active()
        self.model.train(train_mode)
        stats = Stats(self.device)
        with torch.inference_mode(), self._autocast():
            for x, y in batches(key, cutout_prob):
                logits = forward(self._layout(x), weights, active)
                stats.add(logits, y, self.criterion(logits, y))
        self.model.train()
        return stats.result()

    # -- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"state_dict": self.model.state_dict(), "alpha": self.arch.alpha_list(),
                "optimizer": self.w_opt.state_dict(), "arch_optimizer": self.a_opt.state_dict(),
                "grads": [n for n, p in self.model.named_parameters() if p.grad is not None]}

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
    options = {"mode": mode} if COMPILE_BACKEND == "inductor" and mode != "default" else {}
    return torch.compile(model, backend=COMPILE_BACKEND, **options)


class Stats:
    """Running loss and accuracy kept on the device, read back only when asked."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.n = 0

    def add(self, logits: Tensor, y: Tensor, loss: Tensor) -> None:
        self.loss += loss.detach().double() * y.shape[0]
        self.correct += (logits.argmax(dim=1) == y).sum()
        self.n += y.shape[0]

    def result(self) -> tuple[float, float]:
        if self.n == 0:
            return 0.0, 0.0
        return 100.0 * self.correct.item() / self.n, self.loss.item() / self.n


SEARCH_HINT = ("lower --learning_rate or --arch_learning_rate, or resume from an earlier checkpoint "
               "with --resume_epoch.")


def check_finite(value: float, what: str, hint: str = SEARCH_HINT) -> None:
    """Stop a diverged run; the caller writes checkpoints only after this check passes."""
    if not math.isfinite(value):
        raise DivergedError(f"{what} is {value}: training diverged. The last good checkpoint is kept; {hint}")
