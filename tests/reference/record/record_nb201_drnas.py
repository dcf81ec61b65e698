"""Record DrNAS on NAS-Bench-201 in float64 (xiangning-chen/DrNAS `201-space/search_model.py` TinyNetwork,
species dirichlet, driven as its 201-space search scripts drive it, with their defaults).

usage: python tests/reference/record/record_nb201_drnas.py DRNAS_CHECKOUT [--variant progressive|kl]
       [--out FILE] [--check] [--C 0] [--N 5] [--seed 0]

progressive (default): train_search_progressive.py, reg l2; 3 steps of stage 1 (k=4, all 5 ops), the
  transition (prune to 3 ops per edge, widen to k=2), 2 steps of stage 2, C=4
  -> steps_nb201_drnas_progressive_C4.pt
kl: train_search.py (k=1), reg kl; 3 steps, C=2 -> steps_nb201_drnas_kl_C2.pt
--C 0 takes the variant's C (the smallest that gives every partial-channel op a channel); N=5 as the
scripts fix it. Writes the recording, then replays it and requires a bit-identical result; --check
only replays.
"""
from __future__ import annotations

import sys

import drnas
import harness
from torch import nn

# 201-space/train_search_progressive.py:34-58 defaults (train_search.py:34-60 has the same values, k=1);
# stages from train_search_progressive.py:189-191 (ks, num_keeps, train_epochs)
HYPER = {"learning_rate": 0.025, "momentum": 0.9, "weight_decay": 3e-4, "arch_learning_rate": 3e-4,
         "reg_type": "l2", "reg_scale": 1e-3, "grad_clip": 5}
VARIANTS = {  # name: (script, reg_type, stages, C)
    "progressive": ("201-space/train_search_progressive.py", "l2", [drnas.Stage(4, 5, 3), drnas.Stage(2, 3, 2)], 4),
    "kl": ("201-space/train_search.py", "kl", [drnas.Stage(1, 5, 3)], 2)}


def build(C: int, N: int, k: int, reg_type: str, reg_scale: float) -> nn.Module:
    from cell_operations import NAS_BENCH_201
    from search_model import TinyNetwork
    return TinyNetwork(C=C, N=N, max_nodes=4, num_classes=10, criterion=nn.CrossEntropyLoss(),
                       search_space=NAS_BENCH_201, k=k, species="dirichlet", reg_type=reg_type, reg_scale=reg_scale)


def op_names() -> list[str]:
    from cell_operations import NAS_BENCH_201
    return list(NAS_BENCH_201)


SPACE = drnas.Space(name="nb201", folder="201-space", build=build,
                    sgd_params=lambda model: model.get_weights(), masks=lambda model: [model._mask],
                    ops_module="cell_operations", op_names=op_names)


def main() -> None:
    args = harness.parse_args(__doc__, {"progressive": "steps_nb201_drnas_progressive_C4.pt",
                                        "kl": "steps_nb201_drnas_kl_C2.pt"},
                              {"checkout": "xiangning-chen/DrNAS"}, C=0, N=5, seed=0)
    script, reg_type, stages, C = VARIANTS[args.variant]
    args.C = args.C or C
    harness.pytorch1_semantics()
    harness.import_authors(args.checkout, SPACE.folder, ".")
    hyper = {**HYPER, "reg_type": reg_type}
    harness.record_and_check(args, lambda recording: drnas.run(SPACE, args, hyper, stages, script, recording))


if __name__ == "__main__":
    sys.exit(main())
