"""The straightforward path: what a search step of the original DARTS-PT code costs.

This is the baseline of `benchmarks/bench_search.py` and of `tests/test_fast_path.py` (and,
for second-order DARTS, `UnrolledReferenceStep`: quark0/darts' architect, of `tests/test_darts2.py`;
for DrNAS, `DrNASReferenceStep`: the authors' partial-channel cells and Dirichlet steps);
it is not used by the library. It drives the *same* model modules the way the original code
did. Shared with the project: the supernets' parameters and their op modules
(`nasbench201.operations`, `sota.operations`, `common.batchnorm.BatchNorm2d`, which is
`nn.BatchNorm2d` on NCHW inputs), the stems, reduction blocks and classifiers, and
`common.arch.Architecture` for softmax(alpha) with projected rows. Its own: the cell and
mixed-op forward passes, the optimizer steps and the data pipeline:

- every op of every edge is computed and multiplied by its mixing weight, `none` included
  (NAS-Bench-201: `sum(layer(x) * w for layer, w in zip(ops, weights))`; DARTS space:
  `sum(w * op(x) for w, op in zip(weights, ops) if w != 0)`, where the `w != 0` test reads
  the weight on the host, one device sync per op); a separate ReLU per op;
- the alpha step backpropagates the full graph (`loss.backward()`: the weight gradients
  are computed and then zeroed by the weight step's `zero_grad`, which keeps them as
  zero-filled tensors as PyTorch 1.x did, so skipped ops still get weight decay and momentum);
- NCHW layout, default (per-tensor) optimizers;
- data: torchvision transforms on PIL images through a `DataLoader` with a
  `SubsetRandomSampler`; every search step draws its weight batch and its alpha batch
  from a new iterator (`next(iter(queue))`), `len(train_queue)` steps per epoch, and loss
  and accuracy are read back (`.item()`) every step;
- evaluation (`infer`): per-epoch passes in eval mode and projection scoring passes in train
  mode, loss and accuracy read back every batch.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.config import SearchConfig
from nasbench201.model_search import EDGE_INDEX, NUM_NODES, NB201Supernet
from nasbench201.model_search import SearchCell as NB201Cell
from sota.model_search import DartsSupernet
from sota.model_search import SearchCell as DartsCell

Weights = dict[str, Tensor]


# --------------------------------------------------------------------------- forward passes

def _nb201_cell(cell: NB201Cell, x: Tensor, weights: Tensor) -> Tensor:
    nodes = [x]
    for i in range(1, NUM_NODES):
        inter_nodes = []
        for j in range(i):
            key = f"{i}<-{j}"
            w = weights[EDGE_INDEX[key]]
            inter_nodes.append(sum(layer(nodes[j]) * w[k] for k, layer in enumerate(cell.edges[key])))
        nodes.append(sum(inter_nodes))
    return nodes[-1]


def _nb201_forward(model: NB201Supernet, x: Tensor, weights: Weights) -> Tensor:
    w = weights["cell"]
    feature = model.stem(x)
    for cell in model.cells:
        feature = _nb201_cell(cell, feature, w) if isinstance(cell, NB201Cell) else cell(feature)
    out = model.global_pooling(model.lastact(feature))
    return model.classifier(out.flatten(1))


def _darts_mixed(mixed: nn.Module, x: Tensor, weights: Tensor) -> Tensor | int:
    return sum(w * op(x) for w, op in zip(weights, mixed._ops) if w != 0)


def _darts_cell(cell: DartsCell, s0: Tensor, s1: Tensor, weights: Tensor) -> Tensor:
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    offset = 0
    stride = 2 if cell.reduction else 1
    for _ in range(cell._steps):
        s = sum(_darts_mixed(cell._ops[offset + j], h, weights[offset + j]) for j, h in enumerate(states))
        if not isinstance(s, Tensor):  # every input edge dropped (not reachable in the original)
            s = torch.zeros_like(states[0][:, :, ::stride, ::stride])
        offset += len(states)
        states.append(s)
    return torch.cat(states[-cell._multiplier:], dim=1)


def _darts_forward(model: DartsSupernet, x: Tensor, weights: Weights) -> Tensor:
    s0 = s1 = model.stem(x)
    for cell in model.cells:
        kind = "reduce" if cell.reduction else "normal"
        s0, s1 = s1, _darts_cell(cell, s0, s1, weights[kind])
    out = model.global_pooling(s1)
    return model.classifier(out.flatten(1))


def _channel_shuffle(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)


def _drnas_mixed(ops: Iterable[nn.Module], x: Tensor, weights: Tensor, k: int, pool: nn.Module | None) -> Tensor:
    """DrNAS' partial-channel mixed op (201-space/search_cells.py:157-166, DARTS-space/model_search.py:
    41-56): the ops on the first C/k channels, skipping zero weights (a host sync per op), the rest
    passed by (through a 2x2 max pool when the ops halve the size), concatenated and shuffled."""
    c = x.shape[1] // k
    out = sum(w * op(x[:, :c]) for w, op in zip(weights, ops) if not w == 0)
    if k == 1:
        return out
    rest = x[:, c:]
    if pool is not None and out.shape[2] != x.shape[2]:
        rest = pool(rest)
    return _channel_shuffle(torch.cat([out, rest], dim=1), k)


_DRNAS_POOL = nn.MaxPool2d(2, 2)


def _drnas_forward(model: nn.Module, x: Tensor, weights: Weights, edges: Weights | None = None) -> Tensor:
    """DrNAS' TinyNetwork and Network forward passes (the project's modules, the authors' cells);
    `edges`: PC-DARTS' normalised betas per cell kind, each DARTS-space edge's output times its own
    (PC-DARTS model_search.py:78-89)."""
    k = model.partial_channels
    if isinstance(model, NB201Supernet):
        feature = model.stem(x)
        for cell in model.cells:
            if not isinstance(cell, NB201Cell):
                feature = cell(feature)
                continue
            nodes, w = [feature], weights["cell"]
            for i in range(1, NUM_NODES):
                keys = [f"{i}<-{j}" for j in range(i)]
                nodes.append(sum(_drnas_mixed(cell.edges[key], nodes[j], w[EDGE_INDEX[key]], k, None)
                                 for j, key in enumerate(keys)))
            feature = nodes[-1]
        return model.classifier(model.global_pooling(model.lastact(feature)).flatten(1))
    s0 = s1 = model.stem(x)
    for cell in model.cells:
        kind = "reduce" if cell.reduction else "normal"
        w, e = weights[kind], None if edges is None else edges[kind]
        states, offset = [cell.preprocess0(s0), cell.preprocess1(s1)], 0
        for _ in range(cell._steps):
            mixed = [_drnas_mixed(cell._ops[offset + j]._ops, h, w[offset + j], k, _DRNAS_POOL)
                     for j, h in enumerate(states)]
            node = sum(m if e is None else e[offset + j] * m for j, m in enumerate(mixed))
            offset += len(states)
            states.append(node)
        s0, s1 = s1, torch.cat(states[-cell._multiplier:], dim=1)
    return model.classifier(model.global_pooling(s1).flatten(1))


def reference_forward(model: nn.Module, x: Tensor, weights: Weights) -> Tensor:
    """Logits of `model` computed as the original code computed them (with partial channels:
    DrNAS' cells, the only original code of such supernets)."""
    if getattr(model, "partial_channels", 1) > 1:
        return _drnas_forward(model, x, weights)
    if isinstance(model, NB201Supernet):
        return _nb201_forward(model, x, weights)
    if isinstance(model, DartsSupernet):
        return _darts_forward(model, x, weights)
    raise TypeError(f"no reference forward for {type(model).__name__}")


# --------------------------------------------------------------------------- GDAS (AutoDL-Projects)

def gdas_sample(alpha: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """AutoDL's sampler: Gumbel noise from the global RNG, redrawn while anything is infinite or
    NaN (three host syncs a draw); straight-through hard weights and the sampled index per edge."""
    while True:
        gumbels = -torch.empty_like(alpha).exponential_().log()
        probs = F.softmax((alpha.log_softmax(dim=1) + gumbels) / tau, dim=1)
        index = probs.max(-1, keepdim=True)[1]
        hardwts = torch.zeros_like(probs).scatter_(-1, index, 1.0) - probs.detach() + probs
        if not (torch.isinf(gumbels).any() or torch.isinf(probs).any() or torch.isnan(probs).any()):
            return hardwts, index


def _nb201_cell_gdas(cell: NB201Cell, x: Tensor, hardwts: Tensor, index: Tensor) -> Tensor:
    """AutoDL's `forward_gdas`: the sampled op of each edge (its index read back, one sync per
    edge), the other ops' weights added as scalars."""
    nodes = [x]
    for i in range(1, NUM_NODES):
        inter_nodes = []
        for j in range(i):
            key = f"{i}<-{j}"
            w, chosen = hardwts[EDGE_INDEX[key]], index[EDGE_INDEX[key]].item()
            inter_nodes.append(sum(w[k] * op(nodes[j]) if k == chosen else w[k]
                                   for k, op in enumerate(cell.edges[key])))
        nodes.append(sum(inter_nodes))
    return nodes[-1]


def _darts_cell_gdas(cell: DartsCell, s0: Tensor, s1: Tensor, hardwts: Tensor, index: Tensor) -> Tensor:
    """AutoDL's NASNet `forward_gdas`: `ops[index](x) * hardwts[index]` per edge (one sync each)."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    offset = 0
    for _ in range(cell._steps):
        terms = []
        for j, h in enumerate(states):
            chosen = int(index[offset + j].item())
            terms.append(cell._ops[offset + j]._ops[chosen](h) * hardwts[offset + j][chosen])
        offset += len(states)
        states.append(sum(terms))
    return torch.cat(states[-cell._multiplier:], dim=1)


def gdas_forward(model: nn.Module, x: Tensor, samples: dict[str, tuple[Tensor, Tensor]]) -> Tensor:
    """Logits of `model` under GDAS samples (kind -> (hardwts, index)), as AutoDL computes them."""
    if isinstance(model, NB201Supernet):
        feature = model.stem(x)
        for cell in model.cells:
            is_cell = isinstance(cell, NB201Cell)
            feature = _nb201_cell_gdas(cell, feature, *samples["cell"]) if is_cell else cell(feature)
        return model.classifier(model.global_pooling(model.lastact(feature)).flatten(1))
    if isinstance(model, DartsSupernet):
        s0 = s1 = model.stem(x)
        for cell in model.cells:
            s0, s1 = s1, _darts_cell_gdas(cell, s0, s1, *samples["reduce" if cell.reduction else "normal"])
        return model.classifier(model.global_pooling(s1).flatten(1))
    raise TypeError(f"no GDAS forward for {type(model).__name__}")


class GDASReferenceStep:
    """AutoDL's GDAS step (`exps/algos/GDAS.py` search_func): weight step (its clipping over the
    weights and alpha), then arch step, each on a new sample, both backpropagating the full graph."""

    def __init__(self, model: nn.Module, arch: Any, cfg: SearchConfig, tau: float = 10.0) -> None:
        self.model, self.arch, self.cfg, self.tau = model, arch, cfg, tau
        self.criterion = nn.CrossEntropyLoss()
        o = cfg.optim
        self.w_opt = torch.optim.SGD(model.parameters(), o.learning_rate, momentum=o.momentum,
                                     weight_decay=o.weight_decay, nesterov=o.nesterov)
        self.a_opt = torch.optim.Adam(arch.parameters(), lr=cfg.alpha.arch_learning_rate, betas=(0.5, 0.999),
                                      weight_decay=cfg.alpha.arch_weight_decay)

    def _loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        samples = {k: gdas_sample(a, self.tau) for k, a in self.arch.alphas.items()}
        logits = gdas_forward(self.model, x, samples)
        return logits, self.criterion(logits, y)

    def weight_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.w_opt.zero_grad(set_to_none=False)
        logits, loss = self._loss(x, y)
        loss.backward()
        nn.utils.clip_grad_norm_([*self.model.parameters(), *self.arch.parameters()], self.cfg.optim.grad_clip)
        self.w_opt.step()
        return logits, loss

    def alpha_step(self, x: Tensor, y: Tensor) -> Tensor:
        self.a_opt.zero_grad(set_to_none=False)
        _, loss = self._loss(x, y)
        loss.backward()
        self.a_opt.step()
        return loss


# --------------------------------------------------------------------------- one search step

class ReferenceStep:
    """Alpha step and weight step as the original `Architect.step` and training loop."""

    def __init__(self, model: nn.Module, arch: Any, cfg: SearchConfig,
                 perturb: Callable | None = None) -> None:
        self.model, self.arch, self.cfg, self.perturb = model, arch, cfg, perturb
        self.criterion = nn.CrossEntropyLoss()
        o = cfg.optim
        self.w_opt = torch.optim.SGD(model.parameters(), o.learning_rate, momentum=o.momentum,
                                     weight_decay=o.weight_decay, nesterov=o.nesterov)
        self.a_opt = torch.optim.Adam(arch.parameters(), lr=cfg.alpha.arch_learning_rate, betas=(0.5, 0.999),
                                      weight_decay=cfg.alpha.arch_weight_decay)

    def alpha_step(self, x: Tensor, y: Tensor) -> Tensor:
        self.a_opt.zero_grad()
        loss = self.criterion(reference_forward(self.model, x, self.arch.weights()), y)
        loss.backward()  # also fills every weight's .grad, which the weight step discards
        self.a_opt.step()
        return loss

    def weight_step(self, x: Tensor, y: Tensor, epsilon: float = 0.0) -> tuple[Tensor, Tensor]:
        weights = {k: w.detach() for k, w in self.arch.weights().items()}
        if self.perturb is not None:
            project = self.arch.apply_projection
            weights = project(self.perturb(self.model, weights, x, y, epsilon, project))
        self.w_opt.zero_grad(set_to_none=False)  # PyTorch 1.x: zero-filled, not freed
        logits = reference_forward(self.model, x, weights)
        loss = self.criterion(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.w_opt.step()
        return logits, loss


def _concat(xs: Iterable[Tensor]) -> Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


class UnrolledReferenceStep(ReferenceStep):
    """Second-order DARTS as quark0/darts' `cnn/architect.py` computes it (`unrolled=True`), line
    by line, driving the same supernet: the virtual step on flattened parameters, a new model
    built for w' (`new_model`: as the original's `model.new()`, a freshly initialised network)
    that loads the state_dict with w' and takes a copy of alpha, backward through it, and the
    finite-difference Hessian-vector product that moves the model's parameters by +-R v in
    place and back. The weight step is `ReferenceStep`'s."""

    def __init__(self, model: nn.Module, arch: Any, cfg: SearchConfig, new_model: Callable[[], nn.Module]) -> None:
        super().__init__(model, arch, cfg)
        self.new_model = new_model

    def _loss(self, model: nn.Module, arch: Any, x: Tensor, y: Tensor) -> Tensor:
        return self.criterion(reference_forward(model, x, arch.weights()), y)

    def alpha_step(self, x: Tensor, y: Tensor, x_train: Tensor | None = None,  # type: ignore[override]
                   y_train: Tensor | None = None) -> Tensor:
        assert x_train is not None and y_train is not None
        eta = self.w_opt.param_groups[0]["lr"]
        self.a_opt.zero_grad()
        unrolled_model, unrolled_arch = self._compute_unrolled_model(x_train, y_train, eta)
        unrolled_loss = self._loss(unrolled_model, unrolled_arch, x, y)
        unrolled_loss.backward()
        dalpha = [v.grad for v in unrolled_arch.parameters()]
        vector = [v.grad.data for v in unrolled_model.parameters()]
        implicit_grads = self._hessian_vector_product(vector, x_train, y_train)
        for g, ig in zip(dalpha, implicit_grads):
            g.data.sub_(ig.data, alpha=eta)
        for v, g in zip(self.arch.parameters(), dalpha):
            v.grad = g.data.clone()
        self.a_opt.step()
        return unrolled_loss

    def _compute_unrolled_model(self, x: Tensor, y: Tensor, eta: float) -> tuple[nn.Module, Any]:
        o = self.cfg.optim
        loss = self._loss(self.model, self.arch, x, y)
        theta = _concat(self.model.parameters()).data
        try:
            moment = _concat(self.w_opt.state[v]["momentum_buffer"] for v in self.model.parameters()).mul_(o.momentum)
        except KeyError:
            moment = torch.zeros_like(theta)
        dtheta = _concat(torch.autograd.grad(loss, list(self.model.parameters()))).data + o.weight_decay * theta
        return self._construct_model_from_theta(theta.sub(moment + dtheta, alpha=eta))

    def _construct_model_from_theta(self, theta: Tensor) -> tuple[nn.Module, Any]:
        model_new = self.new_model().to(theta.device)  # the original's new(): Network(...).cuda()
        model_dict = self.model.state_dict()
        params, offset = {}, 0
        for k, v in self.model.named_parameters():
            params[k] = theta[offset: offset + v.numel()].view(v.size())
            offset += v.numel()
        assert offset == len(theta)
        model_dict.update(params)
        model_new.load_state_dict(model_dict)
        arch_new = copy.deepcopy(self.arch)  # the original's new() copies alpha into the new model
        for a in arch_new.parameters():
            a.grad = None
        return model_new, arch_new

    def _hessian_vector_product(self, vector: list[Tensor], x: Tensor, y: Tensor, r: float = 1e-2) -> list[Tensor]:
        R = (r / _concat(vector).norm()).item()
        for p, v in zip(self.model.parameters(), vector):
            p.data.add_(v, alpha=R)
        loss = self._loss(self.model, self.arch, x, y)
        grads_p = torch.autograd.grad(loss, self.arch.parameters())
        for p, v in zip(self.model.parameters(), vector):
            p.data.sub_(v, alpha=2 * R)
        loss = self._loss(self.model, self.arch, x, y)
        grads_n = torch.autograd.grad(loss, self.arch.parameters())
        for p, v in zip(self.model.parameters(), vector):
            p.data.add_(v, alpha=R)
        return [(a - b).div_(2 * R) for a, b in zip(grads_p, grads_n)]


