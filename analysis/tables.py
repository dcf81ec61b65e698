"""Tables: runs grouped by space, dataset and method, mean ± std over runs, the NAS-Bench-201,
DARTS-space and evaluation tables, and their Markdown and CSV forms."""
from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.space import ReportHooks

from . import spaces
from .runs import STATUS_TEXT, STATUSES, Run, is_number

Table = tuple[list[str], list[list[str]], list[dict[str, Any]]]  # header, Markdown rows, CSV rows

METHOD_ORDER = ["DARTS", "DARTS+PT", "DARTS (2nd order)", "DARTS (2nd order)+PT", "fix-alpha", "fix-alpha+PT",
                "SDARTS", "SDARTS+PT", "SDARTS-ADV", "SDARTS-ADV+PT", "GDAS", "GDAS+PT", "DrNAS", "DrNAS+PT",
                "PC-DARTS", "PC-DARTS+PT"]

# NAS-Bench-201 test-accuracy keys, and the one of each search dataset.
BENCH_TEST = {"cifar10_test": "CIFAR-10", "cifar100_test": "CIFAR-100", "imagenet16_test": "ImageNet16-120"}
DATASET_KEY = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16-120": "imagenet16_test",
               "imagenet16": "imagenet16_test"}
DATASET_TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet16-120": "ImageNet16-120",
                 "imagenet": "ImageNet"}
# Evaluated on a dataset that is never searched: a genotype searched elsewhere, transferred.
TRANSFER = ("imagenet",)

# The paper's numbers (SPEC section 7): NAS-Bench-201 test accuracy (100 - error) on the search
# dataset, DARTS-space test error after evaluation (S5 is the DARTS space; SDARTS+PT is
# SDARTS-RS+PT; DARTS 2nd order: the DARTS paper's, Liu et al. 2019, Table 1; GDAS on
# NAS-Bench-201: the NAS-Bench-201 paper's, Dong & Yang 2020, Table 5, test accuracy on each
# dataset; DrNAS: its paper's, Chen et al. 2021, as xiangning-chen/DrNAS README.MD:21-28 and 37-45
# give them); PC-DARTS: yuhuixu1993/PC-DARTS README.md:24 (2.57; the ± is the paper's, Xu et al. 2020),
# and on NAS-Bench-201 DrNAS' README.MD:26, from partial-channel DARTS as its 201-space runs it, the
# setting exp_scripts/pcdarts-201.sh runs (docs/pcdarts.md).
PAPER: dict[tuple[str, str], dict[str, str]] = {
    ("nasbench201", "cifar10"): {"DARTS": "54.30", "DARTS+PT": "88.11", "fix-alpha+PT": "93.80",
                                 "GDAS": "93.61 ± 0.09", "DrNAS": "94.36", "PC-DARTS": "93.41 ± 0.30"},
    ("nasbench201", "cifar100"): {"GDAS": "70.70 ± 0.30", "DrNAS": "73.51", "PC-DARTS": "67.48 ± 0.89"},
    ("nasbench201", "imagenet16-120"): {"GDAS": "41.71 ± 0.98", "DrNAS": "46.34", "PC-DARTS": "41.31 ± 0.22"},
    ("s5", "cifar10"): {"DARTS": "3.00 ± 0.14", "DARTS+PT": "2.61 ± 0.08", "SDARTS+PT": "2.54 ± 0.10",
                        "fix-alpha+PT": "2.87", "DARTS (2nd order)": "2.76 ± 0.09", "DrNAS": "2.46 ± 0.03",
                        "PC-DARTS": "2.57 ± 0.07"},
}
# The paper's evaluation protocol (exp_scripts/eval.sh, eval-c100.sh, eval-svhn.sh): dataset ->
# (init_channels, cells, epochs, batch size).
EVAL_PROTOCOL = {"cifar10": (36, 20, 600, 96), "cifar100": (16, 8, 600, 96), "svhn": (16, 8, 600, 96),
                 "imagenet": (48, 14, 250, 128)}
