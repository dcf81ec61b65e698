#!/usr/bin/env bash
# Perturbation-based projection of a PC-DARTS (partial channels, as DrNAS runs it) supernet on
# NAS-Bench-201 (docs/pcdarts.md): tuning between decisions takes its steps at a tenth of the search's
# learning rate. Reads experiments/nasbench201/{resume_expid}/checkpoint_{resume_epoch}.pth.tar (left
# out: the search run's last epoch); sizes, --k and --arch_start_epoch left out are the search run's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# --learning_rate 0.025 and --arch_learning_rate 3e-4: DrNAS' 201-space/train_search.py:35, :51
run_distributed nasbench201.train_search --method pcdarts-proj --dev proj --save pcdarts-proj-201 --seed 1 \
    --gpu auto --proj_intv 5 --edge_decision random \
    --learning_rate 0.025 --arch_learning_rate 3e-4 "$@"
