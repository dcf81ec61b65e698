"""Search steps agree with trajectories recorded from the original code, in float64.

../shared/reference/steps/ (and the project's own tests/reference/steps/) hold, per file, an
initial supernet state and alphas and a few steps of the original's `train()`: alpha step on
the alpha batch (second-order DARTS, quark0/darts' architect: on the alpha batch and the weight
batch), (SDARTS) the perturbed mixing weights, weight step on the weight batch, with PyTorch 1.x
`zero_grad` semantics (zero-filled gradients). The project's Trainer runs the same steps from the
same state; after every step the state_dict (parameters and BatchNorm buffers), the alphas and the
loss agree to 1e-12. float32 would drift apart by rounding alone, so the comparison is in float64.
"""
from __future__ import annotations

import pytest
import torch

from common.arch import Architecture
from common.methods.darts2 import DARTS2
from common.methods.sdarts import SDARTS
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from sota.model_search import DartsSupernet
from tests.fixtures.configs import search_cfg
from tests.fixtures.reference import project_reference_file, reference_file

TOL = 1e-12
# file -> where it lives (../shared/reference, or the project's tests/reference), the supernet
FILES = {
    "steps_nb201_darts_C8.pt": (reference_file, lambda: NB201Supernet(8, 5, 10)),
    "steps_s5_darts_C4_L5.pt": (reference_file, lambda: DartsSupernet(4, 10, 5, "s5")),
    "steps_s5_sdarts_rs_C4_L5.pt": (reference_file, lambda: DartsSupernet(4, 10, 5, "s5")),
    # second-order DARTS: quark0/darts' architect (unrolled=True)
    "steps_s5_darts_unrolled_C4_L5.pt": (reference_file, lambda: DartsSupernet(4, 10, 5, "s5")),
    "steps_nb201_darts_unrolled_C2.pt": (project_reference_file, lambda: NB201Supernet(2, 5, 10)),
}
# Second-order steps cost 2.5 first-order ones: their float64 trajectories run with the slow tests
# (tests/test_darts2.py checks the same step against quark0's architect on tiny supernets in the unit tier).
SLOW = {name for name in FILES if "unrolled" in name}


def load(name: str) -> dict:
    return torch.load(FILES[name][0](f"steps/{name}"), map_location="cpu", weights_only=False)


def trainer_for(ref: dict, model: torch.nn.Module, memory_format: str, recorded: dict) -> Trainer:
    model.load_state_dict(ref["init_state_dict"])
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(arch.parameters(), ref["init_alphas"]):
            a.copy_(b)
    method = DARTS2() if "unrolled" in ref.get("method", "") else None
    if ref.get("epsilon_alpha"):  # SDARTS-RS: feed in the perturbation the original drew
        method = SDARTS(lambda model, weights, x, y, eps, project: dict(zip(arch.kinds, recorded["weights"])),
                        ref["epsilon_alpha"])
    h = ref["hyper"]
    flags = {k: h[k] for k in ("learning_rate", "momentum", "weight_decay", "arch_learning_rate",
                               "arch_weight_decay", "grad_clip")}
    cfg = search_cfg(*(f"--{k}={v}" for k, v in flags.items()), "--memory_format", memory_format)
    space = Space(label="ref", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    trainer = Trainer(space, None, cfg, torch.device("cpu"), method=method)
    assert tuple(trainer.a_opt.defaults["betas"]) == tuple(ref["adam_betas"])
    return trainer


@pytest.mark.parametrize("memory_format", ["contiguous", pytest.param("channels_last", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in FILES])
def test_steps_match_original(name: str, memory_format: str) -> None:
    ref = load(name)
    model = FILES[name][1]().double()
    recorded: dict = {}
    trainer = trainer_for(ref, model, memory_format, recorded)
    model.train()
    for i, step in enumerate(ref["steps"]):
        recorded["weights"] = step.get("perturbed_weights")
        trainer.alpha_step(step["x_alpha"], step["y_alpha"], train=(step["x"], step["y"], len(step["y"])))
        for a, b in zip(trainer.arch.parameters(), step["alphas"]):
            torch.testing.assert_close(a.detach(), b, rtol=0, atol=TOL, msg=lambda m: f"step {i} alpha: {m}")
        if "alpha_grad" in step:  # the gradient handed to Adam
            torch.testing.assert_close(trainer.arch.parameters()[0].grad, step["alpha_grad"], rtol=0, atol=TOL,
                                       msg=lambda m: f"step {i} alpha gradient: {m}")
        _, loss = trainer.weight_step(step["x"], step["y"])
        assert loss.item() == pytest.approx(step["loss"], rel=0, abs=TOL), f"step {i}"
        state = model.state_dict()
        assert state.keys() == step["state_dict"].keys()
        for key, value in step["state_dict"].items():
            torch.testing.assert_close(state[key].to(value.dtype), value, rtol=0, atol=TOL,
                                       msg=lambda m: f"step {i} {key}: {m}")


def test_sdarts_reference_skips_ops() -> None:
    """The SDARTS-RS file exercises what it is for: perturbed weights of exactly 0, whose ops
    the weight step skips while their parameters still move (weight decay and momentum)."""
    ref = load("steps_s5_sdarts_rs_C4_L5.pt")
    zeros = [int((w == 0).sum()) for step in ref["steps"] for w in step["perturbed_weights"]]
    assert min(zeros) > 0
