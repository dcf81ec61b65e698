#!/usr/bin/env bash
# NAS-Bench-201 supernet training with DARTS (first order; --unrolled: second order, as quark0/darts).
# Output: experiments/nasbench201/search-darts-201-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed nasbench201.train_search --method darts --save darts-201 --seed 1 --dataset cifar10 --gpu auto "$@"
