"""Tables and figures of a study: every run under experiments/, compared as the paper does.

    python -m common.report [EXPERIMENTS_DIR] [--out DIR]

Reads each run's result.json and history.jsonl (supernet searches, projections,
evaluations) and writes under DIR (default EXPERIMENTS_DIR/report):

- index.md: every table, figure and the runs not counted; runs.csv: every run found.
- <space>-<dataset>.md/.csv per search space and dataset: per method the number of runs
  and seeds, the genotype(s), NAS-Bench-201 test accuracy (or evaluation test error,
  DARTS space) as mean +- std over runs, the best run, parameters, search and projection
  time, and the paper's number where it reports one.
- <space>-<dataset>/: trajectory.png (benchmark test accuracy of the current genotype per
  search epoch and per projection step, the paper's Figure 4), supernet_acc.png,
  alpha-<method>.png (final softmax(alpha)), cells/<method>-seed<seed>.png.
- eval-<dataset>.md/.csv and eval-<dataset>/eval_curves.png: every evaluated genotype,
  joined to the projection (or supernet) that selected it.

Only finished runs are counted. Unfinished ("running" in result.json: still going or
killed), failed and unreadable runs (result.json missing, half-written or malformed) are
listed as such in every table they belong to. Standard deviations are population ones
(ddof=0, numpy's default) unless --ddof 1; with one run only the value is printed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = ".darts_pt_report"  # marks an output folder this command may replace

FINISHED, RUNNING, FAILED, UNREADABLE = "finished", "running", "failed", "unreadable"
STATUS_TEXT = {RUNNING: "unfinished", FAILED: "failed", UNREADABLE: "unreadable"}
RUN_FILES = ("result.json", "history.jsonl", "log.txt")

BASE_LABELS = {"darts": "DARTS", "blank": "fix-alpha", "sdarts": "SDARTS", "sdarts-adv": "SDARTS-ADV"}
METHOD_ORDER = ["DARTS", "DARTS+PT", "fix-alpha", "fix-alpha+PT", "SDARTS", "SDARTS+PT", "SDARTS-ADV",
                "SDARTS-ADV+PT"]

NB201 = "nasbench201"
# NAS-Bench-201 test-accuracy keys, and the one of each search dataset.
BENCH_TEST = {"cifar10_test": "CIFAR-10", "cifar100_test": "CIFAR-100", "imagenet16_test": "ImageNet16-120"}
DATASET_KEY = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16-120": "imagenet16_test",
               "imagenet16": "imagenet16_test"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120, "imagenet16": 120, "svhn": 10}
DATASET_TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "imagenet16-120": "ImageNet16-120"}

# The paper's numbers (SPEC section 7): NAS-Bench-201 CIFAR-10 test accuracy (100 - error),
# DARTS-space test error after evaluation (S5 is the DARTS space; SDARTS+PT is SDARTS-RS+PT).
PAPER: dict[tuple[str, str], dict[str, str]] = {
    (NB201, "cifar10"): {"DARTS": "54.30", "DARTS+PT": "88.11", "fix-alpha+PT": "93.80"},
    ("s5", "cifar10"): {"DARTS": "3.00 ± 0.14", "DARTS+PT": "2.61 ± 0.08", "SDARTS+PT": "2.54 ± 0.10",
                        "fix-alpha+PT": "2.87"},
}
for _ds, _errs in {"cifar10": ("3.50", "2.79", "2.49", "2.64"), "cifar100": ("24.48", "23.16", "22.03", "20.80"),
                   "svhn": ("2.62", "2.53", "2.42", "2.42")}.items():
    for _k, _e in enumerate(_errs):
        PAPER[(f"s{_k + 1}", _ds)] = {"DARTS+PT": _e}


# -- runs -------------------------------------------------------------------------------------

@dataclass
class Run:
    path: Path
    rel: str                      # path relative to the experiments folder
    kind: str                     # search | projection | eval
    status: str                   # finished | running | failed | unreadable
    result: dict[str, Any]
    history: list[dict[str, Any]]
    detail: str = ""              # why it is not counted, or what is odd about it
    space: str | None = None
    dataset: str | None = None
    method: str | None = None     # as in result.json: darts, blank-proj, ...
    seed: int | None = None
    parent: "Run | None" = None   # a projection's supernet run
    links: set = field(default_factory=set)  # eval runs: keys of the rows they are joined to

    @property
    def counted(self) -> bool:
        return self.status == FINISHED

    @property
    def label(self) -> str:
        if self.kind == "eval":
            return str(self.result.get("arch") or f"? ({self.path.name})")
        return method_label(self.method)

    @property
    def setting(self) -> str | None:
        if self.kind == "search" and isinstance(self.result.get("epochs"), int):
            return f"{self.result['epochs']} epochs"
        if self.kind == "projection" and isinstance(self.result.get("supernet_epoch"), int):
            return f"supernet epoch {self.result['supernet_epoch']}"
        return None


def method_label(method: str | None) -> str:
    if not method:
        return "unknown"
    base = method.removesuffix("-proj")
    label = BASE_LABELS.get(base, base)
    return label + "+PT" if method.endswith("-proj") else label


def discover(root: Path, skip: Sequence[Path] = ()) -> list[Run]:
    """Every run folder under `root` (one holding result.json, history.jsonl or log.txt),
    skipping folders moved aside by --overwrite (*.old-*), hidden ones, the genotype
    registry, `skip` (the report's own folder) and studies below `root` (each is reported
    on its own: `python -m common.report <study folder>`)."""
    skip_set = {p.resolve() for p in skip}
    runs = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _skipped(here / d, skip_set))
        if here != root and any(f in filenames for f in RUN_FILES):
            runs.append(read_run(here, root))
    by_path = {r.path: r for r in runs}
    for r in runs:
        if r.kind == "projection":
            r.parent = by_path.get(r.path.parent)
    return runs


def _skipped(path: Path, skip: set[Path]) -> bool:
    name = path.name
    return (".old-" in name or name.startswith(".") or path.resolve() in skip
            or (name == "genotypes" and path.parent.name == "sota") or (path / "study.json").is_file())


def read_run(folder: Path, root: Path) -> Run:
    rel = str(folder.relative_to(root))
    history, bad_lines = read_history(folder / "history.jsonl")
    try:
        result = json.loads((folder / "result.json").read_text())
        if not isinstance(result, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        run = Run(folder, rel, _kind_from_path(folder), UNREADABLE, {}, history, "no result.json")
    except (OSError, ValueError) as e:
        run = Run(folder, rel, _kind_from_path(folder), UNREADABLE, {}, history,
                  f"result.json unreadable ({type(e).__name__}: {str(e)[:80]})")
    else:
        run = Run(folder, rel, _kind(folder, result), str(result.get("status", UNREADABLE)), result, history)
        if run.status not in (FINISHED, RUNNING, FAILED):
            run.detail = f"unknown status {result.get('status')!r}"
            run.status = UNREADABLE
    _fill_identity(run)
    if run.status == FINISHED:
        problem = _finished_problem(run)
        if problem:
            run.status, run.detail = UNREADABLE, f"finished, but {problem}"
    elif run.status == FAILED:
        run.detail = str(run.result.get("error", "no error message"))[:200]
    elif run.status == RUNNING:
        run.detail = _progress(run)
    run.detail = run.detail.replace(str(root) + os.sep, "")  # paths in error messages, as in the tables
    if bad_lines:
        run.detail = (run.detail + "; " if run.detail else "") + f"{bad_lines} malformed history line(s) skipped"
    return run


def read_history(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows of a history.jsonl; a half-written or malformed line is skipped and counted."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return [], 0
    rows, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def _kind(folder: Path, result: dict[str, Any]) -> str:
    if result.get("kind") == "eval":
        return "eval"
    method = result.get("method")
    if isinstance(method, str):
        return "projection" if method.endswith("-proj") else "search"
    return _kind_from_path(folder)


def _kind_from_path(folder: Path) -> str:
    if folder.parent.name == "eval" or folder.name.startswith("eval-"):
        return "eval"
    if folder.parent.name.startswith("search-"):
        return "projection"
    return "search"


def _fill_identity(run: Run) -> None:
    """Space, dataset, method and seed: from result.json, else guessed from the path."""
    r = run.result
    run.space = r.get("space") if isinstance(r.get("space"), str) else None
    run.dataset = r.get("dataset") if isinstance(r.get("dataset"), str) else None
    run.method = r.get("method") if isinstance(r.get("method"), str) else None
    run.seed = r.get("seed") if isinstance(r.get("seed"), int) else None
    parts = run.path.parts
    if run.kind == "eval":
        if run.dataset is None and run.path.parent.name == "eval":
            run.dataset = run.path.parent.parent.name
        return
    search_dir = run.path if run.kind == "search" else run.path.parent
    # search-{save}[-{space}]-{seed}[-{dataset}][-{tag}]; the exp_scripts' saves end in -201 / -sota
    m = (re.match(r"^search-(.+?-(?:201|sota))-(s[1-5]-)?(\d+)(?:-(.+))?$", search_dir.name)
         or re.match(r"^search-(.+?)-(s[1-5]-)?(\d+)(?:-(.+))?$", search_dir.name))
    if NB201 in parts:
        run.space = run.space or NB201
        if run.dataset is None:
            extra = (m.group(4) or "") if m else ""
            run.dataset = next((d for d in ("cifar100", "ImageNet16-120", "imagenet16-120")
                                if extra.startswith(d)), "cifar10")
    elif "sota" in parts:
        if run.space is None and m and m.group(2):
            run.space = m.group(2)[:-1]
        if run.dataset is None and search_dir.parent.parent.name == "sota":
            run.dataset = search_dir.parent.name
    if run.method is None:
        name = run.path.name if run.kind == "projection" else (m.group(1) if m else "")
        base = next((b for b in ("sdarts-adv", "sdarts", "darts", "blank") if name.startswith(b)), None)
        if base:
            run.method = base + ("-proj" if run.kind == "projection" else "")
    elif r.get("perturb_alpha") == "pgd_linf" and run.method.startswith("sdarts"):
        run.method = run.method.replace("sdarts", "sdarts-adv", 1)  # SDARTS-ADV, apart from SDARTS(-RS)
    if run.seed is None:
        if run.kind == "projection":
            seed = re.search(r"-seed(\d+)(?:-|$)", run.path.name)
            run.seed = int(seed.group(1)) if seed else None
        elif m:
            run.seed = int(m.group(3))


def _finished_problem(run: Run) -> str:
    r = run.result
    if run.kind == "eval":
        err = r.get("final_test_error")
        if not _is_number(err) and _is_number(r.get("final_test_acc")):
            err = 100.0 - r["final_test_acc"]
        if not _is_number(err):
            return "result.json has no final_test_error"
        return ""
    if not isinstance(r.get("genotype"), str) or not r["genotype"]:
        return "result.json has no genotype"
    bench = r.get("benchmark")
    if bench is not None and not (isinstance(bench, dict) and all(_is_number(v) for v in bench.values())):
        return "its benchmark entry is malformed"
    return ""


def _progress(run: Run) -> str:
    r = run.result
    if run.kind == "projection":
        done = max((row.get("projections", 0) for row in run.history if _is_number(row.get("projections"))),
                   default=0)
        return f"status running: {len(run.history)} tuning epoch(s), {done} projection(s) logged"
    total = r.get("epochs")
    return f"status running: {len(run.history)}/{total if total is not None else '?'} epochs logged"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- statistics and formatting ----------------------------------------------------------------

def mean_std(values: Sequence[float], ddof: int) -> tuple[float | None, float | None]:
    """Mean and std (with `ddof`) of the finite values; std is None with fewer than two."""
    vals = [float(v) for v in values if _is_number(v)]
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


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if _is_number(v)]
    return float(np.mean(vals)) if vals else None


def _cell(text: Any) -> str:
    """Markdown table cell: pipes escaped (NAS-Bench-201 arch strings are full of them)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text.replace("+PT", "-PT")).strip("-") or "x"