for _ds, _errs in {"cifar10": ("3.50", "2.79", "2.49", "2.64"), "cifar100": ("24.48", "23.16", "22.03", "20.80"),
                   "svhn": ("2.62", "2.53", "2.42", "2.42")}.items():
    for _k, _e in enumerate(_errs):
        PAPER[(f"s{_k + 1}", _ds)] = {"DARTS+PT": _e}
# ImageNet transfer of the DARTS-space genotype: top-1 / top-5 test error (%), parameters.
PAPER_IMAGENET = {"DARTS+PT": "25.5 / 8.0 (4.6M)"}


# -- statistics and formatting ----------------------------------------------------------------

def mean_std(values: Sequence[float], ddof: int) -> tuple[float | None, float | None]:
    """Mean and std (with `ddof`) of the finite values; std is None with fewer than two."""
    vals = [float(v) for v in values if is_number(v)]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=ddof)) if len(vals) > 1 else None)


def fmt_mean_std(values: Sequence[float], ddof: int, digits: int = 2) -> str:
    """'mean ± std', just the value for one run, '—' for none."""
    mean, std = mean_std(values, ddof)
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.2f} days"


def dataset_title(dataset: str) -> str:
    return DATASET_TITLE.get(dataset.lower(), dataset)


def natural(text: str) -> list:
    """Sort key that orders the numbers in `text` by value (epoch 10 after epoch 9)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if is_number(v)]
    return float(np.mean(vals)) if vals else None


def _cell(text: Any) -> str:
    """Markdown table cell: pipes escaped (NAS-Bench-201 arch strings are full of them)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def status_counts(runs: Iterable[Run]) -> str:
    """'8 finished, 1 running, 1 stopped, 1 failed' (only the statuses present)."""
    counts = Counter(r.status for r in runs)
    return ", ".join(f"{counts[s]} {STATUS_TEXT[s]}" for s in STATUSES if counts[s])


def not_counted_text(runs: Iterable[Run]) -> str:
    counts = Counter(STATUS_TEXT[r.status] for r in runs if not r.counted)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "—"


# -- groups -----------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    setting: str | None
    runs: list[Run] = field(default_factory=list)
    evals: list[Run] = field(default_factory=list)  # DARTS space: evaluation runs joined to this row
    display: str = ""
    tag: str = ""  # runs of other --expid_tag / --log_tag are other experiments: rows of their own

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.counted]

    @property
    def variant(self) -> str:
        """Its setting and tag, as the CSV's `setting` column says them."""
        return ", ".join(t for t in (self.setting, self.tag) if t)

    @property
    def fast(self) -> bool:
        """A row of --fast smoke runs (their setting keeps them in rows of their own)."""
        return bool(self.runs) and all(r.fast for r in self.runs)

    def paper(self, numbers: dict[str, str]) -> str:
        """The paper's number for this row; none for smoke runs."""
        return "" if self.fast else numbers.get(self.label, "")

    @property
    def finished_evals(self) -> list[Run]:
        return [r for r in self.evals if r.counted]


@dataclass
class Group:
    space: str
    dataset: str
    hooks: ReportHooks
    rows: dict[tuple[str, str | None, str], Row] = field(default_factory=dict)  # (label, setting, tag) -> row

    @property
    def name(self) -> str:
        return f"{self.space}-{self.dataset}"

    @property
    def title(self) -> str:
        return f"{self.hooks.title(self.space)}, {dataset_title(self.dataset)}"

    def all_runs(self) -> list[Run]:
        return [r for row in self.rows.values() for r in row.runs]

    def sorted_rows(self) -> list[Row]:
        def key(row: Row) -> tuple:
            order = METHOD_ORDER.index(row.label) if row.label in METHOD_ORDER else len(METHOD_ORDER)
            return order, row.label, natural(row.setting or ""), row.tag
        return sorted(self.rows.values(), key=key)


