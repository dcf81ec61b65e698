"""Record PC-DARTS search steps on the DARTS space, in float64, from the authors' code.

Source: yuhuixu1993/PC-DARTS at b74702f86c70e330ce0db35762cfade9df026bb7 (`model_search.py`,
`architect.py`, `operations.py`, `genotypes.py`; the step is `train_search.py` lines 140-165, which
Python 3 cannot import (`cuda(async=True)`), so its body is repeated in `run` below, line for line).
Usage: python tests/reference/record/record_pcdarts.py CHECKOUT [--variant darts|s3] [--check]

Variant `darts` uses the authors' PRIMITIVES (8 ops, with `none`); `s3` rebinds
`model_search.PRIMITIVES` to DARTS-PT's s3 list, which their MixedOp, alpha init and genotype read
unchanged. C=8 (K=4: 2 channels per mixed op), 5 layers. Step 0 is at epoch 14, before the
architecture step starts (`if epoch>=15`), steps 1-3 at epoch 15 with it; each step trains at the
learning rate the authors' cosine schedule gives that epoch.
"""
from __future__ import annotations

import math
from argparse import Namespace
from pathlib import Path

import recording
import torch
import torch.nn as nn

COMMIT = "b74702f86c70e330ce0db35762cfade9df026bb7"
BLOBS = {
    "model_search.py": "2d67efaf653ef2889b390629e3e4eda546b0dfcd",
    "architect.py": "bdd36c76c878032fb9a42d6e6c3f8054095f8ea7",
    "operations.py": "b0c62c57511c8fdc5d83ec1105cf25e0725f3859",
    "genotypes.py": "d68a39ecb2ddad5875ff5b9591c25a31fa87660b",
    "train_search.py": "6e7ce6c7fb3309a659b02623a66d9289a7f486a4",
}
FILES = {"darts": "steps_darts_pcdarts_C8_L5.pt", "s3": "steps_s3_pcdarts_C8_L5.pt"}
S3_OPS = ["none", "skip_connect", "sep_conv_3x3"]
C, LAYERS, CLASSES = 8, 5, 10
# train_search.py defaults (lines 24-44); the partial-channel K is hard-coded (model_search.py:31)
HYPER = {"learning_rate": 0.1, "learning_rate_min": 0.0, "epochs": 50, "momentum": 0.9, "weight_decay": 3e-4,
         "arch_learning_rate": 6e-4, "arch_weight_decay": 1e-3, "grad_clip": 5.0, "unrolled": False, "k": 4}
ARCH_START = 15  # train_search.py:156
EPOCHS = [14, 15, 15, 15]
ALPHA_NAMES = ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"]
OUTPUTS = ["alpha_loss", "alphas", "loss", "grad_norm", "state_sums"]


def lr_at(epoch: int) -> float:
    """scheduler.step() runs at the start of every epoch (train_search.py:113, PyTorch 0.3), so
    epoch e trains at the cosine value of e + 1 (CosineAnnealingLR, T_max = epochs)."""
    lo, hi = HYPER["learning_rate_min"], HYPER["learning_rate"]
    return lo + (hi - lo) * (1 + math.cos(math.pi * (epoch + 1) / HYPER["epochs"])) / 2


def build(checkout: Path, variant: str) -> tuple:
    recording.check_checkout(checkout, BLOBS, f"yuhuixu1993/PC-DARTS@{COMMIT}")
    recording.pytorch1_semantics()
    recording.import_from(checkout)
    import architect
    import genotypes
    import model_search

    model_search.PRIMITIVES = S3_OPS if variant == "s3" else genotypes.PRIMITIVES
    model = model_search.Network(C, CLASSES, LAYERS, nn.CrossEntropyLoss())
    optimizer = torch.optim.SGD(model.parameters(), HYPER["learning_rate"], momentum=HYPER["momentum"],
                                weight_decay=HYPER["weight_decay"])
    return model, optimizer, architect.Architect(model, Namespace(**HYPER)), list(model_search.PRIMITIVES)


def run(model: nn.Module, optimizer: torch.optim.Optimizer, architect, steps: list[dict]) -> list[dict]:
    """train_search.py train(), one iteration per recorded step."""
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
        alpha_loss = None
        if step["arch_step"]:
            architect.step(x, y, step["x_alpha"].double(), step["y_alpha"], step["lr"], optimizer,
                           unrolled=HYPER["unrolled"])
            alpha_loss = alpha_losses[-1].item()
        optimizer.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), HYPER["grad_clip"])
        optimizer.step()
        outputs.append({"alpha_loss": alpha_loss, "alphas": [a.detach().clone() for a in model.arch_parameters()],
                        "loss": loss.item(), "grad_norm": grad_norm.item(),
                        "state_sums": recording.state_sums(model.state_dict())})
    return outputs


def record(checkout: Path, variant: str) -> dict:
    torch.manual_seed(0)  # the authors' constructors draw the initial weights and alphas
    model, optimizer, architect, op_names = build(checkout, variant)
    recording.round_to_float32(list(model.state_dict().values()) + model.arch_parameters())
    init_state = recording.float32_copy(model.state_dict())
    init_alphas = list(recording.float32_copy(dict(zip(ALPHA_NAMES, model.arch_parameters()))).values())
    gen = torch.Generator().manual_seed(1)
    steps = []
    for epoch in EPOCHS:
        x, y = recording.random_batch(gen, CLASSES)
        arch_step = epoch >= ARCH_START
        x_alpha, y_alpha = recording.random_batch(gen, CLASSES) if arch_step else (None, None)
        steps.append({"epoch": epoch, "lr": lr_at(epoch), "arch_step": arch_step, "x": x, "y": y,
                      "x_alpha": x_alpha, "y_alpha": y_alpha})
    for step, out in zip(steps, run(model, optimizer, architect, steps)):
        step.update(out)
    return {
        "method": "pcdarts (first order; partial channels K=4; edge normalisation betas)",
        "space": variant,
        "source": {"repo": "yuhuixu1993/PC-DARTS", "commit": COMMIT, "files": list(BLOBS)},
        "torch_version": torch.__version__,
        "C": C, "layers": LAYERS, "num_classes": CLASSES, "k": HYPER["k"],
        "op_names": op_names,
        "hyper": dict(HYPER),
        "adam_betas": (0.5, 0.999),
        "batch_size": recording.BATCH,
        "alpha_names": ALPHA_NAMES,
        "init_state_dict": init_state,
        "init_alphas": init_alphas,
        "steps": steps,
        "final_state_dict": recording.float64_copy(model.state_dict()),
    }


def replay(checkout: Path, ref: dict) -> dict:
    torch.manual_seed(12345)  # a different initialisation, overwritten by the recorded one
    model, optimizer, architect, op_names = build(checkout, ref["space"])
    assert op_names == ref["op_names"]
    model.load_state_dict(ref["init_state_dict"])
    with torch.no_grad():
        for alpha, init in zip(model.arch_parameters(), ref["init_alphas"], strict=True):
            alpha.copy_(init)
    steps = run(model, optimizer, architect, ref["steps"])
    return {"steps": steps, "final_state_dict": recording.float64_copy(model.state_dict())}


if __name__ == "__main__":
    recording.main(__doc__, FILES, record, replay, OUTPUTS)
