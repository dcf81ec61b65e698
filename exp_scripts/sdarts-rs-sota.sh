#!/usr/bin/env bash
# DARTS-space supernet training with SDARTS-RS (random smoothing of alpha).
# Output: experiments/sota/{dataset}/search-sdarts-rs-sota-{space}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_search --method sdarts --perturb_alpha random --epsilon_alpha 0.3 --save sdarts-rs-sota --space s5 --seed 2 --dataset cifar10 --gpu auto "$@"
