"""Record DrNAS (github.com/xiangning-chen/DrNAS) search steps in float64, on either of its spaces.

A run is a list of stages; each stage runs its steps with partial channels 1/k and ends (unless it is
the last) with DrNAS's progressive transition. Every random draw is recorded: each Dirichlet sample
(one per edge per forward) and each channel the widening copies, so the run replays exactly.

One step is the body of DrNAS's train() (DARTS-space/train_search.py:171-194,
201-space/train_search_progressive.py:268-292, the same in 201-space/train_search.py:252-276) past the
warm-up (arch steps run from stage-local epoch 10: the recording is of such steps): the first-order
alpha step (root architect.py, unrolled=False) on the alpha batch, zero_grad of both optimizers, the
weight step (forward, cross-entropy, backward, clip_grad_norm_ over model.parameters(), SGD step),
zero_grad of both. The transition is the one of train_search.py:147-157 (DARTS space) and
train_search_progressive.py:243-251 (201 space): model.pruning(num_keep), model.wider(k), a new
SGD whose momentum buffers configure_optimizer widens from the old one; Adam is untouched.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import harness
import torch
from torch import nn

ALPHA_SCALE = 0.5  # initial alphas: ALPHA_SCALE * randn (the authors' init is 1e-3 * randn)


@dataclass(frozen=True)
class Stage:
    k: int  # partial channels: each mixed op computes on 1/k of its input channels
    num_keep: int  # ops per edge left (by the pruning that starts this stage)
    steps: int


@dataclass(frozen=True)
class Space:
    """What differs between DrNAS's two spaces."""
    name: str
    folder: str  # where the space's modules are, beside the root's architect.py, net2wider.py, utils.py
    build: Callable[[int, int, int, str, float], nn.Module]  # (C, N or layers, k, reg_type, reg_scale)
    sgd_params: Callable[[nn.Module], list]  # what the weight SGD optimises (and configure_optimizer rebuilds)
    masks: Callable[[nn.Module], list]  # the pruning masks (None before the first pruning)
    ops_module: str  # the module that imported net2wider's InChannelWider/OutChannelWider/BNWider by name
    op_names: Callable[[], list[str]]  # the op of each column of the alphas


def run(space: Space, args: argparse.Namespace, hyper: dict, stages: list[Stage], script: str,
        recording: dict | None) -> dict:
    import architect as architect_py
    import net2wider
    ops_module: ModuleType = __import__(space.ops_module)

    draws = harness.Draws(replay=recording is not None)
    torch.manual_seed(args.seed)
    model = space.build(args.C, args.N, stages[0].k, hyper["reg_type"], hyper["reg_scale"])
    alphas = model.arch_parameters()
    for a in alphas:  # a mid-search state: at the authors' 1e-3 * randn the regularisers' gradients vanish
        a.data.copy_(ALPHA_SCALE * torch.randn_like(a))
    if recording is not None:
        model.load_state_dict(recording["init_state_dict"])
        for a, b in zip(alphas, recording["init_alphas"]):
            a.data.copy_(b)
    settings = argparse.Namespace(**hyper)
    architect = architect_py.Architect(model, settings)
    optimizer = sgd(space.sgd_params(model), hyper)
    out = {"method": f"drnas (dirichlet, first order, reg {hyper['reg_type']})", "space": space.name,
           "script": script, "source": {"xiangning-chen/DrNAS": harness.commit_of(args.checkout)},
           "C": args.C, "N": args.N, "seed": args.seed, "alpha_init": f"{ALPHA_SCALE} * randn", "hyper": dict(hyper),
           "stages": [{"k": s.k, "num_keep": s.num_keep, "steps": s.steps} for s in stages],
           "adam_betas": tuple(architect.optimizer.defaults["betas"]), "batch_size": harness.BATCH_SIZE,
           "op_names": space.op_names(), "init_state_dict": harness.state(model),
           "init_alphas": [a.detach().clone() for a in alphas], "steps": [], "transitions": []}
    data = iter(harness.batches(2 * sum(s.steps for s in stages), seed=args.seed))
    for number, stage in enumerate(stages):
        if number:
            recorded = recording["transitions"][number - 1] if recording else None
            optimizer, record = transition(space, model, optimizer, architect, stage, draws, recorded,
                                           net2wider, ops_module, hyper)
            out["transitions"].append(record)
        for _ in range(stage.steps):
            recorded = recording["steps"][len(out["steps"])] if recording else None
            (x, y), (x_alpha, y_alpha) = next(data), next(data)
            if recorded:
                x, y, x_alpha, y_alpha = recorded["x"], recorded["y"], recorded["x_alpha"], recorded["y_alpha"]
            out["steps"].append({"stage": number, "x": x, "y": y, "x_alpha": x_alpha, "y_alpha": y_alpha,
                                 **search_step(model, architect, optimizer, (x, y, x_alpha, y_alpha), draws,
                                               recorded, hyper["grad_clip"])})
    return out


