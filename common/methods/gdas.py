"""GDAS (Dong & Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019), as
D-X-Y/AutoDL-Projects runs it (`exps/algos/GDAS.py` and its `search_model_gdas*.py` at bb2f405; what
each line does is in tests/reference/README.md, "PC-DARTS and GDAS").

Every forward of a training step draws one hard Gumbel-softmax sample per edge (per cell kind, one
for all cells of that kind) and computes only the sampled op:

    gumbels = -log(Exp(1) draws)
    probs   = softmax((log_softmax(alpha) + gumbels) / tau)
    hardwts = one_hot(argmax probs) - probs.detach() + probs     (straight-through)

The weight step comes first and its gradient reaches alpha too: the authors' alphas are parameters
of the model, so the weight step's `clip_grad_norm_(network.parameters(), 5)` counts alpha's
gradient (the arch step's, never zeroed, plus the weight batch's). Then the arch step, on a sample
of its own. tau falls linearly from --tau_max at the first search epoch to --tau_min at the last.

Evaluation and projection scoring passes are deterministic: the expected mixture at the current
temperature, softmax(alpha / tau), i.e. the sample without its noise (docs/gdas.md says why).
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..arch import Active
from ..config import check, finite
from ..data import METHOD, stream_seed
from ..method import GENOTYPE, Batch, Method, MethodDef, Phase, Weights

if TYPE_CHECKING:
    from ..arch import Architecture
    from ..config import SearchConfig
    from ..trainer import Trainer

TAU_MAX, TAU_MIN = 10.0, 0.1  # scripts-search/algos/GDAS.sh: --tau_max 10 --tau_min 0.1


def hard_gumbel_softmax(alpha: Tensor, gumbels: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """The straight-through sample of each row of `alpha` under Gumbel noise `gumbels`, and the
    sampled column per row; the authors' `forward` (search_model_gdas.py:90-99), in its order."""
    probs = torch.softmax((alpha.log_softmax(dim=1) + gumbels) / tau, dim=1)
    index = probs.max(-1, keepdim=True)[1]
    one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    return one_hot - probs.detach() + probs, index.flatten()


def tau_at(tau_max: float, tau_min: float, epoch: int, epochs: int) -> float:
    """The temperature of search epoch `epoch` of `epochs` (GDAS.py:144)."""
    return tau_max - (tau_max - tau_min) * epoch / max(epochs - 1, 1)


class GumbelNoise:
    """Gumbel noise from a generator of its own (on the CPU: the same draws on every device, and its
    state goes into the checkpoints), seeded from the run's seed."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(stream_seed(seed, METHOD))

    def __call__(self, alpha: Tensor) -> Tensor:
        """Noise shaped as `alpha`; redrawn while a draw is infinite (an exponential draw of 0),
        as the authors' `while True` does, checked here on the host without a device sync."""
        while True:
            gumbels = -torch.empty(alpha.shape, dtype=alpha.dtype).exponential_(generator=self.generator).log()
            if torch.isfinite(gumbels).all():
                return gumbels.to(alpha.device)


