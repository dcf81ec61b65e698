"""Whether a run is alive: the process record and heartbeat a run keeps in its folder, how a
run that is stopped by a signal says so, and how readers tell a live run from a dead one.

A run writes `result.json` with `"status": "running"` when it starts. If it ends with an
error it says `failed`; if SIGTERM or SIGINT (Ctrl-C, Slurm's time limit, a study stopping
its runs) stops it, `interrupted`. A run killed outright (SIGKILL, out of memory, a node
that went down) says nothing: its result.json stays `running`. So, while it runs, it also
keeps `process.json` next to it: host, pid, the process's start time and a heartbeat
refreshed every HEARTBEAT_S seconds. A reader on the same host checks that the pid lives
and is the same process (pids are reused); on another host (a Slurm job read from the
login node) that the heartbeat is recent. A `running` run whose process is gone is
`stopped`.

    with tracked(folder):        # around everything a run does after creating its folder
        ...
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .entry import mark_failed, read_result
from .experiment import LOGGER, write_json

log = logging.getLogger(LOGGER)

PROCESS_FILE = "process.json"
HEARTBEAT_S = 30.0
# A run on another host counts as alive while its heartbeat is younger than this (a few missed
# beats: a busy file system, a clock a little off).
STALE_S = 5 * HEARTBEAT_S
RUNNING, STOPPED, INTERRUPTED = "running", "stopped", "interrupted"
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# common/launch.py names a file here where process 0 writes its run folder: torchrun stops
# process 0 with SIGTERM when another process dies, which process 0 cannot tell from a user's
# SIGTERM, so the launcher marks the run `failed` itself.
FOLDER_NOTE_ENV = "DARTS_PT_FOLDER_NOTE"


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped the run (a KeyboardInterrupt, so that nothing that catches
    Exception swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- the writer side ---------------------------------------------------------------------------

@contextlib.contextmanager
def tracked(folder: Path, main: bool = True) -> Iterator[None]:
    """Keep `folder/process.json` (this process and its heartbeat) while the block runs, turn
    SIGTERM and SIGINT into `Interrupted`, and mark result.json `interrupted` (a signal) or
    `failed` (an error) when the block ends with one. Not `main` (the other processes of a
    torchrun): nothing is written and the signals are left alone."""
    if not main:
        yield
        return
    record = process_record()
    write_json(folder / PROCESS_FILE, record)
    if os.environ.get(FOLDER_NOTE_ENV):
        Path(os.environ[FOLDER_NOTE_ENV]).write_text(str(folder.resolve()))
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(folder / PROCESS_FILE, record, stop), daemon=True,
                            name="heartbeat")
    beat.start()
    received: list[int] = []
    previous = _install(received)
    try:
        yield
    except BaseException as e:
        # A signal that arrives while a collective or a write is failing may surface as that error.
        if received or isinstance(e, KeyboardInterrupt):
            mark_interrupted(folder, received[0] if received else signal.SIGINT)
        else:
            mark_failed(folder, e)
        raise
    finally:
        _restore(previous)
        stop.set()
        beat.join()


def _install(received: list[int]) -> dict[int, Any]:
    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return {}
    return {s: signal.signal(s, handler) for s in SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for s, h in previous.items():
        signal.signal(s, h)


def _beat(path: Path, record: dict[str, Any], stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            write_json(path, {**record, "heartbeat": time.time()})
        except OSError as e:  # the run itself reports a folder it cannot write; keep beating
            log.warning("cannot refresh %s: %s", path, e)


def mark_interrupted(folder: Path, signum: int) -> None:
    result = read_result(folder)
    if result.get("status") != "finished":
        result.update(status=INTERRUPTED, signal=signal.Signals(signum).name,
                      interrupted_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_json(folder / "result.json", result)


def process_record() -> dict[str, Any]:
    """This process: host, pid, its start time (to tell it from a later process with its pid)
    and the heartbeat."""
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "process_start": process_start(os.getpid()),
            "started": now, "heartbeat": now, "heartbeat_s": HEARTBEAT_S}


def process_start(pid: int) -> str | None:
    """The boot and the start time (clock ticks after boot) of process `pid`; None for no such
    process (a zombie, dead but not yet reaped, is none) or where /proc cannot say (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 on: the name in () may hold spaces
    return None if fields[0] == "Z" else f"{boot}:{fields[19]}"


# -- the reader side ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Liveness:
    alive: bool | None   # None: no process record (a run from before they were kept)
    detail: str


def liveness(folder: Path, now: float | None = None) -> Liveness:
    """Whether the process that runs in `folder` lives, and how that is known."""
    try:
        record = json.loads((folder / PROCESS_FILE).read_text())
        host, pid, beat = str(record["host"]), int(record["pid"]), float(record["heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):
        return Liveness(None, "no process record")
    now = time.time() if now is None else now
    age = f"last heartbeat {_ago(now - beat)} ago"
    who = f"process {pid} on {host}"
    if host == socket.gethostname():
        if record.get("process_start") is not None and process_start(os.getpid()) is not None:
            alive = process_start(pid) == record["process_start"]
        else:  # no /proc: the pid alone, and a recent heartbeat
            alive = _pid_exists(pid) and now - beat < STALE_S
        return Liveness(alive, f"{who} {'is alive' if alive else 'is gone'} ({age})")
    alive = now - beat < STALE_S
    return Liveness(alive, f"{who}, {age}")


def observed_status(folder: Path, result: dict[str, Any]) -> tuple[str | None, str]:
    """result.json's status, except `stopped` for a run that says `running` but whose process
    is gone; and what is known about its process."""
    status = result.get("status")
    if status != RUNNING:
        return status, ""
    live = liveness(folder)
    return (STOPPED if live.alive is False else RUNNING), live.detail


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _ago(seconds: float) -> str:
    s = max(int(seconds), 0)
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s / 3600:.1f} h"
