"""NAS-Bench-201: supernet search (DARTS, fix-alpha) and perturbation-based projection.

    python -m nasbench201.train_search --method darts --save darts-201 --seed 1
    python -m nasbench201.train_search --method darts-proj --save darts-proj-201 \
        --resume_expid search-darts-201-1 --resume_epoch 100

The exp_scripts/*-201.sh scripts wrap these commands.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from common.arch import Architecture
from common.cli import search_parser
from common.experiment import REPO_ROOT
from common.projection import CRITERIA, Plan, Scorer, random_choice, select_op
from common.run import Layout, main
from common.trainer import Space

from .benchmark import Benchmark
from .genotypes import genotype_from_weights
from .model_search import EDGE_KEYS, NB201Supernet
from .operations import NB201_OPS

log = logging.getLogger("darts_pt")

BENCHMARK_DATASETS = ("cifar10", "cifar100", "imagenet16-120")


def build_parser() -> argparse.ArgumentParser:
    p = search_parser(__doc__.splitlines()[0], epochs=100, ckpt_interval=20, seed=1)
    g = p.add_argument_group("NAS-Bench-201")
    g.add_argument("--search_space", default="nas-bench-201", choices=["nas-bench-201"])
    g.add_argument("--num_cells", type=int, default=5, help="search cells per stage (N)")
    g.add_argument("--proj_crit", default="acc", choices=CRITERIA,
                   help="keep the op whose removal lowers accuracy most (acc) or raises loss most (loss)")
    g.add_argument("--api_path", default=str(REPO_ROOT / "data" / "NAS-Bench-201-v1_0-e61699.pth"),
                   help="NAS-Bench-201 benchmark file (v1_0 or v1_1)")
    return p


def _search_name(args: argparse.Namespace) -> str:
    name = f"search-{args.save}-{args.seed}"
    if args.dataset != "cifar10":
        name += f"-{args.dataset}"
    return name + (f"-{args.expid_tag}" if args.expid_tag else "")


def _projection_name(args: argparse.Namespace, epoch: int) -> str:
    name = f"{args.save}-seed{args.seed}-{args.proj_crit}-intv{args.proj_intv}-ep{epoch}"
    return name + (f"-{args.log_tag}" if args.log_tag else "")


LAYOUT = Layout(space_dir=lambda a: Path(a.exp_root) / "nasbench201",
                search_name=_search_name, projection_name=_projection_name)


def build_space(args: argparse.Namespace, num_classes: int, device: torch.device) -> Space:
    model = NB201Supernet(args.init_channels, args.num_cells, num_classes).to(device)
    arch = Architecture(model.arch_shapes(), device)
    bench = None
    if args.fast:
        log.info("--fast: no benchmark queries")
    elif args.dataset in BENCHMARK_DATASETS:
        bench = Benchmark.open(args.api_path, log=log.info)

    def query(arch_str: str) -> dict[str, float] | None:
        if bench is None:
            return None
        try:
            return bench.query(arch_str)
        except KeyError as e:
            log.info("benchmark: %s", e)
            return None

    return Space(name="nasbench201", model=model, arch=arch, op_names={"cell": list(NB201_OPS)},
                 edge_names=list(EDGE_KEYS), genotype=lambda w: genotype_from_weights(w["cell"]),
                 query=query)


def build_plan(args: argparse.Namespace, space: Space) -> Plan:
    """One edge per projection: at tuning epochs 0, intv, 2*intv, ... and the last one."""
    n_edges, n_ops = space.arch.proj_weights["cell"].shape
    # proj_intv * (edges - 1) epochs as the original; at least one epoch per edge.
    tune_epochs = max(args.proj_intv * (n_edges - 1), n_edges)

    def project(score: Scorer, round_index: int) -> None:
        undecided = space.arch.undecided_edges("cell")
        if not undecided:
            return
        edge = random_choice(args, score.epoch, 0, undecided)
        log.info("projection %d: edge %d (%s)", round_index + 1, edge, EDGE_KEYS[edge])
        op = select_op(score, "cell", edge, n_ops, args.proj_crit)
        log.info("edge %s -> %s", EDGE_KEYS[edge], NB201_OPS[op])
        space.arch.project_op("cell", edge, op)

    return Plan(tune_epochs, project)


if __name__ == "__main__":
    raise SystemExit(main(build_parser(), LAYOUT, build_space, build_plan))
