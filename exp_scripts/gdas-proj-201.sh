#!/usr/bin/env bash
# Perturbation-based projection of a GDAS supernet on NAS-Bench-201 (docs/gdas.md).
# Reads experiments/nasbench201/{resume_expid}/checkpoint_{resume_epoch}.pth.tar (--resume_epoch left out:
# the search run's last epoch) and writes into a
# sub-folder named after the projection settings. Tuning takes GDAS' own step (a hard sample per
# forward, weight step then arch step) at the temperature the checkpoint ends with; scoring passes mix
# softmax(alpha / tau). GDAS' optimiser settings as gdas-201.sh (the tuning learning rate is a tenth
# of --learning_rate, as every projection's); --proj_intv, --edge_decision: DARTS-PT's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed nasbench201.train_search --method gdas-proj --dev proj --save gdas-proj-201 --seed 1 --gpu auto \
    --proj_crit acc --proj_intv 5 --edge_decision random \
    --tau_max 10 --tau_min 0.1 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3 \
    --batch_size 64 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9 \
    --weight_decay 5e-4 --nesterov --grad_clip 5 "$@"
