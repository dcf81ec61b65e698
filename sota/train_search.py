"""DARTS space (S1-S5): supernet search (DARTS, fix-alpha, SDARTS; common/methods) and two-stage projection.

    python -m sota.train_search --method darts --save darts-sota --space s5 --seed 2
    python -m sota.train_search --method darts-proj --save darts-proj-sota --space s5 \
        --resume_expid search-darts-sota-s5-2

The exp_scripts/*-sota.sh scripts wrap these commands.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common import commands
from common.arch import Architecture
from common.cli import Parser, search_config, search_parser
from common.config import CRITERIA, ConfigError, SearchConfig, check
from common.experiment import LOGGER, write_json
from common.methods import supernet_request
from common.projection import random_choice, select_edges, select_edges_passes, select_op, selection_suffix
from common.run import main
from common.space import Layout, Plan, Score, SearchSpace, Space, check_partial_channels, supernet_epochs

from .genotypes import Genotype, check_genotype_name, genotype_to_dict, register_genotype, registry
from .model_eval import NetworkCIFAR, count_parameters_mb, eval_size
from .model_search import DartsSupernet
from .report_hooks import FOLDER, REPORT_HOOKS
from .spaces import NODE_EDGES, NUM_EDGES, PLAIN_STATE_NAMES, SPACES, check_layers, column_names, edge_names
from .train import AUX_IMAGE_SIZE

log = logging.getLogger(LOGGER)

KINDS = ("normal", "reduce")
# --method choices (common/methods); --unrolled: second order
METHODS = ("darts", "blank", "sdarts", "gdas", "drnas", "pcdarts")


@dataclass(frozen=True)
class Options:
    """The DARTS space's own flags."""

    space: str = "s5"
    layers: int = 8
    proj_crit_normal: str = "acc"
    proj_crit_reduce: str = "acc"
    proj_crit_edge: str = "acc"
    genotype_name: str = ""

    def __post_init__(self) -> None:
        check(self.space in SPACES, "space", self.space, f"choose one of {', '.join(sorted(SPACES))}")
        check_layers(self.layers)
        for kind in ("normal", "reduce", "edge"):
            crit = getattr(self, f"proj_crit_{kind}")
            check(crit in CRITERIA, f"proj_crit_{kind}", crit, f"choose one of {', '.join(CRITERIA)}")


def build_parser() -> Parser:
    p = search_parser(__doc__.splitlines()[0], epochs=50, ckpt_interval=10, seed=2, methods=METHODS)
    g = p.add_argument_group("DARTS space")
    g.add_argument("--space", default="s5", choices=sorted(SPACES))
    g.add_argument("--layers", type=int, default=8, help="cells in the supernet")
    g.add_argument("--crit", default=None, choices=CRITERIA,
                   help="projection criterion of normal ops, reduction ops and topology alike (the original "
                        "darts-proj-sota.sh's flag); a --proj_crit_* flag wins over it (default: acc)")
    for kind in ("normal", "reduce", "edge"):
        g.add_argument(f"--proj_crit_{kind}", default=None, choices=CRITERIA,
                       help=f"projection criterion for {kind} {'topology' if kind == 'edge' else 'cell ops'} "
                            "(default: --crit, else acc; nwot, synflow, grad_norm, jacob_cov: zero-cost proxies, "
                            "docs/fast-projection.md)")
    g.add_argument("--genotype_name", default="",
                   help="name under which projection registers the genotype for exp_scripts/eval.sh")
    p.take_from_search_run("space", "layers")
    return p


def config(args: argparse.Namespace) -> SearchConfig:
    crit = {f"proj_crit_{kind}": getattr(args, f"proj_crit_{kind}") or args.crit or "acc"
            for kind in ("normal", "reduce", "edge")}
    options = Options(space=args.space, layers=args.layers, genotype_name=args.genotype_name, **crit)
    cfg = search_config(args, options, METHODS)
    cfg.projection.check_pool([options.proj_crit_normal, options.proj_crit_reduce, options.proj_crit_edge])
    return cfg


