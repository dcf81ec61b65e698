#!/usr/bin/env bash
# Train a genotype from scratch on ImageNet (C=48, 14 cells, 250 epochs, auxiliary head, label smoothing),
# as the original's sota/cnn/train_imagenet.py. --data DIR: the folder holding train/<class>/* and val/<class>/*.
# --nproc G: G processes (one per GPU) on this machine; --nnodes N --rdzv_endpoint HOST:PORT: N machines
# (run the same command on each); see docs/evaluation.md, "ImageNet".
# Output: experiments/sota/imagenet/eval/eval-{arch}-{seed}/
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run_distributed sota.train_imagenet --arch darts_pt_s5_0 --auxiliary --gpu auto "$@"
