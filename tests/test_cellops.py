"""The cells' shared steps and fused mixing (common/cellops.py) compute what the unshared path does.

The unshared path is benchmarks/reference.py's forward: every op through its own `forward`
(its own ReLU, its own pool), `w * op(x)` summed per edge and then per node, as the original.
The cells instead compute the ReLU and the pools once per state, fold each op's mixing weight
into its final batch norm and keep one running sum per node. Logits, every gradient (weights
and mixing weights) and every BatchNorm buffer must agree to float32 rounding: in training
mode (the fused channels-last path), for scoring passes (inference mode, one op or edge masked)
and with projected edges, in NAS-Bench-201 and the DARTS spaces.
"""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.reference import reference_forward
from common.arch import Architecture
from common.batchnorm import BatchNorm2d
from common.cellops import Pool, Relu, StateInputs, mix_into
from nasbench201.model_search import NB201Supernet
from sota.model_search import DartsSupernet
from sota.operations import SepConv
from tests.conftest import DEVICES

TOL = dict(rtol=1e-5, atol=1e-6)
SPACES = ["nb201", "s5", "s3", "s1"]
CL = torch.channels_last



def build(space: str) -> tuple[nn.Module, Architecture]:
    torch.manual_seed(0)
    model = NB201Supernet(C=4, N=1) if space == "nb201" else DartsSupernet(4, 10, 3, space)
    arch = Architecture(model.arch_shapes())
    with torch.no_grad():
        for a in arch.parameters():
            a.normal_()
    return model, arch


def decide(space: str, arch: Architecture) -> None:
    """Project some edges: one-hot rows, and (DARTS) a dropped edge."""
    if space == "nb201":
        arch.project_op("cell", 0, 4)  # 1<-0: avg_pool_3x3
        arch.project_op("cell", 4, 0)  # 3<-1: none
        return
    n_ops = arch.proj_weights["normal"].shape[1]
    arch.project_op("normal", 0, n_ops - 1)
    arch.project_op("normal", 2, 1)
    arch.project_op("reduce", 5, 0)
    arch.drop_edges("normal", 2, [4])


def case_weights(space: str, case: str, arch: Architecture) -> tuple[dict, dict]:
    """Mixing weights (alpha's gradient flows into them) and active ops of a test case."""
    if case == "projected":
        decide(space, arch)
    if case.startswith("masked"):
        kind = arch.kinds[-1]
        op = None if case == "masked-edge" else 1
        w, active = arch.masked(kind, 0, op), arch.masked_active(kind, 0, op)
        return {k: v.requires_grad_() for k, v in w.items()}, active
    return arch.weights(), arch.active()


def zero_weight_prefixes(model: nn.Module, weights: dict) -> list[str]:
    """State-dict prefixes of ops with mixing weight 0: the reference still computes them on
    NAS-Bench-201 (times 0), the cells do not."""
    out = []
    for c, cell in enumerate(model.cells):
        if hasattr(cell, "edges"):
            w = weights["cell"]
            out += [f"cells.{c}.edges.{key}.{k}." for e, key in enumerate(cell.edges)
                    for k in range(w.shape[1]) if w[e, k] == 0]
        elif hasattr(cell, "reduction"):
            w = weights["reduce" if cell.reduction else "normal"]
            out += [f"cells.{c}._ops.{e}._ops.{k}." for e in range(w.shape[0]) for k in range(w.shape[1])
                    if w[e, k] == 0]
    return out


def run(model: nn.Module, weights: dict, active: dict | None, x: torch.Tensor, g: torch.Tensor):
    logits = model(x, weights) if active is None else model(x, weights, active)
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(logits, params + list(weights.values()), g, allow_unused=True)
    return logits, grads[:len(params)], grads[len(params):]


def reference_pass(model: nn.Module, weights: dict, x: torch.Tensor, g: torch.Tensor, dtype: torch.dtype):
    """Logits, parameter gradients and mixing-weight gradients of the unshared path; in float32
    channels-last, as the cells run, so that only the sharing and fusion differ."""
    fmt = CL if dtype == torch.float32 else torch.contiguous_format
    model = copy.deepcopy(model).to(dtype).to(memory_format=fmt)
    weights = {k: v.detach().to(dtype).requires_grad_() for k, v in weights.items()}
    logits = reference_forward(model, x.to(dtype).contiguous(memory_format=fmt), weights)
    grads = torch.autograd.grad(logits, list(model.parameters()) + list(weights.values()), g.to(dtype),
                                allow_unused=True)
    n = len(list(model.parameters()))
    return model, logits, grads[:n], grads[n:]


def assert_rounding_close(ours: torch.Tensor, ref32: torch.Tensor, ref64: torch.Tensor, what: str) -> None:
    """ours is as close to the float64 result as the unshared float32 path is (errors relative to
    the tensor's largest value: gradients deep in the network sum terms of both signs)."""
    scale = ref64.abs().max().item() or 1.0
    err, ref_err = ((t.double() - ref64).abs().max().item() / scale for t in (ours, ref32))
    assert err <= 4 * ref_err + 2e-6, f"{what}: error {err:.2e} of the scale, unshared float32 path {ref_err:.2e}"