def build_groups(runs: list[Run]) -> tuple[dict[tuple[str, str], Group], list[Run]]:
    """Search and projection runs by (space, dataset), then by (method, setting). Runs whose
    space (one the reports know) or dataset cannot be told are returned apart."""
    groups: dict[tuple[str, str], Group] = {}
    orphans = []
    for run in runs:
        if run.kind == "eval":
            continue
        hooks = spaces.hooks(run.space)
        if hooks is None or not run.dataset:
            orphans.append(run)
            continue
        group = groups.setdefault((run.space, run.dataset), Group(run.space, run.dataset, hooks))
        label = run.label + selection_variant(run.result) if run.kind == "projection" else run.label
        key = (label, run.setting, run.tag)
        if run.setting is None:  # an unreadable run: the method's only row (of its tag), if it has one
            same = [k for k in group.rows if k[0] == label and k[2] == run.tag]
            if len(same) == 1:
                key = same[0]
        group.rows.setdefault(key, Row(key[0], key[1], tag=key[2])).runs.append(run)
    for group in groups.values():
        settings = Counter(label for label, _ in {(label, setting) for label, setting, _ in group.rows})
        for (label, setting, tag), row in group.rows.items():
            shown = None if settings[label] == 1 else "setting unknown" if setting is None else setting
            row.display = label + (f" ({', '.join(t for t in (shown, tag) if t)})" if shown or tag else "")
    return groups, orphans


def selection_variant(result: dict[str, Any]) -> str:
    """How a projection's selection differs from DARTS-PT's (acc over the whole alpha half), as a
    suffix of its method row, e.g. " (nwot)", " (loss, 4 batches)", " (nwot, pool 10)": such runs
    get rows of their own. A criterion per decision (DARTS space) reads "normal nwot, reduce nwot,
    edge acc"."""
    crit = result.get("proj_crit", "acc")
    parts = [] if crit == "acc" else [", ".join(f"{k} {v}" for k, v in crit.items()) if isinstance(crit, dict)
                                      else str(crit)]
    batches, pool = result.get("proj_batches", 0), result.get("proj_pool", 1)
    if batches:
        parts.append(f"{batches} batch{'es' if batches != 1 else ''}")
    if pool != 1:
        parts.append(f"pool {pool}")
    return f" ({', '.join(parts)})" if parts else ""


def link_evals(groups: dict[tuple[str, str], Group], evals: list[Run]) -> None:
    """Join each evaluation run to the rows whose runs selected its genotype: by name
    (eval "arch" == projection "genotype_name"), else by identical genotype; only runs of
    the same dataset count."""
    by_name: dict[tuple[str, str], list[tuple[Group, Row]]] = defaultdict(list)
    by_geno: dict[tuple[str, str], list[tuple[Group, Row]]] = defaultdict(list)
    for group in groups.values():
        if group.hooks.benchmark:
            continue
        for row in group.rows.values():
            for run in row.finished:
                if run.kind == "projection" and run.result.get("genotype_name"):
                    by_name[(group.dataset, run.result["genotype_name"])].append((group, row))
                canon = group.hooks.canonical_genotype(run.result.get("genotype"))
                if canon:
                    by_geno[(group.dataset, canon)].append((group, row))
    for ev in evals:
        dataset, arch = ev.dataset, ev.result.get("arch")
        if dataset in TRANSFER:  # named after its search run only: its errors join no search dataset's row
            ev.links.update((g.name, row.display) for (_, name), found in by_name.items() if name == arch
                            for g, row in found)
            continue
        targets = by_name.get((dataset, arch), []) if arch else []
        if not targets and ev.result.get("genotype") is not None:
            # an evaluation does not name its space: its genotype in each space's canonical form
            canons = {space.report.canonical_genotype(ev.result["genotype"]) for space in spaces.SPACES.values()}
            targets = [t for canon in canons if canon for t in by_geno.get((dataset, canon), [])]
        for group, row in targets:
            if ev not in row.evals and ev.fast == row.fast:  # smoke evaluations join smoke rows only
                row.evals.append(ev)
                ev.links.add((group.name, row.display))


