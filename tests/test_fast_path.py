"""The default fast path computes what the original code computed.

One full search step (alpha step, then weight step) from identical initial states on the
same batches, through (a) the Trainer's default path (alpha-only gradients, skipped
`none` and zero-weight ops, shared ReLUs, channels-last on CPU, foreach SGD) and (b) the
straightforward reference of benchmarks/reference.py (every op computed, full backward,
NCHW). Alpha gradient, updated alpha, weight-step loss and logits, every weight gradient,
updated weights and BatchNorm statistics must agree to float32 rounding.

The optional flags (--amp, --compile, --proj_batch_size) change numerics; each gets a
test that it runs and that the default path does not use it.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from benchmarks.reference import ReferenceStep, reference_forward
from common import trainer as trainer_mod
from common.arch import Architecture
from common.batchnorm import BatchNorm2d
from common.config import ConfigError, SearchConfig
from common.data import Batches, ImageSet
from common.device import memory_format, tf32
from common.projection import Scorer
from common.run import search_data
from common.space import Space
from common.trainer import SearchData, Trainer
from nasbench201.model_search import EDGE_KEYS, NB201Supernet
from sota.model_search import DartsSupernet
from sota.perturb import random_smoothing
from tests.conftest import DEVICES
from tests.fixtures.configs import search_cfg

# float32: a few ulps of the values, after float reassociation (summation order) only
TOL = dict(rtol=1e-5, atol=1e-6)
# CUDA (float32, TF32 off): cuDNN picks different algorithms for the two paths' convolutions
CUDA_TOL = dict(rtol=1e-4, atol=1e-5)
# float64, several steps: the same arithmetic up to summation order
TOL64 = dict(rtol=1e-10, atol=1e-12)



def default_args(*flags: str) -> SearchConfig:
    """The search defaults (SGD 0.025, momentum 0.9, wd 3e-4, clip 5; Adam 3e-4, wd 1e-3)."""
    return search_cfg(*flags)


def build(space: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Architecture]:
    torch.manual_seed(0)
    model = NB201Supernet(C=4, N=1) if space == "nb201" else DartsSupernet(4, 10, 3, space)
    model.to(device, dtype)
    arch = Architecture(model.arch_shapes(), device, dtype=dtype)
    with torch.no_grad():  # alphas far from uniform, so that every op matters differently
        for a in arch.parameters():
            a.normal_()
    return model, arch


def project(space: str, arch: Architecture) -> list[tuple[str, int, int]]:
    """Decide some edges; return the (kind, edge, op) whose op is dead (weight fixed at 0)."""
    if space == "nb201":
        arch.project_op("cell", 0, 3)   # 1<-0: nor_conv_3x3
        arch.project_op("cell", 4, 0)   # 3<-1: none
    else:
        arch.project_op("normal", 0, 3)
        arch.project_op("normal", 2, 1)
        arch.project_op("reduce", 5, 0)
        arch.drop_edges("normal", 2, [4])  # topology: node 2 loses edge 4
    n_ops = arch.proj_weights[arch.kinds[0]].shape[1]
    return [(k, e, op) for k in arch.kinds for e in range(arch.proj_weights[k].shape[0]) if arch.decided[k][e]
            for op in range(n_ops) if arch.proj_weights[k][e, op] == 0]


def dead_prefixes(space: str, model: nn.Module, dead: list[tuple[str, int, int]]) -> list[str]:
    """State-dict prefixes of ops with weight 0 on decided edges."""
    out = []
    for c, cell in enumerate(model.cells):
        for kind, e, op in dead:
            if space == "nb201" and hasattr(cell, "edges"):
                out.append(f"cells.{c}.edges.{EDGE_KEYS[e]}.{op}.")
            elif space != "nb201" and ("reduce" if cell.reduction else "normal") == kind:
                out.append(f"cells.{c}._ops.{e}._ops.{op}.")
    return out


def run_both(space: str, projected: bool = False, perturb=None, epsilon: float = 0.0, device: str = "cpu",
             steps: int = 1, dtype: torch.dtype = torch.float32):
    """`steps` search steps through both paths. float32 agrees to rounding for one step (more
    steps drift apart by rounding alone); float64 shows the trajectories are the same."""
    tol = TOL64 if dtype == torch.float64 else TOL if device == "cpu" else CUDA_TOL
    with tf32(False):  # as real runs have it (torch's own default lets cuDNN use TF32)
        return _run_both(space, projected, perturb, epsilon, device, tol, steps, dtype)


def _run_both(space: str, projected: bool, perturb, epsilon: float, device: str, tol: dict, steps: int,
              dtype: torch.dtype):
    model, arch = build(space, device, dtype)
    dead = project(space, arch) if projected else []
    ref_model, ref_arch = copy.deepcopy(model), copy.deepcopy(arch)
    g = torch.Generator().manual_seed(1)
    size = 8 if space == "nb201" else 16
    batch = lambda: torch.randn(8, 3, size, size, generator=g, dtype=dtype).to(device)
    sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None,
               perturb=perturb)
    fast = Trainer(sp, None, default_args(), torch.device(device))
    ref = ReferenceStep(ref_model, ref_arch, default_args(), perturb=perturb)
    model.train()
    ref_model.train()
    skip = dead_prefixes(space, model, dead)
    for step in range(steps):  # several steps: optimizer state (momentum, Adam moments) included
        xa, x = batch(), batch()
        ya, y = (torch.randint(0, 10, (8,), generator=g).to(device) for _ in range(2))
        fast.alpha_step(xa, ya)
        ref.alpha_step(xa, ya)
        for a, b in zip(arch.parameters(), ref_arch.parameters()):
            torch.testing.assert_close(a.grad, b.grad, **tol)
            torch.testing.assert_close(a, b, **tol)

        torch.manual_seed(7 + step)  # the same perturbation draws on both sides
        logits, loss = fast.weight_step(x, y, epsilon)
        torch.manual_seed(7 + step)
        ref_logits, ref_loss = ref.weight_step(x, y, epsilon)
        torch.testing.assert_close(loss, ref_loss, **tol)
        torch.testing.assert_close(logits, ref_logits, **tol)
        _compare_states(model, ref_model, skip, tol, step)
    return fast, model


def _compare_states(model: nn.Module, ref_model: nn.Module, skip: list[str], tol: dict, step: int) -> None:
    """Every gradient, parameter and buffer, except those of dead ops (weight fixed at 0 by
    projection: the fast path never computes them, so they stay frozen; NAS-Bench-201's
    reference computes them times 0, which moves them by weight decay and BN statistics)."""
    ref_params = dict(ref_model.named_parameters())
    compared = 0
    for name, p in model.named_parameters():
        if any(name.startswith(s) for s in skip):
            continue
        q = ref_params[name]
        # Ops a perturbation skipped still carry zero-filled gradients (PyTorch 1.x semantics).
        assert p.grad is not None and q.grad is not None, f"step {step} {name}: no gradient"
        torch.testing.assert_close(p.grad, q.grad, **tol, msg=lambda m: f"step {step} grad {name}: {m}")
        torch.testing.assert_close(p, q, **tol, msg=lambda m: f"step {step} param {name}: {m}")
        compared += 1
    assert compared > 0
    ref_buffers = dict(ref_model.named_buffers())
    for name, b in model.named_buffers():
        if not any(name.startswith(s) for s in skip):
            torch.testing.assert_close(b, ref_buffers[name], **tol, msg=lambda m: f"step {step} buffer {name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("space", ["nb201", "s5", "s3"])
def test_search_step_matches_reference(space: str, device: str) -> None:
    fast, model = run_both(space, device=device)
    if device != "cpu":
        return
    assert fast.memory_format == torch.channels_last  # the CPU default is exercised
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_cuda_step_matches_cpu_step(space: str) -> None:
    """The default path on CUDA (NCHW, cuDNN) and on the CPU (channels-last) agree."""
    out = {}
    for device in ("cpu", "cuda"):
        model, arch = build(space, device)
        sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
        trainer = Trainer(sp, None, default_args(), torch.device(device))
        g = torch.Generator().manual_seed(1)
        xa, x = (torch.randn(8, 3, 16, 16, generator=g).to(device) for _ in range(2))
        ya, y = (torch.randint(0, 10, (8,), generator=g).to(device) for _ in range(2))
        model.train()
        with tf32(False):
            trainer.alpha_step(xa, ya)
            logits, loss = trainer.weight_step(x, y, 0.0)
        out[device] = [loss, logits, *arch.parameters(), *model.parameters()]
    for a, b in zip(out["cpu"], out["cuda"]):
        torch.testing.assert_close(a, b.cpu(), **CUDA_TOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_partially_projected_step_matches_reference(space: str, device: str) -> None:
    run_both(space, projected=True, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_sdarts_random_step_matches_reference(device: str) -> None:
    # epsilon 0.45 > 1/7: some perturbed weights clamp to exactly 0 and their ops are skipped
    run_both("s5", projected=True, perturb=random_smoothing, epsilon=0.45, device=device)


@pytest.mark.parametrize("case", ["nb201", "s5", "s3", "nb201-projected", "s5-projected", "s5-sdarts"])
def test_several_steps_match_reference_float64(case: str) -> None:
    """Three steps in float64 (channels-last default layout): optimizer states, zero-filled
    gradients of skipped ops and the alpha-only gradients agree with the original's path."""
    space = case.split("-")[0]
    sdarts = dict(perturb=random_smoothing, epsilon=0.45) if case.endswith("sdarts") else {}
    run_both(space, projected="projected" in case or bool(sdarts), steps=3, dtype=torch.float64, **sdarts)


