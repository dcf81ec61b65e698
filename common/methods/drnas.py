"""DrNAS (Chen, Wang, Cheng, Tang, Hsieh: "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021),
as xiangning-chen/DrNAS runs it (`201-space/train_search.py`, `train_search_progressive.py`,
`DARTS-space/train_search.py`; tests/reference/README.md "DrNAS" cites them line by line).

- Mixing weights: alpha is the log-ish parameter of a Dirichlet distribution per edge, with
  concentration ELU(alpha) + 1; every training forward (alpha step and weight step alike) mixes with
  a fresh reparameterised sample of it, one row per edge, shared by all cells of a kind. Evaluation
  and projection scoring passes mix with its mean, concentration / sum (`--score_samples S`: the
  score averaged over S samples instead); the genotype is read from softmax(alpha), as the authors'.
- Regulariser (`--reg_type`, `--reg_scale`): l2 is Adam's weight decay on alpha (= --reg_scale);
  kl adds reg_scale * sum over edges of KL(Dir(ELU(alpha) + 1) || Dir(1)) to the alpha step's loss.
- Architecture step: first order (the authors' default) or, with --unrolled, second order through
  common/methods/darts2.py (each forward draws its own sample, as the authors' architect does).
- Progressive learning (`--stages k:keep:epochs,...`): partial channels 1/k (each mixed op computes
  on C/k of its channels, the rest pass by), and between stages the authors' transition: prune each
  edge to its `keep` largest alphas (the others' weights are zeroed and the rest renormalised; the
  pruned ops are never computed again, so their new parameters stay frozen), widen the mixed ops to
  the next k by copying channels (common/net2wider.py), carry the SGD momentum buffers over, and
  restart the learning rate at --learning_rate (the authors' new SGD; the cosine schedule then goes
  on from there, as on the PyTorch 1.4-1.5 their transition runs on). Alpha steps start at the
  stage's epoch --begin (the progressive scripts: 10).
- NAS-Bench-201's authors' model held alpha among its parameters: the weight step clips the norm of
  the weights' and alpha's gradients together there (`Space.alpha_in_model`).

Randomness is the run's own: the Dirichlet samples come from a generator on the device seeded by
--seed, the same in every process (so every process mixes with the same sample, with no message),
and its state is in the checkpoints; the channels widening copies come from a generator keyed by
the seed and the stage.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.distributions import Dirichlet, kl_divergence
from torch.distributions.dirichlet import _Dirichlet_backward

from ..arch import Architecture
from ..config import ConfigError, SearchConfig, check, finite
from ..data import stream_seed
from ..experiment import LOGGER
from ..method import EVAL, TRAIN, Batch, Method, Phase, Weights, alpha_if_in_model
from ..net2wider import random_draw, widen_momentum
from ..space import SupernetRequest
from . import partial
from .darts2 import second_order_step

if TYPE_CHECKING:
    from ..trainer import Trainer

log = logging.getLogger(LOGGER)

REG_TYPES = ("l2", "kl")
EVERY_OP = 1 << 30  # a stage's `keep` that prunes nothing
_STREAM = 0x44724E4153  # "DrNAS": keys of the method's random streams (common.data.stream_seed)
SAMPLES, WIDEN, SCORING = 0, 1, 2


@dataclass(frozen=True)
class Stage:
    """One stage of progressive learning: partial channels 1/k, `keep` ops per edge at most (the
    stage starts by pruning each edge to its `keep` largest alphas), `epochs` epochs."""

    k: int
    keep: int
    epochs: int


def parse_stages(text: str) -> tuple[Stage, ...]:
    """`--stages K:KEEP:EPOCHS,...`, e.g. DrNAS' DARTS space 6:7:25,4:4:25 ("" for none)."""
    stages = []
    for part in filter(None, text.replace(" ", "").split(",")):
        fields = part.split(":")
        try:
            k, keep, epochs = (int(f) for f in fields)
        except ValueError:
            raise ConfigError("stages", text, f"stage {part!r} is not K:KEEP:EPOCHS (partial channels 1/K, at most "
                                              f"KEEP ops per edge, EPOCHS epochs), e.g. 6:7:25,4:4:25") from None
        check(k >= 1 and keep >= 1 and epochs >= 1, "stages", text,
              f"stage {part!r}: K, KEEP and EPOCHS must be at least 1")
        stages.append(Stage(k, keep, epochs))
    return tuple(stages)


