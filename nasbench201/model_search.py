"""The NAS-Bench-201 supernet (weight-sharing network of DARTS-PT's NAS-Bench-201 search).

The module holds the network weights only. The mixing weights (softmax of alpha, with
projected edges replaced) come in as an argument of `forward`, so alpha and the projection
state live elsewhere and the state_dict keeps the original DARTS-PT layout.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from common.arch import Active, active_ops
from common.batchnorm import BatchNorm2d
from common.cellops import NodeSum, StateInputs, op_weights
from common.net2wider import Draw, Widened

from .operations import NB201_OPS, OPS, ResNetBasicblock

NUM_NODES = 4
# Edge 'i<-j' feeds node i from node j. Sorted order = alpha row order.
EDGE_KEYS: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
EDGE_INDEX: dict[str, int] = {key: e for e, key in enumerate(EDGE_KEYS)}


class SearchCell(nn.Module):
    """4-node cell; every edge is a mixture of all candidate ops (stride 1, C -> C).

    Node i is sum over j < i of sum_k w[i<-j, k] * op_k(node j), computed as one running sum per
    node (common/cellops.py): what the ops leaving node j share (relu(node j), its 3x3 average
    pool) is computed once for all of them, and each op's final batch norm takes its weight.
    With partial channels 1/k (DrNAS, `k` > 1) the ops compute on the first C/k channels of node j
    and the other channels pass the edge by (`NodeSum`)."""

    def __init__(self, C: int, ops: Sequence[str] = NB201_OPS, k: int = 1) -> None:
        super().__init__()
        self.C, self.k = C, k
        # BN inside search cells: affine=False, track_running_stats=True (as in DARTS-PT).
        self.edges = nn.ModuleDict(
            {key: nn.ModuleList([OPS[name](C // k, C // k, 1, False, True) for name in ops]) for key in EDGE_KEYS})
        # per node i: (input node j, edge index, ops of the edge), in the original's order
        self._inputs = [[(j, EDGE_INDEX[f"{i}<-{j}"], self.edges[f"{i}<-{j}"]) for j in range(i)]
                        for i in range(1, NUM_NODES)]

    def forward(self, x: Tensor, weights: Tensor, active: list[list[int]]) -> Tensor:
        """weights: [6, num_ops] mixing weights; active[e]: ops of edge e to compute."""
        w = op_weights(weights)
        nodes = [StateInputs(x)]
        differentiable = weights.requires_grad and torch.is_grad_enabled()
        for inputs in self._inputs:
            node = NodeSum(self.k)
            for j, e, edge_ops in inputs:
                node.add(edge_ops, nodes[j], w[e], active[e])
            out = node.result()
            # A node nothing flows into is zeros (an op weighted 0 contributes exactly 0).
            node = torch.zeros_like(x) if out is None else out
            if differentiable:
                node = _with_skipped_weights(node, [w[e][k] for _, e, _ in inputs
                                                    for k in range(len(w[e])) if k not in active[e]])
            nodes.append(StateInputs(node))
        return nodes[-1].x

    def widen(self, k: int, draw: Draw) -> list[Widened]:
        """Partial channels 1/k from now on, every op grown to C/k channels (DrNAS's `wider`, edge by
        edge, op by op); the parameters replaced."""
        self.k = k
        return [w for key in EDGE_KEYS for op in self.edges[key] for w in op.widen(self.C // k, self.C // k, draw)]


def _with_skipped_weights(node: Tensor, skipped: list[Tensor]) -> Tensor:
    """The node plus the weights of the ops it skipped, which are exactly 0: the same values, and
    each such weight gets the node's summed gradient. So AutoDL's NAS-Bench-201 GDAS cell adds an
    op it does not compute (`forward_gdas`, search_cells.py:51-62: `hardwts[k]` for every k but
    the sampled one), and its alpha gradient has these terms. Other methods skip ops only on
    edges projection decided, whose rows carry no gradient to alpha."""
    return node + sum(skipped) if skipped else node


class NB201Supernet(nn.Module):
    """stem -> N cells (C) -> res block -> N cells (2C) -> res block -> N cells (4C) -> head."""

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10,
                 ops: Sequence[str] = NB201_OPS, k: int = 1) -> None:
        super().__init__()
        unknown = [name for name in ops if name not in OPS]
        if unknown:
            raise ValueError(f"unknown NAS-Bench-201 ops {unknown}; known: {list(OPS)}")
        self.ops = tuple(ops)
        self.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), BatchNorm2d(C))
        cells: list[nn.Module] = []
        for stage, channels in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicblock(channels // 2, channels, 2))
            cells += [SearchCell(channels, self.ops, k) for _ in range(N)]
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)
        self.partial_channels = k  # partial channels 1/k in the search cells (DrNAS; 1: none)

    @staticmethod
    def partial_channel_widths(C: int) -> list[int]:
        """The channels of the search cells, which partial channels 1/k must divide."""
        return [C, 2 * C, 4 * C]

    def widen(self, k: int, draw: Draw) -> list[Widened]:
        """Partial channels 1/k in every search cell, its ops widened (common/net2wider.py); nothing if
        they are 1/k already."""
        if k == self.partial_channels:
            return []
        self.partial_channels = k
        return [w for cell in self.cells if isinstance(cell, SearchCell) for w in cell.widen(k, draw)]

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape of the mixing weights per cell kind (all cells share one)."""
        return {"cell": (len(EDGE_KEYS), len(self.ops))}

    def forward(self, x: Tensor, weights: dict[str, Tensor], active: Active | None = None) -> Tensor:
        """Logits. weights["cell"]: [6, num_ops]; `active` spares reading weights on the host."""
        if active is None:
            active = active_ops(weights)
        w, act = weights["cell"], active["cell"]
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature, w, act) if isinstance(cell, SearchCell) else cell(feature)
        out = self.global_pooling(self.lastact(feature))
        return self.classifier(out.flatten(1))
