#!/usr/bin/env bash
# Train a genotype from scratch on SVHN (C=16, 8 cells, as the paper's S1-S4 experiments).
# --nproc N: train in N processes (one per GPU) with DistributedDataParallel; see docs/multi-gpu.md.
# Output: experiments/sota/svhn/eval/eval-{arch}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train --dataset svhn --arch darts_pt_s2_svhn_1 --init_channels 16 --layers 8 --auxiliary --cutout --seed 2 --gpu auto "$@"
