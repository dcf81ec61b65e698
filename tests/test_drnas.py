"""DrNAS (`--method drnas`, common/methods/drnas.py) against float64 trajectories of the authors' code.

The recordings (tests/reference/README.md "DrNAS"; ../shared/reference/steps/steps_nb201_drnas_C8.pt)
hold every Dirichlet sample the authors' code drew and every channel its widening copied: the tests
feed them back (`torch._sample_dirichlet`, the widening's `draw`) and run the project's Trainer, with
the DrNAS method, from the recorded state. After every step the alphas, the weight step's loss, every
parameter and BatchNorm buffer agree to 1e-12; at a transition, the pruned alphas, the masks, the
widened state_dict and the carried-over momentum buffers too.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from common.arch import Architecture
from common.methods import build_method
from common.methods.drnas import DrNAS
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from sota.model_search import DartsSupernet
from tests.fixtures.configs import search_cfg
from tests.fixtures.reference import project_reference_file, reference_file

TOL = 1e-12
# Relative 1e-10 besides: the untrained tiny supernets' features reach 1e8 (no normalisation between a
# node's inputs), so float64 rounding in another summation order alone reaches 5e-12 of a statistic.
RTOL = 1e-10
ALPHA_KEYS = ("_arch_parameters",)


def load(name: str) -> dict:
    path = reference_file(f"steps/{name}") if name == "steps_nb201_drnas_C8.pt" else \
        project_reference_file(f"steps/{name}")
    return torch.load(path, map_location="cpu", weights_only=False)


@contextlib.contextmanager
def recorded_samples(rows: list[torch.Tensor]) -> Iterator[None]:
    """`torch._sample_dirichlet` hands out the recorded samples, one row per edge, in draw order."""
    queue = list(rows)
    real = torch._sample_dirichlet

    def sample(concentration: torch.Tensor, generator=None) -> torch.Tensor:
        n = concentration.shape[0]
        assert len(queue) >= n, "more Dirichlet samples drawn than recorded"
        out = torch.stack([queue.pop(0) for _ in range(n)])
        assert out.shape == concentration.shape
        return out.to(concentration.dtype)

    torch._sample_dirichlet = sample
    try:
        yield
    finally:
        torch._sample_dirichlet = real
    assert not queue, f"{len(queue)} recorded samples were not drawn"


def project_state(space: str, state: dict) -> dict:
    """The authors' state_dict in the project's layout: NAS-Bench-201 without alpha; the DARTS space's
    pools' BatchNorm at `_ops.i.1` (DrNAS: `_ops.i.op.1`)."""
    out = {}
    for key, value in state.items():
        if key in ALPHA_KEYS:
            continue
        out[key.replace(".op.1.", ".1.") if space == "darts" and _is_pool_bn(key) else key] = value
    return out


def _is_pool_bn(key: str) -> bool:
    parts = key.split(".")  # cells.C._ops.E._ops.O.op.1.running_mean
    return len(parts) == 9 and parts[2] == "_ops" and parts[4] == "_ops" and parts[5] in ("0", "1") and parts[6] == "op"


def setup(ref: dict, memory_format: str = "contiguous") -> tuple[Trainer, dict]:
    """A Trainer with the DrNAS method on the project's supernet, in the recorded initial state."""
    space_name = "darts" if ref["space"].startswith("darts") else "nb201"
    h = ref["hyper"]
    stages = ref.get("stages") or [{"k": h.get("k", 1), "num_keep": len(ref["op_names"]), "steps": 3}]
    flags = ["--method", "drnas", "--learning_rate", str(h["learning_rate"]), "--momentum", str(h["momentum"]),
             "--weight_decay", str(h["weight_decay"]), "--arch_learning_rate", str(h["arch_learning_rate"]),
             "--grad_clip", str(h["grad_clip"]), "--reg_type", h["reg_type"], "--reg_scale", str(h["reg_scale"]),
             "--memory_format", memory_format, "--init_channels", str(ref["C"]),
             "--epochs", str(len(stages)),
             "--stages", ",".join(f"{s['k']}:{s['num_keep']}:1" for s in stages)]
    if space_name == "nb201":
        cfg = search_cfg(*flags)
        model = NB201Supernet(ref["C"], ref["N"], 10, k=stages[0]["k"]).double()
    else:
        cfg = search_cfg(*flags, "--layers", str(ref["N"]), space="sota")
        model = DartsSupernet(ref["C"], 10, ref["N"], "s5", k=stages[0]["k"]).double()
    state = project_state(space_name, ref["init_state_dict"])
    model.load_state_dict(state)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    init_alphas = ref.get("init_alphas") or [ref["init_state_dict"]["_arch_parameters"]]
    with torch.no_grad():
        for a, b in zip(arch.parameters(), init_alphas, strict=True):
            a.copy_(b)
    space = Space(label=space_name, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None,
                  alpha_in_model=space_name == "nb201", widen=model.widen)
    method = build_method(cfg)
    assert isinstance(method, DrNAS)
    trainer = Trainer(space, None, cfg, torch.device("cpu"), method=method)
    return trainer, {"space": space_name}


