"""Studies: many searches, projections and evaluations run, resumed and reported as one.

    bash exp_scripts/study.sh --name NAME --space s3,s5 --dataset cifar10 --method darts,blank \
        --seed 1,2,3,4 [--stages search,proj,eval] [--executor local|slurm] [run flags]

For every (space, dataset, method, seed) the study runs the exp_scripts a user would type:
the supernet search, the perturbation-based projection of that supernet, and (DARTS spaces)
the from-scratch evaluation of the genotype the projection registered (and, with `--stages
...,eval-imagenet`, its ImageNet evaluation). Everything lands in
<exp_root>/studies/NAME/: study.json (the manifest), logs/, attempts/, runs/ (the runs'
--exp_root) and, with Slurm, slurm/ (submitit's job files).

Modules: config (the command line), flags (run flags and which scripts take them), plan
(runs, scripts, commands, folders), manifest (study.json, states, the lock), executors
(local processes and Slurm through submitit).
"""