def search_name(cfg: SearchConfig) -> str:
    name = f"search-{cfg.run.save}-{cfg.space.space}-{cfg.run.seed}"
    return name + (f"-{cfg.run.expid_tag}" if cfg.run.expid_tag else "")


def projection_name(cfg: SearchConfig, epoch: int) -> str:
    o = cfg.space
    crits = {o.proj_crit_normal, o.proj_crit_reduce, o.proj_crit_edge}
    crit = crits.pop() if len(crits) == 1 else f"n-{o.proj_crit_normal}_r-{o.proj_crit_reduce}_e-{o.proj_crit_edge}"
    name = f"{cfg.run.save}-seed{cfg.run.seed}-{crit}-intv{cfg.projection.proj_intv}-{supernet_epochs(cfg, epoch)}"
    name += selection_suffix(cfg.projection)
    return name + (f"-{cfg.projection.log_tag}" if cfg.projection.log_tag else "")


LAYOUT = Layout(space_dir=lambda cfg: cfg.run.exp_root / FOLDER / cfg.data.dataset,
                search_name=search_name, projection_name=projection_name, scripts="sota")


def build_space(cfg: SearchConfig, num_classes: int, device: torch.device) -> Space:
    o = cfg.space
    request = supernet_request(cfg)
    check_partial_channels(request, DartsSupernet.partial_channel_widths(cfg.init_channels))
    model = DartsSupernet(cfg.init_channels, num_classes, o.layers, o.space, k=request.partial_channels[0]).to(device)
    arch = Architecture(model.arch_shapes(), device)
    op_names = {k: column_names(model.edge_ops(k)) for k in KINDS}
    names = [f"{e}: {name}" for e, name in enumerate(edge_names(PLAIN_STATE_NAMES))]  # logs: no LaTeX
    return Space(label=o.space, model=model, arch=arch, op_names=op_names, edge_names=names,
                 genotype=model.genotype,
                 finalize=lambda folder, g, result: finalize(cfg, num_classes, folder, g, result),
                 edge_ops={k: model.edge_ops(k) for k in KINDS}, widen=model.widen,
                 node_inputs=tuple(2 + node for node in range(len(NODE_EDGES) + 1)))


def build_plan(cfg: SearchConfig, space: Space) -> Plan:
    """14 op rounds (one random undecided edge per cell kind each), then 3 topology rounds
    (one random undecided node per cell kind keeps its two best inputs)."""
    intv, seed, o = cfg.projection.proj_intv, cfg.run.seed, cfg.space
    crit = {"normal": o.proj_crit_normal, "reduce": o.proj_crit_reduce}
    arch = space.arch

    def target(kind: str, stage: str, epoch: int, salt: int) -> int | None:
        """The random undecided edge (op stage) or node (topology stage) of `kind` the round at
        tuning epoch `epoch` decides; None when every one is decided."""
        undecided = (arch.undecided_edges(kind) if stage == "op"
                     else [n for n in NODE_EDGES if n not in arch.decided_nodes[kind]])
        return random_choice(seed, epoch, salt, undecided) if undecided else None

    def project(score: Score, stage: str, round_index: int) -> None:
        for salt, kind in enumerate(KINDS):
            chosen = target(kind, stage, score.epoch, salt)
            if chosen is None:
                continue
            if stage == "op":
                op = select_op(score, kind, chosen, arch.live_ops(kind, chosen), crit[kind])
                log.info("projection %d (%s): edge %d -> op %d (%s)", round_index + 1, kind, chosen, op,
                         space.model.edge_ops(kind)[chosen][op])
                arch.project_op(kind, chosen, op)
            else:
                kept = select_edges(score, kind, NODE_EDGES[chosen], o.proj_crit_edge)
                log.info("projection %d (%s): node %d keeps edges %s", round_index + 1, kind, chosen, kept)
                arch.drop_edges(kind, chosen, [e for e in NODE_EDGES[chosen] if e not in kept])

    def passes(stage: str, epoch: int) -> int:
        chosen = [target(kind, stage, epoch, salt) for salt, kind in enumerate(KINDS)]
        return sum(len(arch.live_ops(kind, c)) if stage == "op" else select_edges_passes(len(NODE_EDGES[c]))
                   for kind, c in zip(KINDS, chosen) if c is not None)

    stages = ("op",) * NUM_EDGES + ("topology",) * len(NODE_EDGES)
    criteria = {"normal": o.proj_crit_normal, "reduce": o.proj_crit_reduce, "edge": o.proj_crit_edge}
    return Plan(intv * (len(stages) - 1) + 1, intv, stages, project, passes, criteria)


