"""SDARTS (Chen & Hsieh, ICML 2020): train the weights under perturbed mixing weights.

Both perturbations act on softmax(alpha) (the mixing weights), keep each edge's row in
[0, 1] summing to one, and leave alpha itself untouched: the trainer uses the perturbed
weights for the weight step only, which is the original's "restore alpha after the step".
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Weights = dict[str, Tensor]
Project = Callable[[Weights], Weights]
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


PERTURBATIONS = {"none": None, "random": random_smoothing, "pgd_linf": linf_pgd}