def test_reference_forward_matches_model() -> None:
    for space in ("nb201", "s5", "s3", "s1"):
        model, arch = build(space)
        model.eval()
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            w = arch.weights()
            torch.testing.assert_close(model(x, w, arch.active()), reference_forward(model, x, w), **TOL)


@pytest.mark.parametrize("affine", [False, True])
def test_channels_last_batchnorm_is_as_accurate_as_nchw(affine: bool) -> None:
    """common.batchnorm.BatchNorm2d on channels-last CPU input vs float64 NCHW batch norm."""
    torch.manual_seed(0)
    x64 = 5 + torch.randn(16, 6, 12, 12, dtype=torch.float64)  # a mean >> 0 exposes naive float32 sums
    g64 = torch.randn_like(x64)
    ref = nn.BatchNorm2d(6, affine=affine).double()
    ours = BatchNorm2d(6, affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.normal_()
            ours.weight.copy_(ref.weight)
            ours.bias.copy_(ref.bias)
    xr = x64.clone().requires_grad_()
    yr = torch.relu(ref(xr))
    yr.backward(g64)
    x = x64.float().contiguous(memory_format=torch.channels_last).requires_grad_()
    y = nn.functional.relu(ours(x), inplace=True)  # in-place on the output is allowed
    y.backward(g64.float())
    assert y.is_contiguous(memory_format=torch.channels_last)
    close = dict(rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(y.double(), yr.detach(), **close)
    torch.testing.assert_close(x.grad.double(), xr.grad, **close)
    torch.testing.assert_close(ours.running_mean.double(), ref.running_mean, **close)
    torch.testing.assert_close(ours.running_var.double(), ref.running_var, **close)
    assert ours.num_batches_tracked == 1
    if affine:
        torch.testing.assert_close(ours.weight.grad.double(), ref.weight.grad, **close)
        torch.testing.assert_close(ours.bias.grad.double(), ref.bias.grad, **close)
    # scoring passes: training mode without autograd updates the statistics the same way
    with torch.inference_mode():
        ours(x.detach())
        ref(x64)
    torch.testing.assert_close(ours.running_mean.double(), ref.running_mean, **close)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x.detach()).double(), ref(x64), **close)