def status_counts(runs: Iterable[Run]) -> str:
    """'8 finished, 1 unfinished, 1 failed, 1 unreadable' (only the statuses present)."""
    counts = Counter(r.status for r in runs)
    return ", ".join(f"{counts[s]} {STATUS_TEXT.get(s, s)}" for s in (FINISHED, RUNNING, FAILED, UNREADABLE)
                     if counts[s])


def not_counted_text(runs: Iterable[Run]) -> str:
    counts = Counter(STATUS_TEXT[r.status] for r in runs if not r.counted)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "—"


# -- NAS-Bench-201 parameter count ------------------------------------------------------------

def nb201_params_mb(arch: str, num_classes: int = 10, C: int = 16, N: int = 5) -> float | None:
    """Parameters (millions) of the NAS-Bench-201 evaluation network of `arch` (C=16, N=5):
    stem, 3 stages of N cells with ResNet reduction blocks between them, classifier. Equals
    the benchmark's own count (1.531546 M for all-nor_conv_3x3 on CIFAR-10)."""
    from nasbench201.genotypes import parse_arch

    try:
        ops = [op for node in parse_arch(arch) for op, _ in node]
    except (AttributeError, ValueError):
        return None
    conv = {"nor_conv_3x3": 9, "nor_conv_1x1": 1}

    def cell(c: int) -> int:  # ReLU-Conv-BN per conv edge; pooling, skip and none are free
        return sum(conv[op] * c * c + 2 * c for op in ops if op in conv)

    def resblock(cin: int, cout: int) -> int:  # two ReLU-Conv-BN 3x3 and a 1x1 shortcut
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + cin * cout

    total = 27 * C + 2 * C                      # stem conv + BN
    total += N * cell(C) + resblock(C, 2 * C) + N * cell(2 * C) + resblock(2 * C, 4 * C) + N * cell(4 * C)
    total += 2 * 4 * C + 4 * C * num_classes + num_classes  # last BN, classifier
    return total / 1e6


