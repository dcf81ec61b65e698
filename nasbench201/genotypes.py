"""NAS-Bench-201 architecture strings.

Format (node by node, inputs in order of j, separated by '+'):
``|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|``
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .model_search import EDGE_KEYS, NUM_NODES
from .operations import NB201_OPS

Node = list[tuple[str, int]]


def genotype_from_weights(weights: Tensor, ops: Sequence[str] = NB201_OPS) -> str:
    """Arch string keeping on each edge the op with the largest weight (ties: first op)."""
    if tuple(weights.shape) != (len(EDGE_KEYS), len(ops)):
        raise ValueError(f"expected weights of shape {(len(EDGE_KEYS), len(ops))}, got {tuple(weights.shape)}")
    best = torch.argmax(weights.detach(), dim=-1).tolist()
    return _format({key: ops[k] for key, k in zip(EDGE_KEYS, best)})


def _format(edge_ops: dict[str, str]) -> str:
    nodes = []
    for i in range(1, NUM_NODES):
        nodes.append("|" + "|".join(f"{edge_ops[f'{i}<-{j}']}~{j}" for j in range(i)) + "|")
    return "+".join(nodes)


def parse_arch(arch: str) -> list[Node]:
    """[[(op, j) for each input j of node i] for i = 1..3]; ValueError if malformed."""
    node_strs = arch.split("+")
    if len(node_strs) != NUM_NODES - 1:
        raise ValueError(f"invalid NAS-Bench-201 arch {arch!r}: expected {NUM_NODES - 1} nodes "
                         f"separated by '+', got {len(node_strs)}")
    nodes = []
    for i, node_str in enumerate(node_strs, start=1):
        if not (node_str.startswith("|") and node_str.endswith("|")):
            raise ValueError(f"invalid NAS-Bench-201 arch {arch!r}: node {i} {node_str!r} must be '|op~j|...|'")
        inputs = node_str[1:-1].split("|")
        if len(inputs) != i:
            raise ValueError(f"invalid NAS-Bench-201 arch {arch!r}: node {i} needs {i} inputs, got {len(inputs)}")
        nodes.append([_parse_input(arch, i, j, text) for j, text in enumerate(inputs)])
    return nodes


def _parse_input(arch: str, i: int, j: int, text: str) -> tuple[str, int]:
    op, sep, src = text.partition("~")
    if not sep or src != str(j):
        raise ValueError(f"invalid NAS-Bench-201 arch {arch!r}: input {j} of node {i} is {text!r}, "
                         f"expected 'op~{j}'")
    if op not in NB201_OPS:
        raise ValueError(f"invalid NAS-Bench-201 arch {arch!r}: unknown op {op!r}; known: {list(NB201_OPS)}")
    return op, j


def arch_to_edge_ops(arch: str) -> dict[str, str]:
    """Edge key ('i<-j') -> op name, in EDGE_KEYS order."""
    # Nodes in order, inputs in order of j: the same order as EDGE_KEYS.
    return {f"{i}<-{j}": op for i, node in enumerate(parse_arch(arch), start=1) for op, j in node}


def arch_to_weights(arch: str, ops: Sequence[str] = NB201_OPS) -> Tensor:
    """One-hot [6, len(ops)] mixing weights selecting the arch's op on every edge."""
    edge_ops = arch_to_edge_ops(arch)
    missing = sorted(set(edge_ops.values()) - set(ops))
    if missing:
        raise ValueError(f"arch {arch!r} uses ops {missing} that are not among the candidates {list(ops)}")
    weights = torch.zeros(len(EDGE_KEYS), len(ops))
    for e, key in enumerate(EDGE_KEYS):
        weights[e, list(ops).index(edge_ops[key])] = 1.0
    return weights