def every_case(test):
    """Parametrised over the spaces, the cases of case_weights and the devices."""
    test = pytest.mark.parametrize("device", DEVICES)(test)
    test = pytest.mark.parametrize("case", ["plain", "projected", "masked-op", "masked-edge"])(test)
    return pytest.mark.parametrize("space", SPACES)(test)


def on_device(model: nn.Module, weights: dict, x: torch.Tensor, g: torch.Tensor, device: str):
    """The cells' inputs as a run has them: channels-last on the CPU (the fused batch norm),
    NCHW on CUDA (running sums with addcmul_), float32 without TF32."""
    if device == "cpu":
        return model.to(memory_format=CL), weights, x.contiguous(memory_format=CL), g
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    weights = {k: v.detach().to(device).requires_grad_(v.requires_grad) for k, v in weights.items()}
    return model.to(device), weights, x.to(device), g.to(device)


@every_case
def test_training_pass_matches_unshared_path(space: str, case: str, device: str) -> None:
    model, arch = build(space)
    weights, active = case_weights(space, case, arch)
    model.train()
    torch.manual_seed(1)
    x, g = torch.randn(8, 3, 16, 16), torch.randn(8, 10)
    refs = {dtype: reference_pass(model, weights, x, g, dtype) for dtype in (torch.float32, torch.float64)}
    model, weights, x, g = on_device(model, weights, x, g, device)
    logits, grads, w_grads = run(model, weights, active, x, g)
    logits, grads, w_grads = logits.cpu(), [t if t is None else t.cpu() for t in grads], [t.cpu() for t in w_grads]
    model.cpu()
    weights = {k: v.cpu() for k, v in weights.items()}
    (ref32, logits32, grads32, w_grads32), (ref64, logits64, grads64, w_grads64) = refs.values()
    assert_rounding_close(logits, logits32, logits64, "logits")
    for (kind, w), a, b, c in zip(weights.items(), w_grads, w_grads32, w_grads64):
        computed = w != 0  # NAS-Bench-201's reference computes zero-weight ops too (times 0)
        assert_rounding_close(a[computed], b[computed], c[computed], f"gradient of the {kind} mixing weights")
    skip = zero_weight_prefixes(model, weights)
    compared = 0
    for (name, _), a, b, c in zip(model.named_parameters(), grads, grads32, grads64):
        if not any(name.startswith(s) for s in skip):
            assert a is not None and c is not None, name
            assert_rounding_close(a, b, c, f"gradient of {name}")
            compared += 1
    assert compared > 10
    buffers32, buffers64 = dict(ref32.named_buffers()), dict(ref64.named_buffers())
    for name, b in model.named_buffers():
        if not any(name.startswith(s) for s in skip):
            assert_rounding_close(b, buffers32[name], buffers64[name], f"buffer {name}")


@every_case
def test_scoring_pass_matches_unshared_path(space: str, case: str, device: str) -> None:
    """Projection's scoring passes: training-mode batch norm under inference mode."""
    model, arch = build(space)
    weights, active = case_weights(space, case, arch)
    weights = {k: v.detach() for k, v in weights.items()}
    ref = copy.deepcopy(model)
    ref.train()
    x = torch.randn(8, 3, 16, 16)
    with torch.inference_mode():
        ref_logits = reference_forward(ref, x, weights)
        model, dev_weights, dev_x, _ = on_device(model.train(), weights, x, x, device)
        logits = model(dev_x, dev_weights, active).cpu()
    model.cpu()
    torch.testing.assert_close(logits, ref_logits, **TOL)
    assert_buffers_match(model, ref, zero_weight_prefixes(model, weights))


def assert_buffers_match(model: nn.Module, ref: nn.Module, skip: list[str]) -> None:
    ref_buffers = dict(ref.named_buffers())
    for name, b in model.named_buffers():
        if not any(name.startswith(s) for s in skip):
            torch.testing.assert_close(b, ref_buffers[name], **TOL, msg=lambda m: f"buffer {name}: {m}")


