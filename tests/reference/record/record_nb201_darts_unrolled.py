"""Record second-order DARTS on NAS-Bench-201 in float64: quark0/darts `cnn/architect.py` (unrolled=True)
driving the original DARTS-PT NAS-Bench-201 supernet (ruocwang/darts-pt `nasbench201/`).

usage: python tests/reference/record/record_nb201_darts_unrolled.py DARTS_PT_CHECKOUT QUARK0_DARTS_CHECKOUT
       [--out FILE] [--check] [--C 8] [--N 5] [--steps 4]

Each step is DARTS-PT's train() (nasbench201/train_search.py:307-314) with quark0's Architect in place
of DARTS-PT's first-order one: zero_grad, the unrolled alpha step on (weight batch, alpha batch) with
eta = the weight lr, zero_grad, the weight step (model.step: backward, clip, SGD). Writes the
recording, then replays it and requires a bit-identical result; --check only replays.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import harness
import torch
from torch import nn

HYPER = {"learning_rate": 0.025, "momentum": 0.9, "weight_decay": 3e-4, "arch_learning_rate": 3e-4,
         "arch_weight_decay": 1e-3, "grad_clip": 5}
SEED = 0


def unrollable(darts_pt: type) -> type:
    """DARTS-PT's TinyNetworkDarts with the one method quark0's Architect needs that it lacks: its
    inherited new() (search_model.py:157) builds the base TinyNetwork, whose forward reads an unset
    `slim`; this new() builds the same class, with the same alphas (as quark0's model_search.py does)."""

    class UnrollableTinyNetwork(darts_pt):
        def new(self) -> nn.Module:
            model_new = type(self)(self._C, self._layerN, self.max_nodes, self._num_classes, self._criterion,
                                   self.op_names, self._args, self._affine, self._track_running_stats)
            for x, y in zip(model_new.arch_parameters(), self.arch_parameters()):
                x.data.copy_(y.data)
            return model_new

    return UnrollableTinyNetwork


def run(args: argparse.Namespace, recording: dict | None) -> dict:
    from nasbench201.cell_operations import SearchSpaceNames
    from nasbench201.search_model_darts import TinyNetworkDarts
    architect_py = harness.load_file(args.darts_checkout / "cnn" / "architect.py", "quark0_architect")

    hyper = argparse.Namespace(**HYPER)
    torch.manual_seed(SEED)
    op_names = SearchSpaceNames["nas-bench-201"]
    model = unrollable(TinyNetworkDarts)(C=args.C, N=args.N, max_nodes=4, num_classes=10,
                                         criterion=nn.CrossEntropyLoss(), search_space=op_names, args=hyper)
    (alpha,) = model.arch_parameters()
    if recording is not None:
        model.load_state_dict(recording["init_state_dict"])
        alpha.data.copy_(recording["init_alphas"][0])
    architect = architect_py.Architect(model, hyper)
    optimizer = model.optimizer  # DARTS-PT's TinyNetwork owns its weight SGD (search_model.py:55)
    out = {"method": "darts 2nd order (unrolled)", "space": "nb201", "op_names": list(op_names),
           "source": {"darts-pt": harness.commit_of(args.checkout),
                      "quark0/darts": harness.commit_of(args.darts_checkout)},
           "C": args.C, "N": args.N, "seed": SEED, "hyper": dict(HYPER), "eta": HYPER["learning_rate"],
           "adam_betas": tuple(architect.optimizer.defaults["betas"]), "batch_size": harness.BATCH_SIZE,
           "init_state_dict": harness.state(model), "init_alphas": [alpha.detach().clone()], "steps": []}
    data = harness.batches(2 * args.steps, seed=SEED)
    for i in range(args.steps):
        if recording is not None:
            step = recording["steps"][i]
            (x, y), (x_alpha, y_alpha) = (step["x"], step["y"]), (step["x_alpha"], step["y_alpha"])
        else:
            (x, y), (x_alpha, y_alpha) = data[2 * i], data[2 * i + 1]
        model.train()
        optimizer.zero_grad(); architect.optimizer.zero_grad()
        architect.step(x, y, x_alpha, y_alpha, HYPER["learning_rate"], optimizer, True)
        alpha_grad = alpha.grad.detach().clone()  # Adam leaves .grad as the architect set it
        optimizer.zero_grad(); architect.optimizer.zero_grad()
        _, loss = model.step(x, y, hyper)
        # from step 2 on the virtual step uses every momentum buffer (architect.py:24; a bare except there
        # would fall back to zeros silently)
        assert all("momentum_buffer" in optimizer.state[p] for p in model.parameters())
        out["steps"].append({"x": x, "y": y, "x_alpha": x_alpha, "y_alpha": y_alpha, "alpha_grad": alpha_grad,
                             "alphas": [alpha.detach().clone()], "loss": loss.item(),
                             "state_dict": harness.state(model), "genotype": harness.plain_genotype(model.genotype())})
    return out


def main() -> None:
    args = harness.parse_args(__doc__, {"unrolled": "steps_nb201_darts_unrolled_C8.pt"},
                              {"checkout": "ruocwang/darts-pt", "darts_checkout": "quark0/darts"}, C=8, N=5, steps=4)
    harness.pytorch1_semantics()
    harness.import_authors(args.checkout, ".")
    import nasbench201
    if Path(next(iter(nasbench201.__path__))).resolve() != (args.checkout / "nasbench201").resolve():
        harness.fail("another `nasbench201` package (the project's?) shadows DARTS-PT's: take the repository "
                     "root off PYTHONPATH")
    harness.record_and_check(args, lambda recording: run(args, recording))


if __name__ == "__main__":
    sys.exit(main())
