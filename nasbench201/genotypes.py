"""NAS-Bench-201 architecture strings.

Format (node by node, inputs in order of j, separated by '+'):
``|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|``
"""
from __future__ import annotations

from collections.abc import Sequence

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


def nb201_params_mb(arch: str, num_classes: int = 10, C: int = 16, N: int = 5) -> float | None:
    """Parameters (millions) of the NAS-Bench-201 evaluation network of `arch` (C=16, N=5):
    stem, 3 stages of N cells with ResNet reduction blocks between them, classifier. Equals
    the benchmark's own count (1.531546 M for all-nor_conv_3x3 on CIFAR-10); None if `arch`
    is not an arch string."""
    try:
        ops = [op for node in parse_arch(arch) for op, _ in node]
    except (AttributeError, ValueError):
        return None
    conv = {"nor_conv_3x3": 9, "nor_conv_1x1": 1}

    def cell(c: int) -> int:  # ReLU-Conv-BN per conv edge; pooling, skip and none are free
        return sum(conv[op] * c * c + 2 * c for op in ops if op in conv)

    def resblock(cin: int, cout: int) -> int:  # two ReLU-Conv-BN 3x3 and a 1x1 shortcut
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + cin * cout

    total = 27 * C + 2 * C                      # stem conv + BN
    total += N * cell(C) + resblock(C, 2 * C) + N * cell(2 * C) + resblock(2 * C, 4 * C) + N * cell(4 * C)
    total += 2 * 4 * C + 4 * C * num_classes + num_classes  # last BN, classifier
    return total / 1e6
