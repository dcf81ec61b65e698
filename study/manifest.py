"""study.json (every run of a study and its state), the attempt files, and the study lock.

The run folders are the truth and study.json a cache of them: a run is finished when its
folder's result.json says so, whatever the manifest remembers. What a folder cannot tell
(a run that failed before it wrote anything, its timings, its Slurm job) comes from the
attempt file that whoever ran it wrote (attempts/<run id>.json: started, ended, exit code).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from common.experiment import read_json, write_json
from common.runstate import liveness

from .plan import Context, Run, command, read_result, run_folder

PLANNED, SUBMITTED, RUNNING, FINISHED, FAILED, BLOCKED, INTERRUPTED = (
    "planned", "submitted", "running", "finished", "failed", "blocked", "interrupted")


class StudyBusy(Exception):
    """Another process runs this study."""


class ManifestError(Exception):
    """study.json cannot be read."""


def now() -> str:
    return datetime.now().isoformat(timespec="milliseconds")


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


@dataclass
class RunRecord:
    id: str
    stage: str
    space: str
    dataset: str
    method: str
    seed: int
    depends_on: str | None
    command: list[str]
    folder: str | None = None
    state: str = PLANNED
    reason: str = ""              # why failed or blocked
    log: str = ""
    started: str | None = None    # of the latest attempt (ISO 8601, local time)
    ended: str | None = None
    elapsed_s: float | None = None
    exit_code: int | None = None
    attempts: int = 0
    slurm_job_id: str | None = None

    @property
    def run(self) -> Run:
        return Run(self.space, self.dataset, self.method, self.seed, self.stage)

    @classmethod
    def new(cls, run: Run, ctx: Context) -> RunRecord:
        up = run.upstream
        return cls(run.id, run.stage, run.space, run.dataset, run.method, run.seed,
                   up.id if up else None, command(run, ctx), log=str(ctx.log_path(run)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Manifest:
    path: Path
    name: str
    run_flags: list[str]
    created: str = field(default_factory=now)
    records: dict[str, RunRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, study_dir: Path) -> Manifest | None:
        path = study_dir / "study.json"
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            records = {r["id"]: RunRecord.from_dict(r) for r in d.get("runs", [])}
            return cls(path, d["name"], list(d.get("run_flags", [])), d.get("created", now()), records)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ManifestError(f"{path} is not a study manifest ({type(e).__name__}: {e})") from None

    def save(self) -> None:
        write_json(self.path, {"name": self.name, "created": self.created, "updated": now(),
                               "study_dir": str(self.path.parent), "runs_root": str(self.path.parent / "runs"),
                               "run_flags": self.run_flags, "runs": [asdict(r) for r in self.records.values()]})

    def add(self, runs: Iterable[Run], ctx: Context) -> list[Run]:
        """Add the runs not yet in the study (an earlier plan's runs stay); the new ones."""
        new = [r for r in runs if r.id not in self.records]
        for run in new:
            self.records[run.id] = RunRecord.new(run, ctx)
        return new

    def runs(self) -> list[Run]:
        return [r.run for r in self.records.values()]

    def __getitem__(self, run: Run) -> RunRecord:
        return self.records[run.id]


# -- states ------------------------------------------------------------------------------------

def refresh(manifest: Manifest, ctx: Context, live: dict[str, str] | None = None) -> None:
    """Bring every record up to date with its folder and attempt file. `live`: run id -> the
    state of a run some process or Slurm job is on right now (running, submitted)."""
    live = live or {}
    for rec in manifest.records.values():
        _merge_attempt(rec, ctx)
        folder = run_folder(rec.run, ctx)
        rec.folder = str(folder) if folder else rec.folder
        rec.state, reason = observe(rec, folder, live.get(rec.id))
        rec.reason = reason if reason is not None else rec.reason


def observe(rec: RunRecord, folder: Path | None, live: str | None) -> tuple[str, str | None]:
    """(state, reason; None keeps the recorded one) of a run: running (or queued) while its
    process or job lives, else what its folder says, else how its last attempt ended. A run
    stopped by a signal (result.json `interrupted`) and one whose process died without a word
    (`stopped`, common/runstate.py) are both interrupted: they continue on the next command."""
    if live:  # its process or job has not ended yet, even if its result.json is written
        return live, ""
    result = read_result(folder)
    status = result.get("status")
    process = liveness(folder) if status == RUNNING and folder is not None else None
    if status == FINISHED:
        return FINISHED, ""
    if process is not None and process.alive:  # a process this command did not start (a killed study's) runs it
        return RUNNING, process.detail
    if status == INTERRUPTED:  # SIGTERM or SIGINT stopped it: it continues, whatever its exit code
        return INTERRUPTED, f"by {result.get('signal', 'a signal')}"
    if rec.exit_code not in (0, None):  # its last attempt failed (maybe before writing its folder)
        return FAILED, None
    error = str(result.get("error") or "")
    # Runs from before common/runstate.py marked Ctrl-C as a failure with KeyboardInterrupt.
    if status == FAILED and not error.startswith("KeyboardInterrupt"):
        return FAILED, error
    if folder is not None and folder.exists():  # stopped before it could say so, or by this study
        return INTERRUPTED, f"stopped: {process.detail}" if process is not None and process.alive is False else ""
    return (BLOCKED, None) if rec.state == BLOCKED else (PLANNED, "")


def submit_attempt(ctx: Context, run: Run, job_id: str) -> None:
    """A Slurm job will run it: the attempt to come replaces the last one."""
    path = ctx.attempt_path(run)
    write_json(path, {"submitted": now(), "slurm_job_id": job_id, "started": None, "ended": None,
                      "elapsed_s": None, "exit_code": None, "reason": "",
                      "attempts": read_json(path).get("attempts", 0)})


def start_attempt(ctx: Context, run: Run, argv: list[str], job_id: str | None = None) -> None:
    """Whoever runs a run (this process, a Slurm job) notes each attempt in attempts/<id>.json."""
    path = ctx.attempt_path(run)
    old = read_json(path)
    write_json(path, {**old, "started": now(), "ended": None, "elapsed_s": None, "exit_code": None,
                      "reason": "", "command": argv, "host": socket.gethostname(),
                      "slurm_job_id": job_id, "attempts": old.get("attempts", 0) + 1})


def end_attempt(ctx: Context, run: Run, exit_code: int | None, reason: str = "") -> None:
    """`exit_code` None: interrupted (the study was stopped), not failed."""
    path = ctx.attempt_path(run)
    attempt, ended = read_json(path), now()
    write_json(path, {**attempt, "ended": ended, "exit_code": exit_code, "reason": reason,
                      "elapsed_s": seconds_between(attempt.get("started"), ended)})


def _merge_attempt(rec: RunRecord, ctx: Context) -> None:
    attempt = read_json(ctx.attempt_path(rec.run))
    if not attempt:
        return
    for key in ("started", "ended", "elapsed_s", "exit_code", "attempts"):
        setattr(rec, key, attempt.get(key))
    rec.command = attempt.get("command") or rec.command
    rec.slurm_job_id = attempt.get("slurm_job_id") or rec.slurm_job_id
    if rec.exit_code not in (0, None):
        rec.reason = attempt.get("reason") or f"exit code {rec.exit_code}"


def progress(folder: Path | None) -> str:
    """'3/50 epochs' (search, evaluation) or '12 tuning epochs' (projection), from the folder."""
    if folder is None or not folder.is_dir():
        return ""
    result = read_result(folder)
    try:
        rows = sum(1 for line in (folder / "history.jsonl").read_text().splitlines() if line.strip())
    except OSError:
        rows = 0
    done = max(rows, result.get("epochs_done") or 0)
    if result.get("supernet") or "-proj" in str(result.get("method", "")):
        return f"{done} tuning epochs"
    total = result.get("epochs")
    return f"{done}/{total} epochs" if total else (f"{done} epochs" if done else "")


def status_table(manifest: Manifest, run_ids: Iterable[str] | None = None) -> str:
    """One line per run (those of `run_ids`, else all): id, state, progress, elapsed time,
    folder (relative to the study)."""
    root = manifest.path.parent
    header = ("run", "state", "progress", "elapsed", "folder")
    records = [manifest.records[i] for i in run_ids] if run_ids is not None else list(manifest.records.values())
    rows = []
    for rec in records:
        folder = Path(rec.folder) if rec.folder else None
        elapsed = rec.elapsed_s
        if rec.state == RUNNING and rec.started and not rec.ended:
            elapsed = seconds_between(rec.started, now())
        rows.append((rec.id, rec.state + (f" ({rec.reason[:60]})" if rec.reason and rec.state != FINISHED else ""),
                     progress(folder), _duration(elapsed), relative(folder, root)))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    return "\n".join(lines + [state_counts(records)])


def state_counts(records: Iterable[RunRecord]) -> str:
    """'3 finished, 1 failed'."""
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.state] = counts.get(rec.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def relative(path: str | Path | None, root: Path) -> str:
    if not path:
        return "-"
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


# -- the lock ----------------------------------------------------------------------------------

class StudyLock:
    """<study>/study.lock, held (flock) while a process runs the study. The local executor's
    runs inherit it, so runs left behind by a killed study process still hold it: a second
    study process can never start a run that is already going."""

    def __init__(self, study_dir: Path) -> None:
        self.path = study_dir / "study.lock"
        self.fd: int | None = None

    def __enter__(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StudyBusy(f"study {self.path.parent.name} is being run by another process ({holder}) "
                            f"or the runs it started; see its progress with --status") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                 .encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
