"""Second-order DARTS (`--unrolled`): alpha descends the validation loss of the weights after a
virtual SGD step, as quark0/darts' `cnn/architect.py` computes it (`unrolled=True`):

    w' = w - xi * (momentum * buffer + dL_train/dw + weight_decay * w)   (xi: the weight lr now)
    dalpha = dL_val(w', alpha)/dalpha
             - xi * (dL_train(w+, alpha)/dalpha - dL_train(w-, alpha)/dalpha) / (2 eps)
    with w+- = w +- eps * dL_val(w')/dw', eps = 0.01 / ||dL_val(w')/dw'||

All on the supernet itself, its parameters swapped in place (the original built a copy of the
model for w'), and each parameter back to the very value it had (the original added and
subtracted eps * v again, which rounds). As in the original, the training-mode forward passes on
the weight batch (at w, w+ and w-) update the batch norms' running statistics, and the one at w'
does not (it ran on the copy). A parameter the losses do not reach (an op projection killed) has
no gradient: it counts as zero, where the original's `autograd.grad` would have failed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from ..arch import Architecture
from ..method import TRAIN, Batch, Method, detached
from .darts import DARTS

if TYPE_CHECKING:
    from ..trainer import Trainer

FINITE_DIFFERENCE = 0.01  # eps * ||dL_val/dw'||: the original's r


def second_order_step(t: Trainer, method: Method, alpha: Batch, train: Batch | None,
                      regulariser: Callable[[Architecture], Tensor | None] = lambda arch: None) -> None:
    """One Adam step of the architecture parameters on the second-order gradient above; `train`
    is the step's weight batch; `regulariser` (DrNAS' kl) is added to the loss on the alpha batch.
    The weights end as they were; their `.grad` (zero-filled by the weight step that follows)
    serve as scratch."""
    if train is None:
        raise ValueError("a second-order alpha step needs the step's weight batch (train=)")
    xi = t.w_opt.param_groups[0]["lr"]
    live, theta = _virtual_step(t, method, train, xi)
    with _own_running_statistics(t.model):  # the original's w' lived in a copy of the model
        dalpha = _backward(t, method, alpha, t.alpha_parameters, regulariser)
    t.group.average_gradients(live)
    vector = cast(list[Tensor], [p.grad for p in live])  # dL_val/dw', averaged over the processes
    with torch.no_grad():
        eps = FINITE_DIFFERENCE / torch.linalg.vector_norm(torch.stack(torch._foreach_norm(vector)))
        torch._foreach_mul_(vector, eps)  # eps * v, in place: `vector` is scratch
    plus = _grads_at(t, method, train, live, theta, vector, 1)
    minus = _grads_at(t, method, train, live, theta, vector, -1)
    with torch.no_grad():
        torch._foreach_copy_(live, theta)
        for a, d, p, m in zip(t.alpha_parameters, dalpha, plus, minus):
            a.grad = _second_order(d, p, m, xi, eps)
    t.group.average_gradients(t.alpha_parameters)
    t.a_opt.step()


def _virtual_step(t: Trainer, method: Method, train: Batch, xi: float) -> tuple[list[Tensor], list[Tensor]]:
    """Move the weights to w' in place; the weights moved and their values before. Those with a
    gradient tensor move: the ones the loss reaches (the first step gives them their tensor, as
    a first-order alpha step does) and the ops skipped since; SGD's momentum buffer counts as
    zero where it has none yet (the original's first step)."""
    opt = t.cfg.optim
    t.w_opt.zero_grad(set_to_none=False)
    x, y, n = train
    _, loss = t.forward_loss(x, y, detached(method.weights(t.arch, TRAIN)), t.arch.active(), n)
    t.group.weighted(loss, len(y), n).backward()
    live: list[Tensor] = [p for p in t.model.parameters() if p.grad is not None]
    t.group.average_gradients(live)
    with torch.no_grad():
        theta = [p.detach().clone() for p in live]
        step = cast(list[Tensor], [p.grad for p in live])
        torch._foreach_add_(step, live, alpha=opt.weight_decay)  # dL_train/dw + weight_decay * w
        moving = [(s, state["momentum_buffer"]) for s, p in zip(step, live)
                  if (state := t.w_opt.state.get(p)) and state.get("momentum_buffer") is not None]
        if moving:
            torch._foreach_add_([s for s, _ in moving], [b for _, b in moving], alpha=opt.momentum)
        torch._foreach_add_(live, step, alpha=-xi)
    return live, theta


def _backward(t: Trainer, method: Method, batch: Batch, alphas: list[nn.Parameter],
              regulariser: Callable[[Architecture], Tensor | None]) -> list[Tensor | None]:
    """This process's gradients of the loss on `batch` (weighted by its share of the batch), plus
    the regulariser's: the weights' in their `.grad` (zeroed first), the architecture parameters'
    returned."""
    t.w_opt.zero_grad(set_to_none=False)
    for a in alphas:
        a.grad = None
    x, y, n = batch
    _, loss = t.forward_loss(x, y, method.weights(t.arch, TRAIN), t.arch.active(), n)
    loss = t.group.weighted(loss, len(y), n)
    reg = regulariser(t.arch)
    (loss if reg is None else loss + reg).backward()
    grads = [a.grad for a in alphas]
    for a in alphas:
        a.grad = None
    return grads


def _grads_at(t: Trainer, method: Method, train: Batch, live: list[Tensor], theta: list[Tensor],
              step: list[Tensor], sign: int) -> tuple[Tensor | None, ...]:
    """This process's gradient of the training loss with respect to the architecture parameters,
    at the weights theta + sign * step."""
    with torch.no_grad():
        torch._foreach_copy_(live, theta)
        torch._foreach_add_(live, step, alpha=sign)
    x, y, n = train
    _, loss = t.forward_loss(x, y, method.weights(t.arch, TRAIN), t.arch.active(), n)
    alphas = t.alpha_parameters
    return torch.autograd.grad(t.group.weighted(loss, len(y), n), alphas, allow_unused=True)


def _second_order(dalpha: Tensor | None, plus: Tensor | None, minus: Tensor | None, xi: float,
                  eps: Tensor) -> Tensor | None:
    """dalpha - xi * (plus - minus) / (2 eps), a missing gradient counting as zero (None if all are)."""
    given = [g for g in (dalpha, plus, minus) if g is not None]
    if not given:
        return None
    zero = torch.zeros_like(given[0])
    implicit = ((plus if plus is not None else zero) - (minus if minus is not None else zero)).div_(2 * eps)
    return (dalpha if dalpha is not None else zero) - xi * implicit


@contextlib.contextmanager
def _own_running_statistics(model: nn.Module) -> Iterator[None]:
    """The model's buffers (batch norms' running statistics) after the block as before it."""
    buffers = list(model.buffers())
    saved = [b.clone() for b in buffers]
    yield
    with torch.no_grad():
        for b, value in zip(buffers, saved):
            b.copy_(value)


class DARTS2(DARTS):
    """DARTS with the second-order architecture step (softmax(alpha) mixing weights)."""

    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        second_order_step(trainer, self, alpha, train)
