#!/usr/bin/env bash
# NAS-Bench-201 supernet training with alpha fixed at its random init (fix-alpha).
# Output: experiments/nasbench201/search-blank-201-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed nasbench201.train_search --method blank --save blank-201 --seed 1 --dataset cifar10 --gpu auto "$@"
