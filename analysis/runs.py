"""Finding and reading run folders: what each run is (from its result.json, else from its
folder's name, as its space names folders) and whether it counts."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.methods import method_of_save, report_label
from common.runstate import INTERRUPTED, STOPPED, observed_status
from common.space import projection_run_name

from . import spaces

FINISHED, RUNNING, FAILED, UNREADABLE = "finished", "running", "failed", "unreadable"
# running: its process lives (or, for a run without a process record, cannot be told dead);
# stopped: it says running but its process is gone (killed); interrupted: SIGTERM or SIGINT
# stopped it (common/runstate.py). The last two continue with the run's command.
STATUSES = (FINISHED, RUNNING, INTERRUPTED, STOPPED, FAILED, UNREADABLE)
STATUS_TEXT = {s: s for s in STATUSES}
RUN_FILES = ("result.json", "history.jsonl", "log.txt")


@dataclass
class Run:
    path: Path
    rel: str                      # path relative to the experiments folder
    kind: str                     # search | projection | eval
    status: str                   # one of STATUSES
    result: dict[str, Any]
    history: list[dict[str, Any]]
    detail: str = ""              # why it is not counted, or what is odd about it
    space: str | None = None
    dataset: str | None = None
    method: str | None = None     # as in result.json: darts, blank-proj, ...
    seed: int | None = None
    told: dict[str, Any] = field(default_factory=dict)  # what the folder's name says of the method (no result.json)
    parent: Run | None = None     # a projection's supernet run
    links: set = field(default_factory=set)  # eval runs: keys of the rows they are joined to
    tag: str = ""                 # the tags its folder names carry ("--expid_tag X, --log_tag Y"; '' for none)

    @property
    def counted(self) -> bool:
        return self.status == FINISHED

    @property
    def label(self) -> str:
        if self.kind == "eval":
            return str(self.result.get("arch") or f"? ({self.path.name})")
        return method_label(self.method, {**self.told, **self.result})

    @property
    def fast(self) -> bool:
        """A --fast smoke run (one batch per epoch): never compared with the paper's numbers."""
        return self.result.get("fast") is True

    @property
    def setting(self) -> str | None:
        setting = None
        if self.kind == "search" and isinstance(self.result.get("epochs"), int):
            setting = f"{self.result['epochs']} epochs"
        if self.kind == "projection" and isinstance(self.result.get("supernet_epoch"), int):
            setting = f"supernet epoch {self.result['supernet_epoch']}"
        return f"{setting}, --fast" if setting and self.fast else setting


def method_label(method: str | None, identity: dict[str, Any] | None = None) -> str:
    """The row name of `method` (result.json's) whose result.json says `identity` (the method's
    own fields: SDARTS' perturb_alpha, unrolled): the method's label (common/methods), +PT."""
    return report_label(method, identity or {})


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def discover(root: Path, skip: Sequence[Path] = ()) -> list[Run]:
    """Every run folder under `root` (one holding result.json, history.jsonl or log.txt),
    skipping folders moved aside by --overwrite (*.old-*), hidden ones, the spaces' folders
    without runs, `skip` (the report's own folder) and studies below `root` (each is reported
    on its own: `python -m analysis <study folder>`)."""
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
    return (".old-" in name or name.startswith(".") or path.resolve() in skip or spaces.is_skipped(path)
            or (path / "study.json").is_file())


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
        if run.status not in (FINISHED, RUNNING, INTERRUPTED, FAILED):
            run.detail = f"unknown status {result.get('status')!r}"
            run.status = UNREADABLE
    _fill_identity(run)
    run.tag = _tag(run)
    if run.status == FINISHED:
        problem = _finished_problem(run)
        if problem:
            run.status, run.detail = UNREADABLE, f"finished, but {problem}"
    elif run.status == FAILED:
        run.detail = str(run.result.get("error", "no error message"))[:200]
    elif run.status == RUNNING:
        run.status, process = observed_status(folder, run.result)
        run.detail = f"{_progress(run)}; {process}"
    elif run.status == INTERRUPTED:
        run.detail = f"interrupted by {run.result.get('signal', 'a signal')}: {_progress(run)}"
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
    """Space, dataset, method and seed: from result.json, else from the folder's path."""
    r = run.result
    run.space = r.get("space") if isinstance(r.get("space"), str) else None
    run.dataset = r.get("dataset") if isinstance(r.get("dataset"), str) else None
    run.method = r.get("method") if isinstance(r.get("method"), str) else None
    run.seed = r.get("seed") if isinstance(r.get("seed"), int) else None
    if run.kind == "eval":
        if run.dataset is None and run.path.parent.name == "eval":
            run.dataset = run.path.parent.parent.name  # <space folder>/<dataset>/eval/<run>
        return
    if None in (run.space, run.dataset, run.method, run.seed):
        _fill_from_path(run)


def _fill_from_path(run: Run) -> None:
    """What result.json does not say, from the names of the run's folder and of its search
    folder, as the space whose experiments folder holds the run names them."""
    hooks = spaces.hooks_of_folder(run.path)
    if hooks is None:
        return
    told = hooks.search_folder(run.path.parent if run.kind == "projection" else run.path)
    run.space = run.space or told.space
    run.dataset = run.dataset or told.dataset
    if run.kind == "projection":
        told = projection_run_name(run.path.name)
    if run.seed is None:
        run.seed = told.seed
    named = method_of_save(told.save) if run.method is None and told.save else None
    if named:
        run.method = named[0] + ("-proj" if run.kind == "projection" else "")
        run.told = dict(named[1])  # e.g. sdarts-adv-sota: SDARTS with pgd_linf


def _tag(run: Run) -> str:
    """The tags the names of the run's folders carry: a search's --expid_tag, a projection's
    search's and its own --log_tag, an evaluation's --expid_tag (`eval-{arch}-{seed}-{tag}`)."""
    if run.kind == "eval":
        arch, seed = run.result.get("arch"), run.seed
        tag = run.path.name.partition(f"-{arch}-{seed}-")[2] if arch and seed is not None else ""
        return f"--expid_tag {tag}" if tag else ""
    hooks = spaces.hooks_of_folder(run.path)
    search = run.path.parent if run.kind == "projection" else run.path
    tags = [("--expid_tag", hooks.search_folder(search).tag if hooks else "")]
    if run.kind == "projection":
        tags.append(("--log_tag", projection_run_name(run.path.name).tag))
    return ", ".join(f"{flag} {tag}" for flag, tag in tags if tag)


def _finished_problem(run: Run) -> str:
    r = run.result
    if run.kind == "eval":
        err = r.get("final_test_error")
        if not is_number(err) and is_number(r.get("final_test_acc")):
            err = 100.0 - r["final_test_acc"]
        if not is_number(err):
            return "result.json has no final_test_error"
        return ""
    if not isinstance(r.get("genotype"), str) or not r["genotype"]:
        return "result.json has no genotype"
    bench = r.get("benchmark")
    if bench is not None and not (isinstance(bench, dict) and all(is_number(v) for v in bench.values())):
        return "its benchmark entry is malformed"
    return ""


def _progress(run: Run) -> str:
    r = run.result
    if run.kind == "projection":
        done = max((row.get("projections", 0) for row in run.history if is_number(row.get("projections"))),
                   default=0)
        return f"{len(run.history)} tuning epoch(s), {done} projection(s) logged"
    total = r.get("epochs")
    return f"{len(run.history)}/{total if total is not None else '?'} epochs logged"
