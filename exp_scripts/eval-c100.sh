#!/usr/bin/env bash
# Train a genotype from scratch on CIFAR-100 (C=16, 8 cells, as the paper's S1-S4 experiments).
# --nproc N: train in N processes (one per GPU) with DistributedDataParallel; see docs/multi-gpu.md.
# Output: experiments/sota/cifar100/eval/eval-{arch}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train --dataset cifar100 --arch darts_pt_s3_c100_1 --init_channels 16 --layers 8 --auxiliary --cutout --seed 2 --gpu auto "$@"