# -- tables -----------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    setting: str | None
    runs: list[Run] = field(default_factory=list)
    evals: list[Run] = field(default_factory=list)  # DARTS space: evaluation runs joined to this row
    display: str = ""

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.counted]

    @property
    def finished_evals(self) -> list[Run]:
        return [r for r in self.evals if r.counted]


@dataclass
class Group:
    space: str
    dataset: str
    rows: dict[tuple[str, str | None], Row] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.space}-{self.dataset}"

    @property
    def title(self) -> str:
        space = "NAS-Bench-201" if self.space == NB201 else f"DARTS space {self.space.upper()}"
        return f"{space}, {DATASET_TITLE.get(self.dataset.lower(), self.dataset)}"

    @property
    def is_nb201(self) -> bool:
        return self.space == NB201

    def all_runs(self) -> list[Run]:
        return [r for row in self.rows.values() for r in row.runs]

    def sorted_rows(self) -> list[Row]:
        def key(row: Row):
            order = METHOD_ORDER.index(row.label) if row.label in METHOD_ORDER else len(METHOD_ORDER)
            return order, row.label, _natural(row.setting or "")
        return sorted(self.rows.values(), key=key)


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def build_groups(runs: list[Run]) -> tuple[dict[tuple[str, str], Group], list[Run]]:
    """Search and projection runs by (space, dataset), then by (method, setting). Runs whose
    space or dataset cannot be told are returned apart."""
    groups: dict[tuple[str, str], Group] = {}
    orphans = []
    for run in runs:
        if run.kind == "eval":
            continue
        if not run.space or not run.dataset:
            orphans.append(run)
            continue
        group = groups.setdefault((run.space, run.dataset), Group(run.space, run.dataset))
        key = (run.label, run.setting)
        if run.setting is None:  # an unreadable run: the method's only row, if it has one
            same = [k for k in group.rows if k[0] == run.label]
            if len(same) == 1:
                key = same[0]
        group.rows.setdefault(key, Row(*key)).runs.append(run)
    for group in groups.values():
        settings = Counter(label for label, _ in group.rows)
        for (label, setting), row in group.rows.items():
            row.display = label if settings[label] == 1 or setting is None else f"{label} ({setting})"
            if setting is None and settings[label] > 1:
                row.display = f"{label} (setting unknown)"
    return groups, orphans


