"""NAS-Bench-201: supernet search (DARTS, fix-alpha; common/methods) and perturbation-based projection.

    python -m nasbench201.train_search --method darts --save darts-201 --seed 1
    python -m nasbench201.train_search --method darts-proj --save darts-proj-201 \
        --resume_expid search-darts-201-1

The exp_scripts/*-201.sh scripts wrap these commands.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from common.arch import Architecture
from common.cli import Parser, search_config, search_parser
from common.config import CRITERIA, SearchConfig, check
from common.experiment import LOGGER, REPO_ROOT
from common.methods import supernet_request
from common.projection import random_choice, select_op, selection_suffix
from common.run import main
from common.space import Layout, Plan, Score, SearchSpace, Space, check_partial_channels, supernet_epochs

from .benchmark import Benchmark
from .genotypes import genotype_from_weights
from .model_search import EDGE_KEYS, NB201Supernet
from .operations import NB201_OPS
from .report_hooks import LABEL, REPORT_HOOKS

log = logging.getLogger(LOGGER)

# --method choices (common/methods); the original has no SDARTS here
METHODS = ("darts", "blank", "gdas", "drnas", "pcdarts")
BENCHMARK_DATASETS = ("cifar10", "cifar100", "imagenet16-120")


@dataclass(frozen=True)
class Options:
    """NAS-Bench-201's own flags."""

    num_cells: int = 5
    proj_crit: str = "acc"
    api_path: Path = REPO_ROOT / "data" / "NAS-Bench-201-v1_0-e61699.pth"

    def __post_init__(self) -> None:
        check(self.num_cells >= 1, "num_cells", self.num_cells, "must be at least 1 (cells per stage)")
        check(self.proj_crit in CRITERIA, "proj_crit", self.proj_crit, f"choose one of {', '.join(CRITERIA)}")


def build_parser() -> Parser:
    p = search_parser(__doc__.splitlines()[0], epochs=100, ckpt_interval=20, seed=1, methods=METHODS)
    g = p.add_argument_group("NAS-Bench-201")
    g.add_argument("--search_space", default="nas-bench-201", choices=["nas-bench-201"])
    g.add_argument("--num_cells", type=int, default=5, help="search cells per stage (N)")
    g.add_argument("--proj_crit", default="acc", choices=CRITERIA,
                   help="keep the op whose removal lowers accuracy most (acc), raises loss most (loss) or lowers "
                        "a zero-cost proxy most (nwot, synflow, grad_norm, jacob_cov: fast, no tuning; "
                        "docs/fast-projection.md)")
    g.add_argument("--api_path", default=str(Options.api_path), help="NAS-Bench-201 benchmark file (v1_0 or v1_1)")
    p.take_from_search_run("num_cells")
    return p


def config(args: argparse.Namespace) -> SearchConfig:
    cfg = search_config(args, Options(num_cells=args.num_cells, proj_crit=args.proj_crit,
                                      api_path=Path(args.api_path)), METHODS)
    cfg.projection.check_pool([cfg.space.proj_crit])
    return cfg


def search_name(cfg: SearchConfig) -> str:
    name = f"search-{cfg.run.save}-{cfg.run.seed}"
    if cfg.data.dataset != "cifar10":
        name += f"-{cfg.data.dataset}"
    return name + (f"-{cfg.run.expid_tag}" if cfg.run.expid_tag else "")


def projection_name(cfg: SearchConfig, epoch: int) -> str:
    name = (f"{cfg.run.save}-seed{cfg.run.seed}-{cfg.space.proj_crit}-intv{cfg.projection.proj_intv}-"
            f"{supernet_epochs(cfg, epoch)}")
    name += selection_suffix(cfg.projection)
    return name + (f"-{cfg.projection.log_tag}" if cfg.projection.log_tag else "")


LAYOUT = Layout(space_dir=lambda cfg: cfg.run.exp_root / "nasbench201",
                search_name=search_name, projection_name=projection_name,
                scripts="201")


def build_space(cfg: SearchConfig, num_classes: int, device: torch.device) -> Space:
    request = supernet_request(cfg)
    check_partial_channels(request, NB201Supernet.partial_channel_widths(cfg.init_channels))
    model = NB201Supernet(cfg.init_channels, cfg.space.num_cells, num_classes,
                          k=request.partial_channels[0]).to(device)
    arch = Architecture(model.arch_shapes(), device)
    bench = None
    if cfg.run.fast:
        log.info("--fast: no benchmark queries")
    elif cfg.data.dataset in BENCHMARK_DATASETS:
        bench = Benchmark.open(cfg.space.api_path, log=log.info)

    def query(arch_str: str) -> dict[str, float] | None:
        if bench is None:
            return None
        try:
            return bench.query(arch_str)
        except KeyError as e:
            log.info("benchmark: %s", e)
            return None

    return Space(label=LABEL, model=model, arch=arch, op_names={"cell": list(NB201_OPS)},
                 edge_names=list(EDGE_KEYS), genotype=lambda w: genotype_from_weights(w["cell"]), query=query,
                 tests_each_search_epoch=False, alpha_in_model=True, widen=model.widen)


def build_plan(cfg: SearchConfig, space: Space) -> Plan:
    """One edge per projection round: at tuning epochs 0, intv, 2*intv, ... and the last one."""
    n_edges = space.arch.proj_weights["cell"].shape[0]
    intv, seed = cfg.projection.proj_intv, cfg.run.seed
    # proj_intv * (edges - 1) epochs as the original; at least one epoch per edge.
    tune_epochs = max(intv * (n_edges - 1), n_edges)

    def project(score: Score, stage: str, round_index: int) -> None:
        undecided = space.arch.undecided_edges("cell")
        if not undecided:
            return
        edge = random_choice(seed, score.epoch, 0, undecided)
        log.info("projection %d: edge %d (%s)", round_index + 1, edge, EDGE_KEYS[edge])
        op = select_op(score, "cell", edge, space.arch.live_ops("cell", edge), cfg.space.proj_crit)
        log.info("edge %s -> %s", EDGE_KEYS[edge], NB201_OPS[op])
        space.arch.project_op("cell", edge, op)

    def passes(stage: str, epoch: int) -> int:
        """The ops of the round's edge that pruning kept (all of them without pruning)."""
        undecided = space.arch.undecided_edges("cell")
        return len(space.arch.live_ops("cell", random_choice(seed, epoch, 0, undecided))) if undecided else 0

    return Plan(tune_epochs, intv, ("op",) * n_edges, project, passes, criteria={"op": cfg.space.proj_crit})


SEARCH_SPACE = SearchSpace(name="nasbench201", parser=build_parser, config=config, layout=LAYOUT,
                           build=build_space, plan=build_plan, report=REPORT_HOOKS)


if __name__ == "__main__":
    raise SystemExit(main(SEARCH_SPACE))
