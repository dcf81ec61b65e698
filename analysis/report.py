"""The report folder of an experiments folder: every table and figure, written whole.

Reads each run's result.json and history.jsonl (supernet searches, projections,
evaluations) and writes under the output folder:

- index.md: every table, figure and the runs not counted; runs.csv: every run found.
- <space>-<dataset>.md/.csv per search space and dataset: per method the number of runs
  and seeds, the genotype(s), NAS-Bench-201 test accuracy (or evaluation test error,
  DARTS space) as mean +- std over runs, the best run, parameters, search and projection
  time, and the paper's number where it reports one.
- <space>-<dataset>/: trajectory.png (benchmark test accuracy of the current genotype per
  search epoch and per projection step, the paper's Figure 4), supernet_acc.png,
  alpha-<method>.png (final softmax(alpha); of a projection, with its decided edges as
  projected), cells/<method>-seed<seed>.png.
- eval-<dataset>.md/.csv and eval-<dataset>/eval_curves.png: every evaluated genotype,
  joined to the projection (or supernet) that selected it.

Only finished runs are counted. Running (its process alive), stopped (result.json says
running but its process is gone: killed), interrupted (by SIGTERM or SIGINT), failed and
unreadable runs (result.json missing, half-written or malformed) are listed as such in every
table they belong to. Standard deviations are population ones
(ddof=0, numpy's default) unless ddof=1; with one run only the value is printed.
"""
from __future__ import annotations

import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from .figures import alpha_figures, cell_figures, eval_figure, supernet_figure, trajectory_figure
from .runs import Run, discover
from .tables import (
    TRANSFER,
    Group,
    build_groups,
    darts_table,
    dataset_title,
    eval_table,
    link_evals,
    markdown_table,
    nb201_table,
    not_counted_table,
    runs_table,
    status_counts,
    write_csv,
)

MARKER = ".darts_pt_report"  # marks an output folder this command may replace
COMMAND = "python -m analysis"


class ReportError(Exception):
    pass


def build_report(root: Path, out: Path, ddof: int = 0, include_fast: bool = False) -> dict[str, Any]:
    """Write the report of the experiments under `root` into the folder `out` (replaced
    whole, atomically, if an earlier report is there). --fast smoke runs are listed apart,
    and left out of the tables unless `include_fast` (then in rows of their own). Returns a
    summary."""
    root, out = root.resolve(), out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ReportError(f"{out} exists and was not written by this command; pass another --out")
    runs = discover(root, skip=[out])
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        summary = _write(root, runs, tmp, ddof, include_fast)
        (tmp / MARKER).write_text(f"written by {COMMAND}; replaced on every run\n")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary["out"] = str(out)
    return summary


def _write(root: Path, runs: list[Run], out: Path, ddof: int, include_fast: bool) -> dict[str, Any]:
    smoke = [r for r in runs if r.fast]
    tabled = runs if include_fast else [r for r in runs if not r.fast]
    groups, orphans = build_groups(tabled)
    evals = [r for r in tabled if r.kind == "eval"]
    link_evals(groups, evals)
    std_note = (f"std over runs with ddof={ddof} ({'population' if ddof == 0 else 'sample'} standard deviation); "
                "with one run only its value is shown. Only finished runs are counted; the others are listed "
                "under 'not counted' and below the table.")
    index = ["# DARTS-PT report\n", f"Experiments: `{root}`\n",
             f"Runs found: {status_counts(runs) or 'none'} (every run: `runs.csv`).\n"]
    studies = sorted(p.parent.name for p in root.glob("studies/*/study.json"))
    if studies:
        index.append(f"Studies, each reported on its own (`{COMMAND} {root}/studies/NAME`): "
                     f"{', '.join(studies)}.\n")
    summary: dict[str, Any] = {"runs": len(runs), "status": status_counts(runs), "groups": {},
                               "figures": [], "fast_left_out": 0 if include_fast else len(smoke)}
    # benchmark-scored spaces (NAS-Bench-201) first
    for key in sorted(groups, key=lambda k: (not groups[k].hooks.benchmark, k)):
        index += _group_section(groups[key], out, ddof, std_note, summary)
    by_dataset: dict[str, list[Run]] = defaultdict(list)
    for ev in evals:
        by_dataset[ev.dataset or "unknown"].append(ev)
    for dataset in sorted(by_dataset):
        index += _eval_section(dataset, by_dataset[dataset], out, ddof, std_note, summary)
    if orphans:
        index += ["## Runs of unknown space or dataset (not counted)\n", not_counted_table(orphans) + "\n"]
    if smoke:
        index += ["## Smoke runs (--fast)\n",
                  ("In the tables above, in rows of their own marked --fast: one batch per epoch, not comparable "
                   "with the paper's numbers.\n" if include_fast else
                   f"Left out of the tables (one batch per epoch, not comparable with the paper's numbers); "
                   f"`{COMMAND} --include_fast` puts them in, in rows of their own.\n"),
                  runs_table(smoke) + "\n"]
    (out / "index.md").write_text("\n".join(index))
    write_csv(out / "runs.csv", [{"run": r.rel, "kind": r.kind, "status": r.status, "fast": r.fast,
                                  "counted": r.counted and (include_fast or not r.fast),
                                  "space": r.space or "", "dataset": r.dataset or "", "method": r.label,
                                  "seed": "" if r.seed is None else r.seed, "detail": r.detail}
                                 for r in sorted(runs, key=lambda r: r.rel)])
    return summary