@dataclass(frozen=True)
class Options:
    """DrNAS' flags (the authors' names); `schedule` is `stages` parsed."""

    k: int = 1
    stages: str = ""
    reg_type: str = "l2"
    reg_scale: float = 1e-3
    begin: int = 0
    score_samples: int = 0
    schedule: tuple[Stage, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        check(self.k >= 1, "k", self.k, "partial channels 1/k: k must be at least 1")
        check(self.reg_type in REG_TYPES, "reg_type", self.reg_type, f"choose one of {', '.join(REG_TYPES)}")
        finite("reg_scale", self.reg_scale)
        check(self.begin >= 0, "begin", self.begin, "must be >= 0 (the stage epoch of the first alpha step)")
        check(self.score_samples >= 0, "score_samples", self.score_samples,
              "must be >= 0 (0: score with the Dirichlet mean)")
        schedule = parse_stages(self.stages)
        check(not schedule or self.k in (1, schedule[0].k), "k", self.k,
              f"--stages {self.stages} sets the first stage's partial channels (k {schedule[0].k if schedule else 1}); "
              "leave --k out")
        object.__setattr__(self, "schedule", schedule)

    def stages_of(self, epochs: int) -> tuple[Stage, ...]:
        """The run's stages: --stages, or one stage of --epochs epochs at --k with every op. Refuses
        stages whose epochs do not add up to --epochs."""
        if not self.schedule:
            return (Stage(self.k, EVERY_OP, epochs),)
        total = sum(s.epochs for s in self.schedule)
        check(total == epochs, "stages", self.stages,
              f"its stages train {total} epochs, and --epochs is {epochs}; make them agree (pass --epochs {total})")
        return self.schedule


class _DirichletSample(torch.autograd.Function):
    """`Dirichlet(concentration).rsample()` (torch.distributions' reparameterised sample, the same
    backward) drawn from `generator`, not the global RNG."""

    @staticmethod
    def forward(ctx: Any, concentration: Tensor, generator: torch.Generator) -> Tensor:
        x = torch._sample_dirichlet(concentration, generator=generator)
        ctx.save_for_backward(x, concentration)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, concentration = ctx.saved_tensors
        return _Dirichlet_backward(x, concentration, grad), None


def concentration(alpha: Tensor) -> Tensor:
    """DrNAS' Dirichlet concentration of alpha: ELU(alpha) + 1 (> 0)."""
    return F.elu(alpha) + 1


def renormalised(weights: Tensor, kept: Tensor | None) -> Tensor:
    """The weights of pruned ops zeroed and each row's rest renormalised (DrNAS' utils.py:178-183)."""
    if kept is None:
        return weights
    w = torch.where(kept, weights, torch.zeros_like(weights))
    return w / w.sum(dim=-1, keepdim=True)


class DrNAS(Method):
    """The Dirichlet mixing weights, regularised alpha step and progressive schedule above."""

    def __init__(self, options: Options, seed: int, epochs: int, second_order: bool = False) -> None:
        self.options, self.seed, self.second_order = options, seed, second_order
        self.stages = options.stages_of(epochs)
        self.stage = -1  # the stage the supernet is in (-1: before the first one's pruning)
        self._trainer: Trainer | None = None
        self._generator: torch.Generator | None = None

    # -- mixing weights ---------------------------------------------------------------------
    def weights(self, arch: Architecture, phase: Phase) -> Weights:
        if phase == TRAIN:
            assert self._generator is not None, "DrNAS samples from its trainer's generator (Method.attach)"
            raw = _sample(arch, self._generator)
        elif phase == EVAL:
            raw = {k: _mean(a) for k, a in arch.alphas.items()}
        else:  # GENOTYPE: the authors read the genotype from softmax(alpha)
            raw = arch.softmax()
        return arch.apply_projection(_pruned(arch, raw))

    def scoring_weights(self, arch: Architecture, epoch: int) -> list[Weights]:
        """The Dirichlet mean, or (--score_samples S) S samples drawn for the round at `epoch` (the
        same for every op it scores, and on resuming)."""
        if not self.options.score_samples:
            return [self.weights(arch, EVAL)]
        generator = _generator(arch, stream_seed(self.seed, (_STREAM, SCORING, epoch)))
        with torch.no_grad():
            return [arch.apply_projection(_pruned(arch, _sample(arch, generator)))
                    for _ in range(self.options.score_samples)]

    def clipped_parameters(self, trainer: Trainer) -> list[torch.nn.Parameter]:
        return alpha_if_in_model(trainer)

    # -- the architecture step ----------------------------------------------------------------
    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        if self.second_order:
            second_order_step(trainer, self, alpha, train, regulariser=self._regulariser)
            return
        t = trainer
        x, y, n = alpha
        _, loss = t.forward_loss(x, y, self.weights(t.arch, TRAIN), t.arch.active(), n)
        loss = t.group.weighted(loss, len(y), n)
        reg = self._regulariser(t.arch)
        t.alpha_backward(loss if reg is None else loss + reg)
        t.a_opt.step()

    def _regulariser(self, arch: Architecture) -> Tensor | None:
        """--reg_type kl: reg_scale * sum of KL(Dir(ELU(alpha) + 1) || Dir(1)) over every edge (the
        same in every process: the averaged gradient counts it once); l2 is Adam's weight decay."""
        if self.options.reg_type != "kl":
            return None
        kl = [kl_divergence(Dirichlet(concentration(a)), Dirichlet(torch.ones_like(a))).sum()
              for a in arch.alphas.values()]
        return self.options.reg_scale * torch.stack(kl).sum()

    # -- the schedule ---------------------------------------------------------------------------
    def attach(self, trainer: Trainer) -> None:
        """Keep the trainer (its stages change the supernet); alpha's weight decay is --reg_scale for
        l2 and 0 for kl (the authors' `--arch_weight_decay` is parsed but unused)."""
        self._trainer = trainer
        self._generator = _generator(trainer.arch, stream_seed(self.seed, (_STREAM, SAMPLES)))
        decay = self.options.reg_scale if self.options.reg_type == "l2" else 0.0
        for group in trainer.a_opt.param_groups:
            group["weight_decay"] = decay

    def start_epoch(self, epoch: int, epochs: int, tuning: bool) -> str:
        """Searching: the stage of `epoch` (entering one prunes, widens and restarts the learning
        rate), and whether alpha trains yet (--begin); tuning: the last stage, alpha trains."""
        if tuning:
            self.trains_alpha = True
            return ""
        stage, local = self._stage_of(epoch)
        while self.stage < stage:
            self._enter(self.stage + 1)
        self.trains_alpha = local >= self.options.begin
        s = self.stages[stage]
        text = f" stage {stage + 1}/{len(self.stages)} k {s.k}" if len(self.stages) > 1 or s.k > 1 else ""
        return text + ("" if self.trains_alpha else f" alpha from stage epoch {self.options.begin}")

    def _stage_of(self, epoch: int) -> tuple[int, int]:
        """(stage, epoch within it) of search epoch `epoch`."""
        start = 0
        for i, s in enumerate(self.stages):
            if epoch < start + s.epochs:
                return i, epoch - start
            start += s.epochs
        return len(self.stages) - 1, epoch - start + self.stages[-1].epochs

    def _enter(self, stage: int) -> None:
        """The transition into `stage` (DARTS-space/train_search.py:147-157): prune each edge to the
        stage's `keep` largest alphas, widen to its k, and (past the first stage) a weight SGD as
        new, at --learning_rate, with the momentum buffers carried over. Adam carries on."""
        t = self._trainer
        assert t is not None, "DrNAS' stages need the trainer (Method.attach)"
        s = self.stages[stage]
        _prune(t.arch, s.keep)
        widened = t.space.widen(s.k, random_draw(torch.Generator().manual_seed(
            stream_seed(self.seed, (_STREAM, WIDEN, stage))))) if t.space.widen else []
        widen_momentum(t.w_opt, widened)
        t.model.to(memory_format=t.memory_format)
        if stage > 0:
            for group in t.w_opt.param_groups:
                group["lr"] = t.cfg.optim.learning_rate
        self.stage = stage
        if len(self.stages) > 1 or s.k > 1:
            ops = "every op" if s.keep >= t.arch.proj_weights[t.arch.kinds[0]].shape[1] else f"at most {s.keep} ops"
            restart = f", learning rate back to {t.cfg.optim.learning_rate:g}" if stage > 0 else ""
            log.info("DrNAS stage %d of %d: partial channels 1/%d, %s per edge%s", stage + 1, len(self.stages), s.k,
                     ops, restart)

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        arch = self._trainer.arch if self._trainer else None
        kept = None if arch is None or arch.kept is None else {k: m.cpu() for k, m in arch.kept.items()}
        generator = self._generator
        return {"stage": self.stage, "kept": kept,
                **({"generator": generator.get_state(), "generator_device": generator.device.type}
                   if generator is not None else {})}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint: the supernet at its stage (widened before its weights load,
        the ops it pruned masked) and the sample generator where it was; a checkpoint of another
        device type has another generator: its state is left, the stream starts anew."""
        if not state:
            return
        t = self._trainer
        assert t is not None, "DrNAS' checkpoints need the trainer (Method.attach)"
        self.stage = int(state["stage"])
        if t.space.widen:  # any copies: the checkpoint's weights replace them
            widened = t.space.widen(self.stages[max(self.stage, 0)].k, lambda old, new: torch.zeros(new - old).long())
            widen_momentum(t.w_opt, widened)  # the parameters the checkpoint's optimiser state is of
        t.model.to(memory_format=t.memory_format)
        t.arch.prune(state.get("kept"))
        if self._generator is not None and state.get("generator_device") == self._generator.device.type:
            self._generator.set_state(state["generator"])
        elif "generator" in state:
            log.info("DrNAS: the checkpoint's Dirichlet samples came from a %s generator; this run's %s one "
                     "starts its own stream", state.get("generator_device"), t.device.type)


def _generator(arch: Architecture, seed: int) -> torch.Generator:
    return torch.Generator(next(iter(arch.alphas.values())).device).manual_seed(seed)


def _sample(arch: Architecture, generator: torch.Generator) -> Weights:
    """One Dirichlet sample per edge, each kind's rows at once (the authors drew row by row: the same
    distribution, and the same reparameterisation gradient of a given sample)."""
    return {k: _DirichletSample.apply(concentration(a), generator) for k, a in arch.alphas.items()}


def _mean(alpha: Tensor) -> Tensor:
    c = concentration(alpha)
    return c / c.sum(dim=-1, keepdim=True)


def _pruned(arch: Architecture, weights: Weights) -> Weights:
    kept = arch.kept
    return weights if kept is None else {k: renormalised(w, kept[k]) for k, w in weights.items()}


def _prune(arch: Architecture, keep: int) -> None:
    """DrNAS' `prune` (utils.py:197-207): per row the `keep` largest alphas keep their values, the
    others become 0 and are masked (already pruned ones are ranked last). Nothing to do when no row
    has more than `keep` live ops."""
    live = arch.kept
    if all(len(arch.live_ops(k, e)) <= keep for k in arch.kinds for e in range(arch.alphas[k].shape[0])):
        return
    kept = {}
    with torch.no_grad():
        for kind, a in arch.alphas.items():
            if live is not None:
                a[~live[kind]] -= 1000000
            values, index = a.topk(keep, dim=-1)
            a.copy_(torch.zeros_like(a).scatter(1, index, values))
            kept[kind] = torch.zeros_like(a, dtype=torch.bool).scatter(1, index, True)
    arch.prune(kept)


# -- command line -----------------------------------------------------------------------------------

def add_flags(g: argparse._ArgumentGroup) -> None:
    partial.add_flag(g)
    g.add_argument("--stages", default="",
                   help="DrNAS progressive learning: K:KEEP:EPOCHS per stage (partial channels 1/K, each stage "
                        "first prunes every edge to its KEEP largest alphas, EPOCHS epochs), e.g. the DARTS space's "
                        "6:7:25,4:4:25; the epochs add up to --epochs. Default: one stage, --k, every op")
    g.add_argument("--begin", type=int, default=0,
                   help="DrNAS: alpha steps from this epoch of each stage on (the progressive scripts: 10)")
    g.add_argument("--reg_type", default="l2", choices=list(REG_TYPES),
                   help="DrNAS regulariser of the concentration: l2 (Adam's weight decay on alpha = --reg_scale) "
                        "or kl (reg_scale * KL to Dir(1), added to the alpha loss)")
    g.add_argument("--reg_scale", type=float, default=1e-3, help="DrNAS: the regulariser's scale")
    g.add_argument("--score_samples", type=int, default=0,
                   help="DrNAS projection: score each op over S Dirichlet samples (the mean of the scores) instead "
                        "of once under the Dirichlet mean (0)")


OWN_FLAGS = ("stages", "begin", "reg_type", "reg_scale", "score_samples")  # and the shared --k (partial.py)
DEFAULTS = Options()


def options(args: argparse.Namespace, chosen: bool) -> Options | None:
    """DrNAS' options if it is the run's method; its flags given to another method are refused."""
    if not chosen:
        check(args.reg_type != "kl", "reg_type", "kl",
              "the KL regulariser is DrNAS' (a Dirichlet concentration); pass --method drnas, or leave it out")
        for flag in OWN_FLAGS:
            check(getattr(args, flag) == getattr(DEFAULTS, flag), flag, getattr(args, flag),
                  "only DrNAS (--method drnas) has it; leave it out")
        return None
    check(args.arch_weight_decay == 1e-3, "arch_weight_decay", args.arch_weight_decay,
          "DrNAS decays alpha by --reg_scale (--reg_type l2), as its authors; pass that instead")
    return Options(k=partial.value(args, DEFAULTS.k), **{flag: getattr(args, flag) for flag in OWN_FLAGS})


def build(cfg: SearchConfig) -> DrNAS:
    return DrNAS(cfg.method_options, cfg.run.seed, cfg.epochs, second_order=cfg.alpha.unrolled)


def supernet(cfg: SearchConfig) -> SupernetRequest:
    """Partial channels of every stage, which the space checks against its cells."""
    o = cfg.method_options
    if o.schedule:
        return SupernetRequest(tuple(s.k for s in o.schedule), flag="stages", given=o.stages)
    return SupernetRequest((o.k,), flag="k", given=str(o.k))
