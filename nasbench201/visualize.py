"""Cell diagram of a NAS-Bench-201 arch string, with matplotlib only (no pyplot)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
from matplotlib.patches import Circle, FancyArrowPatch

from .genotypes import parse_arch
from .model_search import NUM_NODES

_GAP = 2.0    # horizontal distance between consecutive nodes
_RAD = -0.45  # arc3 curvature: arcs bulge upwards, their height grows with their span


def plot_arch(arch: str, path: Path, title: str) -> Path:
    """Nodes 0-3 in a row, each op edge an arc labelled with its op ('none' edges are left
    out, as they carry nothing); written to `path` (PNG), which is returned."""
    nodes = parse_arch(arch)
    fig = Figure(figsize=(8.0, 3.4))
    ax = fig.subplots()
    last = NUM_NODES - 1
    for i in range(NUM_NODES):
        ax.add_patch(Circle((_GAP * i, 0), 0.28, fc="#add8e6" if 0 < i < last else "#c1e1c1", ec="k", zorder=2))
        ax.text(_GAP * i, 0, str(i), ha="center", va="center", fontsize=11, zorder=3)
    for i, node in enumerate(nodes, start=1):
        for op, j in node:
            if op == "none":
                continue
            spread = 0.07 * (i - j)  # arcs of different spans leave and reach a node apart
            pa, pb = (_GAP * j + spread, 0.3), (_GAP * i - spread, 0.3)
            ax.add_patch(FancyArrowPatch(pa, pb, arrowstyle="-|>", mutation_scale=12, shrinkA=0, shrinkB=0,
                                         connectionstyle=f"arc3,rad={_RAD}", lw=1, zorder=1))
            ax.text((pa[0] + pb[0]) / 2, 0.3 - _RAD * (pb[0] - pa[0]) / 2, op, ha="center", va="center",
                    fontsize=8, zorder=4, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
    ax.set_xlim(-0.6, _GAP * last + 0.6)
    ax.set_ylim(-0.6, 0.3 - _RAD * _GAP * last / 2 + 0.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