def genotype_name(cfg: SearchConfig, folder: Path) -> str:
    """The name the projection in `folder` registers its genotype under: --genotype_name, else
    one made of the dataset and the search and projection folders' names."""
    return cfg.space.genotype_name or f"{cfg.data.dataset}_{folder.parent.name}_{folder.name}"


def check_projection(cfg: SearchConfig, folder: Path) -> None:
    """Refuse, before the projection starts, a genotype name it could not register at its end."""
    name = genotype_name(cfg, folder)
    try:
        check_genotype_name(name, registry(cfg.run.exp_root), folder)
    except ValueError as e:
        raise ConfigError("genotype_name", name, str(e)) from None


def finalize(cfg: SearchConfig, num_classes: int, folder: Path, genotype: Genotype,
             result: dict[str, Any]) -> None:
    """Write genotype.json and the cell diagram, count parameters, register the genotype by name."""
    from .visualize import plot_genotype  # matplotlib, only once a projection has finished

    C, layers = eval_size(cfg.data.dataset)
    net = NetworkCIFAR(C, num_classes, layers, True, genotype)
    name = genotype_name(cfg, folder)
    meta = {"experiment": str(folder), "space": cfg.space.space, "dataset": cfg.data.dataset,
            "method": cfg.method_name}
    registered = register_genotype(name, genotype, registry(cfg.run.exp_root), meta)
    write_json(folder / "genotype.json", {"name": name, **genotype_to_dict(genotype)})
    figures = plot_genotype(genotype, folder / "genotype", title=name)
    params = {"init_channels": C, "layers": layers,
              "params_mb": round(count_parameters_mb(net), 4),
              "params_mb_with_aux": round(sum(p.numel() for p in net.parameters()) / 1e6, 4)}
    result.update(genotype_name=name, genotype_file=str(registered), eval_size=params,
                  figures=[str(f) for f in figures])
    log.info("genotype %s registered (%s); %.2f M parameters at C=%d, %d layers; run it with `%s`", name,
             registered, params["params_mb"], C, layers, commands.shell(eval_command(cfg, name)))


EVAL_SCRIPTS = {"cifar100": "eval-c100.sh", "svhn": "eval-svhn.sh"}  # else eval.sh, CIFAR-10's protocol


def eval_command(cfg: SearchConfig, name: str) -> list[str]:
    """The exp_script that trains genotype `name` from scratch on this projection's data, with
    the folders this command was given (--exp_root holds the registered genotype)."""
    args = ["--arch", name, *commands.given(commands.typed(), ("--exp_root", "--data"))]
    if cfg.data.dataset not in EVAL_SCRIPTS and cfg.data.dataset != "cifar10":  # your own images
        args += ["--dataset", cfg.data.dataset, "--image_size", str(cfg.data.image_size)]
        args += ["--no_auxiliary"] if cfg.data.image_size != AUX_IMAGE_SIZE else []
    return commands.exp_script(EVAL_SCRIPTS.get(cfg.data.dataset, "eval.sh"), *args)


SEARCH_SPACE = SearchSpace(name=FOLDER, parser=build_parser, config=config, layout=LAYOUT,
                           build=build_space, plan=build_plan, report=REPORT_HOOKS,
                           check_projection=check_projection)


if __name__ == "__main__":
    raise SystemExit(main(SEARCH_SPACE))
