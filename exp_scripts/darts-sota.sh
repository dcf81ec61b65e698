#!/usr/bin/env bash
# DARTS-space (s1-s5) supernet training with DARTS (first order; --unrolled: second order, as quark0/darts).
# Output: experiments/sota/{dataset}/search-darts-sota-{space}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method darts --save darts-sota --space s5 --seed 2 --dataset cifar10 --gpu auto "$@"