def canonical_genotype(g: Any) -> str | None:
    """A DARTS genotype (repr string or dict) as a comparable JSON string, None if not one."""
    try:
        from sota.genotypes import genotype_from_dict, genotype_from_string, genotype_to_dict

        parsed = genotype_from_string(g) if isinstance(g, str) else genotype_from_dict(g)
        return json.dumps(genotype_to_dict(parsed), sort_keys=True)
    except Exception:  # noqa: BLE001 - anything unparsable simply does not join
        return None


def link_evals(groups: dict[tuple[str, str], Group], evals: list[Run]) -> None:
    """Join each evaluation run to the rows whose runs selected its genotype: by name
    (eval "arch" == projection "genotype_name"), else by identical genotype; only runs of
    the same dataset count."""
    by_name: dict[tuple[str, str], list[tuple[Group, Row]]] = defaultdict(list)
    by_geno: dict[tuple[str, str], list[tuple[Group, Row]]] = defaultdict(list)
    for group in groups.values():
        if group.is_nb201:
            continue
        for row in group.rows.values():
            for run in row.finished:
                if run.kind == "projection" and run.result.get("genotype_name"):
                    by_name[(group.dataset, run.result["genotype_name"])].append((group, row))
                canon = canonical_genotype(run.result.get("genotype"))
                if canon:
                    by_geno[(group.dataset, canon)].append((group, row))
    for ev in evals:
        dataset, arch = ev.dataset, ev.result.get("arch")
        targets = by_name.get((dataset, arch), []) if arch else []
        if not targets and ev.result.get("genotype") is not None:
            canon = canonical_genotype(ev.result["genotype"])
            targets = by_geno.get((dataset, canon), []) if canon else []
        for group, row in targets:
            if ev not in row.evals:
                row.evals.append(ev)
                ev.links.add((group.name, row.display))


def nb201_table(group: Group, ddof: int) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
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
        vals = {k: [b[k] for b in benches if _is_number(b.get(k))] for k in keys}
        head = vals[head_key]
        genos: dict[str, list[Run]] = defaultdict(list)
        for r in sorted(fin, key=lambda r: (r.seed is None, r.seed or 0)):
            genos[r.result["genotype"]].append(r)
        geno_text = "<br>".join(f"{'seeds' if len(rs) > 1 else 'seed'} {_seeds(rs)}: `{g}`"
                                for g, rs in genos.items()) or "—"
        if fin and len(head) < len(fin):
            geno_text += f"<br>({len(fin) - len(head)} without benchmark entry)"
        n_cls = NUM_CLASSES.get(group.dataset.lower(), 10)
        params = _mean(nb201_params_mb(r.result["genotype"], n_cls) for r in fin)
        search_t = _mean(r.result.get("search_time_s") for r in fin)
        proj_t = _mean(r.result.get("projection_time_s") for r in fin) if any(
            r.kind == "projection" for r in row.runs) else None
        md.append([row.display, str(len(fin)), _seeds(fin), not_counted_text(row.runs), geno_text,
                   fmt_mean_std(head, ddof), f"{max(head):.2f}" if head else "—",
                   *[fmt_mean_std(vals[k], ddof) for k in keys[1:]],
                   f"{params:.3f}" if params is not None else "—", fmt_time(search_t), fmt_time(proj_t)]
                  + ([paper.get(row.label, "")] if paper else []))
        rec: dict[str, Any] = {"space": group.space, "dataset": group.dataset, "method": row.label,
                               "setting": row.setting or "", "runs": len(fin), "seeds": _seeds(fin, sep=" "),
                               "not_counted": not_counted_text(row.runs), "genotypes": " ; ".join(genos)}
        for k in keys:
            m, s = mean_std(vals[k], ddof)
            rec.update({f"{k}_mean": m, f"{k}_std": s, f"{k}_n": len(vals[k])})
        rec.update(best=max(head) if head else None, params_mb=params, search_time_s=search_t,
                   projection_time_s=proj_t, paper=paper.get(row.label, ""))
        csv_rows.append(rec)
    return header, md, csv_rows


