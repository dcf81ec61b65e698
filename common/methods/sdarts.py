"""SDARTS (Chen & Hsieh, ICML 2020): train the weights under perturbed mixing weights.

Both perturbations act on softmax(alpha) (the mixing weights), keep each edge's row in
[0, 1] summing to one, and leave alpha itself untouched: the trainer uses the perturbed
weights for the weight step only, which is the original's "restore alpha after the step".
The alpha step is DARTS', first order, or second order with `--unrolled` (SDARTS' own code
takes DARTS' architect with its `unrolled` switch; the alpha step comes before the
perturbation, so the two compose). The radius ramps from 0.03 to --epsilon_alpha over the
search epochs; projection tuning perturbs with --epsilon_alpha itself, as the original.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arch import Active
from ..config import check, finite
from ..method import TRAIN, Batch, Method, Weights, detached
from .darts import first_order_step
from .darts2 import second_order_step

if TYPE_CHECKING:
    from ..trainer import Trainer

Project = Callable[[Weights], Weights]
# (model, mixing weights, x, y, epsilon, projection) -> perturbed mixing weights
Perturbation = Callable[[nn.Module, Weights, Tensor, Tensor, float, Project], Weights]
PGD_STEPS = 7


def clip_rows(w: Tensor) -> Tensor:
    """Clamp each row to [0, 1] and renormalise; an all-zero row keeps its largest entry as 1."""
    argmax = w.argmax(dim=-1, keepdim=True)
    w = w.clamp(0.0, 1.0)
    empty = w.sum(dim=-1, keepdim=True) == 0
    w = torch.where(empty, torch.zeros_like(w).scatter(-1, argmax, 1.0), w)
    return w / w.sum(dim=-1, keepdim=True)


def _uniform_like(w: Tensor, epsilon: float) -> Tensor:
    return torch.empty_like(w).uniform_(-epsilon, epsilon)


def random_smoothing(model: nn.Module, weights: Weights, x: Tensor, y: Tensor, epsilon: float,
                     project: Project = lambda w: w) -> Weights:
    """SDARTS-RS: uniform noise in [-epsilon, epsilon], then clip and renormalise each row."""
    return {k: clip_rows(w + _uniform_like(w, epsilon)) for k, w in weights.items()}


def linf_pgd(model: nn.Module, weights: Weights, x: Tensor, y: Tensor, epsilon: float,
             project: Project = lambda w: w, steps: int = PGD_STEPS) -> Weights:
    """SDARTS-ADV: L-inf PGD on the mixing weights maximising the loss on (x, y).

    As the original: the model is in eval mode during the attack, it starts from a random
    point in the ball, takes sign-gradient steps of 2*epsilon/steps, projects back into the
    ball and onto valid rows, and the result is kept only if it raised the loss.
    """
    was_training = model.training
    model.eval()
    loss_of = lambda w: F.cross_entropy(model(x, project(w)), y)
    saved = {k: w.detach() for k, w in weights.items()}
    with torch.no_grad():
        loss_before = loss_of(saved)
    w = {k: clip_rows(v + _uniform_like(v, epsilon)) for k, v in saved.items()}
    step = 2 * epsilon / steps
    for _ in range(steps):
        w = {k: v.requires_grad_(True) for k, v in w.items()}
        grads = torch.autograd.grad(loss_of(w), list(w.values()))
        w = {k: clip_rows(saved[k] + (v.detach() + step * g.sign() - saved[k]).clamp(-epsilon, epsilon))
             for (k, v), g in zip(w.items(), grads)}
    with torch.no_grad():
        loss_after = loss_of(w)
    model.train(was_training)
    keep = loss_after >= loss_before  # a device-side choice: no host sync
    return {k: torch.where(keep, w[k], saved[k]) for k in w}


PERTURBATIONS: dict[str, Perturbation] = {"random": random_smoothing, "pgd_linf": linf_pgd}
CHOICES = ("none", *PERTURBATIONS)


def sdarts_epsilon(epsilon_alpha: float, epoch: int, epochs: int) -> float:
    """SDARTS ramps the perturbation radius linearly from 0.03 to --epsilon_alpha."""
    return 0.03 + (epsilon_alpha - 0.03) * epoch / epochs


class SDARTS(Method):
    """DARTS' alpha step, then the weight step under perturbed mixing weights, drawn by process 0
    (broadcast to the others); decided edges keep their projected rows."""

    def __init__(self, perturb: Perturbation, epsilon_alpha: float, perturbation: str = "random",
                 second_order: bool = False) -> None:
        self.perturb, self.epsilon_alpha, self.perturbation = perturb, epsilon_alpha, perturbation
        self.second_order = second_order
        self.epsilon = epsilon_alpha  # the radius now: ramped while searching (start_epoch)

    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        if self.second_order:
            second_order_step(trainer, self, alpha, train)
        else:
            first_order_step(trainer, self, alpha)

    def weight_step_weights(self, trainer: Trainer, x: Tensor, y: Tensor) -> tuple[Weights, Active | None]:
        """The perturbed weights; which ops to compute, the model reads from them (a perturbation
        may zero a weight: one host sync)."""
        project = trainer.arch.apply_projection  # decided edges stay fixed under perturbation
        weights = project(self.perturb(trainer.model, detached(self.weights(trainer.arch, TRAIN)), x, y,
                                       self.epsilon, project))
        trainer.group.broadcast(weights.values())  # drawn once, by process 0
        # a perturbation left unbroadcast stops here (SDARTS steps sync the host anyway: active=None)
        trainer.group.check_same(weights.values(), "perturbed mixing weights")
        return weights, None

    def start_epoch(self, epoch: int, epochs: int, tuning: bool) -> str:
        self.epsilon = self.epsilon_alpha if tuning else sdarts_epsilon(self.epsilon_alpha, epoch, epochs)
        return f" epsilon_alpha {self.epsilon:e}"

    def identity(self) -> dict[str, str]:
        return {"perturb_alpha": self.perturbation}


@dataclass(frozen=True)
class Options:
    """SDARTS' flags."""

    perturb_alpha: str = "none"
    epsilon_alpha: float = 0.3

    def __post_init__(self) -> None:
        check(self.perturb_alpha in CHOICES, "perturb_alpha", self.perturb_alpha, f"choose one of {', '.join(CHOICES)}")
        finite("epsilon_alpha", self.epsilon_alpha)


def add_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--perturb_alpha", default="none", choices=list(CHOICES),
                   help="SDARTS (--method sdarts): random (SDARTS-RS) or pgd_linf (SDARTS-ADV)")
    g.add_argument("--epsilon_alpha", type=float, default=0.3,
                   help="SDARTS perturbation radius, ramped from 0.03 during search")


def options(args: argparse.Namespace, chosen: bool) -> Options | None:
    """SDARTS' options if it is the run's method; a perturbation given to another method is refused."""
    o = Options(perturb_alpha=args.perturb_alpha, epsilon_alpha=args.epsilon_alpha)
    perturbed = o.perturb_alpha != "none"
    if not chosen:
        check(not perturbed, "perturb_alpha", o.perturb_alpha,
              "perturbing alpha is SDARTS; pass --method sdarts (sdarts-proj to project), or leave it out")
        return None
    check(perturbed, "method", args.method,
          "SDARTS needs a perturbation: add --perturb_alpha random (SDARTS-RS) or pgd_linf (SDARTS-ADV)")
    return o