def search_step(model: nn.Module, architect: object, optimizer: torch.optim.Optimizer, batches: tuple,
                draws: harness.Draws, recorded: dict | None, grad_clip: float) -> dict:
    """One step of DrNAS's train() past the warm-up, and what it left behind."""
    x, y, x_alpha, y_alpha = batches
    model.train()
    with harness.dirichlet_draws(draws):
        draws.expect(recorded and recorded["samples_alpha_step"])
        # eta (the lr) only matters to --unrolled
        architect.step(x, y, x_alpha, y_alpha, optimizer.param_groups[0]["lr"], optimizer, unrolled=False)
        samples_alpha = draws.cut()
        optimizer.zero_grad(); architect.optimizer.zero_grad()
        draws.expect(recorded and recorded["samples_weight_step"])
        loss = model._criterion(model(x), y)  # the weight step's loss has no regulariser
        samples_weight = draws.cut()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # NB201: includes the alphas' gradient
    optimizer.step()
    optimizer.zero_grad(); architect.optimizer.zero_grad()
    return {"samples_alpha_step": samples_alpha, "samples_weight_step": samples_weight,
            "alphas": [a.detach().clone() for a in model.arch_parameters()], "loss": loss.item(),
            "state_dict": harness.state(model), "genotype": harness.plain_genotype(model.genotype())}


def sgd(params: list, hyper: dict) -> torch.optim.SGD:
    return torch.optim.SGD(params, hyper["learning_rate"], momentum=hyper["momentum"],
                           weight_decay=hyper["weight_decay"])


def transition(space: Space, model: nn.Module, optimizer: torch.optim.Optimizer, architect: object,
               stage: Stage, draws: harness.Draws, recorded: dict | None, net2wider: ModuleType,
               ops_module: ModuleType, hyper: dict) -> tuple[torch.optim.SGD, dict]:
    """DrNAS's progressive transition into `stage`: the new weight SGD, and what it did."""
    alphas = model.arch_parameters()
    model.pruning(stage.num_keep)
    pruned = [a.detach().clone() for a in alphas]
    calls: list[dict] = []
    draws.expect(recorded and [c["index"] for c in recorded["widen_calls"] if c["drawn"]])
    with harness.widen_draws(ops_module, model, draws, calls):
        model.wider(stage.k)
    draws.cut()
    # configure_optimizer reads the old state through the PyTorch < 1.6 state_dict (keyed by id(param))
    optimizer.state_dict = lambda: harness.pytorch1_state_dict(optimizer)
    new = net2wider.configure_optimizer(optimizer, sgd(space.sgd_params(model), hyper))
    return new, {
        "k": stage.k, "num_keep": stage.num_keep, "alphas_pruned": pruned,
        "masks": [m.clone() for m in space.masks(model)], "widen_calls": calls,
        "state_dict": harness.state(model), "momentum_buffers": harness.momentum_buffers(model, new),
        "adam_state": harness.adam_state(architect.optimizer),
        "genotype": harness.plain_genotype(model.genotype())}

