"""Search spaces S1-S5 (RobustDARTS, Zela et al. ICLR 2020; S5 is the DARTS space).

Each space gives, per cell kind, the candidate ops of each of the 14 edges. Edges are
ordered node by node: intermediate node 0 reads inputs 0,1 (edges 0-1), node 1 reads
0,1,2 (edges 2-4), node 2 reads 0..3 (edges 5-8), node 3 reads 0..4 (edges 9-13), where
inputs 0 and 1 are the two cell inputs c_{k-2}, c_{k-1} and input i+2 is node i. The
column order of an alpha row is the order of that edge's op list.
"""
from __future__ import annotations

from common.config import check

NUM_EDGES = 14
# Cells layers//3 and 2*layers//3 are reduction cells (supernet and evaluation networks alike):
# fewer cells than this leave no normal cell.
MIN_LAYERS = 3

# Intermediate nodes with more than two incoming edges -> their edges, in the convention of
# DARTS-PT's `nid2eids`: the key is the highest input index the node reads (2 = node 1,
# 3 = node 2, 4 = node 3). Topology projection keeps 2 edges of each of these nodes.
NODE_EDGES: dict[int, list[int]] = {2: [2, 3, 4], 3: [5, 6, 7, 8], 4: [9, 10, 11, 12, 13]}

# (intermediate node, input state) of each of the 14 edges, in edge order.
EDGE_INPUTS: list[tuple[int, int]] = [(node, j) for node in range(4) for j in range(node + 2)]
# The states of a cell as its diagram (sota/visualize.py) names them (matplotlib mathtext): the
# cell inputs c_{k-2}, c_{k-1}, then intermediate nodes 0..3; and as logs name them, in plain text.
STATE_NAMES: tuple[str, ...] = ("$c_{k-2}$", "$c_{k-1}$", "0", "1", "2", "3")
PLAIN_STATE_NAMES: tuple[str, ...] = ("c[k-2]", "c[k-1]", "0", "1", "2", "3")


def edge_names(states: tuple[str, ...]) -> list[str]:
    """Each edge as "input state → node", in the names `states` gives the states."""
    return [f"{states[j]} → {node}" for node, j in EDGE_INPUTS]


# Heat-map row label of each edge in the report's figures, in the diagram's names.
EDGE_NAMES: list[str] = edge_names(STATE_NAMES)

DARTS_OPS = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5"]


def _uniform(ops: list[str]) -> dict[str, list[list[str]]]:
    return {"primitives_normal": [list(ops) for _ in range(NUM_EDGES)],
            "primitives_reduct": [list(ops) for _ in range(NUM_EDGES)]}


_SKIP, _MAX, _AVG = "skip_connect", "max_pool_3x3", "avg_pool_3x3"
_SEP3, _DIL3, _DIL5 = "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"

SPACES: dict[str, dict[str, list[list[str]]]] = {
    "s1": {
        "primitives_normal": [
            [_SKIP, _DIL3], [_SKIP, _DIL5], [_SKIP, _DIL5], [_SKIP, _SEP3], [_SKIP, _DIL3],
            [_MAX, _SKIP], [_SKIP, _SEP3], [_SKIP, _SEP3], [_SKIP, _DIL3], [_SKIP, _SEP3],
            [_MAX, _SKIP], [_SKIP, _DIL3], [_DIL3, _DIL5], [_DIL3, _DIL5],
        ],
        "primitives_reduct": [
            [_MAX, _AVG], [_MAX, _DIL3], [_MAX, _AVG], [_MAX, _AVG], [_SKIP, _DIL5],
            [_MAX, _AVG], [_MAX, _SEP3], [_SKIP, _DIL3], [_SKIP, _DIL5], [_MAX, _AVG],
            [_MAX, _AVG], [_SKIP, _DIL5], [_SKIP, _DIL5], [_SKIP, _DIL5],
        ],
    },
    "s2": _uniform([_SKIP, _SEP3]),
    "s3": _uniform(["none", _SKIP, _SEP3]),
    "s4": _uniform(["noise", _SEP3]),
    "s5": _uniform(DARTS_OPS),
}

# cell kind ("normal"/"reduce", the keys of the weights dicts) -> key inside a space
KIND_KEYS = {"normal": "primitives_normal", "reduce": "primitives_reduct"}


def column_names(edge_ops: list[list[str]]) -> list[str]:
    """Heat-map columns of a cell kind: op names when every edge has the same ops (not so in S1)."""
    if all(ops == edge_ops[0] for ops in edge_ops):
        return list(edge_ops[0])
    return [f"op{i}" for i in range(len(edge_ops[0]))]


def check_layers(layers: int) -> None:
    """--layers must leave at least one normal cell."""
    reductions = sorted({layers // 3, 2 * layers // 3})
    check(layers >= MIN_LAYERS, "layers", layers,
          f"must be at least {MIN_LAYERS}: cells layers//3 and 2*layers//3 ({' and '.join(map(str, reductions))}) "
          "are reduction cells, so fewer leave no normal cell")


def space(name: str) -> dict[str, list[list[str]]]:
    """The space `name` (a fresh copy, safe to modify)."""
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; valid: {', '.join(sorted(SPACES))}")
    return {key: [list(ops) for ops in edges] for key, edges in SPACES[name].items()}
