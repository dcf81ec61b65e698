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

How a signal stops a run. The entry points handle SIGTERM and SIGINT in every process
(`handling_signals`). Inside the training loops (`deferred`) the first signal is only
recorded: the loops reach a stop point at every step boundary and epoch end (`stop_point`),
where the processes agree (one tiny collective) whether any of them received one, and if so
all save the state there (a mid-epoch checkpoint) and stop together, so that the continued
run equals an uninterrupted one. An epoch's evaluation pass (`stoppable`) stops at once in
one process, saved as the epoch's training steps left it; several processes finish it and
stop at the epoch's end. Anywhere else (setting up, a projection's scoring round), and for
a second signal, the run stops at once and continues from its last checkpoint. Either way
the last line says where it stopped and the exact command that continues it
(common/commands.py).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from . import commands
from .checkpoint import latest_checkpoint, rng_state, set_rng_state
from .entry import mark_failed, read_result
from .experiment import LOGGER, write_json

if TYPE_CHECKING:
    from .distributed import Group

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
    Exception swallows it); `saved`: what a stop point saved (None: stopped at once)."""

    def __init__(self, signum: int, saved: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved

    def message(self) -> str:
        """The run's last line: where it stopped, and the command that continues it."""
        state, command = _SIGNALS.resume() if _SIGNALS.resume else ("nothing was written", commands.typed())
        saved = f", saved at {self.saved}" if self.saved else f" ({state})"
        return f"interrupted by {signal.Signals(self.signum).name}{saved}. To continue: {commands.shell(command)}"


Resume = Callable[[], tuple[str, list[str]]]  # -> (what the run continues from, the command that continues it)


@dataclass
class _Signals:
    """What this process's handler knows: the signals received, whether the run is inside its
    training loops (`deferring`), and how the run continues."""

    received: list[int] = field(default_factory=list)
    deferring: int = 0
    stopping: bool = False      # an Interrupted is on its way: later signals change nothing
    main: bool = True           # process 0, which tells the user
    resume: Resume | None = None
    installed: int = 0
    previous: dict[int, Any] = field(default_factory=dict)


_SIGNALS = _Signals()


@contextlib.contextmanager
def handling_signals(main: bool = True) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into `Interrupted` (at once, or at the next stop point inside
    `deferred`) while the block runs; the handlers before are given back after it. Nested
    blocks share the outermost's."""
    s = _SIGNALS
    if s.installed == 0:
        s.received.clear()
        s.deferring, s.stopping, s.main, s.resume = 0, False, main, None
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            s.previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    s.installed += 1
    try:
        yield
    finally:
        s.installed -= 1
        if s.installed == 0:
            for sig, h in s.previous.items():
                signal.signal(sig, h)
            s.previous = {}


def _handler(signum: int, frame: FrameType | None) -> None:
    s = _SIGNALS
    s.received.append(signum)
    if s.stopping:
        return
    if s.deferring and len(s.received) == 1:
        if s.main:  # written, not logged: the logging call it interrupts may hold the handler's lock
            os.write(2, f"{signal.Signals(signum).name}: the run stops at the end of this training step or "
                        f"epoch, saved there (a second signal stops it at once)\n".encode())
        return
    raise stopping(signum)


def stopping(signum: int, saved: str | None = None) -> Interrupted:
    """The exception that stops the run; signals that come after it change nothing."""
    _SIGNALS.stopping = True
    return Interrupted(signum, saved)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside the block (a training loop, which reaches `stop_point`s) the first signal is only
    recorded; if one is still pending when the block ends, the run stops there."""
    s = _SIGNALS
    s.deferring += 1
    try:
        yield
    finally:
        s.deferring -= 1
    if s.deferring == 0 and s.received and not s.stopping:
        raise stopping(s.received[0])


@contextlib.contextmanager
def stoppable(group: Group, device: torch.device, save: Callable[[], str]) -> Iterator[None]:
    """A block (an evaluation pass) inside `deferred` that a signal stops at once, in a run of one
    process: `save` then saves the state as it was when the block began (its random state too,
    which the block may draw from) and says what it saved. A run of several processes finishes the
    block (they stop together at the next stop point: one may not leave a collective the others
    are in)."""
    if group.distributed:
        yield
        return
    s, rng = _SIGNALS, rng_state(device)
    outer, s.deferring = s.deferring, 0
    try:
        if pending() and not s.stopping:  # received since the last stop point
            raise stopping(pending())
        yield
    except Interrupted as e:
        set_rng_state(rng, device)
        raise stopping(e.signum, save()) from None
    finally:
        s.deferring = outer


def pending() -> int:
    """The signal this process received (0: none)."""
    return _SIGNALS.received[0] if _SIGNALS.received else 0


def stop_point(group: Group, save: Callable[[], str]) -> None:
    """A place where the run can stop with nothing lost. If any process received a signal (the
    processes agree: a collective), every process saves (`save`, which says what it saved;
    every process calls it) and the run stops."""
    signum = group.max(pending())
    if signum:
        saved = save()
        raise stopping(signum, saved)


def continue_with(resume: Resume) -> None:
    """How this process's run continues when a signal stops it: set once the run knows its folder."""
    _SIGNALS.resume = resume


def resume_run(folder: Path) -> tuple[str, list[str]]:
    """A search's or evaluation's continuation: `--resume_epoch -1` from its latest checkpoint;
    without one, the command again (with --overwrite where its folder was created)."""
    typed = commands.typed()
    latest = latest_checkpoint(folder)
    if latest is not None:
        return f"it continues from {latest.name}", commands.edited(typed, ["--overwrite"], {"--resume_epoch": "-1"})
    if folder.is_dir():
        return "nothing saved yet: it starts again", commands.edited(typed, ["--resume_epoch"], {"--overwrite": None})
    return "nothing was written", typed


def resume_projection(folder: Path, prefixes: tuple[str, ...]) -> tuple[str, list[str]]:
    """A projection's continuation: its command again, which continues from its latest
    checkpoint (of the first of `prefixes` that has one), less what would start it afresh or
    elsewhere."""
    latest = next(filter(None, (latest_checkpoint(folder, prefix) for prefix in prefixes)), None)
    state = f"it continues from {latest.name}" if latest else "nothing saved yet: it starts again"
    return state, commands.edited(commands.typed(), ["--overwrite", "--no_resume", "--dev_resume_epoch"])


# -- the writer side ---------------------------------------------------------------------------

@contextlib.contextmanager
def tracked(folder: Path, main: bool = True) -> Iterator[None]:
    """Keep `folder/process.json` (this process and its heartbeat) while the block runs, turn
    SIGTERM and SIGINT into `Interrupted` (`handling_signals`), and mark result.json
    `interrupted` (a signal) or `failed` (an error) when the block ends with one. Not `main`
    (the other processes of a torchrun): nothing is written."""
    if not main:
        with handling_signals(main=False):
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
    try:
        with handling_signals():
            yield
    except BaseException as e:
        # A signal that arrives while a collective or a write is failing may surface as that error.
        if pending() or isinstance(e, KeyboardInterrupt):
            mark_interrupted(folder, pending() or getattr(e, "signum", signal.SIGINT))
        else:
            mark_failed(folder, e)
        raise
    finally:
        stop.set()
        beat.join()


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