def test_eval_network_channels_last_step_matches_nchw() -> None:
    """sota/train.py's CPU default (channels-last) trains the evaluation network as NCHW does:
    same loss, logits and gradients (auxiliary head and drop path included)."""
    from sota.genotypes import get_genotype
    from sota.model_eval import NetworkCIFAR

    torch.manual_seed(0)
    nchw = NetworkCIFAR(6, 10, 5, True, get_genotype("darts_pt_s5_0"))  # reductions at 1 and 3, aux at 8x8
    nchw.drop_path_prob = 0.2
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = {}
    for name, net, xin in (("nchw", nchw, x), ("cl", cl, x.contiguous(memory_format=torch.channels_last))):
        torch.manual_seed(1)  # the same drop-path masks
        logits, aux = net(xin)
        loss = nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)
        loss.backward()
        out[name] = (loss, logits, [p.grad for p in net.parameters()], list(net.buffers()))
    assert cl.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    loss, logits, grads, buffers = out["cl"]
    torch.testing.assert_close(loss, out["nchw"][0], **TOL)
    torch.testing.assert_close(logits, out["nchw"][1], **TOL)
    torch.testing.assert_close(grads, out["nchw"][2], **TOL)
    torch.testing.assert_close(buffers, out["nchw"][3], **TOL)