def darts_table(group: Group, ddof: int, cells: dict[int, str]) -> tuple[list[str], list[list[str]],
                                                                          list[dict[str, Any]]]:
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
        params = _mean(e.result.get("params_mb") for e in evals)
        if params is None:
            params = _mean((r.result.get("eval_size") or {}).get("params_mb") for r in fin)
        search_t = _mean(r.result.get("search_time_s") for r in fin)
        proj_t = _mean(r.result.get("projection_time_s") for r in fin) if any(
            r.kind == "projection" for r in row.runs) else None
        eval_t = _mean(e.result.get("train_time_s") for e in evals)
        nc = not_counted_text(row.runs)
        eval_nc = not_counted_text(row.evals)
        if eval_nc != "—":
            nc = (nc + "; " if nc != "—" else "") + f"eval: {eval_nc}"
        configs = sorted({_eval_setting(e).strip(" ()") or "standard" for e in evals})
        n_evals = str(len(evals)) + (f" ({'; '.join(configs)})" if len(configs) > 1 else "")
        md.append([row.display, str(len(fin)), _seeds(fin), nc, "<br>".join(names) or "—", n_evals,
                   fmt_mean_std(errors, ddof), f"{min(errors):.2f}" if errors else "—",
                   f"{params:.2f}" if params is not None else "—", fmt_time(search_t), fmt_time(proj_t),
                   fmt_time(eval_t)] + ([paper.get(row.label, "")] if paper else []))
        m, s = mean_std(errors, ddof)
        csv_rows.append({"space": group.space, "dataset": group.dataset, "method": row.label,
                         "setting": row.setting or "", "runs": len(fin), "seeds": _seeds(fin, sep=" "),
                         "not_counted": nc,
                         "genotypes": " ; ".join(r.result.get("genotype_name") or r.result["genotype"] for r in fin),
                         "eval_runs": len(evals), "test_error_mean": m, "test_error_std": s,
                         "best_test_error": min(errors) if errors else None, "params_mb": params,
                         "search_time_s": search_t, "projection_time_s": proj_t, "eval_time_s": eval_t,
                         "paper": paper.get(row.label, "")})
    return header, md, csv_rows


def _eval_setting(run: Run) -> str:
    """' (C=.., L=.., N epochs)' for evaluations trained otherwise than the exp_scripts do."""
    r = run.result
    c, layers, epochs = r.get("init_channels"), r.get("layers"), r.get("epochs")
    if (c, layers, epochs) in ((36, 20, 600), (16, 8, 600)) or None in (c, layers, epochs):
        return ""
    return f" (C={c}, {layers} cells, {epochs} epochs)"


def _eval_error(run: Run) -> float:
    err = run.result.get("final_test_error")
    return float(err) if _is_number(err) else 100.0 - float(run.result["final_test_acc"])


def _seeds(runs: list[Run], sep: str = ", ") -> str:
    return sep.join(str(r.seed) for r in sorted(runs, key=lambda r: (r.seed is None, r.seed or 0))) or "—"


def eval_table(dataset: str, evals: list[Run], ddof: int) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    try:
        from sota.genotypes import _builtin
        catalog = set(_builtin())
    except Exception:  # noqa: BLE001
        catalog = set()
    by_arch: dict[str, list[Run]] = defaultdict(list)
    for ev in evals:  # one row per genotype and training setting
        by_arch[ev.label + _eval_setting(ev)].append(ev)
    header = ["genotype", "selected by", "runs", "seeds", "not counted", "test error (%)", "best",
              "best-epoch test acc (%)", "epochs", "params (M)", "train time"]
    md, csv_rows = [], []
    for arch in sorted(by_arch, key=_natural):
        runs = by_arch[arch]
        fin = [r for r in runs if r.counted]
        errors = [_eval_error(r) for r in fin]
        links = sorted({f"{label} ({g})" for r in runs for g, label in r.links})
        source = ", ".join(links) or ("catalog" if arch in catalog else "not linked to a search run")
        epochs = sorted({r.result.get("epochs") for r in fin if isinstance(r.result.get("epochs"), int)})
        params = _mean(r.result.get("params_mb") for r in fin)
        train_t = _mean(r.result.get("train_time_s") for r in fin)
        best_acc = [r.result.get("best_test_acc") for r in fin]
        md.append([arch, source, str(len(fin)), _seeds(fin), not_counted_text(runs), fmt_mean_std(errors, ddof),
                   f"{min(errors):.2f}" if errors else "—", fmt_mean_std(best_acc, ddof),
                   "/".join(map(str, epochs)) or "—", f"{params:.2f}" if params is not None else "—",
                   fmt_time(train_t)])
        m, s = mean_std(errors, ddof)
        csv_rows.append({"dataset": dataset, "arch": arch, "selected_by": source, "runs": len(fin),
                         "seeds": _seeds(fin, sep=" "), "not_counted": not_counted_text(runs),
                         "test_error_mean": m, "test_error_std": s, "best_test_error": min(errors) if errors else None,
                         "params_mb": params, "train_time_s": train_t})
    return header, md, csv_rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def not_counted_table(runs: Iterable[Run]) -> str:
    rows = [[f"`{r.rel}`", r.kind, STATUS_TEXT[r.status], r.label, str(r.seed) if r.seed is not None else "?",
             r.detail or "—"] for r in sorted(runs, key=lambda r: r.rel) if not r.counted]
    if not rows:
        return "All runs finished."
    return markdown_table(["run", "kind", "status", "method", "seed", "detail"], rows)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    path.write_text(buf.getvalue())


