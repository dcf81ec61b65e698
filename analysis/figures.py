"""Figures of a report: benchmark trajectories (the paper's Figure 4), supernet accuracy,
final softmax(alpha) heat-maps (a projection's with its decided edges as projected), cell
diagrams and evaluation curves. Drawn on matplotlib.figure.Figure (no pyplot), so the
caller's backend and global state are left alone."""
from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .runs import Run, is_number
from .tables import BENCH_TEST, Group, Row, dataset_title

METHOD_COLORS = {"DARTS": "#1f77b4", "DARTS+PT": "#d62728", "fix-alpha": "#2ca02c", "fix-alpha+PT": "#ff7f0e",
                 "SDARTS": "#9467bd", "SDARTS+PT": "#8c564b", "DARTS (2nd order)": "#aec7e8",
                 "DARTS (2nd order)+PT": "#ff9896"}
_PALETTE = ["#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]


def _figure(rows: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * cols, height * rows))
    return fig, np.atleast_2d(fig.subplots(rows, cols, squeeze=False))


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _suptitle(fig: Figure, text: str, fontsize: float) -> None:
    """The figure's title, its lines wrapped at words to fit the figure's width (a DejaVu Sans
    character is about 0.6 of the font size wide)."""
    chars = max(int(fig.get_figwidth() * 72 * 0.95 / (0.6 * fontsize)), 20)
    lines = [wrapped for line in text.split("\n") for wrapped in textwrap.wrap(line, chars) or [""]]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text.replace("+PT", "-PT")).strip("-") or "x"


def _curve(ax: Axes, series: list[dict[float, float]], label: str, color: str, marker: str = "o") -> bool:
    """Mean line over runs with a +-std band; x values any run has. False if nothing to draw."""
    xs = sorted({x for s in series for x in s})
    if not xs:
        return False
    means = np.array([np.mean([s[x] for s in series if x in s]) for x in xs])
    stds = np.array([np.std([s[x] for s in series if x in s]) for x in xs])
    n = len(series)
    if len(xs) == 1:  # one point (a projection at one supernet epoch): mean with an error bar
        ax.errorbar(xs, means, yerr=stds if n > 1 else None, fmt=marker or "o", ms=7, capsize=4, color=color,
                    label=f"{label} (n={n})")
        return True
    ax.plot(xs, means, marker=marker, ms=3, color=color, label=f"{label} (n={n})")
    if n > 1:
        ax.fill_between(xs, means - stds, means + stds, color=color, alpha=0.2, lw=0)
    return True


def _colors(labels: Sequence[str]) -> dict[str, str]:
    """The same colour for a method in every figure; other labels (settings, archs) in turn."""
    colors, k = {}, 0
    for label in labels:
        if label in METHOD_COLORS and METHOD_COLORS[label] not in colors.values():
            colors[label] = METHOD_COLORS[label]
        else:
            colors[label] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return colors


def _style(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines or ax.containers:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes, color="gray")


def _epoch_series(runs: list[Run], value: Callable[[dict[str, Any], str], Any], key: str) -> list[dict[float, float]]:
    """Per run: epoch (1-based) -> value(history row, key), where both are numbers."""
    return [{h["epoch"] + 1: float(v) for h in r.history if is_number(h.get("epoch")) and is_number(v := value(h, key))}
            for r in runs]


# -- search -----------------------------------------------------------------------------------