def check_state(trainer: Trainer, space: str, expected: dict, what: str) -> None:
    state = trainer.model.state_dict()
    theirs = project_state(space, expected)
    assert state.keys() == theirs.keys(), what
    for key, value in theirs.items():
        torch.testing.assert_close(state[key].to(value.dtype), value, rtol=RTOL, atol=TOL,
                                   msg=lambda m: f"{what} {key}: {m}")


def replayed_draws(transition: dict):
    """common.net2wider.random_draw's stand-in: the channels the authors' widening drew, in order."""
    drawn = [c["index"] for c in transition["widen_calls"] if c["drawn"]]

    def draw(old: int, new: int) -> torch.Tensor:
        assert drawn, "more widening draws than recorded"
        index = drawn.pop(0)
        assert index.numel() == new - old
        return index

    return (lambda generator: draw), drawn


def check_transition(trainer: Trainer, space: str, transition: dict, left: list) -> None:
    """After the transition: pruned alphas and masks, the widened state_dict, the momentum buffers
    carried over, Adam untouched."""
    assert not left, f"{len(left)} recorded widening draws were not made"
    for a, b in zip(trainer.arch.parameters(), transition["alphas_pruned"], strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=RTOL, atol=TOL)
    kept = trainer.arch.kept
    assert kept is not None
    for kind, mask in zip(trainer.arch.kinds, transition["masks"], strict=True):
        assert torch.equal(kept[kind].cpu(), mask)
    check_state(trainer, space, transition["state_dict"], "transition")
    params = dict(trainer.model.named_parameters())
    buffers = {n: trainer.w_opt.state[p]["momentum_buffer"] for n, p in params.items()
               if "momentum_buffer" in trainer.w_opt.state.get(p, {})}
    assert buffers.keys() == transition["momentum_buffers"].keys()
    for name, value in transition["momentum_buffers"].items():
        torch.testing.assert_close(buffers[name], value, rtol=RTOL, atol=TOL, msg=lambda m: f"{name}: {m}")
    assert list(trainer.w_opt.param_groups[0]["params"]) == list(params.values())
    for a, state in zip(trainer.arch.parameters(), transition["adam_state"], strict=True):
        mine = trainer.a_opt.state[a]
        assert float(mine["step"]) == float(state["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(mine[key], state[key], rtol=RTOL, atol=TOL)


def run_steps(name: str, monkeypatch: pytest.MonkeyPatch, memory_format: str = "contiguous") -> None:
    ref = load(name)
    trainer, info = setup(ref, memory_format)
    method = trainer.method
    method.start_epoch(0, 1, tuning=False)
    transitions = iter(ref.get("transitions", []))
    stage = 0
    trainer.model.train()
    for i, step in enumerate(ref["steps"]):
        if step.get("stage", 0) != stage:
            stage = step["stage"]
            transition = next(transitions)
            draw, left = replayed_draws(transition)
            monkeypatch.setattr("common.methods.drnas.random_draw", draw)
            method.start_epoch(stage, len(ref["stages"]), tuning=False)
            check_transition(trainer, info["space"], transition, left)
        with recorded_samples(step["samples_alpha_step"]):
            trainer.alpha_step(step["x_alpha"].double(), step["y_alpha"], train=(step["x"].double(), step["y"], 16))
        for a, b in zip(trainer.arch.parameters(), step["alphas"], strict=True):
            torch.testing.assert_close(a.detach(), b, rtol=RTOL, atol=TOL, msg=lambda m: f"step {i} alpha: {m}")
        with recorded_samples(step["samples_weight_step"]):
            _, loss = trainer.weight_step(step["x"].double(), step["y"])
        assert loss.item() == pytest.approx(step["loss"], rel=RTOL, abs=TOL), f"step {i}"
        check_state(trainer, info["space"], step["state_dict"], f"step {i}")


FILES = ["steps_nb201_drnas_C8.pt", "steps_nb201_drnas_kl_C2.pt", "steps_nb201_drnas_progressive_C4.pt",
         "steps_darts_drnas_kl_C6_L5.pt", "steps_darts_drnas_progressive_C12_L5.pt"]


@pytest.mark.parametrize("name", FILES)
def test_steps_match_the_authors(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_steps(name, monkeypatch)
