"""Run state (common/runstate.py): the process record and heartbeat a run keeps, `interrupted`
on SIGTERM/SIGINT, `stopped` for a run whose process died without a word, as the report and
the study read them; and the permissions of the files a run writes."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from analysis.runs import read_run
from analysis.tables import status_counts
from common import checkpoint, runstate
from common.experiment import write_json
from study.manifest import INTERRUPTED, RUNNING, RunRecord, observe
from tests.conftest import REPO


def running(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "result.json", {"status": "running", "space": "nasbench201", "method": "darts",
                                        "dataset": "cifar10", "seed": 1, "epochs": 4})
    return folder


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def zombie() -> tuple[subprocess.Popen, str | None]:
    """A process that ended but that its parent (this one) has not waited for yet, and the
    start time it had."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = runstate.process_start(proc.pid)
    proc.stdin.close()
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    return proc, start


def record(folder: Path, **changes) -> None:
    write_json(folder / runstate.PROCESS_FILE, {**runstate.process_record(), **changes})


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(tmp_path, monkeypatch, umask):
    monkeypatch.setattr(checkpoint, "UMASK", umask)
    write_json(tmp_path / "result.json", {"status": "finished"})
    checkpoint.save_checkpoint({"epoch": 1, "w": torch.zeros(2)}, tmp_path / "checkpoint_1.pth.tar")
    for name in ("result.json", "checkpoint_1.pth.tar"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_tracked_run_records_its_process_and_its_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(runstate, "HEARTBEAT_S", 0.02)
    folder = running(tmp_path / "run")
    with pytest.raises(ValueError), runstate.tracked(folder):
        rec = json.loads((folder / runstate.PROCESS_FILE).read_text())
        assert (rec["host"], rec["pid"]) == (socket.gethostname(), os.getpid())
        assert runstate.liveness(folder).alive is True
        assert runstate.observed_status(folder, {"status": "running"})[0] == "running"
        time.sleep(0.2)  # the heartbeat moves on
        assert json.loads((folder / runstate.PROCESS_FILE).read_text())["heartbeat"] > rec["heartbeat"]
        raise ValueError("boom")
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "failed" and result["error"] == "ValueError: boom"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back


def test_not_main_writes_nothing(tmp_path):
    with runstate.tracked(tmp_path, main=False):
        pass
    assert not any(tmp_path.iterdir())


JOB = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from common.entry import exit_code
    from common.experiment import write_json
    from common.runstate import tracked

    folder = Path(sys.argv[1])

    def job():
        with tracked(folder):
            write_json(folder / "result.json", {"status": "running"})
            (folder / "started").touch()
            time.sleep(60)

    sys.exit(exit_code(job))
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_marks_the_run_interrupted(tmp_path, signum):
    folder = tmp_path / "run"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(folder)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (folder / "started").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, out
    assert "Traceback" not in out and f"interrupted by {signal.Signals(signum).name}" in out
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "interrupted" and result["signal"] == signal.Signals(signum).name
    run = read_run(folder, tmp_path)
    assert run.status == "interrupted" and f"by {signal.Signals(signum).name}" in run.detail


def test_readers_tell_a_dead_run_from_a_live_one(tmp_path):
    live = running(tmp_path / "live")
    record(live)
    killed = running(tmp_path / "killed")
    record(killed, pid=dead_pid())
    ended = running(tmp_path / "zombie")
    unreaped, start = zombie()
    record(ended, pid=unreaped.pid, process_start=start)
    reused = running(tmp_path / "reused")  # this pid, but an earlier process that had it
    record(reused, process_start="another-boot:1")
    old = running(tmp_path / "old")  # from before process records
    now = time.time()
    remote = running(tmp_path / "remote")
    record(remote, host="elsewhere-" + socket.gethostname(), heartbeat=now - 10)
    remote_dead = running(tmp_path / "remote-dead")
    record(remote_dead, host="elsewhere-" + socket.gethostname(), heartbeat=now - 2 * runstate.STALE_S)

    expected = {live: "running", killed: "stopped", ended: "stopped", reused: "stopped", old: "running",
                remote: "running", remote_dead: "stopped"}
    runs = {folder: read_run(folder, tmp_path) for folder in expected}
    assert {f: r.status for f, r in runs.items()} == expected
    assert "is gone" in runs[killed].detail and "last heartbeat" in runs[remote_dead].detail
    assert "0/4 epochs logged" in runs[killed].detail and "no process record" in runs[old].detail
    assert status_counts(runs.values()) == "3 running, 4 stopped"
    unreaped.wait()


def test_the_study_sees_the_same(tmp_path):
    rec = RunRecord("r", "search", "nb201", "cifar10", "darts", 1, None, [])
    live, killed, interrupted = (running(tmp_path / n) for n in ("live", "killed", "interrupted"))
    record(live)
    record(killed, pid=dead_pid())
    write_json(interrupted / "result.json", {"status": "interrupted", "signal": "SIGTERM"})
    assert observe(rec, live, None) == (RUNNING, observe(rec, live, None)[1])
    assert "is alive" in observe(rec, live, None)[1]
    state, reason = observe(rec, killed, None)
    assert state == INTERRUPTED and reason.startswith("stopped: process")
    # a run from before process records: this study knows its own live runs, so it was stopped
    assert observe(rec, running(tmp_path / "old"), None) == (INTERRUPTED, "")
    rec.exit_code = 143  # stopped by a signal that was not the study's: it continues, not failed
    assert observe(rec, interrupted, None) == (INTERRUPTED, "by SIGTERM")


LAUNCHED = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from common.entry import exit_code
    from common.experiment import write_json
    from common.runstate import FOLDER_NOTE_ENV, tracked

    folder, rank = Path(sys.argv[1]), int(os.environ["RANK"])

    def job():
        with tracked(folder, main=rank == 0):
            if rank == 0:
                write_json(folder / "result.json", {"status": "running"})
            while not Path(os.environ[FOLDER_NOTE_ENV]).exists():
                time.sleep(0.02)
            if rank == 1 and sys.argv[2] == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)

    sys.exit(exit_code(job))
""")


@pytest.mark.parametrize("how", ["die", "sigterm"])
def test_the_launcher_marks_a_run_failed_when_another_process_dies(tmp_path, how):
    """torchrun stops process 0 with SIGTERM when process 1 dies: the run failed (the launcher
    says so in result.json, naming process 1), not interrupted. A SIGTERM to the launcher itself
    (a user, Slurm's time limit) leaves it `interrupted`."""
    folder = tmp_path / "run"
    folder.mkdir()
    script = tmp_path / "job.py"
    script.write_text(LAUNCHED)
    proc = subprocess.Popen([sys.executable, "-m", "common.launch", "--nproc_per_node", "2", str(script),
                             str(folder), how], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if how == "sigterm":
        deadline = time.time() + 60
        while not (folder / runstate.PROCESS_FILE).exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    result = json.loads((folder / "result.json").read_text())
    died = "process 1 ended with signal SIGKILL"
    if how == "die":
        assert proc.returncode == 1 and out.splitlines()[-1].startswith(f"error: {died}"), out
        assert result["status"] == "failed" and result["error"].startswith(died), result
    else:
        assert proc.returncode != 0 and result["status"] == "interrupted", (result, out)