def count_steps(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts shared steps computed, by step."""
    counts: Counter = Counter()
    real = StateInputs.get

    def get(self, step):
        if step is not None and step not in self._steps:
            counts[step] += 1
        return real(self, step)
    monkeypatch.setattr(StateInputs, "get", get)
    return counts


def test_darts_pools_and_relus_once_per_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """s5: 14 edges per cell leave 5 states; a reduction cell's edges from its two inputs
    have stride 2, the others stride 1."""
    model, arch = build("s5")
    counts = count_steps(monkeypatch)
    model(torch.randn(2, 3, 16, 16), arch.weights(), arch.active())
    max1, max2 = Pool(True, 3, 1, 1), Pool(True, 3, 2, 1)
    avg1 = Pool(False, 3, 1, 1, False)
    # 3 cells (normal, reduce, reduce at layers=3: reductions at 1 and 2)
    reductions = sum(c.reduction for c in model.cells)
    normals = len(model.cells) - reductions
    assert counts[max1] == 5 * normals + 3 * reductions
    assert counts[max2] == 2 * reductions
    assert counts[avg1] == 5 * normals + 3 * reductions
    assert counts[Relu()] == 5 * len(model.cells)


def test_a_shared_pool_is_computed_while_an_edge_still_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Masking max_pool on one edge leaving a state keeps the pool for the state's other edges;
    with max_pool weighted 0 on every edge leaving the state, it is not computed at all."""
    model = DartsSupernet(4, 10, 2, "s5")  # reductions at layers 0 and 1
    arch = Architecture(model.arch_shapes())
    counts = count_steps(monkeypatch)
    k = model.edge_ops("reduce")[0].index("max_pool_3x3")
    pool = Pool(True, 3, 2, 1)
    weights = {kind: w.detach().clone() for kind, w in arch.weights().items()}
    weights["reduce"][0, k] = 0.0  # edge 0 leaves state 0 (stride 2); edges 2, 5, 9 too
    model(torch.randn(2, 3, 16, 16), weights)
    assert counts[pool] == 2 * 2  # both input states of both cells
    counts.clear()
    weights["reduce"][[0, 2, 5, 9], k] = 0.0
    model(torch.randn(2, 3, 16, 16), weights)
    assert counts[pool] == 2  # state 1 only


def test_nb201_avg_pool_once_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    model, arch = build("nb201")
    counts = count_steps(monkeypatch)
    model(torch.randn(2, 3, 16, 16), arch.weights(), arch.active())
    cells = sum(1 for c in model.cells if hasattr(c, "edges"))
    assert counts[Pool(False, 3, 1, 1, False)] == 3 * cells  # nodes 0, 1, 2 have outgoing edges
    assert counts[Relu()] == 3 * cells


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 5), (2, 3), (1, 1)])
def test_average_pool_matches_torch(hw: tuple[int, int], stride: int, dtype: torch.dtype) -> None:
    """count_include_pad=False average pools on the CPU (a depthwise convolution of ones divided
    by the window counts) equal torch's pool, forward and backward."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, *hw, dtype=dtype).contiguous(memory_format=CL).requires_grad_()
    y = Pool.of(nn.AvgPool2d(3, stride, 1, count_include_pad=False))(x)
    ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    g = torch.randn_like(ref)
    tol = TOL if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(y, ref, **tol)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0], **tol)
    assert y.is_contiguous(memory_format=CL)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("with_acc", [False, True])
def test_scaled_add_matches_weighted_batch_norm(affine: bool, with_acc: bool) -> None:
    """BatchNorm2d.scaled_add(x, w, acc) = acc + w * bn(x): output, the gradients of x, w, acc and
    the affine parameters, and the running statistics."""
    torch.manual_seed(0)
    fused, plain = BatchNorm2d(6, affine=affine), BatchNorm2d(6, affine=affine)
    if affine:
        with torch.no_grad():
            for bn in (fused, plain):
                bn.weight.copy_(torch.linspace(0.5, 1.5, 6))
                bn.bias.copy_(torch.linspace(-1, 1, 6))
    x = (3 + torch.randn(4, 6, 5, 5)).contiguous(memory_format=CL).requires_grad_()
    w = torch.tensor(0.7, requires_grad=True)
    acc0 = torch.randn(4, 6, 5, 5).contiguous(memory_format=CL).requires_grad_()
    g = torch.randn(4, 6, 5, 5)
    assert fused.fuses(x, acc0)
    acc = acc0 * 1 if with_acc else None  # the fused path updates acc in place: not a leaf
    out = fused.scaled_add(x, w, acc)
    ref = w * plain(x.contiguous()) + (acc0 if with_acc else 0)
    torch.testing.assert_close(out, ref, **TOL)
    inputs = [x, w] + ([acc0] if with_acc else []) + list(fused.parameters())
    ref_inputs = [x, w] + ([acc0] if with_acc else []) + list(plain.parameters())
    for a, b in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, ref_inputs, g)):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(fused.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, **TOL)


def test_mix_into_falls_back_off_the_fused_path() -> None:
    """NCHW (and eval mode) add w * op(x) with an in-place addcmul, same values."""
    torch.manual_seed(0)
    op = SepConv(4, 4, 3, 1, 1, affine=False)
    x = torch.randn(2, 4, 6, 6)
    w = torch.tensor(0.3)
    for train in (True, False):
        op.train(train)
        ref = copy.deepcopy(op)
        acc = torch.ones(2, 4, 6, 6)
        out = mix_into(acc, op, StateInputs(x), w)
        assert out is acc
        torch.testing.assert_close(out, 1 + w * ref(x), **TOL)
