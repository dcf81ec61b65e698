#!/usr/bin/env bash
# Perturbation-based projection of a DARTS supernet on NAS-Bench-201.
# Reads experiments/nasbench201/{resume_expid}/checkpoint_{resume_epoch}.pth.tar (--resume_expid
# may also be a path) and writes into a sub-folder named after the projection settings. Sizes,
# dataset and --epochs left out are the search run's (docs/projection.md).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed nasbench201.train_search --method darts-proj --dev proj --save darts-proj-201 --seed 1 --gpu auto \
    --proj_crit acc --proj_intv 5 --edge_decision random "$@"
