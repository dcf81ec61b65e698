#!/usr/bin/env bash
# Perturbation-based projection of a GDAS supernet in the DARTS space (docs/gdas.md): tuning takes
# GDAS' own step at the temperature the checkpoint ends with; scoring passes mix softmax(alpha / tau).
# GDAS' optimiser settings as gdas-sota.sh; --proj_intv, --edge_decision: DARTS-PT's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method gdas-proj --dev proj --save gdas-proj-sota --seed 2 --gpu auto \
    --proj_intv 5 --edge_decision random \
    --tau_max 10 --tau_min 0.1 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3 \
    --batch_size 256 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9 \
    --weight_decay 5e-4 --nesterov --grad_clip 5 "$@"