class DrNASReferenceStep(ReferenceStep):
    """DrNAS' steps as xiangning-chen/DrNAS runs them (201-space/train_search.py:252-276,
    DARTS-space/train_search.py:171-194, root architect.py first order, utils.py:167-194): every
    forward draws one `Dirichlet(ELU(alpha_row) + 1).rsample()` per row (from the global RNG) and
    renormalises the rows of pruned ops; the alpha step backpropagates the full graph, its loss with
    the KL term for --reg_type kl, Adam's weight decay --reg_scale for l2; the weight step clips the
    norm of `model.parameters()`, alpha included where the authors registered it (NAS-Bench-201)."""

    def __init__(self, model: nn.Module, arch: Any, cfg: SearchConfig, clip_alpha: bool) -> None:
        super().__init__(model, arch, cfg)
        o = cfg.method_options
        self.reg_type, self.reg_scale, self.clip_alpha = o.reg_type, o.reg_scale, clip_alpha
        for group in self.a_opt.param_groups:
            group["weight_decay"] = o.reg_scale if o.reg_type == "l2" else 0.0

    def _weights(self) -> Weights:
        out = {}
        for kind, alpha in self.arch.alphas.items():
            kept = None if self.arch.kept is None else self.arch.kept[kind]
            rows = []
            for i, line in enumerate(alpha):
                sample = torch.distributions.Dirichlet(F.elu(line) + 1).rsample()
                if kept is not None:
                    pruned = torch.zeros_like(sample)
                    pruned[kept[i]] = sample[kept[i]]
                    sample = pruned / pruned.sum()
                rows.append(sample)
            out[kind] = torch.stack(rows)
        return self.arch.apply_projection(out)

    def alpha_step(self, x: Tensor, y: Tensor) -> Tensor:
        self.a_opt.zero_grad()
        loss = self.criterion(_drnas_forward(self.model, x, self._weights()), y)
        if self.reg_type == "kl":
            for alpha in self.arch.alphas.values():
                c = F.elu(alpha) + 1
                loss = loss + self.reg_scale * torch.distributions.kl_divergence(
                    torch.distributions.Dirichlet(c), torch.distributions.Dirichlet(torch.ones_like(c))).sum()
        loss.backward()
        self.a_opt.step()
        return loss

    def weight_step(self, x: Tensor, y: Tensor, epsilon: float = 0.0) -> tuple[Tensor, Tensor]:
        self.w_opt.zero_grad(set_to_none=False)
        self.a_opt.zero_grad(set_to_none=False)
        logits = _drnas_forward(self.model, x, self._weights())
        loss = self.criterion(logits, y)
        loss.backward()
        clipped = [*self.model.parameters(), *(self.arch.parameters() if self.clip_alpha else [])]
        nn.utils.clip_grad_norm_(clipped, self.cfg.optim.grad_clip)
        self.w_opt.step()
        return logits, loss


