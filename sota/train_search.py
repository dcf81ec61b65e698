"""DARTS space (S1-S5): supernet search (DARTS, fix-alpha, SDARTS) and two-stage projection.

    python -m sota.train_search --method darts --save darts-sota --space s5 --seed 2
    python -m sota.train_search --method darts-proj --save darts-proj-sota --space s5 \
        --resume_expid search-darts-sota-s5-2 --resume_epoch 50

The exp_scripts/*-sota.sh scripts wrap these commands.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from common.arch import Architecture
from common.cli import search_parser
from common.experiment import write_json
from common.projection import CRITERIA, Plan, Scorer, random_choice, select_edges, select_op
from common.run import Layout, main
from common.trainer import Space

from .genotypes import Genotype, genotype_to_dict, register_genotype
from .model_eval import NetworkCIFAR, count_parameters_mb
from .model_search import DartsSupernet
from .perturb import PERTURBATIONS
from .spaces import NODE_EDGES, NUM_EDGES, SPACES
from .visualize import plot_genotype

log = logging.getLogger("darts_pt")

KINDS = ("normal", "reduce")
# Evaluation sizes of the exp_scripts: CIFAR-10 at C=36, 20 cells; CIFAR-100 and SVHN at C=16, 8 cells.
EVAL_SIZE = {"cifar10": (36, 20)}
DEFAULT_EVAL_SIZE = (16, 8)


def build_parser() -> argparse.ArgumentParser:
    p = search_parser(__doc__.splitlines()[0], epochs=50, ckpt_interval=10, seed=2)
    g = p.add_argument_group("DARTS space")
    g.add_argument("--space", default="s5", choices=sorted(SPACES))
    g.add_argument("--layers", type=int, default=8, help="cells in the supernet")
    g.add_argument("--perturb_alpha", default="none", choices=list(PERTURBATIONS),
                   help="SDARTS: random (SDARTS-RS) or pgd_linf (SDARTS-ADV)")
    g.add_argument("--epsilon_alpha", type=float, default=0.3,
                   help="SDARTS perturbation radius, ramped from 0.03 during search")
    for kind in ("normal", "reduce", "edge"):
        g.add_argument(f"--proj_crit_{kind}", default="acc", choices=CRITERIA,
                       help=f"projection criterion for {kind} {'topology' if kind == 'edge' else 'cell ops'}")
    g.add_argument("--genotype_name", default="",
                   help="name under which projection registers the genotype for exp_scripts/eval.sh")
    return p


def _search_name(args: argparse.Namespace) -> str:
    name = f"search-{args.save}-{args.space}-{args.seed}"
    return name + (f"-{args.expid_tag}" if args.expid_tag else "")


def _projection_name(args: argparse.Namespace, epoch: int) -> str:
    crits = {args.proj_crit_normal, args.proj_crit_reduce, args.proj_crit_edge}
    crit = crits.pop() if len(crits) == 1 else \
        f"n-{args.proj_crit_normal}_r-{args.proj_crit_reduce}_e-{args.proj_crit_edge}"
    name = f"{args.save}-seed{args.seed}-{crit}-intv{args.proj_intv}-ep{epoch}"
    return name + (f"-{args.log_tag}" if args.log_tag else "")


LAYOUT = Layout(space_dir=lambda a: Path(a.exp_root) / "sota" / a.dataset,
                search_name=_search_name, projection_name=_projection_name)


def build_space(args: argparse.Namespace, num_classes: int, device: torch.device) -> Space:
    model = DartsSupernet(args.init_channels, num_classes, args.layers, args.space).to(device)
    arch = Architecture(model.arch_shapes(), device)
    n_ops = model.arch_shapes()["normal"][1]
    op_names = {k: _column_names(model.edge_ops(k), n_ops) for k in KINDS}
    edge_names = [f"{e}: {j}->{n + 2}" for e, (n, j) in enumerate(_edge_inputs())]
    return Space(name="sota", model=model, arch=arch, op_names=op_names, edge_names=edge_names,
                 genotype=model.genotype, perturb=PERTURBATIONS[args.perturb_alpha],
                 finalize=lambda folder, g, result: finalize(args, num_classes, folder, g, result),
                 extra={"space": args.space})


def _column_names(edge_ops: list[list[str]], n_ops: int) -> list[str]:
    """Heat-map columns: op names when every edge has the same ops (not so in S1)."""
    if all(ops == edge_ops[0] for ops in edge_ops):
        return list(edge_ops[0])
    return [f"op{i}" for i in range(n_ops)]


def _edge_inputs() -> list[tuple[int, int]]:
    """(intermediate node, input state) of each of the 14 edges."""
    return [(n, j) for n in range(4) for j in range(n + 2)]


def build_plan(args: argparse.Namespace, space: Space) -> Plan:
    """Op projection of one edge per cell kind for 14 rounds, then topology on 3 nodes."""
    n_ops = space.arch.proj_weights["normal"].shape[1]
    tune_epochs = args.proj_intv * (NUM_EDGES + len(NODE_EDGES) - 1) + 1
    crit = {"normal": args.proj_crit_normal, "reduce": args.proj_crit_reduce}

    def project(score: Scorer, round_index: int) -> None:
        arch = space.arch
        for salt, kind in enumerate(KINDS):
            if score.epoch < args.proj_intv * NUM_EDGES:
                undecided = arch.undecided_edges(kind)
                if not undecided:
                    continue
                edge = random_choice(args, score.epoch, salt, undecided)
                op = select_op(score, kind, edge, n_ops, crit[kind])
                log.info("projection %d (%s): edge %d -> op %d (%s)", round_index + 1, kind, edge, op,
                         space.model.edge_ops(kind)[edge][op])
                arch.project_op(kind, edge, op)
            else:
                nodes = [n for n in NODE_EDGES if n not in arch.decided_nodes[kind]]
                if not nodes:
                    continue
                node = random_choice(args, score.epoch, salt, nodes)
                kept = select_edges(score, kind, NODE_EDGES[node], args.proj_crit_edge)
                log.info("projection %d (%s): node %d keeps edges %s", round_index + 1, kind, node, kept)
                arch.drop_edges(kind, node, [e for e in NODE_EDGES[node] if e not in kept])

    return Plan(tune_epochs, project)


def finalize(args: argparse.Namespace, num_classes: int, folder: Path, genotype: Genotype,
             result: dict[str, Any]) -> None:
    """Write genotype.json and the cell diagram, count parameters, register the genotype by name."""
    C, layers = EVAL_SIZE.get(args.dataset, DEFAULT_EVAL_SIZE)
    net = NetworkCIFAR(C, num_classes, layers, True, genotype)
    name = args.genotype_name or f"{args.dataset}_{args.resume_expid}_{folder.name}"
    meta = {"experiment": str(folder), "space": args.space, "dataset": args.dataset, "method": args.method}
    registered = register_genotype(name, genotype, Path(args.exp_root) / "sota" / "genotypes", meta)
    write_json(folder / "genotype.json", {"name": name, **genotype_to_dict(genotype)})
    figures = plot_genotype(genotype, folder / "genotype", title=name)
    params = {"init_channels": C, "layers": layers,
              "params_mb": round(count_parameters_mb(net), 4),
              "params_mb_with_aux": round(sum(p.numel() for p in net.parameters()) / 1e6, 4)}
    result.update(genotype_name=name, genotype_file=str(registered), eval_size=params,
                  figures=[str(f) for f in figures])
    log.info("genotype %s registered (%s); %.2f M parameters at C=%d, %d layers; run it with "
             "`bash exp_scripts/eval.sh --arch %s`", name, registered, params["params_mb"], C, layers, name)


if __name__ == "__main__":
    raise SystemExit(main(build_parser(), LAYOUT, build_space, build_plan))
