#!/usr/bin/env bash
# Perturbation-based projection (op, then topology) of a DrNAS supernet in the DARTS space
# (docs/drnas.md): scoring passes mix with the Dirichlet mean, tuning takes DrNAS steps at a tenth of
# the search's learning rate. --crit acc|loss: the criterion of all three stages. Sizes, --k,
# --stages and the regulariser left out are the search run's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# --learning_rate 0.1 --learning_rate_min 0.0 --arch_learning_rate 6e-4: DrNAS' DARTS-space/train_search.py:26-27, :42
run_distributed sota.train_search --method drnas-proj --dev proj --save drnas-proj-sota --seed 2 --gpu auto \
    --crit acc --proj_intv 5 --edge_decision random \
    --learning_rate 0.1 --learning_rate_min 0.0 --arch_learning_rate 6e-4 "$@"
