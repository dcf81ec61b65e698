#!/usr/bin/env bash
# NAS-Bench-201 supernet training with GDAS, as D-X-Y/AutoDL-Projects runs it (bb2f405; docs/gdas.md).
# Output: experiments/nasbench201/search-gdas-201-{seed}/
# Defaults and their source (AutoDL-Projects):
#   --tau_max 10 --tau_min 0.1, --arch_learning_rate 3e-4 --arch_weight_decay 1e-3:
#       scripts-search/algos/GDAS.sh:33-41
#   --epochs 250 --batch_size 64 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9
#   --weight_decay 5e-4 --nesterov (cosine schedule): configs/nas-benchmark/algos/GDAS.config
#   --init_channels 16 --num_cells 5: scripts-search/algos/GDAS.sh:20-22
#   --grad_clip 5: exps/algos/GDAS.py:42 (counts alpha's gradient: docs/gdas.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed nasbench201.train_search --method gdas --save gdas-201 --seed 1 --dataset cifar10 --gpu auto \
    --tau_max 10 --tau_min 0.1 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3 \
    --epochs 250 --batch_size 64 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9 \
    --weight_decay 5e-4 --nesterov --init_channels 16 --num_cells 5 --grad_clip 5 "$@"
