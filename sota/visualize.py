"""Cell diagrams of a genotype in the style of the DARTS paper's figures, with matplotlib only.

Inputs c_{k-2}, c_{k-1} and intermediate nodes 0..3 in a row (sota.spaces.STATE_NAMES, which
the alpha heat-maps' rows use too), op edges as labelled arcs above it, and the output c_{k}
(the concatenation of the nodes) below.

    python -m sota.visualize darts_pt_s5_0 --out plots/
"""
from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from sota.genotypes import Genotype, add_exp_root_flag, is_genotype_literal, registry, resolve_arch
from sota.spaces import STATE_NAMES

_COLORS = {"input": "#c1e1c1", "node": "#add8e6", "output": "#eee8aa"}
_GAP = 2.0      # horizontal distance between consecutive states
_BOX_H = 0.42
_RAD = -0.5     # arc3 curvature: arcs bulge upwards, their height grows with their span
_OUT_Y = -1.5   # the output sits below the row of states, out of the way of the op arcs

Point = tuple[float, float]


def _box(ax: Axes, xy: Point, label: str, kind: str) -> None:
    width = 0.45 if kind == "node" else 0.8
    ax.add_patch(FancyBboxPatch((xy[0] - width / 2, xy[1] - _BOX_H / 2), width, _BOX_H,
                                boxstyle="round,pad=0.04", fc=_COLORS[kind], ec="black", lw=1, zorder=2))
    ax.text(*xy, label, ha="center", va="center", fontsize=11, zorder=3)


def _arrow(ax: Axes, pa: Point, pb: Point, rad: float, label: str | None) -> None:
    ax.add_patch(FancyArrowPatch(pa, pb, arrowstyle="-|>", mutation_scale=12, shrinkA=0, shrinkB=0,
                                 connectionstyle=f"arc3,rad={rad}", color="black" if label else "gray",
                                 lw=1, zorder=1))
    if label:
        # midpoint of the quadratic Bezier that arc3 draws (aspect is equal, so data coords work)
        dx, dy = pb[0] - pa[0], pb[1] - pa[1]
        mx, my = (pa[0] + pb[0]) / 2 + rad * dy / 2, (pa[1] + pb[1]) / 2 - rad * dx / 2
        ax.text(mx, my, label, ha="center", va="center", fontsize=8, zorder=4,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))


def _draw_cell(ax: Axes, edges: list[tuple[str, int]], concat: list[int], title: str) -> None:
    """Arc diagram: states in a row, each op edge an arc from box top to box top whose height
    grows with the number of states it jumps, so labels of different edges land apart."""
    n_states = len(edges) // 2 + 2
    xs = [_GAP * state for state in range(n_states)]
    out_x = sum(xs[i] for i in concat) / len(concat)
    for state, x in enumerate(xs):
        _box(ax, (x, 0.0), STATE_NAMES[state], "input" if state < 2 else "node")
    _box(ax, (out_x, _OUT_Y), "$c_{k}$", "output")
    top, bottom = _BOX_H / 2 + 0.04, -_BOX_H / 2 - 0.04
    for e, (op, j) in enumerate(edges):
        _arrow(ax, (xs[j], top), (xs[e // 2 + 2], top), _RAD, op)
    for state in concat:
        _arrow(ax, (xs[state], bottom), (out_x, _OUT_Y + top), 0.0, None)
    max_span = max(e // 2 + 2 - j for e, (_, j) in enumerate(edges))
    ax.set_xlim(-0.6, xs[-1] + 0.6)
    ax.set_ylim(_OUT_Y - 0.4, top - _RAD * _GAP * max_span / 2 + 0.3)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)


def plot_genotype(genotype: Genotype, path_stem: Path, title: str | None = None) -> list[Path]:
    """Draw the normal and the reduction cell one above the other; write <stem>.png and
    <stem>.pdf and return their paths."""
    path_stem = Path(path_stem)
    fig = Figure(figsize=(10, 7))
    top, bottom = fig.subplots(2, 1)
    _draw_cell(top, list(genotype.normal), list(genotype.normal_concat), "normal cell")
    _draw_cell(bottom, list(genotype.reduce), list(genotype.reduce_concat), "reduction cell")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [path_stem.with_name(path_stem.name + ext) for ext in (".png", ".pdf")]
    for path in paths:
        fig.savefig(path, dpi=150)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Draw the cells of a genotype (catalog name or literal).")
    parser.add_argument("arch", help="catalog name (see `python -m sota.genotypes`) or Genotype(...) literal")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    add_exp_root_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    genotype = resolve_arch(args.arch, registry(args.exp_root))
    is_literal = is_genotype_literal(args.arch)
    name = "genotype" if is_literal else args.arch
    for path in plot_genotype(genotype, args.out / name, title=None if is_literal else name):
        print(path)


if __name__ == "__main__":
    main()
