"""Zero-cost operation scores: fast projection criteria (`--proj_crit nwot|synflow|grad_norm|jacob_cov`).

Zero-Cost-PT (Xiang, Dudziak, Abdelfattah, Chau, Lane, Wen: "Zero-Cost Operation Scoring in
Differentiable Architecture Search", AAAI 2023) keeps DARTS-PT's perturbation (remove an op, see how
much the supernet loses) but measures the supernet with a zero-cost proxy on one batch instead of its
accuracy on the whole alpha half. Every proxy here is "higher is better"; the op whose removal lowers
it most is kept, as with accuracy. Each is a function of (model, mixing weights, active ops, images,
labels) -> float. nwot is Mellor et al.'s NASWOT as Zero-Cost-PT computes it itself; the other three
have the definitions of SamsungLabs' zero-cost-nas (`foresight`), which Zero-Cost-PT calls for them
(foresight has no nwot):

- nwot (NASWOT: Mellor et al., "Neural Architecture Search without Training", ICML 2021, the v2 of
  the paper): log|det K|, where K[i, j] sums, over every ReLU the forward evaluates, the number of
  units on which images i and j have the same binary code (input > 0 or not); the model in eval
  mode. Zero-Cost-PT's `--proj_crit jacob` computes this (its `Jocab_Score`, in its own
  `op_score.py`; docs/fast-projection.md says how ReLUs are counted here).
- synflow (Tanaka et al.): the network without batch norm, every parameter replaced by its absolute
  value, in float64, on one all-ones image: sum over conv and linear weights of |w * dR/dw|, R the sum
  of the outputs.
- grad_norm: sum over conv and linear weights of the L2 norm of the cross-entropy loss's gradient.
- jacob_cov (Mellor et al. v1): with J the input Jacobians of the summed outputs, one row per image,
  and v the eigenvalues of the correlation matrix of J's rows: -sum(log(v + 1e-5) + 1 / (v + 1e-5)).

Scoring leaves the supernet as it was (foresight and Zero-Cost-PT score a copy): synflow works on a
copy, the others take gradients with `torch.autograd.grad` (no `.grad` written), and `proxy_score`
puts the batch-norm statistics and train/eval modes back.
"""
from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .arch import Active
from .config import PROXY_CRITERIA
from .space import Weights

Proxy = Callable[[nn.Module, Weights, Active, Tensor, Tensor], float]
JACOB_EPS = 1e-5  # foresight's k in jacob_cov


def _scored_layers(model: nn.Module) -> list[Tensor]:
    """The weights foresight scores: those of the convolutions and linear layers."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class _ReluCodes(TorchFunctionMode):
    """Adds each ReLU input's binary-code kernel to K, whichever way the ReLU is called
    (nn.ReLU, F.relu, torch.relu, Tensor.relu): the supernets share one functional ReLU per cell
    state, which module hooks would miss."""

    RELUS = frozenset({torch.relu, torch.relu_, F.relu, F.relu_, Tensor.relu, Tensor.relu_})

    def __init__(self, batch: int, device: torch.device) -> None:
        super().__init__()
        self.K = torch.zeros(batch, batch, dtype=torch.float64, device=device)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.RELUS:
            x = args[0]
            codes = (x.reshape(x.shape[0], -1) > 0).to(torch.float64)
            self.K += codes @ codes.T + (1 - codes) @ (1 - codes).T
        return func(*args, **(kwargs or {}))


def nwot(model: nn.Module, weights: Weights, active: Active, x: Tensor, y: Tensor) -> float:
    model.eval()
    codes = _ReluCodes(x.shape[0], x.device)
    with torch.no_grad(), codes:
        model(x, weights, active)
    return float(torch.linalg.slogdet(codes.K)[1])


def _drop_batch_norm(model: nn.Module) -> None:
    """foresight's synflow scores the network built without batch norm: each batch norm of the
    copy becomes the identity (an instance attribute shadows the class's forward)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = _identity  # type: ignore[assignment,method-assign]


def _identity(x: Tensor) -> Tensor:
    return x


def synflow(model: nn.Module, weights: Weights, active: Active, x: Tensor, y: Tensor) -> float:
    model = copy.deepcopy(model)  # its weights become absolute values, in float64
    model.train()
    _drop_batch_norm(model)
    model.double()
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    w64 = {k: v.double() for k, v in weights.items()}
    layers = _scored_layers(model)
    grads = torch.autograd.grad(model(ones, w64, active).sum(), layers, allow_unused=True)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(layers, grads) if g is not None))


def grad_norm(model: nn.Module, weights: Weights, active: Active, x: Tensor, y: Tensor) -> float:
    model.train()
    layers = _scored_layers(model)
    loss = F.cross_entropy(model(x, weights, active), y)
    grads = torch.autograd.grad(loss, layers, allow_unused=True)
    return float(sum(g.norm() for g in grads if g is not None))


def jacob_cov(model: nn.Module, weights: Weights, active: Active, x: Tensor, y: Tensor) -> float:
    model.train()
    x = x.detach().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(model(x, weights, active).sum(), x)
    corr = np.corrcoef(jacobian.reshape(x.shape[0], -1).double().cpu().numpy())
    v = np.linalg.eigvalsh(corr)
    with np.errstate(invalid="ignore", divide="ignore"):  # a degenerate Jacobian scores nan
        return float(-np.sum(np.log(v + JACOB_EPS) + 1.0 / (v + JACOB_EPS)))


PROXIES: dict[str, Proxy] = {"nwot": nwot, "synflow": synflow, "grad_norm": grad_norm, "jacob_cov": jacob_cov}
assert tuple(PROXIES) == PROXY_CRITERIA


def proxy_score(name: str, model: nn.Module, weights: Weights, active: Active,
                batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """The mean of proxy `name` over `batches`; nan if a batch scores nan (the selection then
    ignores this op, as Zero-Cost-PT's nanargmin). The model's batch-norm statistics and mode are
    restored after each batch, and no proxy writes its parameters or their .grad."""
    fn = PROXIES[name]
    values = []
    for x, y in batches:
        with _restored(model), torch.inference_mode(False), torch.enable_grad():
            values.append(fn(model, weights, active, x, y))
    return float(np.mean(values)) if values else math.nan


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Puts back the model's buffers (batch-norm running statistics) and train/eval modes."""
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    modes = [m.training for m in model.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])
        for m, training in zip(model.modules(), modes):
            m.training = training
