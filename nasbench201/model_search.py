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
from common.cellops import StateInputs, mix_edge, op_weights

from .operations import NB201_OPS, OPS, ResNetBasicblock

NUM_NODES = 4
# Edge 'i<-j' feeds node i from node j. Sorted order = alpha row order.
EDGE_KEYS: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
EDGE_INDEX: dict[str, int] = {key: e for e, key in enumerate(EDGE_KEYS)}


class SearchCell(nn.Module):
    """4-node cell; every edge is a mixture of all candidate ops (stride 1, C -> C).

    Node i is sum over j < i of sum_k w[i<-j, k] * op_k(node j), computed as one running sum per
    node (common/cellops.py): what the ops leaving node j share (relu(node j), its 3x3 average
    pool) is computed once for all of them, and each op's final batch norm takes its weight."""

    def __init__(self, C: int, ops: Sequence[str] = NB201_OPS) -> None:
        super().__init__()
        # BN inside search cells: affine=False, track_running_stats=True (as in DARTS-PT).
        self.edges = nn.ModuleDict(
            {key: nn.ModuleList([OPS[name](C, C, 1, False, True) for name in ops]) for key in EDGE_KEYS})
        # per node i: (input node j, edge index, ops of the edge), in the original's order
        self._inputs = [[(j, EDGE_INDEX[f"{i}<-{j}"], self.edges[f"{i}<-{j}"]) for j in range(i)]
                        for i in range(1, NUM_NODES)]

    def forward(self, x: Tensor, weights: Tensor, active: list[list[int]]) -> Tensor:
        """weights: [6, num_ops] mixing weights; active[e]: ops of edge e to compute."""
        w = op_weights(weights)
        nodes = [StateInputs(x)]
        differentiable = weights.requires_grad and torch.is_grad_enabled()
        for inputs in self._inputs:
            acc = None
            for j, e, edge_ops in inputs:
                acc = mix_edge(acc, edge_ops, nodes[j], w[e], active[e])
            # A node nothing flows into is zeros (an op weighted 0 contributes exactly 0).
            node = torch.zeros_like(x) if acc is None else acc
            if differentiable:
                node = _with_skipped_weights(node, [w[e][k] for _, e, _ in inputs
                                                    for k in range(len(w[e])) if k not in active[e]])
            nodes.append(StateInputs(node))
        return nodes[-1].x


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
                 ops: Sequence[str] = NB201_OPS) -> None:
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
            cells += [SearchCell(channels, self.ops) for _ in range(N)]
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

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
