"""Record DrNAS on the DARTS space in float64 (xiangning-chen/DrNAS `DARTS-space/model_search.py`, driven
as `DARTS-space/train_search.py` drives it, with its defaults).

usage: python tests/reference/record/record_darts_drnas.py DRNAS_CHECKOUT [--variant progressive|kl]
       [--out FILE] [--check] [--C 0] [--N 5] [--seed 0]

progressive (default): reg l2; 3 steps of stage 1 (k=6, all 7 ops), the transition (prune to 4 ops per
  edge, widen to k=4), 2 steps of stage 2, C=12 -> steps_darts_drnas_progressive_C12_L5.pt
kl: reg kl; 3 steps of stage 1 (k=6), C=6 -> steps_darts_drnas_kl_C6_L5.pt
--N is the number of layers (cells); --C 0 takes the variant's C, the smallest its stages accept:
channel_shuffle needs C divisible by every k, FactorizedReduce an even 2C/k. Writes the recording, then
replays it and requires a bit-identical result; --check only replays.
"""
from __future__ import annotations

import sys

import drnas
import harness
from torch import nn

# DARTS-space/train_search.py:25-46 defaults; stages from its lines 120-122 (ks, num_keeps, train_epochs)
HYPER = {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 3e-4, "arch_learning_rate": 6e-4,
         "reg_type": "l2", "reg_scale": 1e-3, "grad_clip": 5}
VARIANTS = {"progressive": ("l2", [drnas.Stage(6, 7, 3), drnas.Stage(4, 4, 2)], 12),  # (reg_type, stages, C)
            "kl": ("kl", [drnas.Stage(6, 7, 3)], 6)}


def build(C: int, layers: int, k: int, reg_type: str, reg_scale: float) -> nn.Module:
    from model_search import Network
    return Network(C, 10, layers, nn.CrossEntropyLoss(), k=k, reg_type=reg_type, reg_scale=reg_scale)


def op_names() -> list[str]:
    from genotypes import PRIMITIVES
    return list(PRIMITIVES)


SPACE = drnas.Space(name="darts (DrNAS PRIMITIVES: DARTS's without none)", folder="DARTS-space", build=build,
                    sgd_params=lambda model: list(model.parameters()),
                    masks=lambda model: [model.mask_normal, model.mask_reduce], ops_module="operations",
                    op_names=op_names)


def main() -> None:
    args = harness.parse_args(__doc__, {"progressive": "steps_darts_drnas_progressive_C12_L5.pt",
                                        "kl": "steps_darts_drnas_kl_C6_L5.pt"},
                              {"checkout": "xiangning-chen/DrNAS"}, C=0, N=5, seed=0)
    reg_type, stages, C = VARIANTS[args.variant]
    args.C = args.C or C
    harness.pytorch1_semantics()
    harness.import_authors(args.checkout, SPACE.folder, ".")
    hyper = {**HYPER, "reg_type": reg_type}
    harness.record_and_check(args, lambda recording: drnas.run(SPACE, args, hyper, stages,
                                                               "DARTS-space/train_search.py", recording))


if __name__ == "__main__":
    sys.exit(main())
