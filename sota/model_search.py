"""DARTS-space weight-sharing supernet (after DARTS-PT sota/cnn/model_search.py).

The architecture parameters are not part of the model: `forward` receives the mixing
weights ({"normal": [14, n], "reduce": [14, n]}), typically softmax(alpha) with projected
rows replaced, so the state_dict keeps DARTS-PT's layout and alpha handling stays with
the caller.

A mixed op computes only the ops whose weight is not exactly 0 (projection sets removed
ops and dropped edges to 0) and never the `none` op, whose output is zero anyway. What the
ops on the edges leaving a cell state share (the ReLU most ops start with; each pool at each
stride, before the per-edge BatchNorm) is computed once per state, not once per op and edge
(common/cellops.py). Which ops may be non-zero is passed as host-side lists (`active`), so the
forward needs no device-to-host synchronisation; `active_ops` derives them from the weights
with a single transfer when the caller does not track them.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from common.arch import Active, active_ops
from common.batchnorm import BatchNorm2d
from common.cellops import NodeSum, Pool, StateInputs, mix_edge, op_weights
from common.net2wider import Draw, Widened
from common.space import edge_weights_key
from sota.genotypes import Genotype, parse_genotype
from sota.operations import OPS, FactorizedReduce, PoolBN, ReLUConvBN
from sota.spaces import KIND_KEYS, NUM_EDGES
from sota.spaces import space as get_space


class MixedOp(nn.Module):
    """One edge: sum_k w_k * op_k(x) over the edge's candidate ops, built for C/k channels under
    partial channels 1/k (DrNAS)."""

    def __init__(self, C: int, stride: int, primitives: list[str], k: int = 1) -> None:
        super().__init__()
        self.primitives = list(primitives)
        self.C = C
        self._ops = nn.ModuleList()
        for name in primitives:
            op = OPS[name](C // k, stride, False)
            if "pool" in name:  # parameter-free pools get a BN so their scale matches the convs
                op = PoolBN(op, C // k)
            self._ops.append(op)

    def mix_into(self, acc: Tensor | None, inputs: StateInputs, weights: Sequence[Tensor],
                 active: list[int]) -> Tensor | None:
        """`acc` plus this edge's weighted ops of the state `inputs` (common/cellops.py);
        `weights`: 0-d tensors per op; `active`: indices that may be non-zero. None when nothing
        was added to a None `acc` (all active ops are `none`, or no op is active)."""
        return mix_edge(acc, self._ops, inputs, weights, active)

    def forward(self, x: Tensor, weights: Tensor, active: list[int]) -> Tensor | None:
        """The edge alone: sum_k weights[k] * op_k(x) over `active`, None if nothing is computed."""
        return self.mix_into(None, StateInputs(x), weights.unbind(0), active)

    def widen(self, k: int, draw: Draw) -> list[Widened]:
        """Every op grown to C/k channels (DrNAS's MixedOp.wider, op by op)."""
        return [w for op in self._ops for w in op.widen(self.C // k, self.C // k, draw)]


# What partial channels pass by on a stride-2 edge: DrNAS's MixedOp.mp, MaxPool2d(2, 2).
PASSED_AT_STRIDE_2 = Pool(max=True, kernel=2, stride=2, padding=0)


class SearchCell(nn.Module):
    """Node i is the sum, over the states j before it, of the mixed edge j -> i, computed as one
    running sum per node (common/cellops.py): what the ops leaving a state share (its ReLU, its
    pools at each stride) is computed once for all of them, and each op's final batch norm takes
    its mixing weight. With partial channels 1/k (DrNAS, `k` > 1) the ops compute on the first C/k
    channels of state j and the other channels pass the edge by (`NodeSum`)."""

    def __init__(self, primitives: list[list[str]], steps: int, multiplier: int, C_prev_prev: int,
                 C_prev: int, C: int, reduction: bool, reduction_prev: bool, k: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.k = k
        self._steps = steps
        self._multiplier = multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self._ops.append(MixedOp(C, stride, primitives[len(self._ops)], k))

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor, active: list[list[int]],
                edge_weights: Tensor | None = None) -> Tensor:
        """`edge_weights` ([14], PC-DARTS' beta; None: 1): node i = sum_j beta_j * edge j -> i, the
        edge's op weights times beta and its passed channels times beta."""
        w = op_weights(weights if edge_weights is None else weights * edge_weights[:, None])
        scales = [None] * len(w) if edge_weights is None else edge_weights.unbind(0)
        states = [StateInputs(self.preprocess0(s0)), StateInputs(self.preprocess1(s1))]
        stride = 2 if self.reduction else 1
        edge = 0
        for _ in range(self._steps):
            node = NodeSum(self.k)
            for j, inputs in enumerate(states):
                passed = PASSED_AT_STRIDE_2 if self.reduction and j < 2 else None
                node.add(self._ops[edge]._ops, inputs, w[edge], active[edge], passed, scales[edge])
                edge += 1
            acc = node.result()
            if acc is None:  # every incoming edge was dropped: the node is zero
                acc = torch.zeros_like(states[0].x[:, :, ::stride, ::stride])
            states.append(StateInputs(acc))
        return torch.cat([s.x for s in states[-self._multiplier:]], dim=1)

    def widen(self, k: int, draw: Draw) -> list[Widened]:
        """Partial channels 1/k from now on (DrNAS's Cell.wider, mixed op by mixed op)."""
        self.k = k
        return [w for op in self._ops for w in op.widen(k, draw)]


class DartsSupernet(nn.Module):
    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, space: str = "s5",
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3, k: int = 1) -> None:
        super().__init__()
        if sum(2 + i for i in range(steps)) != NUM_EDGES:
            raise ValueError(f"the search spaces define {NUM_EDGES} edges, i.e. steps=4; got steps={steps}")
        self.space_name = space
        self._primitives = get_space(space)
        self._steps = steps
        self._arch_shapes = {kind: (NUM_EDGES, self._op_count(kind)) for kind in KIND_KEYS}
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            kind = "reduce" if reduction else "normal"
            self.cells.append(SearchCell(self.edge_ops(kind), steps, multiplier, C_prev_prev, C_prev,
                                         C_curr, reduction, reduction_prev, k))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.partial_channels = k  # partial channels 1/k in the mixed ops (DrNAS; 1: none)

    @staticmethod
    def partial_channel_widths(C: int) -> list[int]:
        """The channels of the cells' mixed ops (normal, after the first and the second reduction),
        which partial channels 1/k must divide."""
        return [C, 2 * C, 4 * C]

    def widen(self, k: int, draw: Draw) -> list[Widened]:
        """Partial channels 1/k in every cell, its ops widened (common/net2wider.py); nothing if they
        are 1/k already."""
        if k == self.partial_channels:
            return []
        self.partial_channels = k
        return [w for cell in self.cells for w in cell.widen(k, draw)]

    def edge_ops(self, kind: str) -> list[list[str]]:
        """Candidate op names of each edge for kind "normal" or "reduce"."""
        if kind not in KIND_KEYS:
            raise ValueError(f"unknown cell kind {kind!r}; valid: {', '.join(KIND_KEYS)}")
        return [list(ops) for ops in self._primitives[KIND_KEYS[kind]]]

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """Shapes of the mixing weights (and of alpha) per cell kind."""
        return dict(self._arch_shapes)

    def _op_count(self, kind: str) -> int:
        # alpha is a dense [14, n] matrix, so every edge needs the same number of candidates
        counts = {len(ops) for ops in self.edge_ops(kind)}
        if len(counts) != 1:
            raise ValueError(f"space {self.space_name!r}: {kind} edges differ in op count {sorted(counts)}")
        return counts.pop()

    def genotype(self, weights: dict[str, Tensor]) -> Genotype:
        """DARTS-style genotype of the given mixing weights."""
        return parse_genotype(weights, {kind: self.edge_ops(kind) for kind in KIND_KEYS}, self._steps)

    def forward(self, x: Tensor, weights: dict[str, Tensor], active: Active | None = None) -> Tensor:
        self._check_weights(weights)
        if active is None:
            active = active_ops({kind: weights[kind] for kind in KIND_KEYS})
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, weights[kind], active[kind], weights.get(edge_weights_key(kind)))
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    def _check_weights(self, weights: dict[str, Tensor]) -> None:
        for kind, shape in self._arch_shapes.items():
            if kind not in weights or tuple(weights[kind].shape) != shape:
                got = tuple(weights[kind].shape) if kind in weights else "missing"
                raise ValueError(f"weights[{kind!r}] must have shape {shape}, got {got}")
            edges = weights.get(edge_weights_key(kind))
            if edges is not None and tuple(edges.shape) != shape[:1]:
                raise ValueError(f"weights[{edge_weights_key(kind)!r}] must have shape {shape[:1]}, "
                                 f"got {tuple(edges.shape)}")
