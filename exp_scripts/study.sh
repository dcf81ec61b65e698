#!/usr/bin/env bash
# A study: for every (space, dataset, method, seed) a supernet search, its projection and the
# from-scratch evaluation of the selected genotype, run through the scripts above.
#   bash exp_scripts/study.sh --name NAME --space s3,s5 --dataset cifar10 --method darts,blank --seed 1,2
# Output: experiments/studies/NAME/ (study.json, logs/, runs/); see docs/studies.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run study "$@"