def test_alpha_step_after_an_evaluation_of_a_new_projection() -> None:
    # evaluation runs under inference mode; the Architecture's cached tensors must not be
    # created there, or the next alpha step cannot differentiate through them
    t = trainer_with("s5")
    for e in range(14):
        t.arch.project_op("normal", e, 3)
    t.evaluate(t.data.valid, (1,))  # the first use of the new projection state
    one_step(t)
    assert t.arch.parameters()[0].grad is not None


def test_alpha_the_loss_does_not_depend_on_is_left_alone() -> None:
    # S4 with every reduce edge projected to `noise`: nothing downstream reads the normal
    # cell, so alpha_normal has no gradient (the reference's backward leaves it None too)
    model, arch = build("s4")
    for e in range(14):
        arch.project_op("reduce", e, 0)
    ref_model, ref_arch = copy.deepcopy(model), copy.deepcopy(arch)
    sp = Space(label="s4", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    fast = Trainer(sp, None, default_args(), torch.device("cpu"))
    ref = ReferenceStep(ref_model, ref_arch, default_args())
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    before = arch.alphas["normal"].detach().clone()
    torch.manual_seed(0)
    fast.alpha_step(x, y)
    torch.manual_seed(0)
    ref.alpha_step(x, y)
    assert arch.alphas["normal"].grad is None and ref_arch.alphas["normal"].grad is None
    assert torch.equal(arch.alphas["normal"], before)
    torch.testing.assert_close(arch.alphas["reduce"], ref_arch.alphas["reduce"], **TOL)


# -- optional flags ------------------------------------------------------------------------

def trainer_with(space: str = "nb201", *flags: str) -> Trainer:
    model, arch = build(space)
    images = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8)
    data = ImageSet(images, torch.randint(0, 10, (32,)), 10, (0.5,) * 3, (0.25,) * 3, 1)
    batches = Batches(data, None, 8, augment=True)
    sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    return Trainer(sp, SearchData(batches, batches, None), default_args(*flags), torch.device("cpu"))


def one_step(t: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    (x, y), = list(t.data.train((0, 0)))[:1]
    t.alpha_step(x, y)
    return t.weight_step(x, y, 0.0)


def test_default_path_uses_no_amp_and_no_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*a, **k):
        raise AssertionError("the default path must not use this")

    monkeypatch.setattr(torch, "autocast", forbidden)
    monkeypatch.setattr(torch, "compile", forbidden)
    t = trainer_with()
    assert not t.amp and t.forward is t.model
    logits, loss = one_step(t)
    assert logits.dtype == torch.float32
    cfg = search_cfg()
    assert (cfg.speed.amp, cfg.speed.compile, cfg.projection.proj_batch_size) == (False, False, 0)
    assert cfg.speed.memory_format == "auto" and cfg.speed.tf32 is False


@pytest.mark.parametrize("argv", [[], ["--tf32"]])
def test_tf32_only_on_request(argv: list[str]) -> None:
    """float32 CUDA arithmetic by default (torch's own default lets cuDNN use TF32); the
    search and evaluation entry points share the flag."""
    from common.entry import seed_everything
    from sota.train import build_parser as train_parser
    from sota.train import config as train_config

    for cfg in (search_cfg(*argv), train_config(train_parser().parse_args(argv))):
        with tf32(not argv):  # the opposite first; restored after the check
            seed_everything(0, cfg.run.deter, cfg.speed.tf32)
            assert torch.backends.cudnn.allow_tf32 is torch.backends.cuda.matmul.allow_tf32 is bool(argv)