def _group_section(group: Group, out: Path, ddof: int, std_note: str, summary: dict[str, Any]) -> list[str]:
    """<space>-<dataset>.md/.csv and its figures; returns the Markdown, adds to `summary`."""
    folder = out / group.name
    cells = cell_figures(group, folder)
    if group.hooks.benchmark:
        header, md_rows, csv_rows = nb201_table(group, ddof)
        what = ("NAS-Bench-201 test accuracy (%) of the selected architecture (200-epoch benchmark "
                "entry), mean ± std over finished runs; `best` is the best run on the search dataset. "
                "Params: the benchmark's evaluation network (C=16, N=5). Supernet rows (DARTS, "
                "fix-alpha, SDARTS) select by argmax alpha; +PT rows by perturbation-based projection.")
    else:
        header, md_rows, csv_rows = darts_table(group, ddof, cells)
        what = ("Test error (%) at the last epoch of the evaluation runs (trained from scratch) of the "
                "genotypes each method selected, mean ± std over evaluation runs; `best` is the lowest. "
                "Params: the evaluation network's, without the auxiliary head.")
    figures = [f for f in (trajectory_figure(group, folder / "trajectory.png"),
                           supernet_figure(group, folder / "supernet_acc.png")) if f]
    figures += alpha_figures(group, folder)
    write_csv(out / f"{group.name}.csv", csv_rows)
    text = [f"## {group.title}\n", what + " " + std_note + "\n", markdown_table(header, md_rows) + "\n"]
    if figures:
        text.append("Figures (finished runs only):\n")
        text += [f"![{f.stem}]({f.relative_to(out)})\n" for f in figures]
    if cells:
        text.append("Cell diagrams: " + ", ".join(f"[{Path(p).stem}]({p})" for p in cells.values()) + "\n")
    text += ["### Runs not counted\n", not_counted_table(group.all_runs()) + "\n"]
    (out / f"{group.name}.md").write_text("\n".join(text))
    summary["groups"][group.name] = csv_rows
    summary["figures"] += [str(f) for f in figures] + [str(out / p) for p in cells.values()]
    return text


def _eval_section(dataset: str, evals: list[Run], out: Path, ddof: int, std_note: str,
                  summary: dict[str, Any]) -> list[str]:
    """eval-<dataset>.md/.csv and eval_curves.png; returns the Markdown, adds to `summary`."""
    name = f"eval-{dataset}"
    header, md_rows, csv_rows = eval_table(dataset, evals, ddof)
    write_csv(out / f"{name}.csv", csv_rows)
    transfer = (" Top-1 and top-5 error on the validation set (the original's test set); mult-adds of the "
                "convolutions and classifier for one 224x224 image; the paper's DARTS-PT row in the last column."
                if dataset in TRANSFER else "")
    text = [f"## Evaluations, {dataset_title(dataset)}\n",
            "Genotypes trained from scratch: test error (%) at the last epoch, mean ± std over finished "
            "runs." + transfer + " " + std_note + "\n", markdown_table(header, md_rows) + "\n"]
    fig = eval_figure(dataset, evals, out / name / "eval_curves.png")
    if fig:
        text.append(f"![eval_curves]({fig.relative_to(out)})\n")
        summary["figures"].append(str(fig))
    text += ["### Runs not counted\n", not_counted_table(evals) + "\n"]
    (out / f"{name}.md").write_text("\n".join(text))
    summary["groups"][name] = csv_rows
    return text
