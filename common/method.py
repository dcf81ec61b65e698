"""The contract between a supernet-training method and the shared trainer, search and projection.

A method (common/methods/: DARTS first and second order, fix-alpha, SDARTS) decides how a
supernet and its architecture parameters are trained. The trainer (common/trainer.py), search,
projection and the reports never ask which method runs: they call its `Method`, and find it by
the name the user typed (`--method`) through `common.methods`. Nothing here knows a space: a
method reaches the supernet only through the forward the space contract defines
(common/space.py: `model(x, weights, active)`), so every method runs on every space.

What a method decides, and where:

- mixing weights (`weights`): how alpha becomes the weights the supernet mixes its ops with, per
  `Phase`: a training step (DARTS: softmax(alpha); DrNAS: a Dirichlet sample, drawn anew per
  call; GDAS: a hard Gumbel-softmax sample, drawn by its steps), an evaluation or projection
  scoring pass (DrNAS: the Dirichlet mean; GDAS: softmax(alpha / tau)), and the magnitude-based
  genotype (PC-DARTS: softmax(alpha) times its edge weights beta, whose products rank the edges).
  Rows that projection decided are replaced by their projected rows
  (`Architecture.apply_projection`), whatever the method.
- the weight step's mixing weights (`weight_step_weights`): SDARTS perturbs them; a method that
  leaves ops out of a step (GDAS computes only the sampled op) says which ops to compute.
- the architecture step (`alpha_step`): first order, or second order (it gets the step's weight
  batch for the virtual step); its regulariser, if any, goes into the loss it descends; the ops
  its forward computes (GDAS: the sampled ones); whether it comes after the weight step
  (`alpha_step_last`).
- the schedule (`start_epoch`): SDARTS' perturbation radius, GDAS' temperature, DrNAS' stages,
  PC-DARTS' first alpha epoch (`trains_alpha`), logged on each epoch's first line.
- architecture parameters besides alpha (`parameters`: PC-DARTS' beta), trained by alpha's Adam,
  and what a checkpoint holds of the method besides alpha and the optimisers (`state`).
- what result.json says of it (`identity`), from which the reports name its rows
  (`MethodDef.label`).
- the supernet it trains (`MethodDef.supernet`: partial channels, DrNAS' stages), which the space
  builds, and how its schedule changes it between stages (DrNAS prunes ops and widens the
  partial channels through the space: `attach` gives the method the trainer, `Space.widen`);
- what the weight step's gradient clipping counts besides the weights (`clipped_parameters`: the
  original code of DrNAS registered NAS-Bench-201's alpha in the model and clipped it along), and
  how many mixing weights a scoring pass averages its score over (`scoring_weights`).

A method that needs another supernet (partial channels, sampled ops) asks it of the space through
the space contract (common/space.py), never by importing a space. To add a method, see
docs/adding-a-method.md: one module in common/methods/ with a `Method` subclass, one `MethodDef` in
common/methods/__init__.py's `METHODS`, and the name in the `METHODS` of the spaces that offer it.
"""
from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from .arch import Active, Architecture
from .space import SupernetRequest

if TYPE_CHECKING:
    from .config import SearchConfig
    from .trainer import Trainer

Weights = dict[str, Tensor]
Batch = tuple[Tensor, Tensor, int]  # images, targets, images of the whole batch (all processes)

TRAIN, EVAL, GENOTYPE = "train", "eval", "genotype"  # phases of `Method.weights`
Phase = str


