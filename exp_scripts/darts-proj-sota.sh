#!/usr/bin/env bash
# Perturbation-based projection (op, then topology) of a DARTS supernet in the DARTS space.
# --crit acc|loss: the criterion of all three stages, as the original script's flag.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method darts-proj --dev proj --save darts-proj-sota --seed 2 --gpu auto \
    --crit acc --proj_intv 5 --edge_decision random "$@"