class GDAS(Method):
    """Hard Gumbel-softmax sampling with the straight-through gradient; weight step, then arch step."""

    alpha_step_last = True
    accumulates_alpha_grad = True

    def __init__(self, tau_max: float = TAU_MAX, tau_min: float = TAU_MIN, seed: int = 0) -> None:
        self.tau_max, self.tau_min = tau_max, tau_min
        self.tau = tau_max
        self.seed = seed
        self.noise = GumbelNoise(seed)

    def weights(self, arch: Architecture, phase: Phase) -> Weights:
        """GENOTYPE: softmax(alpha), whose per-edge argmax is the authors' genotype; otherwise the
        expected mixture softmax(alpha / tau) (the sample without noise). The steps sample."""
        if phase == GENOTYPE:
            return arch.weights()
        return arch.apply_projection({k: torch.softmax(a / self.tau, dim=-1) for k, a in arch.alphas.items()})

    def sample(self, trainer: Trainer) -> tuple[Weights, Active]:
        """One sample for a forward: the straight-through weights (decided edges keep their projected
        rows) and the ops to compute (per undecided edge its sampled op). Process 0's noise (every
        process draws the same; the broadcast makes sure); one device-to-host copy, of the indices."""
        arch = trainer.arch
        gumbels = {k: self.noise(a) for k, a in arch.alphas.items()}
        trainer.group.broadcast(gumbels.values())
        sampled = {k: hard_gumbel_softmax(a, gumbels[k], self.tau) for k, a in arch.alphas.items()}
        indices = torch.cat([index for _, index in sampled.values()]).tolist()
        projected, active, start = arch.active(), {}, 0
        for k in arch.kinds:
            rows = len(arch.decided[k])
            active[k] = [projected[k][e] if arch.decided[k][e] else [indices[start + e]] for e in range(rows)]
            start += rows
        return arch.apply_projection({k: hard for k, (hard, _) in sampled.items()}), active

    def weight_step_weights(self, trainer: Trainer, x: Tensor, y: Tensor) -> tuple[Weights, Active | None]:
        """A sample whose gradient reaches alpha (`clipped_parameters`)."""
        return self.sample(trainer)

    def clipped_parameters(self, trainer: Trainer) -> list[nn.Parameter]:
        return trainer.alpha_parameters

    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        """Adam on the loss of the alpha batch under a new sample (GDAS.py:50-55). Its backward gives
        the weights of the sampled ops their gradient tensors, as the authors' full backward did."""
        x, y, n = alpha
        weights, active = self.sample(trainer)
        _, loss = trainer.forward_loss(x, y, weights, active, n)
        trainer.alpha_backward(trainer.group.weighted(loss, len(y), n), reach_weights=True)
        trainer.a_opt.step()

    def start_epoch(self, epoch: int, epochs: int, tuning: bool) -> str:
        if not tuning:  # tuning keeps the temperature its supernet checkpoint ends with
            self.tau = tau_at(self.tau_max, self.tau_min, epoch, epochs)
        return f" tau {self.tau:g}"

    def state(self) -> dict[str, Any]:
        return {"tau": self.tau, "tau_max": self.tau_max, "tau_min": self.tau_min,
                "noise": self.noise.generator.get_state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if not state:  # a checkpoint of another method: GDAS starts on it afresh
            self.tau, self.noise = self.tau_max, GumbelNoise(self.seed)
            return
        searched = (float(state["tau_max"]), float(state["tau_min"]))
        if searched != (self.tau_max, self.tau_min):
            raise ValueError(f"the supernet was searched with --tau_max {searched[0]:g} --tau_min {searched[1]:g}; "
                             "pass those (a projection tunes on at the temperature its checkpoint ends with)")
        self.tau = float(state["tau"])
        self.noise.generator.set_state(state["noise"])

    def identity(self) -> dict[str, Any]:
        return {"tau_max": self.tau_max, "tau_min": self.tau_min}


@dataclass(frozen=True)
class Options:
    """GDAS' flags."""

    tau_max: float = TAU_MAX
    tau_min: float = TAU_MIN

    def __post_init__(self) -> None:
        finite("tau_max", self.tau_max, positive=True)
        finite("tau_min", self.tau_min, positive=True)
        check(self.tau_min <= self.tau_max, "tau_min", self.tau_min,
              f"the temperature falls from --tau_max {self.tau_max:g} to --tau_min: pass a value at most --tau_max")


def add_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--tau_max", type=float, default=TAU_MAX,
                   help="GDAS (--method gdas): the Gumbel-softmax temperature of the first search epoch")
    g.add_argument("--tau_min", type=float, default=TAU_MIN,
                   help="GDAS: the temperature of the last search epoch (linear in between); tuning keeps it")


def options(args: argparse.Namespace, chosen: bool) -> Options | None:
    """GDAS' options if it is the run's method; a temperature given to another method is refused."""
    if not chosen:
        for flag, default in (("tau_max", TAU_MAX), ("tau_min", TAU_MIN)):
            check(getattr(args, flag) == default, flag, getattr(args, flag),
                  "only GDAS has a temperature: pass --method gdas (gdas-proj to project), or leave it out")
        return None
    check(not args.unrolled, "unrolled", True, "GDAS' arch step is first order (GDAS.py); leave --unrolled out")
    check(not args.compile, "compile", True, "GDAS computes another sampled op per edge every forward, which "
                                             "torch.compile would compile anew each time; leave --compile out")
    return Options(args.tau_max, args.tau_min)


def build(cfg: SearchConfig) -> GDAS:
    o = cfg.method_options
    return GDAS(o.tau_max, o.tau_min, seed=cfg.run.seed)


def scripts(cfg: SearchConfig) -> tuple[str, ...]:
    """The gdas-*.sh scripts, with the temperatures the run's schedule differs in (a projection is
    refused with another schedule than its search's)."""
    o = cfg.method_options
    return ("gdas", *(f"--{flag}={value:g}" for flag, value, default in
                      (("tau_max", o.tau_max, TAU_MAX), ("tau_min", o.tau_min, TAU_MIN)) if value != default))


GDAS_DEF = MethodDef("gdas", build=build, label=lambda identity: "GDAS", add_flags=add_flags, options=options,
                     saves={"gdas": {}}, script=scripts)
