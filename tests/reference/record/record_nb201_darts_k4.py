"""Record partial-channel DARTS search steps on NAS-Bench-201 as DrNAS's 201-space runs them, in float64.

Source: xiangning-chen/DrNAS at f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0: `201-space/search_model.py`
`TinyNetwork` with species `softmax` and k=4 (`train_search.py --method darts --k 4`), its
`NAS201SearchCell_PartialChannel`, and the root `architect.py` (first order, Adam weight decay =
reg_scale 1e-3 for reg_type l2). The step is `201-space/train_search.py` lines 252-276, which cannot
be imported (it parses arguments and needs nas_201_api at import), so `run` repeats it line for line.
Usage: python tests/reference/record/record_nb201_darts_k4.py CHECKOUT [--check]

C=8 (2 channels per mixed op), N=5, 3 steps of epoch 0 (learning rate 0.025).
"""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import recording
import torch
import torch.nn as nn

COMMIT = "f2caa4dbdd96c1be29b56cb7ed47a74a184e6ef0"
BLOBS = {
    "201-space/search_model.py": "00d42f68ea373b1c0124e2fabae59d16a5bc5c24",
    "201-space/search_cells.py": "b32393664f72820a2bf74ba1c8e335abda9ede52",
    "201-space/cell_operations.py": "54f74364388e92fd1fe3fb75e791f15b3b7e95f9",
    "201-space/train_search.py": "b5a59d1065b1aea1c927b6bd1723c31fb79a77ea",
    "architect.py": "f8b70c950fb30c4906fd948c5914d9967e98d2b1",
    "utils.py": "c346559dfb6675681fd258e1b3d89fd289680497",
}
FILES = {"nb201": "steps_nb201_darts_k4_C8.pt"}
C, N, CLASSES, STEPS = 8, 5, 10, 3
# 201-space/train_search.py defaults (lines 33-60) with --method darts --k 4
HYPER = {"learning_rate": 0.025, "learning_rate_min": 0.001, "epochs": 100, "momentum": 0.9, "weight_decay": 3e-4,
         "arch_learning_rate": 3e-4, "reg_type": "l2", "reg_scale": 1e-3, "grad_clip": 5.0, "unrolled": False,
         "k": 4, "species": "softmax"}
OUTPUTS = ["alpha_loss", "alphas", "loss", "grad_norm", "state_sums"]


def build(checkout: Path) -> tuple:
    recording.check_checkout(checkout, BLOBS, f"xiangning-chen/DrNAS@{COMMIT}")
    recording.pytorch1_semantics()
    recording.import_from(checkout / "201-space", checkout)
    import architect
    import search_model
    from cell_operations import NAS_BENCH_201

    model = search_model.TinyNetwork(C=C, N=N, max_nodes=4, num_classes=CLASSES, criterion=nn.CrossEntropyLoss(),
                                     search_space=NAS_BENCH_201, k=HYPER["k"], species=HYPER["species"])
    optimizer = torch.optim.SGD(model.get_weights(), HYPER["learning_rate"], momentum=HYPER["momentum"],
                                weight_decay=HYPER["weight_decay"])
    return model, optimizer, architect.Architect(model, Namespace(**HYPER)), list(NAS_BENCH_201)


def run(model: nn.Module, optimizer: torch.optim.Optimizer, architect, steps: list[dict]) -> list[dict]:
    """201-space/train_search.py train(), one iteration per recorded step."""
    criterion = nn.CrossEntropyLoss()
    alpha_losses = []
    model_loss = model._loss

    def kept_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # the architect's loss, to record it
        alpha_losses.append(model_loss(x, y))
        return alpha_losses[-1]

    model._loss = kept_loss
    outputs = []
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = step["lr"]
        model.train()
        x, y = step["x"].double(), step["y"]
        architect.step(x, y, step["x_alpha"].double(), step["y_alpha"], step["lr"], optimizer,
                       unrolled=HYPER["unrolled"])
        optimizer.zero_grad()
        architect.optimizer.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), HYPER["grad_clip"])  # alpha's gradient too
        optimizer.step()
        optimizer.zero_grad()
        architect.optimizer.zero_grad()
        outputs.append({"alpha_loss": alpha_losses[-1].item(),
                        "alphas": [a.detach().clone() for a in model.arch_parameters()],
                        "loss": loss.item(), "grad_norm": grad_norm.item(),
                        "state_sums": recording.state_sums(model.state_dict())})
    return outputs


def record(checkout: Path, variant: str) -> dict:
    torch.manual_seed(0)  # the authors' constructor draws the initial weights and alpha
    model, optimizer, architect, op_names = build(checkout)
    recording.round_to_float32(model.state_dict().values())
    init_state = recording.float32_copy(model.state_dict())
    gen = torch.Generator().manual_seed(1)
    steps = []
    for _ in range(STEPS):
        x, y = recording.random_batch(gen, CLASSES)
        x_alpha, y_alpha = recording.random_batch(gen, CLASSES)
        steps.append({"epoch": 0, "lr": HYPER["learning_rate"], "x": x, "y": y, "x_alpha": x_alpha, "y_alpha": y_alpha})
    for step, out in zip(steps, run(model, optimizer, architect, steps)):
        step.update(out)
    return {
        "method": "darts with partial channels (DrNAS 201-space, species softmax, k=4, first order, reg l2)",
        "space": "nb201",
        "source": {"repo": "xiangning-chen/DrNAS", "commit": COMMIT, "files": list(BLOBS)},
        "torch_version": torch.__version__,
        "C": C, "N": N, "num_classes": CLASSES, "k": HYPER["k"],
        "op_names": op_names,
        "hyper": dict(HYPER),
        "adam_betas": (0.5, 0.999),
        "batch_size": recording.BATCH,
        "alpha_names": ["_arch_parameters"],
        "init_state_dict": init_state,
        "init_alphas": [init_state["_arch_parameters"]],
        "steps": steps,
        "final_state_dict": recording.float64_copy(model.state_dict()),
    }


def replay(checkout: Path, ref: dict) -> dict:
    torch.manual_seed(12345)  # a different initialisation, overwritten by the recorded one
    model, optimizer, architect, op_names = build(checkout)
    assert op_names == ref["op_names"]
    model.load_state_dict(ref["init_state_dict"])  # holds _arch_parameters too
    steps = run(model, optimizer, architect, ref["steps"])
    return {"steps": steps, "final_state_dict": recording.float64_copy(model.state_dict())}


if __name__ == "__main__":
    recording.main(__doc__, FILES, record, replay, OUTPUTS)
