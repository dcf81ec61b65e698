#!/usr/bin/env bash
# DARTS-space (s1-s5) supernet training with PC-DARTS (partial channels 1/4, edge normalisation;
# yuhuixu1993/PC-DARTS train_search.py and model_search.py at b74702f, with their defaults; docs/pcdarts.md).
# Output: experiments/sota/{dataset}/search-pcdarts-sota-{space}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# train_search.py: --batch_size 256 :24, --learning_rate 0.1 :25, --learning_rate_min 0.0 :26,
# --momentum 0.9 :27, --weight_decay 3e-4 :28, --epochs 50 :31, --init_channels 16 :32, --layers 8 :33,
# --seed 2 :39, --grad_clip 5 :40, --train_portion 0.5 :41, --arch_learning_rate 6e-4 :43,
# --arch_weight_decay 1e-3 :44 (first order: --unrolled off, :42); --k 4: model_search.py:31 (hard-coded);
# --arch_start_epoch 15: the arch step runs `if epoch>=15`, train_search.py:156.
run_distributed sota.train_search --method pcdarts --save pcdarts-sota --space s5 --seed 2 --dataset cifar10 \
    --gpu auto --batch_size 256 --learning_rate 0.1 --learning_rate_min 0.0 --momentum 0.9 --weight_decay 3e-4 \
    --epochs 50 --init_channels 16 --layers 8 --grad_clip 5 --train_portion 0.5 --arch_learning_rate 6e-4 \
    --arch_weight_decay 1e-3 --k 4 --arch_start_epoch 15 "$@"