class PCDARTSReferenceStep(ReferenceStep):
    """PC-DARTS' steps as yuhuixu1993/PC-DARTS runs them (train_search.py:140-165, architect.py:31-41,
    model_search.py): softmax(alpha) and, in the DARTS space, the betas normalised over each node's
    inputs, trained by one Adam; the alpha step backpropagates the full graph; the weight step clips
    the weights (and alpha on NAS-Bench-201, as DrNAS' partial-channel DARTS there)."""

    def __init__(self, model: nn.Module, arch: Any, cfg: SearchConfig, clip_alpha: bool,
                 node_inputs: tuple[int, ...] | None) -> None:
        super().__init__(model, arch, cfg)
        self.clip_alpha, self.node_inputs = clip_alpha, node_inputs
        self.betas = {kind: (1e-3 * torch.randn(a.shape[0])).to(a.device).requires_grad_()
                      for kind, a in arch.alphas.items()} if node_inputs else {}
        if self.betas:
            self.a_opt.add_param_group({"params": list(self.betas.values())})

    def _edges(self) -> Weights | None:
        if not self.node_inputs:
            return None
        sizes = list(self.node_inputs)
        return {k: torch.cat([F.softmax(g, dim=-1) for g in b.split(sizes)]) for k, b in self.betas.items()}

    def alpha_step(self, x: Tensor, y: Tensor) -> Tensor:
        self.a_opt.zero_grad()
        loss = self.criterion(_drnas_forward(self.model, x, self.arch.weights(), self._edges()), y)
        loss.backward()
        self.a_opt.step()
        return loss

    def weight_step(self, x: Tensor, y: Tensor, epsilon: float = 0.0) -> tuple[Tensor, Tensor]:
        self.w_opt.zero_grad(set_to_none=False)
        self.a_opt.zero_grad(set_to_none=False)  # DrNAS' (the clipped alpha's gradient is this batch's)
        logits = _drnas_forward(self.model, x, self.arch.weights(), self._edges())
        loss = self.criterion(logits, y)
        loss.backward()
        clipped = [*self.model.parameters(), *(self.arch.parameters() if self.clip_alpha else [])]
        nn.utils.clip_grad_norm_(clipped, self.cfg.optim.grad_clip)
        self.w_opt.step()
        return logits, loss