# -- tables -----------------------------------------------------------------------------------

def nb201_table(group: Group, ddof: int) -> Table:
    head_key = DATASET_KEY.get(group.dataset.lower(), "cifar10_test")
    keys = [head_key] + [k for k in BENCH_TEST if k != head_key]
    paper = PAPER.get((group.space, group.dataset.lower()), {})
    header = ["method", "runs", "seeds", "not counted", "genotype(s)",
              *[f"{BENCH_TEST[k]} test acc (%)" for k in keys[:1]], "best",
              *[f"{BENCH_TEST[k]} test acc (%)" for k in keys[1:]],
              "params (M)", "search time", "projection time"] + (["paper"] if paper else [])
    md, csv_rows = [], []
    for row in group.sorted_rows():
        fin = row.finished
        benches = [r.result.get("benchmark") or {} for r in fin]
        vals = {k: [b[k] for b in benches if is_number(b.get(k))] for k in keys}
        head = vals[head_key]
        genos: dict[str, list[Run]] = defaultdict(list)
        for r in sorted(fin, key=lambda r: (r.seed is None, r.seed or 0)):
            genos[r.result["genotype"]].append(r)
        geno_text = "<br>".join(f"{'seeds' if len(rs) > 1 else 'seed'} {_seeds(rs)}: `{g}`"
                                for g, rs in genos.items()) or "—"
        if fin and len(head) < len(fin):
            geno_text += f"<br>({len(fin) - len(head)} without benchmark entry)"
        params = _mean(group.hooks.params_mb(r.result["genotype"], group.dataset) for r in fin)
        search_t, proj_t = _search_times(row)
        md.append([row.display, str(len(fin)), _seeds(fin), not_counted_text(row.runs), geno_text,
                   fmt_mean_std(head, ddof), f"{max(head):.2f}" if head else "—",
                   *[fmt_mean_std(vals[k], ddof) for k in keys[1:]],
                   f"{params:.3f}" if params is not None else "—", fmt_time(search_t), fmt_time(proj_t)]
                  + ([row.paper(paper)] if paper else []))
        rec: dict[str, Any] = {"space": group.space, "dataset": group.dataset, "method": row.label,
                               "setting": row.variant, "runs": len(fin), "seeds": _seeds(fin, sep=" "),
                               "not_counted": not_counted_text(row.runs), "genotypes": " ; ".join(genos)}
        for k in keys:
            m, s = mean_std(vals[k], ddof)
            rec.update({f"{k}_mean": m, f"{k}_std": s, f"{k}_n": len(vals[k])})
        rec.update(best=max(head) if head else None, params_mb=params, search_time_s=search_t,
                   projection_time_s=proj_t, paper=row.paper(paper))
        csv_rows.append(rec)
    return header, md, csv_rows


