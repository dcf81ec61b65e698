#!/usr/bin/env bash
# DARTS-space (s1-s5) supernet training with DrNAS and its progressive learning (xiangning-chen/DrNAS
# DARTS-space/train_search.py, with its defaults): partial channels 1/6 for 25 epochs, then every edge
# pruned to its 4 largest alphas and the ops widened to 1/4 of the channels for 25 more.
# Output: experiments/sota/{dataset}/search-drnas-sota-{space}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# --batch_size 64, --learning_rate 0.1 (cosine to --learning_rate_min 0.0): train_search.py:25-27;
# --init_channels 36 --layers 20 (the evaluation network's size): :32-33; --seed 2: :38;
# --arch_learning_rate 6e-4: :42; --k 6: :43; --reg_type l2 --reg_scale 1e-3: :45-46;
# --stages: ks [6, 4], num_keeps [7, 4], train_epochs [25, 25] (:120-122), so --epochs 50;
# --begin 10: alpha steps from epoch 10 of each stage (:136, :182).
run_distributed sota.train_search --method drnas --save drnas-sota --space s5 --seed 2 --dataset cifar10 --gpu auto \
    --batch_size 64 --learning_rate 0.1 --learning_rate_min 0.0 --init_channels 36 --layers 20 \
    --arch_learning_rate 6e-4 --reg_type l2 --reg_scale 1e-3 --epochs 50 --stages 6:7:25,4:4:25 --begin 10 "$@"
