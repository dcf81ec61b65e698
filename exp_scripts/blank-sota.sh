#!/usr/bin/env bash
# DARTS-space supernet training with alpha fixed at its random init (fix-alpha).
# Output: experiments/sota/{dataset}/search-blank-sota-{space}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method blank --save blank-sota --space s5 --seed 2 --dataset cifar10 --gpu auto "$@"
