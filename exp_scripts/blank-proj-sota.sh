#!/usr/bin/env bash
# Perturbation-based projection of a fix-alpha supernet in the DARTS space (alpha stays frozen).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method blank-proj --dev proj --save blank-proj-sota --seed 2 --gpu auto \
    --proj_intv 5 --edge_decision random "$@"
