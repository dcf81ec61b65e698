"""The default fast path computes what the original code computed.

One full search step (alpha step, then weight step) from identical initial states on the
same batches, through (a) the Trainer's default path (alpha-only gradients, skipped
`none` and zero-weight ops, shared ReLUs, channels-last on CPU, foreach SGD) and (b) the
straightforward reference of benchmarks/reference.py (every op computed, full backward).
Alpha gradient, updated alpha, weight-step loss and logits, every weight gradient, updated
weights and BatchNorm statistics must agree: in float64 to 1e-10, and in float32 to rounding,
i.e. the fast path is as close to the float64 reference as the reference's own float32 run
(in the same layout) is.

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
from common.methods.sdarts import SDARTS, random_smoothing
from common.projection import Scorer
from common.run import search_data
from common.space import Space
from common.trainer import SearchData, Trainer
from nasbench201.model_search import EDGE_KEYS, NB201Supernet
from sota.model_search import DartsSupernet
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
    """`steps` search steps through both paths, from the same float32 initial state. float64:
    the two paths agree to TOL64 (the same trajectories). float32: every tensor of the fast path
    is as close to the float64 reference as the reference's own float32 run in the fast path's
    layout is (`_rounding`); one step only (more drift apart by rounding alone)."""
    with tf32(False):  # as real runs have it (torch's own default lets cuDNN use TF32)
        model, arch = build(space)
        skip = dead_prefixes(space, model, project(space, arch) if projected else [])
        batches = _batches(space, steps)
        fast_model, fast_arch = _copy(model, arch, device, dtype)
        sp = Space(label=space, model=fast_model, arch=fast_arch, op_names={}, edge_names=[],
                   genotype=lambda w: None)
        trainer = Trainer(sp, None, default_args(), torch.device(device),
                          method=SDARTS(perturb, epsilon) if perturb else None)
        ours = _trajectory(trainer, fast_model, fast_arch, batches, epsilon, skip, device, dtype)
        draws = perturb if dtype == torch.float64 else _float32_draws(perturb)  # the fast path's noise
        ref64 = _reference(model, arch, batches, draws, epsilon, skip, torch.float64)
        if dtype == torch.float64:
            for step, (a, b) in enumerate(zip(ours, ref64)):
                for key in a:
                    torch.testing.assert_close(a[key], b[key], **TOL64, msg=lambda m: f"step {step} {key}: {m}")
        else:
            layout = memory_format(default_args().speed.memory_format, device)  # the fast path's
            ref32 = _reference(model, arch, batches, perturb, epsilon, skip, torch.float32, layout)
            for step, values in enumerate(ours):
                for key, value in values.items():
                    _rounding(value, ref32[step][key], ref64[step][key], FLOOR[device], f"step {step} {key}")
    return trainer, fast_model


# float32: the fast path's error (against the float64 reference, relative to the tensor's largest
# value) may be this many times the reference path's own float32 error, plus a floor: CUDA's
# cuDNN picks other algorithms than the CPU reference's kernels.
ROUNDING = 4
FLOOR = {"cpu": 2e-6, "cuda": 1e-4}


def _rounding(ours: torch.Tensor, ref32: torch.Tensor, ref64: torch.Tensor, floor: float, what: str) -> None:
    """`ours` is as close to the float64 result as the reference's float32 run in the same layout
    is: float32 rounding is no fixed fraction of a value. A ReLU input within rounding of 0 (in
    S3's step, one of 2048 at 1.6e-7) falls on either side in float32, and its gradient passes or
    not: 2.5% of a weight gradient, in the channels-last reference as in the fast path (NCHW
    happens to round it as float64 does)."""
    scale = ref64.abs().max().item() or 1.0
    err = (ours.double() - ref64).abs().max().item() / scale
    budget = (ref32 - ref64).abs().max().item() / scale
    assert err <= ROUNDING * budget + floor, f"{what}: error {err:.2e} of the scale, reference float32 {budget:.2e}"


def _batches(space: str, steps: int) -> list[tuple[torch.Tensor, ...]]:
    """(alpha images, alpha targets, weight images, weight targets) per step, float32 on the CPU."""
    g = torch.Generator().manual_seed(1)
    size = 8 if space == "nb201" else 16
    out = []
    for _ in range(steps):
        xa, x = (torch.randn(8, 3, size, size, generator=g) for _ in range(2))
        ya, y = (torch.randint(0, 10, (8,), generator=g) for _ in range(2))
        out.append((xa, ya, x, y))
    return out


def _copy(model: nn.Module, arch: Architecture, device: str, dtype: torch.dtype,
          fmt: torch.memory_format = torch.contiguous_format) -> tuple[nn.Module, Architecture]:
    """A copy of the supernet and its alphas and projection state, in `dtype` on `device`."""
    model = copy.deepcopy(model).to(device, dtype).to(memory_format=fmt)
    other = Architecture(model.arch_shapes(), device, dtype=dtype)
    other.load_alpha_list(arch.alpha_list())
    other.load_projection_state(arch.projection_state())
    return model, other


def _reference(model: nn.Module, arch: Architecture, batches: list, perturb, epsilon: float, skip: list[str],
               dtype: torch.dtype, fmt: torch.memory_format = torch.contiguous_format) -> list[dict[str, torch.Tensor]]:
    """benchmarks/reference.py's steps on the CPU in `dtype` and layout `fmt`."""
    model, arch = _copy(model, arch, "cpu", dtype, fmt)
    step = ReferenceStep(model, arch, default_args(), perturb=perturb)
    return _trajectory(step, model, arch, batches, epsilon, skip, "cpu", dtype, fmt)


def _float32_draws(perturb):
    """`perturb` drawing its noise in float32, its result in the weights' dtype: float64 draws
    other numbers than float32 from the same seed, and the float64 reference of a float32 run
    must perturb as the run does."""
    if perturb is None:
        return None

    def drawn(model, weights, x, y, epsilon, project):
        noisy = perturb(model, {k: w.float() for k, w in weights.items()}, x, y, epsilon, project)
        return {k: w.to(weights[k].dtype) for k, w in noisy.items()}
    return drawn


def _trajectory(stepper, model: nn.Module, arch: Architecture, batches: list, epsilon: float, skip: list[str],
                device: str, dtype: torch.dtype,
                fmt: torch.memory_format = torch.contiguous_format) -> list[dict[str, torch.Tensor]]:
    """Each step's alpha gradients and alphas, loss and logits, and every weight gradient, weight
    and buffer but those of dead ops (float64, on the CPU)."""
    model.train()
    out = []
    for step, (xa, ya, x, y) in enumerate(batches):
        xa, x = (t.to(device, dtype).contiguous(memory_format=fmt) for t in (xa, x))
        ya, y = ya.to(device), y.to(device)
        stepper.alpha_step(xa, ya)
        values = {}
        for k, a in zip(arch.kinds, arch.parameters()):
            values[f"alpha {k}"], values[f"alpha grad {k}"] = a.detach(), a.grad
        torch.manual_seed(7 + step)  # the same perturbation draws on every path
        # the reference takes the radius per step; a Trainer's SDARTS method holds it
        logits, loss = stepper.weight_step(x, y, epsilon) if isinstance(stepper, ReferenceStep) else \
            stepper.weight_step(x, y)
        values.update(loss=loss.detach(), logits=logits.detach())
        values.update(_states(model, skip, step))
        out.append({k: v.detach().double().cpu() for k, v in values.items()})
    return out


def _states(model: nn.Module, skip: list[str], step: int) -> dict[str, torch.Tensor]:
    """Every gradient, parameter and buffer, except those of dead ops (weight fixed at 0 by
    projection: the fast path never computes them, so they stay frozen; NAS-Bench-201's
    reference computes them times 0, which moves them by weight decay and BN statistics)."""
    out = {}
    for name, p in model.named_parameters():
        if not any(name.startswith(s) for s in skip):
            # Ops a perturbation skipped still carry zero-filled gradients (PyTorch 1.x semantics).
            assert p.grad is not None, f"step {step} {name}: no gradient"
            out[f"grad {name}"], out[f"param {name}"] = p.grad, p
    assert out
    out.update({f"buffer {name}": b for name, b in model.named_buffers() if not any(name.startswith(s) for s in skip)})
    return out


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
            logits, loss = trainer.weight_step(x, y)
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
    return t.weight_step(x, y)


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
    t.weight_step(x, y)
    t.arch.project_op("cell", 2, 3)  # a new active pattern: recompiles (or falls back), still runs
    logits, loss = t.weight_step(x, y)
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