class Method(ABC):
    """How one run trains its supernet: the trainer's steps and passes call these."""

    trains_alpha: bool = True   # whether epochs take alpha steps (fix-alpha: never)
    alpha_step_last: bool = False  # a step's alpha step after its weight step (GDAS), not before (DARTS)
    # Whether the weight step adds its gradient of `clipped_parameters` to the one they hold from
    # the last alpha step (GDAS, whose authors clip `model.parameters()`, alphas among them, without
    # zeroing alpha's gradient first; checkpoints keep it), instead of replacing it (DrNAS).
    accumulates_alpha_grad: bool = False

    def weights(self, arch: Architecture, phase: Phase) -> Weights:
        """The mixing weights of `phase` (TRAIN: an alpha or weight step; EVAL: an evaluation
        or projection scoring pass; GENOTYPE: the magnitude-based genotype, logs and heat-maps),
        with decided rows projected; alpha steps differentiate through them."""
        return arch.weights()

    def weight_step_weights(self, trainer: Trainer, x: Tensor, y: Tensor) -> tuple[Weights, Active | None]:
        """The mixing weights a weight step on (x, y) trains under, without gradient (unless
        `clipped_parameters` are clipped along), and the ops to compute (None: those whose weight
        is not exactly 0, which the model then reads from the device)."""
        weights = self.weights(trainer.arch, TRAIN)
        return (weights if self.clipped_parameters(trainer) else detached(weights)), trainer.arch.active()

    @abstractmethod
    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        """One step of the architecture parameters on a batch of the alpha half; `train` is the
        same step's weight batch (a second-order step's virtual step trains on it). It chooses
        the ops its forward computes (`trainer.forward_loss(x, y, weights, active, batch)`)."""

    def start_epoch(self, epoch: int, epochs: int, tuning: bool) -> str:
        """Set the schedule for search epoch `epoch` of `epochs`, or for a tuning epoch of
        projection (`tuning`); what the epoch's log line says of it ("" for nothing)."""
        return ""

    def parameters(self) -> list[nn.Parameter]:
        """Architecture parameters besides alpha, trained with it (in the same Adam)."""
        return []

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds of the method besides alpha and the optimisers ({}: nothing)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (a method without state: nothing)
        """Continue from `state()` of a checkpoint (an empty one: as the method starts)."""

    def identity(self) -> dict[str, Any]:
        """What result.json says of the method besides its name (SDARTS: its perturbation)."""
        return {}

    def attach(self, trainer: Trainer) -> None:  # noqa: B027 (most methods need nothing of it)
        """The trainer this method trains with, once it is built (its model, optimisers, space): a
        method whose schedule changes the supernet (DrNAS' stages) keeps it."""

    def clipped_parameters(self, trainer: Trainer) -> list[nn.Parameter]:
        """Architecture parameters whose gradient of the weight step's loss counts in that step's
        gradient-norm clipping, besides the weights (they are not stepped); `weight_step_weights`
        then keeps their graph."""
        return []

    def scoring_weights(self, arch: Architecture, epoch: int) -> list[Weights]:
        """The mixing weights of the projection scoring passes of the round at tuning epoch
        `epoch`: each pass scores the supernet under each of them (one op or edge removed) and
        averages."""
        return [self.weights(arch, EVAL)]


@dataclass(frozen=True)
class MethodDef:
    """A method as the command line, the configuration and the reports know it.

    name: the `--method` value (a projection appends -proj).
    build: the run's configuration -> its Method.
    label: a result.json (its method and identity fields) -> the reports' row name, "+PT" aside.
    add_flags: adds the method's own flags to a parser group (only parsers of spaces that offer it).
    options: (parsed flags, whether this method is the run's) -> the method's typed options (None
        if it has none; stored as SearchConfig.method_options); for another method, refuses the
        method's own flags if given (a ConfigError naming the flag).
    saves: --save prefixes that name such runs (exp_scripts, studies) -> what their folder name
        says of them (the identity fields), for runs whose result.json is unreadable.
    script: which exp_scripts run it (the command a finished search prints to project it).
    supernet: the run's configuration -> the supernet the space builds for it (common/space.py).
    search_run_flags: the method's flags a projection takes from its search run (result.json
        records them), as it does --init_channels.
    """

    name: str
    build: Callable[[SearchConfig], Method]
    label: Callable[[Mapping[str, Any]], str]
    add_flags: Callable[[argparse._ArgumentGroup], None] = lambda group: None
    options: Callable[[argparse.Namespace, bool], Any] = lambda args, chosen: None
    saves: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # the run's configuration -> the stem of the exp_scripts that run it ("darts": darts-201.sh,
    # darts-proj-sota.sh, ...) and the flags they need besides (None: the name, no flags)
    script: Callable[[SearchConfig], tuple[str, ...]] | None = None
    supernet: Callable[[SearchConfig], SupernetRequest] = lambda cfg: SupernetRequest()
    search_run_flags: tuple[str, ...] = ()

    def script_of(self, cfg: SearchConfig) -> tuple[str, ...]:
        return self.script(cfg) if self.script else (self.name,)


def alpha_if_in_model(trainer: Trainer) -> list[nn.Parameter]:
    """alpha, on a space whose original model held it among its parameters (`Space.alpha_in_model`:
    NAS-Bench-201), where DrNAS' `clip_grad_norm_(model.parameters(), ...)` clipped alpha's gradient
    along (201-space/train_search.py:270); else nothing (the DARTS space's models keep alpha apart)."""
    return trainer.arch.parameters() if trainer.space.alpha_in_model else []


def detached(weights: Weights) -> Weights:
    return {k: w.detach() for k, w in weights.items()}