def trajectory_figure(group: Group, path: Path) -> Path | None:
    """Benchmark test accuracy of the current genotype per search epoch (supernet argmax; a
    projection at its supernet epoch) and per projection step; mean and band over runs."""
    rows = group.sorted_rows()
    keys = [k for k in BENCH_TEST if any(_bench(rec, k) is not None for row in rows for r in row.finished
                                         for rec in [r.result, *r.history])]
    if not keys:
        return None
    colors = _colors([r.display for r in rows])
    fig, axes = _figure(2, len(keys), 4.6, 3.4)
    for c, key in enumerate(keys):
        top, bottom = axes[0, c], axes[1, c]
        for row in rows:
            fin = row.finished
            if not fin:
                continue
            if all(r.kind == "search" for r in fin):
                _curve(top, _epoch_series(fin, _bench, key), row.display, colors[row.display])
            else:
                at = [{r.result.get("supernet_epoch"): _bench(r.result, key)} for r in fin
                      if is_number(r.result.get("supernet_epoch")) and _bench(r.result, key) is not None]
                _curve(top, at, row.display, colors[row.display], marker="*")
                _curve(bottom, [_projection_steps(r, key) for r in fin], row.display, colors[row.display])
        top.set_title(f"{BENCH_TEST[key]}: per search epoch", fontsize=9)
        _style(top, "search epoch", "benchmark test acc (%)")
        bottom.set_title(f"{BENCH_TEST[key]}: per projection step", fontsize=9)
        _style(bottom, "projections done (0 = supernet before projection)", "benchmark test acc (%)")
    _suptitle(fig, f"{group.title}: benchmark test accuracy of the selected architecture, mean ± std over finished "
                   f"runs\n(★: projection (+PT) of the supernet of that epoch)", 10)
    return _save(fig, path)


def _bench(record: dict[str, Any], key: str) -> float | None:
    bench = record.get("benchmark")
    v = bench.get(key) if isinstance(bench, dict) else None
    return float(v) if is_number(v) else None


def _projection_steps(run: Run, key: str) -> dict[float, float]:
    """Projections done -> benchmark accuracy of the genotype after the last tuning epoch with
    that many projections; 0 is the supernet's own genotype at the projected checkpoint."""
    steps: dict[float, float] = {}
    parent, epoch = run.parent, run.result.get("supernet_epoch")
    if parent is not None and is_number(epoch):
        start = [h for h in parent.history if h.get("epoch") == epoch - 1]
        v = _bench(start[-1], key) if start else None
        if v is None and parent.counted and parent.result.get("epochs") == epoch:
            v = _bench(parent.result, key)
        if v is not None:
            steps[0] = v
    for h in run.history:
        v = _bench(h, key)
        if v is not None and is_number(h.get("projections")):
            steps[h["projections"]] = v
    return steps


def supernet_figure(group: Group, path: Path) -> Path | None:
    rows = [row for row in group.sorted_rows() if row.finished and all(r.kind == "search" for r in row.finished)]
    if not any(r.history for row in rows for r in row.finished):
        return None
    colors = _colors([r.display for r in rows])
    metrics = [("train_acc", "train"), ("valid_acc", "valid (alpha half)")]
    fig, axes = _figure(1, 2, 4.6, 3.4)
    for ax, (key, title) in zip(axes[0], metrics):
        for row in rows:
            _curve(ax, _epoch_series(row.finished, dict.get, key), row.display, colors[row.display])
        ax.set_title(f"supernet {title} accuracy", fontsize=9)
        _style(ax, "search epoch", "accuracy (%)")
    _suptitle(fig, f"{group.title}: supernet accuracy (mean ± std over finished runs)", 10)
    return _save(fig, path)


# -- architecture -----------------------------------------------------------------------------

def _labels(group: Group, kind: str, shape: tuple[int, int]) -> tuple[list[str], list[str]]:
    """Heat-map row and column labels: the space's where they fit the matrix, else generic."""
    rows, cols = [f"edge {e}" for e in range(shape[0])], [f"op{i}" for i in range(shape[1])]
    told = group.hooks.alpha_labels(group.space, kind)
    if told is not None:
        rows = told[0] if len(told[0]) == shape[0] else rows
        cols = told[1] if len(told[1]) == shape[1] else cols
    return rows, cols


def _final_weights(row: Row, key: str) -> dict[str, list[np.ndarray]]:
    """Cell kind -> the last history matrices under `key` (softmax, projected) of each finished
    run of the row (finite matrices)."""
    mats: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in row.finished:
        last = next((h for h in reversed(r.history) if isinstance(h.get(key), dict)), None)
        for kind, m in (last or {}).get(key, {}).items():
            try:
                arr = np.asarray(m, dtype=float)
            except (TypeError, ValueError):
                continue
            if arr.ndim == 2 and np.isfinite(arr).all():
                mats[kind].append(arr)
    return mats


