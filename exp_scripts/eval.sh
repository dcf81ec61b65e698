#!/usr/bin/env bash
# Train a genotype from scratch on CIFAR-10 (C=36, 20 cells, 600 epochs, auxiliary head, cutout).
# --nproc N: train in N processes (one per GPU) with DistributedDataParallel; see docs/multi-gpu.md.
# Output: experiments/sota/cifar10/eval/eval-{arch}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train --dataset cifar10 --arch darts_pt_s5_0 --init_channels 36 --layers 20 --auxiliary --cutout --seed 2 --gpu auto "$@"