# -- figures ----------------------------------------------------------------------------------

def _figure(rows: int, cols: int, width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    fig = Figure(figsize=(width * cols, height * rows))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    return fig, axes


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _curve(ax, series: list[dict[float, float]], label: str, color, marker: str = "o") -> bool:
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


METHOD_COLORS = {"DARTS": "#1f77b4", "DARTS+PT": "#d62728", "fix-alpha": "#2ca02c", "fix-alpha+PT": "#ff7f0e",
                 "SDARTS": "#9467bd", "SDARTS+PT": "#8c564b"}
_PALETTE = ["#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    """The same colour for a method in every figure; other labels (settings, archs) in turn."""
    colors, k = {}, 0
    for label in labels:
        if label in METHOD_COLORS and METHOD_COLORS[label] not in colors.values():
            colors[label] = METHOD_COLORS[label]
        else:
            colors[label] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return colors


def _style(ax, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.lines or ax.containers:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes, color="gray")


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
                series = [{h["epoch"] + 1: _bench(h, key) for h in r.history
                           if _is_number(h.get("epoch")) and _bench(h, key) is not None} for r in fin]
                _curve(top, series, row.display, colors[row.display])
            else:
                at = [{r.result.get("supernet_epoch"): _bench(r.result, key)} for r in fin
                      if _is_number(r.result.get("supernet_epoch")) and _bench(r.result, key) is not None]
                _curve(top, at, row.display, colors[row.display], marker="*")
                _curve(bottom, [_projection_steps(r, key) for r in fin], row.display, colors[row.display])
        top.set_title(f"{BENCH_TEST[key]}: per search epoch", fontsize=9)
        _style(top, "search epoch", "benchmark test acc (%)")
        bottom.set_title(f"{BENCH_TEST[key]}: per projection step", fontsize=9)
        _style(bottom, "projections done (0 = supernet before projection)", "benchmark test acc (%)")
    fig.suptitle(f"{group.title}: benchmark test accuracy of the selected architecture, mean ± std over finished "
                 f"runs\n(★: projection (+PT) of the supernet of that epoch)", fontsize=10)
    return _save(fig, path)


def _bench(record: dict[str, Any], key: str) -> float | None:
    bench = record.get("benchmark")
    v = bench.get(key) if isinstance(bench, dict) else None
    return float(v) if _is_number(v) else None


def _projection_steps(run: Run, key: str) -> dict[float, float]:
    """Projections done -> benchmark accuracy of the genotype after the last tuning epoch with
    that many projections; 0 is the supernet's own genotype at the projected checkpoint."""
    steps: dict[float, float] = {}
    parent, epoch = run.parent, run.result.get("supernet_epoch")
    if parent is not None and _is_number(epoch):
        start = [h for h in parent.history if h.get("epoch") == epoch - 1]
        v = _bench(start[-1], key) if start else None
        if v is None and parent.counted and parent.result.get("epochs") == epoch:
            v = _bench(parent.result, key)
        if v is not None:
            steps[0] = v
    for h in run.history:
        v = _bench(h, key)
        if v is not None and _is_number(h.get("projections")):
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
            series = [{h["epoch"] + 1: float(h[key]) for h in r.history
                       if _is_number(h.get("epoch")) and _is_number(h.get(key))} for r in row.finished]
            _curve(ax, series, row.display, colors[row.display])
        ax.set_title(f"supernet {title} accuracy", fontsize=9)
        _style(ax, "search epoch", "accuracy (%)")
    fig.suptitle(f"{group.title}: supernet accuracy (mean ± std over finished runs)", fontsize=10)
    return _save(fig, path)


def _labels(space: str, kind: str, shape: tuple[int, int]) -> tuple[list[str], list[str]]:
    rows, cols = [f"edge {e}" for e in range(shape[0])], [f"op{i}" for i in range(shape[1])]
    try:
        if space == NB201:
            from nasbench201.model_search import EDGE_KEYS
            from nasbench201.operations import NB201_OPS

            if shape == (len(EDGE_KEYS), len(NB201_OPS)):
                return list(EDGE_KEYS), list(NB201_OPS)
        else:
            from sota.spaces import KIND_KEYS, SPACES
            edges = SPACES[space][KIND_KEYS[kind]]
            inputs = [(n, j) for n in range(4) for j in range(n + 2)]
            if len(edges) == shape[0] == len(inputs):
                rows = [f"{j}->{n + 2}" for n, j in inputs]
                if all(ops == edges[0] for ops in edges) and len(edges[0]) == shape[1]:
                    cols = list(edges[0])
    except Exception:  # noqa: BLE001 - generic labels
        pass
    return rows, cols


def alpha_figure(group: Group, row: Row, path: Path) -> Path | None:
    """Final softmax(alpha) per cell kind, averaged over the row's finished runs."""
    mats: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in row.finished:
        last = next((h for h in reversed(r.history) if isinstance(h.get("softmax"), dict)), None)
        for kind, m in (last or {}).get("softmax", {}).items():
            try:
                arr = np.asarray(m, dtype=float)
            except (TypeError, ValueError):
                continue
            if arr.ndim == 2 and np.isfinite(arr).all():
                mats[kind].append(arr)
    kinds = [k for k, ms in mats.items() if ms and all(m.shape == ms[0].shape for m in ms)]
    if not kinds:
        return None
    shapes = [mats[k][0].shape for k in kinds]
    fig, axes = _figure(1, len(kinds), 1.2 + 0.95 * max(s[1] for s in shapes), 1.2 + 0.3 * max(s[0] for s in shapes))
    for ax, kind in zip(axes[0], kinds):
        m = np.mean(mats[kind], axis=0)
        rlab, clab = _labels(group.space, kind, m.shape)
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
    fig.suptitle(f"{group.title}, {row.display}: final softmax(alpha)" + (f", mean of {n} runs" if n > 1 else ""),
                 fontsize=9)
    return _save(fig, path)


def nb201_cell_figure(arch: str, path: Path, title: str) -> Path:
    """A NAS-Bench-201 cell: nodes 0-3 in a row, each op edge an arc labelled with its op
    ('none' edges are left out, as they carry nothing)."""
    from matplotlib.patches import Circle, FancyArrowPatch

    from nasbench201.genotypes import parse_arch

    nodes = parse_arch(arch)
    fig, axes = _figure(1, 1, 8.0, 3.4)
    ax = axes[0, 0]
    gap, rad = 2.0, -0.45
    for i in range(4):
        ax.add_patch(Circle((gap * i, 0), 0.28, fc="#add8e6" if 0 < i < 3 else "#c1e1c1", ec="k", zorder=2))
        ax.text(gap * i, 0, str(i), ha="center", va="center", fontsize=11, zorder=3)
    for i, node in enumerate(nodes, start=1):
        for op, j in node:
            if op == "none":
                continue
            spread = 0.07 * (i - j)  # arcs of different spans leave and reach a node apart
            pa, pb = (gap * j + spread, 0.3), (gap * i - spread, 0.3)
            ax.add_patch(FancyArrowPatch(pa, pb, arrowstyle="-|>", mutation_scale=12, shrinkA=0, shrinkB=0,
                                         connectionstyle=f"arc3,rad={rad}", lw=1, zorder=1))
            dx = pb[0] - pa[0]
            ax.text((pa[0] + pb[0]) / 2, 0.3 - rad * dx / 2, op, ha="center", va="center", fontsize=8, zorder=4,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
    ax.set_xlim(-0.6, gap * 3 + 0.6)
    ax.set_ylim(-0.6, 0.3 - rad * gap * 3 / 2 + 0.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def cell_figures(group: Group, folder: Path) -> dict[int, str]:
    """A cell diagram per finished run; id(run) -> path relative to the report folder."""
    links: dict[int, str] = {}
    used: set[str] = set()
    for row in group.sorted_rows():
        for run in row.finished:
            stem = f"{_slug(row.display)}-seed{run.seed}"
            k = 2
            while stem in used:
                stem, k = f"{_slug(row.display)}-seed{run.seed}-{k}", k + 1
            used.add(stem)
            title = f"{row.display}, seed {run.seed}\n{run.result['genotype'] if group.is_nb201 else ''}".strip()
            try:
                if group.is_nb201:
                    png = nb201_cell_figure(run.result["genotype"], folder / "cells" / f"{stem}.png", title)
                else:
                    from sota.genotypes import genotype_from_string
                    from sota.visualize import plot_genotype
                    name = run.result.get("genotype_name") or f"seed {run.seed}"
                    png = plot_genotype(genotype_from_string(run.result["genotype"]), folder / "cells" / stem,
                                        title=f"{row.display}: {name}")[0]
            except Exception as e:  # noqa: BLE001 - a bad genotype costs its diagram, not the report
                run.detail = (run.detail + "; " if run.detail else "") + f"no cell diagram ({e})"
                continue
            links[id(run)] = str(png.relative_to(folder.parent))
    return links


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
        series = [{h["epoch"] + 1: float(h["test_acc"]) for h in r.history
                   if _is_number(h.get("epoch")) and _is_number(h.get("test_acc"))} for r in by_arch[arch]]
        _curve(ax, series, arch, colors[arch], marker="")
    _style(ax, "epoch", "test accuracy (%)")
    ax.set_title(f"{DATASET_TITLE.get(dataset.lower(), dataset)}: evaluation (mean ± std over finished runs)",
                 fontsize=9)
    return _save(fig, path)


# -- the report -------------------------------------------------------------------------------

def build_report(root: Path, out: Path, ddof: int = 0) -> dict[str, Any]:
    """Write the report of the experiments under `root` into the folder `out` (replaced
    whole, atomically, if an earlier report is there). Returns a summary."""
    root, out = root.resolve(), out.resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ReportError(f"{out} exists and was not written by this command; pass another --out")
    runs = discover(root, skip=[out])
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        summary = _write(root, runs, tmp, ddof)
        (tmp / MARKER).write_text("written by python -m common.report; replaced on every run\n")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary["out"] = str(out)
    return summary


class ReportError(Exception):
    pass


def _write(root: Path, runs: list[Run], out: Path, ddof: int) -> dict[str, Any]:
    groups, orphans = build_groups(runs)
    evals = [r for r in runs if r.kind == "eval"]
    link_evals(groups, evals)
    std_note = (f"std over runs with ddof={ddof} ({'population' if ddof == 0 else 'sample'} standard deviation); "
                "with one run only its value is shown. Only finished runs are counted; the others are listed "
                "under 'not counted' and below the table.")
    index = ["# DARTS-PT report\n", f"Experiments: `{root}`\n",
             f"Runs found: {status_counts(runs) or 'none'} (every run: `runs.csv`).\n"]
    studies = sorted(p.parent.name for p in root.glob("studies/*/study.json"))
    if studies:
        index.append(f"Studies, each reported on its own (`python -m common.report {root}/studies/NAME`): "
                     f"{', '.join(studies)}.\n")
    summary: dict[str, Any] = {"runs": len(runs), "status": status_counts(runs), "groups": {},
                               "figures": []}
    for key in sorted(groups, key=lambda k: (k[0] != NB201, k)):
        group = groups[key]
        folder = out / group.name
        cells = cell_figures(group, folder)
        if group.is_nb201:
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
        figures += [f for row in group.sorted_rows()
                    if (f := alpha_figure(group, row, folder / f"alpha-{_slug(row.display)}.png"))]
        write_csv(out / f"{group.name}.csv", csv_rows)
        text = [f"## {group.title}\n", what + " " + std_note + "\n", markdown_table(header, md_rows) + "\n"]
        if figures:
            text.append("Figures (finished runs only):\n")
            text += [f"![{f.stem}]({f.relative_to(out)})\n" for f in figures]
        if cells:
            text.append("Cell diagrams: " + ", ".join(f"[{Path(p).stem}]({p})" for p in cells.values()) + "\n")
        text += ["### Runs not counted\n", not_counted_table(group.all_runs()) + "\n"]
        (out / f"{group.name}.md").write_text("\n".join(text))
        index += text
        summary["groups"][group.name] = csv_rows
        summary["figures"] += [str(f) for f in figures] + [str(out / p) for p in cells.values()]
    by_dataset: dict[str, list[Run]] = defaultdict(list)
    for ev in evals:
        by_dataset[ev.dataset or "unknown"].append(ev)
    for dataset in sorted(by_dataset):
        name = f"eval-{dataset}"
        header, md_rows, csv_rows = eval_table(dataset, by_dataset[dataset], ddof)
        write_csv(out / f"{name}.csv", csv_rows)
        text = [f"## Evaluations, {DATASET_TITLE.get(dataset.lower(), dataset)}\n",
                "Genotypes trained from scratch: test error (%) at the last epoch, mean ± std over finished "
                "runs. " + std_note + "\n", markdown_table(header, md_rows) + "\n"]
        fig = eval_figure(dataset, by_dataset[dataset], out / name / "eval_curves.png")
        if fig:
            text.append(f"![eval_curves]({fig.relative_to(out)})\n")
            summary["figures"].append(str(fig))
        text += ["### Runs not counted\n", not_counted_table(by_dataset[dataset]) + "\n"]
        (out / f"{name}.md").write_text("\n".join(text))
        index += text
        summary["groups"][name] = csv_rows
    if orphans:
        index += ["## Runs of unknown space or dataset (not counted)\n", not_counted_table(orphans) + "\n"]
    (out / "index.md").write_text("\n".join(index))
    write_csv(out / "runs.csv", [{"run": r.rel, "kind": r.kind, "status": r.status, "counted": r.counted,
                                  "space": r.space or "", "dataset": r.dataset or "", "method": r.label,
                                  "seed": "" if r.seed is None else r.seed, "detail": r.detail}
                                 for r in sorted(runs, key=lambda r: r.rel)])
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m common.report",
                                description="Tables (Markdown, CSV) and figures of every run under an "
                                            "experiments folder, compared as in the DARTS-PT paper.")
    p.add_argument("experiments", nargs="?", type=Path, default=REPO_ROOT / "experiments",
                   help="experiments folder (default: <repo>/experiments)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: EXPERIMENTS/report); "
                   "replaced whole on every run")
    p.add_argument("--ddof", type=int, default=0, choices=[0, 1],
                   help="std over runs: 0 population (numpy's default), 1 sample")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    root = args.experiments
    if not root.is_dir():
        print(f"error: experiments folder {root} does not exist", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else root / "report"
    try:
        summary = build_report(root, out, args.ddof)
    except (ReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{summary['runs']} runs ({summary['status'] or 'none'}); {len(summary['groups'])} tables, "
          f"{len(summary['figures'])} figures")
    print(f"report: {Path(summary['out']) / 'index.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
