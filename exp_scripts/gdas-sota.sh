#!/usr/bin/env bash
# DARTS-space (s1-s5) supernet training with GDAS, on the project's (DARTS-PT's) DARTS supernet
# (docs/gdas.md says how it differs from AutoDL's NASNetworkGDAS). Both cells are searched, as the
# default script scripts-search/GDAS-search-NASNet-space.sh does (the fixed-reduction-cell variant
# came later).
# Output: experiments/sota/{dataset}/search-gdas-sota-{space}-{seed}/
# Defaults and their source (AutoDL-Projects bb2f405):
#   --tau_max 10 --tau_min 0.1, --arch_learning_rate 3e-4 --arch_weight_decay 1e-3:
#       scripts-search/GDAS-search-NASNet-space.sh
#   --epochs 250 --batch_size 256 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9
#   --weight_decay 5e-4 --nesterov: configs/search-opts/GDAS-NASNet-CIFAR.config
#   --init_channels 16: configs/search-archs/GDAS-NASNet-CIFAR.config (its 3N = 6 cells are not
#       DARTS-PT's layout: --layers stays DARTS-PT's 8)
#   --grad_clip 5: exps/algos/GDAS.py:42 (counts alpha's gradient)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method gdas --save gdas-sota --space s5 --seed 2 --dataset cifar10 --gpu auto \
    --tau_max 10 --tau_min 0.1 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3 \
    --epochs 250 --batch_size 256 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9 \
    --weight_decay 5e-4 --nesterov --init_channels 16 --grad_clip 5 "$@"
