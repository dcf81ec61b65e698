#!/usr/bin/env bash
# Perturbation-based projection (op, then topology) of a PC-DARTS supernet in the DARTS space
# (docs/pcdarts.md): scoring passes mix softmax(alpha) with each edge weighted by its beta, tuning takes
# PC-DARTS steps (alpha and beta) at a tenth of the search's learning rate. --crit acc|loss: the
# criterion of all three stages. Sizes, --k and --arch_start_epoch left out are the search run's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# --batch_size 256 --learning_rate 0.1 --learning_rate_min 0.0 --arch_learning_rate 6e-4: PC-DARTS'
# train_search.py:24-26, :43 (as pcdarts-sota.sh); --proj_intv, --edge_decision: DARTS-PT's.
run_distributed sota.train_search --method pcdarts-proj --dev proj --save pcdarts-proj-sota --seed 2 --gpu auto \
    --crit acc --proj_intv 5 --edge_decision random \
    --batch_size 256 --learning_rate 0.1 --learning_rate_min 0.0 --arch_learning_rate 6e-4 "$@"