def accuracy(logits: Tensor, y: Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item() * 100.0


# --------------------------------------------------------------------------- data

class PILImages(torch.utils.data.Dataset):
    """An in-memory uint8 [N, H, W, 3] array served as torchvision serves CIFAR: PIL images."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def cifar_transform(mean, std, padding: int = 4, size: int = 32, augment: bool = True):
    import torchvision.transforms as T

    steps = [T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip()] if augment else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


class Cutout:
    """DARTS' utils.Cutout: zero one length x length square (clipped) of a normalised image."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: Tensor) -> Tensor:
        h, w = img.size(1), img.size(2)
        mask = np.ones((h, w), np.float32)
        y, x = np.random.randint(h), np.random.randint(w)
        y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
        x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
        mask[y1:y2, x1:x2] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)


def eval_transform(mean, std, cutout_length: int = 16, padding: int = 4, size: int = 32):
    """DARTS train.py's training transform (with --cutout)."""
    import torchvision.transforms as T

    return T.Compose([cifar_transform(mean, std, padding, size), Cutout(cutout_length)])


def search_queues(images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int,
                  train_portion: float = 0.5, num_workers: int = 0, pin_memory: bool = False,
                  padding: int = 4) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """The original's train_queue and valid_queue over the two halves of one training set."""
    data = PILImages(images, labels, cifar_transform(mean, std, padding, images.shape[1]))
    split = int(np.floor(train_portion * len(labels)))
    idx = list(range(len(labels)))

    def queue(part):
        return torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                           sampler=torch.utils.data.SubsetRandomSampler(part),
                                           pin_memory=pin_memory)
    return queue(idx[:split]), queue(idx[split:])


