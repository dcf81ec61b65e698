#!/usr/bin/env bash
# Perturbation-based projection (op, then topology) of a DARTS supernet in the DARTS space.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method darts-proj --dev proj --save darts-proj-sota --space s5 --seed 2 --dataset cifar10 --gpu auto \
    --resume_epoch 50 --proj_intv 5 --edge_decision random "$@"
