"""NAS-Bench-201 ops, supernet and arch strings."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasbench201 import model_search
from nasbench201.genotypes import arch_to_edge_ops, arch_to_weights, genotype_from_weights, parse_arch
from nasbench201.model_search import EDGE_KEYS, NB201Supernet, SearchCell, active_ops
from nasbench201.operations import NB201_OPS, OPS, FactorizedReduce, ResNetBasicblock, Zero
from tests.fixtures.equivalence import assert_same_forward
from tests.fixtures.reference import read_reference

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def random_weights(seed: int = 0, ops: int = len(NB201_OPS)) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(len(EDGE_KEYS), ops, generator=g), dim=-1)


def on_body(op: nn.Module, fn) -> None:
    """Call fn(input) whenever a cell computes `op` (cells run an op's body, not its forward)."""
    body = op.body
    op.body = lambda x: (fn(x), body(x))[1]


def count_op_calls(module: nn.Module) -> dict[tuple[str, int], int]:
    """Counts computations per (edge key, op index) of every SearchCell op."""
    calls: dict[tuple[str, int], int] = {}
    for cell in module.modules():
        if isinstance(cell, SearchCell):
            for key, edge_ops in cell.edges.items():
                for k, op in enumerate(edge_ops):
                    on_body(op, lambda _, key=key, k=k: calls.__setitem__((key, k), calls.get((key, k), 0) + 1))
    return calls


def capture_nodes(cell: SearchCell) -> dict[int, Tensor]:
    """Records nodes 1 and 2 as the cell computes them: what skip_connect reads on edges 2<-1 and 3<-2."""
    nodes: dict[int, Tensor] = {}
    skip = NB201_OPS.index("skip_connect")
    for key, node in (("2<-1", 1), ("3<-2", 2)):
        on_body(cell.edges[key][skip], lambda x, node=node: nodes.__setitem__(node, x))
    return nodes


def dense_nodes(cell: SearchCell, x: Tensor, w: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
    """Reference: every op computed, node i = sum_j sum_k w[e,k] * op_k(node_j), no skipping."""
    nodes, edge_out = [x], {}
    for i in range(1, 4):
        for j in range(i):
            key = f"{i}<-{j}"
            e = EDGE_KEYS.index(key)
            edge_out[key] = sum(op(nodes[j]) * w[e, k] for k, op in enumerate(cell.edges[key]))
        nodes.append(sum(edge_out[f"{i}<-{j}"] for j in range(i)))
    return nodes, edge_out


def all_ops(n: int = len(NB201_OPS)) -> list[list[int]]:
    return [list(range(n)) for _ in EDGE_KEYS]


# -- operations ---------------------------------------------------------------------------

def test_op_order() -> None:
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert set(OPS) == set(NB201_OPS)


@pytest.mark.parametrize("name", NB201_OPS)
def test_op_output_shapes(name: str) -> None:
    x = torch.randn(2, 8, 7, 7)
    assert OPS[name](8, 8, 1, False, True)(x).shape == (2, 8, 7, 7)
    assert OPS[name](8, 12, 1, True, True)(x).shape == (2, 12, 7, 7)
    assert OPS[name](8, 12, 2, True, True)(x).shape == (2, 12, 4, 4)


def test_none_is_zero_and_skip_is_identity() -> None:
    x = torch.randn(2, 4, 5, 5)
    assert isinstance(OPS["none"](4, 4, 1, False, True), Zero)
    assert torch.equal(OPS["none"](4, 4, 1, False, True)(x), torch.zeros_like(x))
    assert OPS["skip_connect"](4, 4, 1, False, True)(x) is x


def stride2_factorized_reduce(op: FactorizedReduce, x: Tensor) -> Tensor:
    """The original forward: 1x1 stride-2 convs of x and of pad(x)[:, :, 1:, 1:]."""
    x = torch.relu(x)
    shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
    halves = [F.conv2d(x, op.convs[0].weight, stride=2), F.conv2d(shifted, op.convs[1].weight, stride=2)]
    return op.bn(torch.cat(halves, dim=1))


@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (5, 8), (2, 3), (1, 1)])
def test_factorized_reduce_equals_stride2_convs(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    op = FactorizedReduce(6, 7, 2, affine=True).double()  # odd C_out: halves of 3 and 4 channels
    x = torch.randn(3, 6, *hw, dtype=torch.float64)
    assert_same_forward(op, lambda x: stride2_factorized_reduce(op, x), op, x)


def test_resnet_block() -> None:
    block = ResNetBasicblock(8, 16, 2)
    assert block(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(block(x), block.downsample(x) + block.conv_b(block.conv_a(x)))


# -- supernet layout ---------------------------------------------------------------------

def test_edge_keys_sorted() -> None:
    assert EDGE_KEYS == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
    assert list(EDGE_KEYS) == sorted(EDGE_KEYS)
    assert list(SearchCell(4).edges.keys()) == list(EDGE_KEYS)


@pytest.mark.parametrize("e", range(len(EDGE_KEYS)))
def test_row_e_feeds_edge_e(e: int) -> None:
    cell = SearchCell(4)
    calls = count_op_calls(cell)
    w = torch.zeros(len(EDGE_KEYS), len(NB201_OPS))
    w[e, 3] = 1.0
    cell(torch.randn(2, 4, 6, 6), w, active_ops({"cell": w})["cell"])
    assert calls == {(EDGE_KEYS[e], 3): 1}


def test_state_dict_matches_reference() -> None:
    shapes, trainable = read_reference("nb201_supernet_C16_N5_cifar10.tsv")
    model = NB201Supernet(C=16, N=5, num_classes=10)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(shapes)
    assert ours == shapes
    assert sum(p.numel() for p in model.parameters()) == trainable
    assert model.arch_shapes() == {"cell": (6, 5)}
    assert [i for i, c in enumerate(model.cells) if isinstance(c, ResNetBasicblock)] == [5, 11]


def test_full_size_forward() -> None:
    model = NB201Supernet()
    assert model(torch.randn(2, 3, 32, 32), {"cell": random_weights()}).shape == (2, 10)


def test_op_subset() -> None:
    ops = ("skip_connect", "nor_conv_3x3")
    model = NB201Supernet(C=4, N=1, ops=ops)
    assert model.arch_shapes() == {"cell": (6, 2)}
    assert model(torch.randn(2, 3, 8, 8), {"cell": random_weights(ops=2)}).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown"):
        NB201Supernet(ops=("skip_connect", "sep_conv_3x3"))


# -- mixing and masking ------------------------------------------------------------------

def test_cell_is_the_weighted_sum() -> None:
    torch.manual_seed(0)
    cell, x, w = SearchCell(4), torch.randn(2, 4, 6, 6), random_weights()
    captured = capture_nodes(cell)
    out = cell(x, w, all_ops())
    nodes = dict(captured)  # before dense_nodes runs the same ops (and hooks) again
    ref, _ = dense_nodes(cell, x, w)
    torch.testing.assert_close(nodes[1], ref[1])
    torch.testing.assert_close(nodes[2], ref[2])
    torch.testing.assert_close(out, ref[3])


def test_zeroing_one_weight_changes_only_its_edge() -> None:
    torch.manual_seed(0)
    cell, x, w = SearchCell(4), torch.randn(2, 4, 6, 6), random_weights()
    e, k = EDGE_KEYS.index("2<-1"), NB201_OPS.index("nor_conv_3x3")
    masked = w.clone()
    masked[e, k] = 0.0
    captured = capture_nodes(cell)
    cell(x, w, all_ops())
    before = dict(captured)
    out = cell(x, masked, active_ops({"cell": masked})["cell"])
    nodes = dict(captured)
    ref, edge_ref = dense_nodes(cell, x, masked)
    _, edge_full = dense_nodes(cell, x, w)
    # Node 1 does not depend on edge 2<-1; node 2 loses exactly w[e,k] * op_k(node 1).
    assert torch.equal(nodes[1], before[1])
    torch.testing.assert_close(before[2] - nodes[2], w[e, k] * cell.edges["2<-1"][k](before[1]))
    for key in ("1<-0", "2<-0"):
        torch.testing.assert_close(edge_ref[key], edge_full[key])
    # Nothing is renormalised: the output is the plain weighted sum with the zeroed row.
    torch.testing.assert_close(out, ref[3])
    renormalised = masked / masked.sum(-1, keepdim=True)
    assert not torch.allclose(out, dense_nodes(cell, x, renormalised)[0][3])


def test_one_hot_row_computes_only_its_op() -> None:
    model = NB201Supernet(C=4, N=2)
    calls = count_op_calls(model)
    w = arch_to_weights(ARCH)
    model(torch.randn(2, 3, 8, 8), {"cell": w})
    chosen = {(key, NB201_OPS.index(op)) for key, op in arch_to_edge_ops(ARCH).items() if op != "none"}
    assert set(calls) == chosen
    assert all(n == 6 for n in calls.values())  # once per search cell


def test_zero_weight_and_none_ops_are_not_executed() -> None:
    cell = SearchCell(4)
    calls = count_op_calls(cell)
    w = random_weights()
    w[:, 2] = 0.0  # nor_conv_1x1 off everywhere; `none` keeps a non-zero weight
    cell(torch.randn(2, 4, 6, 6), w, active_ops({"cell": w})["cell"])
    assert {k for _, k in calls} == {1, 3, 4}
    assert len(calls) == 3 * len(EDGE_KEYS)


def test_node_without_inputs_is_zeros() -> None:
    cell, x = SearchCell(4), torch.randn(2, 4, 6, 6)
    w = torch.zeros(len(EDGE_KEYS), len(NB201_OPS))
    w[:, 0] = 1.0  # every edge `none`
    assert torch.equal(cell(x, w, active_ops({"cell": w})["cell"]), torch.zeros_like(x))
    assert torch.equal(cell(x, w, [[] for _ in EDGE_KEYS]), torch.zeros_like(x))


def test_explicit_active_equals_derived(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model, x = NB201Supernet(C=4, N=1), torch.randn(2, 3, 8, 8)
    w = random_weights()
    w[0] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    derived_calls = []
    real = model_search.active_ops
    monkeypatch.setattr(model_search, "active_ops", lambda ws: derived_calls.append(1) or real(ws))
    derived = model(x, {"cell": w})
    assert derived_calls == [1]  # derived once per forward, not per cell or op
    explicit = model(x, {"cell": w}, {"cell": [[3]] + all_ops()[1:]})
    assert derived_calls == [1]
    assert torch.equal(derived, explicit)


def test_active_ops_several_kinds() -> None:
    a = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    b = torch.tensor([[0.0, 0.0, 2.0]])
    assert active_ops({"normal": a, "reduce": b}) == {"normal": [[1], [0, 1]], "reduce": [[2]]}


def test_gradients_reach_the_weights() -> None:
    model = NB201Supernet(C=4, N=1)
    alpha = nn.Parameter(1e-3 * torch.randn(6, 5))
    weights = torch.softmax(alpha, dim=-1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8), {"cell": weights}), torch.arange(4))
    loss.backward()
    assert alpha.grad is not None and torch.isfinite(alpha.grad).all()
    assert alpha.grad.abs().sum() > 0


# -- arch strings -------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [
    ARCH,
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
])
def test_arch_round_trip(arch: str) -> None:
    assert genotype_from_weights(arch_to_weights(arch)) == arch
    edge_ops = arch_to_edge_ops(arch)
    assert list(edge_ops) == list(EDGE_KEYS)
    assert [op for node in parse_arch(arch) for op, _ in node] == list(edge_ops.values())


def test_genotype_from_weights() -> None:
    w = torch.zeros(6, 5)
    w[:, 3] = 1.0
    w[4] = torch.tensor([0.3, 0.1, 0.3, 0.2, 0.1])  # tie: first index wins, as torch.argmax
    assert genotype_from_weights(w) == ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                                        "+|nor_conv_3x3~0|none~1|nor_conv_3x3~2|")
    assert parse_arch(ARCH)[2] == [("skip_connect", 0), ("none", 1), ("nor_conv_3x3", 2)]
    with pytest.raises(ValueError, match="shape"):
        genotype_from_weights(torch.zeros(5, 5))


@pytest.mark.parametrize("bad, message", [
    ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|", "3 nodes"),
    ("|nor_conv_3x3~0|+|skip_connect~0|+|skip_connect~0|none~1|nor_conv_3x3~2|", "node 2 needs 2 inputs"),
    ("|conv_7x7~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "unknown op"),
    ("|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "op~0"),
    ("nor_conv_3x3~0+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", "must be"),
    ("", "3 nodes"),
])
def test_bad_arch_strings(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arch_to_edge_ops(bad)
