#!/usr/bin/env bash
# Perturbation-based projection of an SDARTS-RS supernet; the random smoothing continues while tuning.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method sdarts-proj --perturb_alpha random --epsilon_alpha 0.3 --dev proj --save sdarts-rs-proj-sota --seed 2 --gpu auto \
    --proj_intv 5 --edge_decision random "$@"
