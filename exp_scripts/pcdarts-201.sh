#!/usr/bin/env bash
# NAS-Bench-201 supernet training with PC-DARTS' partial channels, as DrNAS runs it
# (xiangning-chen/DrNAS 201-space/train_search.py --method darts --k 4 at f2caa4d; docs/pcdarts.md):
# DARTS with partial channels 1/4 and no edge normalisation. PC-DARTS' own code has no NAS-Bench-201
# space; DrNAS' README (line 26) reports PC-DARTS on NAS-Bench-201 from this setting.
# Output: experiments/nasbench201/search-pcdarts-201-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# DrNAS 201-space/train_search.py: --batch_size 64 :34, --learning_rate 0.025 :35 (cosine to
# --learning_rate_min 0.001 :36), --momentum 0.9 :37, --weight_decay 3e-4 :38, --epochs 100 :41,
# --init_channels 16 :42, 5 cells per stage (TinyNetwork N=5) :148, --arch_learning_rate 3e-4 :51, --k 4 (its
# :55 flag, default 1), reg l2 with scale 1e-3 (:57-60) = Adam's weight decay on alpha (--arch_weight_decay
# 1e-3; architect.py:17-22);
# --arch_start_epoch 0: its `if epoch >= 15` is commented out (:264).
# The seed is the project's seed scripts' (the authors' default is 2).
run_distributed nasbench201.train_search --method pcdarts --save pcdarts-201 --seed 1 --dataset cifar10 --gpu auto \
    --epochs 100 --batch_size 64 --learning_rate 0.025 --learning_rate_min 0.001 --momentum 0.9 \
    --weight_decay 3e-4 --init_channels 16 --num_cells 5 --arch_learning_rate 3e-4 --arch_weight_decay 1e-3 \
    --k 4 --arch_start_epoch 0 "$@"
