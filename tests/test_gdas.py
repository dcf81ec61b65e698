"""GDAS (common/methods/gdas.py) against the authors' code, and through the project's machinery.

tests/reference/steps/steps_nb201_gdas_C4.pt and steps_darts_gdas_C4_N2.pt hold three float64 steps of
AutoDL-Projects' GDAS (weight step, then arch step, each on its own Gumbel sample) with the Gumbel
noise each forward drew. The project's Trainer, fed the same noise, must agree to 1e-12: the
NAS-Bench-201 file on the project's own supernet (the same network), the DARTS-space file on
tests/fixtures/autodl_nasnet.py, a test-only network with AutoDL's `NASNetworkGDAS` layout that
speaks the space contract (the project's DARTS-space supernet is DARTS-PT's, a different network).
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from common.arch import Architecture
from common.methods.gdas import GDAS
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from tests.fixtures.autodl_nasnet import OPS, AutoDLNASNet
from tests.fixtures.configs import search_cfg
from tests.fixtures.reference import project_reference_file

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = 1e-12


def load(name: str) -> dict:
    return torch.load(project_reference_file(f"steps/{name}"), map_location="cpu", weights_only=False)


class Replayed:
    """The recorded Gumbel noise, in the order the forwards drew it, instead of the generator."""

    def __init__(self, steps: list[dict]) -> None:
        self.gumbels = [g for s in steps for g in s["gumbels_weight_step"] + s["gumbels_alpha_step"]]

    def __call__(self, alpha: torch.Tensor) -> torch.Tensor:
        return self.gumbels.pop(0).to(alpha.dtype)


def reference_trainer(ref: dict, model: torch.nn.Module, memory_format: str = "contiguous") -> Trainer:
    """A GDAS Trainer with the file's hyper-parameters, initial state and noise."""
    state = dict(ref["init_state_dict"])
    for name in ref["alpha_names"]:
        state.pop(name)
    model.load_state_dict(state)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(arch.parameters(), ref["init_alphas"], strict=True):
            a.copy_(b)
    h = ref["hyper"]
    flags = {k: h[k] for k in ("learning_rate", "momentum", "weight_decay", "arch_learning_rate",
                               "arch_weight_decay", "grad_clip", "tau_max", "tau_min")}
    cfg = search_cfg("--method", "gdas", *(f"--{k}={v}" for k, v in flags.items()), "--nesterov",
                     "--memory_format", memory_format)
    space = Space(label="ref", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    trainer = Trainer(space, None, cfg, torch.device("cpu"))
    assert isinstance(trainer.method, GDAS)
    assert tuple(trainer.a_opt.defaults["betas"]) == tuple(ref["adam_betas"])
    trainer.method.noise = Replayed(ref["steps"])
    return trainer


def replay(ref: dict, trainer: Trainer, state_keys: Callable[[str], str] = lambda k: k) -> None:
    """The file's steps, each checked: sampled ops, losses, clipped norm, alphas, state sums; then
    the final state_dict (`state_keys`: the file's key of a model key)."""
    method, model = trainer.method, trainer.model
    assert isinstance(method, GDAS)
    h = ref["hyper"]
    sampled: list[list[int]] = []
    norms: list[float] = []
    sample, clip = method.sample, torch.nn.utils.clip_grad_norm_

    def kept_sample(t: Trainer):
        weights, active = sample(t)
        sampled.append([ops[0] for kind in t.arch.kinds for ops in active[kind]])
        return weights, active

    def kept_clip(params, max_norm):
        norms.append(float(clip(params, max_norm)))
        return norms[-1]

    method.sample = kept_sample  # type: ignore[method-assign]
    torch.nn.utils.clip_grad_norm_ = kept_clip
    try:
        model.train()
        for i, step in enumerate(ref["steps"]):
            epoch = step["epoch"]
            assert method.start_epoch(epoch, h["total_epochs"], tuning=False) == f" tau {step['tau']:g}"
            assert method.tau == step["tau"]
            trainer.w_opt.param_groups[0]["lr"] = step["lr"]
            _, loss = trainer.weight_step(step["x"].double(), step["y"])
            trainer.alpha_step(step["x_alpha"].double(), step["y_alpha"])
            assert sampled[-2] == torch.cat(step["index_weight_step"]).tolist(), f"step {i} weight sample"
            assert sampled[-1] == torch.cat(step["index_alpha_step"]).tolist(), f"step {i} alpha sample"
            assert loss.item() == pytest.approx(step["loss"], rel=0, abs=TOL), f"step {i} loss"
            assert norms[-1] == pytest.approx(step["grad_norm"], rel=0, abs=TOL), f"step {i} clipped norm"
            for a, b in zip(trainer.arch.parameters(), step["alphas"], strict=True):
                torch.testing.assert_close(a.detach(), b, rtol=0, atol=TOL, msg=lambda m: f"step {i} alpha: {m}")
            ours = {state_keys(k): v for k, v in model.state_dict().items()}
            names = [k for k in ref["final_state_dict"] if k not in ref["alpha_names"]]
            sums = dict(zip(ref["final_state_dict"], step["state_sums"].tolist()))
            for k in names:
                assert ours[k].double().sum().item() == pytest.approx(sums[k], rel=1e-12, abs=TOL), f"step {i} {k}"
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
    ours = {state_keys(k): v for k, v in model.state_dict().items()}
    final = {k: v for k, v in ref["final_state_dict"].items() if k not in ref["alpha_names"]}
    assert ours.keys() == final.keys()
    for k, v in final.items():
        torch.testing.assert_close(ours[k].to(v.dtype), v, rtol=TOL, atol=TOL, msg=lambda m: f"final {k}: {m}")


# -- the authors' trajectories -------------------------------------------------------------------

@pytest.mark.parametrize("memory_format", ["contiguous", pytest.param("channels_last", marks=pytest.mark.slow)])
def test_nb201_steps_match_autodl(memory_format: str) -> None:
    ref = load("steps_nb201_gdas_C4.pt")
    model = NB201Supernet(ref["C"], ref["N"], ref["num_classes"]).double()
    replay(ref, reference_trainer(ref, model, memory_format))


def test_darts_space_steps_match_autodl() -> None:
    """The project's GDAS step on AutoDL's DARTS-space network (tests/fixtures/autodl_nasnet.py)."""
    ref = load("steps_darts_gdas_C4_N2.pt")
    assert tuple(ref["op_names"]) == OPS
    model = AutoDLNASNet(ref["C"], ref["N"], ref["num_classes"]).double()
    replay(ref, reference_trainer(ref, model))
