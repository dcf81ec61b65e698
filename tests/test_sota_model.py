"""DARTS-space model code: ops, spaces, supernet, evaluation network (CPU, small sizes)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sota.genotypes import get_genotype
from sota.model_eval import NetworkCIFAR, count_parameters_mb
from sota.model_search import DartsSupernet, MixedOp, active_ops
from sota.operations import OPS, FactorizedReduce
from sota.spaces import NODE_EDGES, SPACES, space
from tests.fixtures.equivalence import assert_same_forward
from tests.fixtures.reference import read_reference, reference_file

KINDS = ("normal", "reduce")



def random_weights(model: DartsSupernet) -> dict[str, torch.Tensor]:
    return {k: torch.softmax(torch.randn(*shape), dim=-1).requires_grad_()
            for k, shape in model.arch_shapes().items()}


# -- operations ------------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_output_shape(name: str, stride: int) -> None:
    op = OPS[name](8, stride, False)
    out = op(torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 8, 8 // stride, 8 // stride)


def test_skip_connect_reduces_with_factorized_reduce() -> None:
    assert isinstance(OPS["skip_connect"](8, 1, True), nn.Identity)
    assert isinstance(OPS["skip_connect"](8, 2, True), FactorizedReduce)


def stride2_factorized_reduce(op: FactorizedReduce, x: Tensor) -> Tensor:
    """The original FactorizedReduce forward: 1x1 stride-2 convs of x and of x[:, :, 1:, 1:]."""
    x = torch.relu(x)
    halves = [F.conv2d(x, op.conv_1.weight, stride=2), F.conv2d(x[:, :, 1:, 1:], op.conv_2.weight, stride=2)]
    return op.bn(torch.cat(halves, dim=1))


@pytest.mark.parametrize("hw", [(8, 8), (2, 6), (10, 4)])
def test_factorized_reduce_equals_stride2_convs(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    op = FactorizedReduce(6, 8).double()
    x = torch.randn(3, 6, *hw, dtype=torch.float64)
    assert_same_forward(op, lambda x: stride2_factorized_reduce(op, x), op, x)


def test_factorized_reduce_odd_size_fails_as_before() -> None:
    op = FactorizedReduce(4, 4)
    x = torch.randn(2, 4, 7, 7)  # the halves are 4x4 and 3x3: the original could not concatenate them
    for forward in (op, lambda x: stride2_factorized_reduce(op, x)):
        with pytest.raises(RuntimeError):
            forward(x)


def test_noise_op_is_random_standard_normal() -> None:
    op = OPS["noise"](8, 2, False)
    x = torch.randn(4, 8, 16, 16)
    a, b = op(x), op(x)
    assert a.shape == (4, 8, 8, 8)
    assert not torch.equal(a, b)
    assert abs(a.mean().item()) < 0.1 and abs(a.std().item() - 1) < 0.1


def test_none_op_is_zero() -> None:
    assert torch.count_nonzero(OPS["none"](8, 2, False)(torch.randn(2, 8, 8, 8))) == 0


# -- spaces ----------------------------------------------------------------------------------

ABBREV = {"skip": "skip_connect", "dil3": "dil_conv_3x3", "dil5": "dil_conv_5x5",
          "sep3": "sep_conv_3x3", "max": "max_pool_3x3", "avg": "avg_pool_3x3"}


def expand(pairs: str) -> list[list[str]]:
    return [[ABBREV[op] for op in pair.split(",")] for pair in pairs.split()]


def test_s1_edge_lists_match_spec() -> None:
    normal = expand("skip,dil3 skip,dil5 skip,dil5 skip,sep3 skip,dil3 max,skip skip,sep3 "
                    "skip,sep3 skip,dil3 skip,sep3 max,skip skip,dil3 dil3,dil5 dil3,dil5")
    reduce = expand("max,avg max,dil3 max,avg max,avg skip,dil5 max,avg max,sep3 "
                    "skip,dil3 skip,dil5 max,avg max,avg skip,dil5 skip,dil5 skip,dil5")
    assert space("s1") == {"primitives_normal": normal, "primitives_reduct": reduce}


def test_uniform_spaces() -> None:
    expected = {"s2": ["skip_connect", "sep_conv_3x3"], "s3": ["none", "skip_connect", "sep_conv_3x3"],
                "s4": ["noise", "sep_conv_3x3"],
                "s5": ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                       "dil_conv_3x3", "dil_conv_5x5"]}
    for name, ops in expected.items():
        for key in ("primitives_normal", "primitives_reduct"):
            assert SPACES[name][key] == [ops] * 14


def test_space_lookup() -> None:
    with pytest.raises(ValueError, match="s1, s2, s3, s4, s5"):
        space("s6")
    copy = space("s5")
    copy["primitives_normal"][0].append("x")
    assert "x" not in SPACES["s5"]["primitives_normal"][0]
    assert NODE_EDGES == {2: [2, 3, 4], 3: [5, 6, 7, 8], 4: [9, 10, 11, 12, 13]}


# -- supernet --------------------------------------------------------------------------------

def count_calls(ops: list[nn.Module]) -> list[int]:
    """Computations per op (cells run an op's body, not its forward)."""
    calls = [0] * len(ops)
    for i, op in enumerate(ops):
        body = op.body
        op.body = lambda x, i=i, body=body: (calls.__setitem__(i, calls[i] + 1), body(x))[1]
    return calls


def test_mixed_op_skips_zero_weights_and_none() -> None:
    mixed = MixedOp(8, 1, ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"])
    calls = count_calls(list(mixed._ops))
    x = torch.randn(2, 8, 8, 8)
    w = torch.tensor([0.5, 0.0, 0.3, 0.2])
    out = mixed(x, w, active=[0, 2, 3])
    assert calls == [0, 0, 1, 1]
    expected = 0.3 * x + 0.2 * mixed._ops[3](x)
    assert torch.allclose(out, expected, atol=1e-6)
    assert mixed(x, torch.tensor([1.0, 0, 0, 0]), active=[0]) is None
    assert mixed(x, torch.zeros(4), active=[]) is None


def test_active_ops_from_weights() -> None:
    w = {"normal": torch.tensor([[0.0, 1.0], [0.5, 0.5]]), "reduce": torch.tensor([[0.0, 0.0], [1.0, 0.0]])}
    assert active_ops(w) == {"normal": [[1], [0, 1]], "reduce": [[], [0]]}


def test_supernet_one_hot_edges_compute_only_their_op() -> None:
    model = DartsSupernet(C=4, layers=5, space="s5")
    calls = count_calls([op for cell in model.cells for mixed in cell._ops for op in mixed._ops])
    weights = {k: torch.eye(7)[torch.arange(14) % 7] for k in KINDS}
    model(torch.randn(2, 3, 16, 16), weights)
    # 5 cells x 14 edges, each edge one op
    assert sum(calls) == 5 * 14 and max(calls) == 1


def test_supernet_node_without_inputs_is_zero() -> None:
    model = DartsSupernet(C=4, layers=5, space="s3")
    weights = random_weights(model)
    x = torch.randn(2, 3, 16, 16)
    for k in KINDS:
        weights[k] = weights[k].detach().clone()
        weights[k][0:2] = 0  # node 0 loses both inputs
    cell_out = []
    model.cells[1].register_forward_hook(lambda m, i, o: cell_out.append(o))
    assert model(x, weights).shape == (2, 10)
    assert cell_out[0].shape == (2, 32, 8, 8)  # 4 nodes x 8 channels
    assert torch.count_nonzero(cell_out[0][:, :8]) == 0  # first node of the reduction cell


@pytest.mark.parametrize("name", ["s1", "s2", "s3", "s4", "s5"])
def test_supernet_forward_backward(name: str) -> None:
    model = DartsSupernet(C=4, num_classes=10, layers=5, space=name)
    assert [c.reduction for c in model.cells] == [False, True, False, True, False]
    weights = random_weights(model)
    logits = model(torch.randn(2, 3, 16, 16), weights)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    for k in KINDS:
        assert weights[k].grad is not None and weights[k].grad.abs().sum() > 0


def test_supernet_explicit_active_matches_derived() -> None:
    model = DartsSupernet(C=4, layers=5, space="s5").eval()
    weights = {k: w.detach() for k, w in random_weights(model).items()}
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(model(x, weights), model(x, weights, active_ops(weights)))


def test_supernet_arch_shapes_and_edge_ops() -> None:
    s1 = DartsSupernet(C=4, layers=5, space="s1")
    assert s1.arch_shapes() == {"normal": (14, 2), "reduce": (14, 2)}
    assert s1.edge_ops("reduce") == SPACES["s1"]["primitives_reduct"]
    assert DartsSupernet(C=4, layers=5, space="s5").arch_shapes()["normal"] == (14, 7)
    with pytest.raises(ValueError, match="shape"):
        s1(torch.randn(1, 3, 16, 16), {"normal": torch.zeros(14, 3), "reduce": torch.zeros(14, 2)})


@pytest.mark.parametrize("name", ["s5", "s3"])
def test_supernet_state_dict_matches_reference(name: str) -> None:
    shapes, n_params = read_reference(f"darts_{name}_supernet_C16_L8_cifar10.tsv")
    model = DartsSupernet(C=16, num_classes=10, layers=8, space=name)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert sum(p.numel() for p in model.parameters()) == n_params


# -- evaluation network ----------------------------------------------------------------------

@pytest.mark.parametrize("arch,C,layers,classes,tsv", [
    ("darts_pt_s5_0", 36, 20, 10, "eval_darts_pt_s5_0_C36_L20_aux_10cls.tsv"),
    ("darts_pt_s3_1", 16, 8, 100, "eval_darts_pt_s3_1_C16_L8_aux_100cls.tsv"),
])
def test_eval_state_dict_matches_reference(arch: str, C: int, layers: int, classes: int, tsv: str) -> None:
    shapes, n_params = read_reference(tsv)
    model = NetworkCIFAR(C, classes, layers, True, get_genotype(arch))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_eval_parameter_counts() -> None:
    genotype = get_genotype("darts_pt_s5_0")
    with_aux = NetworkCIFAR(36, 10, 20, True, genotype)
    assert count_parameters_mb(with_aux) == pytest.approx(2.85, abs=0.01)
    assert sum(p.numel() for p in with_aux.parameters()) / 1e6 == pytest.approx(3.33, abs=0.01)
    assert count_parameters_mb(NetworkCIFAR(36, 10, 20, False, genotype)) == count_parameters_mb(with_aux)
    assert count_parameters_mb(NetworkCIFAR(36, 10, 20, True, get_genotype("DARTS_V2"))) == 3.349342


def test_eval_forward_aux_and_drop_path() -> None:
    torch.manual_seed(0)
    model = NetworkCIFAR(8, 10, 5, True, get_genotype("darts_pt_s5_0"))
    model.drop_path_prob = 0.2
    x = torch.randn(4, 3, 32, 32)
    logits, aux = model(x)
    assert logits.shape == (4, 10) and aux.shape == (4, 10)
    model.eval()
    logits, aux = model(x)
    assert aux is None
    assert torch.equal(model(x)[0], logits)  # no drop path outside training
    no_aux = NetworkCIFAR(8, 10, 5, False, get_genotype("darts_pt_s5_0"))
    assert no_aux(x)[1] is None


def test_packaged_published_genotypes_match_reference() -> None:
    ref = reference_file("published_genotypes.json")
    packaged = Path(__file__).resolve().parents[1] / "sota" / "published_genotypes.json"
    assert json.loads(packaged.read_text()) == json.loads(ref.read_text())