def search_batches(train_queue, valid_queue, device: torch.device) -> Iterator[tuple[Tensor, ...]]:
    """(x, y, x_search, y_search) per step of one search epoch, as the original's `train()`:
    `len(train_queue)` steps, each batch from a fresh iterator (`next(iter(queue))`)."""
    for _ in range(len(train_queue)):
        x, y = next(iter(train_queue))
        xs, ys = next(iter(valid_queue))
        yield (x.to(device, non_blocking=True), y.to(device, non_blocking=True),
               xs.to(device, non_blocking=True), ys.to(device, non_blocking=True))


def tuning_batches(train_queue, valid_queue, device: torch.device) -> Iterator[tuple[Tensor, ...]]:
    """(x, y, x_search, y_search) per step of one projection tuning epoch, as the original: an
    epoch of the weight half, each alpha batch from a fresh iterator."""
    for x, y in train_queue:
        xs, ys = next(iter(valid_queue))
        yield (x.to(device, non_blocking=True), y.to(device, non_blocking=True),
               xs.to(device, non_blocking=True), ys.to(device, non_blocking=True))


@torch.no_grad()
def infer(model: nn.Module, batches, weights: Weights, device: torch.device, train: bool = False
          ) -> tuple[float, float]:
    """The original's `infer`: accuracy and loss over a pass, read back every batch; in eval mode
    (the per-epoch evaluations) or, `train`, in train mode (BatchNorm batch statistics)."""
    model.train(train)
    total_loss = total_acc = n = 0.0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = reference_forward(model, x, weights)
        loss = F.cross_entropy(logits, y)
        total_loss += loss.item() * len(y)
        total_acc += accuracy(logits, y) * len(y)
        n += len(y)
    model.train()
    return total_acc / n, total_loss / n


def scoring_pass(model: nn.Module, batches, weights: Weights, device: torch.device) -> tuple[float, float]:
    """A projection scoring pass: the original's `infer` in train mode."""
    return infer(model, batches, weights, device, train=True)
