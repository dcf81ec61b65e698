#!/usr/bin/env bash
# Perturbation-based projection of a DrNAS supernet on NAS-Bench-201 (docs/drnas.md): scoring passes
# mix with the Dirichlet mean (--score_samples S: the mean score over S samples); tuning between
# decisions takes DrNAS steps (Dirichlet samples, its alpha step) at a tenth of the search's learning
# rate. Reads experiments/nasbench201/{resume_expid}/checkpoint_{resume_epoch}.pth.tar (left out: the
# search run's last epoch); sizes, --k,
# --stages and the regulariser left out are the search run's (docs/projection.md).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# --learning_rate 0.025 and --arch_learning_rate 3e-4: DrNAS' 201-space/train_search.py:35, :51
run_distributed nasbench201.train_search --method drnas-proj --dev proj --save drnas-proj-201 --seed 1 --gpu auto \
    --proj_crit acc --proj_intv 5 --edge_decision random \
    --learning_rate 0.025 --arch_learning_rate 3e-4 "$@"
