#!/usr/bin/env bash
# Perturbation-based projection of a fix-alpha supernet on NAS-Bench-201 (alpha stays frozen).
# The original README also uses this script for the DARTS space: with --space it runs
# blank-proj-sota.sh instead.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if has_flag --space "$@"; then
    exec bash "$ROOT/exp_scripts/blank-proj-sota.sh" "$@"
fi
run_distributed nasbench201.train_search --method blank-proj --dev proj --save blank-proj-201 --seed 1 --gpu auto \
    --proj_crit acc --proj_intv 5 --edge_decision random "$@"