def test_amp_runs_in_bf16() -> None:
    t = trainer_with("nb201", "--amp")
    logits, loss = one_step(t)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert t.arch.parameters()[0].grad is not None
    acc, val_loss = t.evaluate(t.data.valid, (1,))
    assert 0.0 <= acc <= 100.0


def test_compile_runs_and_survives_a_new_projection_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = torch.compile
    monkeypatch.setattr(trainer_mod, "COMPILE_BACKEND", "eager")  # inductor would take minutes here
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append(k) or real(*a, **k))
    t = trainer_with("nb201", "--compile")
    assert calls and calls[0]["backend"] == "eager" and t.forward is not t.model
    (x, y), = list(t.data.train((0, 0)))[:1]
    t.weight_step(x, y, 0.0)
    t.arch.project_op("cell", 2, 3)  # a new active pattern: recompiles (or falls back), still runs
    logits, loss = t.weight_step(x, y, 0.0)
    assert torch.isfinite(loss)


def test_memory_format_flag() -> None:
    assert trainer_with("nb201", "--memory_format", "contiguous").memory_format == torch.contiguous_format
    assert trainer_with("nb201", "--memory_format", "channels_last").memory_format == torch.channels_last
    assert memory_format("auto", torch.device("cuda")) == torch.contiguous_format
    assert memory_format("auto", torch.device("cpu")) == torch.channels_last
    with pytest.raises(ValueError):
        memory_format("nhwc", "cpu")


def test_proj_batch_size_sets_the_scoring_batches(tmp_path) -> None:
    images = torch.randint(0, 256, (40, 8, 8, 3), dtype=torch.uint8)
    data = ImageSet(images, torch.randint(0, 10, (40,)), 10, (0.5,) * 3, (0.25,) * 3, 1)
    default = search_data(search_cfg("--batch_size", "4"), data, data, torch.device("cpu"))
    assert default.proj is None and default.score is default.valid
    sd = search_data(search_cfg("--batch_size", "4", "--proj_batch_size", "10"), data, data, torch.device("cpu"))
    assert sd.score.batch_size == 10 and sd.valid.batch_size == 4
    assert sd.score.images is sd.valid.images  # the same images, not a copy
    sizes = []
    t = trainer_with()
    t.data = sd
    real = t.model.forward
    t.model.forward = lambda x, *a: sizes.append(len(x)) or real(x, *a)
    Scorer(t, 0)("cell", 0, 1)
    assert sizes == [10, 10]
    with pytest.raises(ConfigError, match="--proj_batch_size -1"):
        search_cfg("--proj_batch_size", "-1")


def test_benchmark_script_runs(capsys: pytest.CaptureFixture) -> None:
    from benchmarks import bench_search

    assert bench_search.main(["--device", "cpu", "--spaces", "nb201", "--batch_size", "2", "--steps", "1",
                              "--warmup", "0", "--proj_batches", "1", "--no_eval"]) == 0
    out = capsys.readouterr().out
    assert "nb201 cpu fast search_step_s=" in out and "nb201 cpu reference search_step_s=" in out
    assert "nb201 cpu speedup fast_vs_reference search_step=" in out


@pytest.mark.slow
def test_pipeline_benchmark_runs(capsys: pytest.CaptureFixture) -> None:
    """benchmarks/bench_pipeline.py: the real search and projection runs and the reference's, one
    line of phases per path, the speed-up and where the time goes."""
    from benchmarks import bench_pipeline

    assert bench_pipeline.main(["--quick", "--spaces", "nb201"]) == 0
    out = capsys.readouterr().out
    for path in ("ours", "reference"):
        line = next(r for r in out.splitlines() if r.startswith(f"nb201 cpu {path} "))
        figures = dict(kv.split("=") for kv in line.split()[3:])
        assert set(bench_pipeline.PHASES) | {"total"} == {k.removesuffix("_s") for k in figures}
        assert float(figures["search_steps_s"]) > 0 and float(figures["scoring_s"]) > 0
        assert float(figures["tuning_steps_s"]) > 0
    assert "nb201 cpu speedup ours_vs_reference " in out and "nb201 cpu ours where_the_time_goes " in out