def darts_table(group: Group, ddof: int, cells: dict[int, str]) -> Table:
    """`cells`: id(run) -> its cell diagram, linked from the genotype names."""
    paper = PAPER.get((group.space, group.dataset.lower()), {})
    header = ["method", "runs", "seeds", "not counted", "genotype(s)", "eval runs", "test error (%)", "best",
              "params (M)", "search time", "projection time", "eval time"] + (["paper"] if paper else [])
    md, csv_rows = [], []
    for row in group.sorted_rows():
        fin, evals = row.finished, row.finished_evals
        errors = [_eval_error(e) for e in evals]
        names = []
        for r in fin:
            name = r.result.get("genotype_name") or f"seed {r.seed}"
            link = cells.get(id(r))
            names.append(f"[{name}]({link})" if link else name)
        params = _darts_params(group, row)
        search_t, proj_t = _search_times(row)
        eval_t = _mean(e.result.get("train_time_s") for e in evals)
        nc = not_counted_text(row.runs)
        eval_nc = not_counted_text(row.evals)
        if eval_nc != "—":
            nc = (nc + "; " if nc != "—" else "") + f"eval: {eval_nc}"
        # evaluations not trained as the paper's protocol are named, so that nobody compares them with it
        configs = sorted({_eval_setting(e).strip(" ()") for e in evals} - {""})
        n_evals = str(len(evals)) + (f" ({'; '.join(configs)})" if configs else "")
        md.append([row.display, str(len(fin)), _seeds(fin), nc, "<br>".join(names) or "—", n_evals,
                   fmt_mean_std(errors, ddof), f"{min(errors):.2f}" if errors else "—",
                   f"{params:.2f}" if params is not None else "—", fmt_time(search_t), fmt_time(proj_t),
                   fmt_time(eval_t)] + ([row.paper(paper)] if paper else []))
        m, s = mean_std(errors, ddof)
        csv_rows.append({"space": group.space, "dataset": group.dataset, "method": row.label,
                         "setting": row.variant, "runs": len(fin), "seeds": _seeds(fin, sep=" "),
                         "not_counted": nc,
                         "genotypes": " ; ".join(r.result.get("genotype_name") or r.result["genotype"] for r in fin),
                         "eval_runs": len(evals), "eval_setting": " ; ".join(configs),
                         "test_error_mean": m, "test_error_std": s,
                         "best_test_error": min(errors) if errors else None, "params_mb": params,
                         "search_time_s": search_t, "projection_time_s": proj_t, "eval_time_s": eval_t,
                         "paper": row.paper(paper)})
    return header, md, csv_rows


def _darts_params(group: Group, row: Row) -> float | None:
    """Of the evaluation runs, else as the projections recorded it, else counted by the space."""
    params = _mean(e.result.get("params_mb") for e in row.finished_evals)
    if params is None:
        params = _mean((r.result.get("eval_size") or {}).get("params_mb") for r in row.finished)
    if params is None:
        params = _mean(group.hooks.params_mb(r.result["genotype"], group.dataset) for r in row.finished)
    return params


def _search_times(row: Row) -> tuple[float | None, float | None]:
    """Mean search and projection time of the row's finished runs (projection: +PT rows only)."""
    search_t = _mean(r.result.get("search_time_s") for r in row.finished)
    proj_t = _mean(r.result.get("projection_time_s") for r in row.finished) if any(
        r.kind == "projection" for r in row.runs) else None
    return search_t, proj_t


def _eval_setting(run: Run) -> str:
    """' (non-paper sizes: C=.., N cells, N epochs, batch N)' for an evaluation trained at other
    sizes than the paper's protocol for its dataset (what fields a result.json lacks are not
    held against it), ' (--expid_tag TAG)' for a tagged one, ' (--fast)' for a smoke run; '' for
    one trained as the paper did."""
    r = run.result
    marks = []
    paper = EVAL_PROTOCOL.get(str(run.dataset).lower())
    if paper is not None:
        sizes = [(r.get(key), want) for key, want in zip(("init_channels", "layers", "epochs", "batch_size"), paper)]
        if any(got is not None and got != want for got, want in sizes):
            c, layers, epochs, batch = (got for got, _ in sizes)
            marks.append(f"non-paper sizes: C={c}, {layers} cells, {epochs} epochs"
                         + (f", batch {batch}" if batch is not None else ""))
    if run.tag:  # another experiment than the untagged runs of its genotype
        marks.append(run.tag)
    if run.fast:
        marks.append("--fast")
    return f" ({', '.join(marks)})" if marks else ""


def _eval_error(run: Run) -> float:
    err = run.result.get("final_test_error")
    return float(err) if is_number(err) else 100.0 - float(run.result["final_test_acc"])