def alpha_figure(group: Group, row: Row, path: Path) -> Path | None:
    """Final softmax(alpha) per cell kind, averaged over the row's finished runs; of a
    projection (+PT), the weights its supernet mixes with: the projected edges as decided
    (one-hot; zeros for edges topology projection dropped), as its cell diagram shows them."""
    mats = _final_weights(row, "projected")
    what = "final weights: softmax(alpha), projected edges as decided (one-hot, dropped ones 0)"
    if not mats:  # a supernet, or a projection from before its history held the projected weights
        mats = _final_weights(row, "softmax")
        what = "final softmax(alpha)" + (" (not projected)" if any(r.kind == "projection" for r in row.finished)
                                          else "")
    kinds = [k for k, ms in mats.items() if ms and all(m.shape == ms[0].shape for m in ms)]
    if not kinds:
        return None
    shapes = [mats[k][0].shape for k in kinds]
    fig, axes = _figure(1, len(kinds), 1.2 + 0.95 * max(s[1] for s in shapes), 1.2 + 0.3 * max(s[0] for s in shapes))
    for ax, kind in zip(axes[0], kinds):
        m = np.mean(mats[kind], axis=0)
        rlab, clab = _labels(group, kind, m.shape)
        lo, hi = float(m.min()), float(m.max())
        im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6), aspect="auto")
        ax.set_xticks(range(len(clab)), clab, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rlab)), rlab, fontsize=7)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.{3 if hi - lo > 0.01 else 4}f}", ha="center", va="center", fontsize=6,
                        color="w" if m[i, j] < lo + 0.6 * (hi - lo) else "k")
        fig.colorbar(im, ax=ax)
        ax.set_title(kind, fontsize=9)
    n = len(mats[kinds[0]])
    _suptitle(fig, f"{group.title}, {row.display}: {what}" + (f", mean of {n} runs" if n > 1 else ""), 9)
    return _save(fig, path)


def alpha_figures(group: Group, folder: Path) -> list[Path]:
    """alpha-<method>.png per row with a final softmax(alpha)."""
    paths = (alpha_figure(group, row, folder / f"alpha-{_slug(row.display)}.png") for row in group.sorted_rows())
    return [p for p in paths if p]


def cell_figures(group: Group, folder: Path) -> dict[int, str]:
    """A cell diagram per finished run, drawn by its space; id(run) -> path relative to the
    report folder."""
    links: dict[int, str] = {}
    used: set[str] = set()
    for row in group.sorted_rows():
        for run in row.finished:
            stem = f"{_slug(row.display)}-seed{run.seed}"
            k = 2
            while stem in used:
                stem, k = f"{_slug(row.display)}-seed{run.seed}-{k}", k + 1
            used.add(stem)
            try:
                png = group.hooks.draw_cell(run.result, folder / "cells" / stem, row.display, run.seed)
            except Exception as e:  # noqa: BLE001 - a bad genotype costs its diagram, not the report
                run.detail = (run.detail + "; " if run.detail else "") + f"no cell diagram ({e})"
                continue
            links[id(run)] = str(png.relative_to(folder.parent))
    return links


# -- evaluation -------------------------------------------------------------------------------

def eval_figure(dataset: str, evals: list[Run], path: Path) -> Path | None:
    by_arch: dict[str, list[Run]] = defaultdict(list)
    for ev in evals:
        if ev.counted and ev.history:
            by_arch[str(ev.result.get("arch"))].append(ev)
    if not by_arch:
        return None
    colors = _colors(sorted(by_arch))
    fig, axes = _figure(1, 1, 6.0, 3.6)
    ax = axes[0, 0]
    for arch in sorted(by_arch):
        _curve(ax, _epoch_series(by_arch[arch], dict.get, "test_acc"), arch, colors[arch], marker="")
    _style(ax, "epoch", "test accuracy (%)")
    ax.set_title(f"{dataset_title(dataset)}: evaluation (mean ± std over finished runs)", fontsize=9)
    return _save(fig, path)
