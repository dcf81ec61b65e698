#!/usr/bin/env bash
# NAS-Bench-201 supernet training with DrNAS (Dirichlet mixing weights; xiangning-chen/DrNAS
# 201-space/train_search.py, with its defaults). Its progressive variant (train_search_progressive.py):
# add --stages 4:5:50,2:3:50 --begin 10 (partial channels 1/4 then 1/2, pruned to 3 ops per edge at
# epoch 50, alpha steps from epoch 10 of each stage; its lines 189-191, 204).
# Output: experiments/nasbench201/search-drnas-201-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# --epochs 100, --batch_size 64, --learning_rate 0.025 (cosine to --learning_rate_min 0.001),
# --init_channels 16, 5 cells per stage: train_search.py:34-42; --arch_learning_rate 3e-4: :51;
# --k 1 (no partial channels): :55; --reg_type l2 --reg_scale 1e-3 (Adam's weight decay on alpha): :57-60;
# --begin 0 (alpha steps from the first epoch; its `if epoch >= 15` is commented out): :264.
# The seed is the project's seed scripts' (the authors' default is 2).
run_distributed nasbench201.train_search --method drnas --save drnas-201 --seed 1 --dataset cifar10 --gpu auto \
    --epochs 100 --batch_size 64 --learning_rate 0.025 --learning_rate_min 0.001 --init_channels 16 \
    --num_cells 5 --arch_learning_rate 3e-4 --k 1 --reg_type l2 --reg_scale 1e-3 --begin 0 "$@"