def _seeds(runs: list[Run], sep: str = ", ") -> str:
    return sep.join(str(r.seed) for r in sorted(runs, key=lambda r: (r.seed is None, r.seed or 0))) or "—"


def eval_table(dataset: str, evals: list[Run], ddof: int) -> Table:
    catalog = {name for space in spaces.SPACES.values() for name in space.report.catalog()}
    by_arch: dict[str, list[Run]] = defaultdict(list)
    for ev in evals:  # one row per genotype and training setting
        by_arch[ev.label + _eval_setting(ev)].append(ev)
    imagenet = dataset in TRANSFER
    header = ["genotype", "selected by", "runs", "seeds", "not counted", "test error (%)", "best",
              "best-epoch test acc (%)", "epochs", "params (M)", "train time"]
    if imagenet:
        header[5:5] = ["top-5 error (%)"]
        header += ["mult-adds (M)", "paper top-1 / top-5 (params)"]
    md, csv_rows = [], []
    for arch in sorted(by_arch, key=natural):
        runs = by_arch[arch]
        fin = [r for r in runs if r.counted]
        errors = [_eval_error(r) for r in fin]
        links = sorted({f"{label} ({g})" for r in runs for g, label in r.links})
        source = ", ".join(links) or ("catalog" if arch in catalog else "not linked to a search run")
        epochs = sorted({r.result.get("epochs") for r in fin if isinstance(r.result.get("epochs"), int)})
        params = _mean(r.result.get("params_mb") for r in fin)
        train_t = _mean(r.result.get("train_time_s") for r in fin)
        best_acc = [r.result.get("best_test_acc") for r in fin]
        md_row = [arch, source, str(len(fin)), _seeds(fin), not_counted_text(runs), fmt_mean_std(errors, ddof),
                  f"{min(errors):.2f}" if errors else "—", fmt_mean_std(best_acc, ddof),
                  "/".join(map(str, epochs)) or "—", f"{params:.2f}" if params is not None else "—",
                  fmt_time(train_t)]
        m, s = mean_std(errors, ddof)
        rec = {"dataset": dataset, "arch": arch, "selected_by": source, "runs": len(fin),
               "seeds": _seeds(fin, sep=" "), "not_counted": not_counted_text(runs),
               "test_error_mean": m, "test_error_std": s, "best_test_error": min(errors) if errors else None,
               "params_mb": params, "train_time_s": train_t}
        if imagenet:
            top5 = [r.result["final_test_error_top5"] for r in fin if is_number(r.result.get("final_test_error_top5"))]
            mult_adds = _mean(r.result.get("mult_adds_m") for r in fin)
            paper = next((PAPER_IMAGENET[label] for r in runs for _, label in sorted(r.links)
                          if label in PAPER_IMAGENET), "")
            md_row[5:5] = [fmt_mean_std(top5, ddof)]
            md_row += [f"{mult_adds:.0f}" if mult_adds is not None else "—", paper or "—"]
            t5m, t5s = mean_std(top5, ddof)
            rec.update(top5_error_mean=t5m, top5_error_std=t5s, mult_adds_m=mult_adds, paper=paper)
        md.append(md_row)
        csv_rows.append(rec)
    return header, md, csv_rows


# -- output -----------------------------------------------------------------------------------

def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def not_counted_table(runs: Iterable[Run]) -> str:
    return runs_table([r for r in runs if not r.counted]) or "All runs finished."


def runs_table(runs: Iterable[Run]) -> str:
    """One line per run: folder, kind, status, method, seed, detail ('' for no runs)."""
    rows = [[f"`{r.rel}`", r.kind, STATUS_TEXT[r.status], r.label, str(r.seed) if r.seed is not None else "?",
             r.detail or "—"] for r in sorted(runs, key=lambda r: r.rel)]
    return markdown_table(["run", "kind", "status", "method", "seed", "detail"], rows) if rows else ""


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    path.write_text(buf.getvalue())
