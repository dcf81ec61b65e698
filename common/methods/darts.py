"""DARTS (Liu, Simonyan, Yang, ICLR 2019), first order: alpha descends the loss on a batch of the
alpha half, with the weights as they are; the mixing weights are softmax(alpha)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..method import TRAIN, Batch, Method

if TYPE_CHECKING:
    from ..trainer import Trainer


def first_order_step(t: Trainer, method: Method, alpha: Batch) -> None:
    """One Adam step of the architecture parameters on the loss of the alpha batch under the
    method's training mixing weights (the original's `Architect._backward_step`)."""
    x, y, n = alpha
    _, loss = t.forward_loss(x, y, method.weights(t.arch, TRAIN), t.arch.active(), n)
    t.alpha_backward(t.group.weighted(loss, len(y), n))
    t.a_opt.step()


class DARTS(Method):
    """First-order DARTS: the mixing weights are softmax(alpha) in every phase."""

    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        first_order_step(trainer, self, alpha)
