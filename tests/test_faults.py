"""Faults: a checkpoint write that fails, kill -9 at chosen points and resume, a loss that turns
NaN, checkpoints written by the original code.

Kills are real SIGKILLs of the exp_scripts' Python process. To kill at an exact place the
scripts run under tests/fixtures/pause_runner.py (through $PYTHON), which stops the process at
a pause point (after a given checkpoint file is written, before the N-th weight step, inside the
N-th projection scoring pass) until the test kills it. Each job (NAS-Bench-201 search and
projection, DARTS-space search and projection, SDARTS-RS search) is killed at three points in
turn, each time continued as a user would, and then compared with an uninterrupted run of the
same command (run once per module) bit for bit: every checkpoint (all state_dict tensors,
alphas, projection state, optimizer and scheduler states, RNG states; only wall-clock times
excepted), every history row and result.json. A checkpoint that differs is reported with the
part of the run that wrote it. Bit-exact resumes are a CPU property (docs/checkpoints.md), so these runs use
the CPU.

The other faults run the entry points in-process with a monkeypatched fault.
"""
from __future__ import annotations

import copy
import errno
import hashlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import REPO, _script_env, dataset_dir, fails, read_json, run_script

# 40 training images, 60% of them train the weights: 2 weight batches (16 + 8) per epoch, so
# an epoch has a middle; the alpha half (and every scoring pass) is one batch.
DATA = ["--batch_size", "16", "--train_portion", "0.6", "--report_freq", "100", "--gpu", "cpu",
        "--no_tensorboard"]
NB201 = [*DATA, "--init_channels", "4", "--num_cells", "1"]
SOTA = [*DATA, "--init_channels", "4", "--layers", "3", "--space", "s3"]
TIME_KEYS = ("search_time", "projection_time", "train_time", "search_time_s", "projection_time_s",
             "train_time_s")
# result.json entries that name the run's own folder (a projection registers its genotype under
# a name made of the folder name)
FOLDER_KEYS = ("genotype_name", "genotype_file", "figures")


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cifar10(tmp_path_factory) -> Path:
    return dataset_dir(tmp_path_factory, "cifar10", 40, 16)


@pytest.fixture(scope="module")
def bench_file(bench) -> Path:
    return bench[0]


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exp")


@pytest.fixture(scope="module")
def pause_python(tmp_path_factory) -> Path:
    """$PYTHON for the exp_scripts: this interpreter, running tests/fixtures/pause_runner.py."""
    wrapper = tmp_path_factory.mktemp("bin") / "python"
    runner = REPO / "tests" / "fixtures" / "pause_runner.py"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(runner))} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def in_process():
    """In-process runs: no log handler left behind."""
    yield
    logger = logging.getLogger("darts_pt")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


# -- helpers -------------------------------------------------------------------------------
def script_command(script: str) -> tuple[str, list[str]]:
    """The module an exp_script runs and the default arguments it passes (asked from the script
    itself, which prints them and runs nothing), so in-process runs use exactly its defaults."""
    out = subprocess.run(["bash", str(REPO / "exp_scripts" / script)], capture_output=True, check=True,
                         env={**os.environ, "DARTS_PT_PRINT_COMMAND": "1"}).stdout.decode()
    module, *defaults = out.rstrip("\0").split("\0")
    return module, defaults


def run_in_process(script: str, *args: str) -> int:
    """The entry point of `script`, in this process, with the script's defaults then `args`."""
    module, defaults = script_command(script)
    argv = [*defaults, *args]
    if module == "sota.train":
        from sota.train import main as train_main

        return train_main(argv)
    from common.run import main

    if module == "nasbench201.train_search":
        from nasbench201.train_search import SEARCH_SPACE
    else:
        from sota.train_search import SEARCH_SPACE
    return main(SEARCH_SPACE, argv)


def digests(folder: Path, pattern: str = "checkpoint_*.pth.tar") -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def checkpoint_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".pth.tar"))


def epochs_of(folder: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1].split(".")[0]) for p in folder.glob("checkpoint_*.pth.tar"))


def history(folder: Path, name: str = "history.jsonl") -> list[dict]:
    rows = [json.loads(l) for l in (folder / name).read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if "time" not in k} for r in rows]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes, so that -0.0 differs from 0.0 and equal NaNs match."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8) if t.is_floating_point() else t


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two checkpoint values differ (tensors: dtype, shape and every bit); wall-clock
    times are skipped."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{where}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"]
        return [] if torch.equal(_bits(a), _bits(b)) else [f"{where}: values differ"]
    if isinstance(a, dict) and isinstance(b, dict):
        keys_a, keys_b = set(a) - set(TIME_KEYS), set(b) - set(TIME_KEYS)
        out = [f"{where}: keys {sorted(map(str, keys_a ^ keys_b))} in one only"] if keys_a != keys_b else []
        for k in sorted(keys_a & keys_b, key=str):
            out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} vs {b!r}"]


def assert_same_run(reference: Path, resumed: Path, origin: dict[str, str] | None = None) -> None:
    """Same checkpoints (bit for bit), history rows and result as the uninterrupted run.
    `origin`: which part of an interrupted run wrote each checkpoint (for the message)."""
    assert checkpoint_names(resumed) == checkpoint_names(reference)
    for name in checkpoint_names(reference):
        a, b = (torch.load(f / name, weights_only=True) for f in (reference, resumed))
        diff = differences(a, b, name)
        assert not diff, f"{name}, written {(origin or {}).get(name, '?')}:\n" + "\n".join(diff[:20])
    for name in ("history.jsonl", "search_history.jsonl"):
        if (reference / name).exists():
            assert history(resumed, name) == history(reference, name), name
    a, b = ({k: v for k, v in read_json(f / "result.json").items() if k not in TIME_KEYS + FOLDER_KEYS}
            for f in (reference, resumed))
    assert b["status"] == "finished" and a == b


def kill_at(pause_python: Path, script: str, args: list[str], pause: str, marker: Path,
            timeout: float = 300) -> str:
    """Run `script` until its pause point, then SIGKILL its Python process there; its output."""
    log = marker.with_suffix(".log")
    env = _script_env({"PYTHON": str(pause_python), "DARTS_PT_TEST_PAUSE": pause,
                       "DARTS_PT_TEST_MARKER": str(marker)})
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/",
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if not marker.exists():
        proc.kill()
        proc.wait()
        raise AssertionError(f"{script} never reached {pause} (exit {proc.returncode}):\n"
                             f"{log.read_text()[-4000:]}")
    assert int(marker.read_text()) == proc.pid  # the script exec'd Python: this is the run itself
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return log.read_text()


class Interrupted:
    """One run, killed and continued several times; remembers which part wrote each checkpoint."""

    def __init__(self, script: str, folder: Path, pause_python: Path, tmp: Path) -> None:
        self.script, self.folder, self.pause_python, self.tmp = script, folder, pause_python, tmp
        self.origin: dict[str, str] = {}
        self.kills = 0

    def _part(self, what: str, go: Callable[[], str]) -> str:
        before = digests(self.folder, "*.pth.tar")
        out = go()
        for name, digest in digests(self.folder, "*.pth.tar").items():
            if before.get(name) != digest:
                self.origin[name] = f"by the part {what!r}"
        return out

    def kill(self, args: list[str], pause: str, what: str) -> str:
        self.kills += 1
        marker = self.tmp / f"paused-{self.kills}"
        return self._part(what, lambda: kill_at(self.pause_python, self.script, args, pause, marker))

    def finish(self, args: list[str], what: str) -> str:
        return self._part(what, lambda: run_script(self.script, *args).stdout)


# -- the runs: an uninterrupted reference of each, shared by its kill points --------------------
class Runs:
    """Scripts and folders of the five interrupted jobs and their uninterrupted references."""

    def __init__(self, exp: Path, data: Path, bench: Path) -> None:
        self.exp, self.done = exp, set()
        nb = ["--data", str(data), "--exp_root", str(exp), "--api_path", str(bench_file), *NB201]
        sota = ["--data", str(data), "--exp_root", str(exp), *SOTA]
        epochs = ["--epochs", "3", "--ckpt_interval", "1"]
        proj = ["--resume_epoch", "3", "--epochs", "3", "--proj_intv", "1"]
        nb_dir, sota_dir = exp / "nasbench201", exp / "sota" / "cifar10"
        # name -> (script, args, tag flag, folder of a tag, the search it projects)
        self.jobs: dict[str, tuple[str, list[str], str, Callable[[str], Path], str | None]] = {
            "nb201-search": ("darts-201.sh", [*nb, *epochs], "--expid_tag",
                             lambda t: nb_dir / f"search-darts-201-1-{t}", None),
            "sota-search": ("darts-sota.sh", [*sota, *epochs], "--expid_tag",
                            lambda t: sota_dir / f"search-darts-sota-s3-2-{t}", None),
            "sdarts-rs-search": ("sdarts-rs-sota.sh", [*sota, *epochs], "--expid_tag",
                                 lambda t: sota_dir / f"search-sdarts-rs-sota-s3-2-{t}", None),
            "nb201-proj": ("darts-proj-201.sh", [*nb, "--resume_expid", "search-darts-201-1-ref", *proj],
                           "--log_tag",
                           lambda t: nb_dir / "search-darts-201-1-ref" / f"darts-proj-201-seed1-acc-intv1-ep3-{t}",
                           "nb201-search"),
            "sota-proj": ("darts-proj-sota.sh", [*sota, "--resume_expid", "search-darts-sota-s3-2-ref", *proj],
                          "--log_tag",
                          lambda t: sota_dir / "search-darts-sota-s3-2-ref" /
                          f"darts-proj-sota-seed2-acc-intv1-ep3-{t}",
                          "sota-search"),
        }

    def args(self, job: str, tag: str) -> list[str]:
        script, args, flag, _, _ = self.jobs[job]
        return [*args, flag, tag]

    def script(self, job: str) -> str:
        return self.jobs[job][0]

    def folder(self, job: str, tag: str) -> Path:
        return self.jobs[job][3](tag)

    def reference(self, job: str) -> Path:
        """The uninterrupted run (tag 'ref'), run once per module."""
        if job not in self.done:
            if (search := self.jobs[job][4]) is not None:
                self.reference(search)  # the supernet it projects
            run_script(self.script(job), *self.args(job, "ref"))
            self.done.add(job)
        return self.folder(job, "ref")


@pytest.fixture(scope="module")
def runs(exp, tiny_cifar10, bench_file) -> Runs:
    return Runs(exp, tiny_cifar10, bench_file)


SEARCHES = ["nb201-search", "sota-search", "sdarts-rs-search"]


@pytest.mark.slow
@pytest.mark.parametrize("job", SEARCHES)
def test_search_killed_three_times_ends_as_uninterrupted(runs, pause_python, tmp_path, job):
    """kill -9 in epoch 0 before the first checkpoint, in the middle of epoch 1, and right after
    checkpoint 2 is written, each time continued as the messages say: the checkpoints, history
    and result equal an uninterrupted run's, bit for bit. (3 epochs of 2 weight steps.)"""
    reference = runs.reference(job)
    args, folder = runs.args(job, "cut"), runs.folder(job, "cut")
    run = Interrupted(runs.script(job), folder, pause_python, tmp_path)

    # 1. killed in epoch 0 (before its second weight step): no checkpoint, nothing to resume
    run.kill(args, "step:2", "killed in epoch 0")
    assert folder.is_dir() and epochs_of(folder) == []
    assert read_json(folder / "result.json")["status"] == "running"  # killed: nothing marked it
    before = sorted(p.name for p in folder.iterdir())
    msg = fails(runs.script(job), *args, "--resume_epoch", "-1")
    assert "no checkpoint" in msg and "--overwrite" in msg and str(folder) in msg
    assert sorted(p.name for p in folder.iterdir()) == before  # the refused resume touched nothing

    # 2. started again with --overwrite (the killed folder is moved aside); killed in the
    #    middle of epoch 1 (before its second weight step)
    run.kill([*args, "--overwrite"], "step:4", "started with --overwrite")
    aside = [p for p in folder.parent.iterdir() if p.name.startswith(folder.name + ".old-")]
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == before
    assert epochs_of(folder) == [1] and [r["epoch"] for r in history(folder)] == [0]

    # 3. resumed from checkpoint 1; killed right after checkpoint 2 is written
    run.kill([*args, "--resume_epoch", "-1"], "checkpoint:checkpoint_2.pth.tar", "resumed from the mid-epoch kill")
    assert epochs_of(folder) == [1, 2] and [r["epoch"] for r in history(folder)] == [0, 1]

    # 4. resumed from checkpoint 2 to the end
    run.finish([*args, "--resume_epoch", "-1"], "resumed from the kill after checkpoint 2")
    assert_same_run(reference, folder, run.origin)


# Pause points of a projection (inside a scoring pass, mid-tuning, right after a checkpoint),
# each counted in its own process, and the checkpoints present after each kill. Tuning epochs
# have 2 weight steps; a NAS-Bench-201 round scores 5 ops, a DARTS-space round 3 ops per cell
# kind (6 passes), and the DARTS-space epochs 14-16 choose nodes' inputs (topology).
PROJECTION_KILLS = {
    "nb201-proj": [("score:3", [0]),             # projection 1 (tuning epoch 0), scoring its third op
                   ("step:4", [0, 1]),           # resumed at 0: tuning epoch 1, before its second step
                   ("checkpoint:checkpoint_3.pth.tar", [0, 1, 2, 3])],
    "sota-proj": [("score:34", list(range(6))),  # projection 6: normal edge chosen, scoring reduce ops
                  ("step:4", list(range(7))),     # resumed at 5: tuning epoch 6, before its second step
                  ("checkpoint:checkpoint_15.pth.tar", list(range(16)))],  # in the topology stage
}


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(PROJECTION_KILLS))
def test_projection_killed_three_times_ends_as_uninterrupted(runs, pause_python, tmp_path, job):
    """kill -9 during a scoring pass, in the middle of a tuning epoch and right after a
    projection checkpoint; rerunning the same command continues from the latest projection
    checkpoint each time, and the end equals an uninterrupted projection, bit for bit."""
    reference = runs.reference(job)
    args, folder = runs.args(job, "cut"), runs.folder(job, "cut")
    run = Interrupted(runs.script(job), folder, pause_python, tmp_path)
    resumed_at = None
    for pause, expected in PROJECTION_KILLS[job]:
        started = "started" if resumed_at is None else f"resumed at tuning epoch {resumed_at}"
        out = run.kill(args, pause, f"{started}, killed at {pause}")
        assert epochs_of(folder) == expected, pause
        if resumed_at is not None:
            assert f"resumed projection at tuning epoch {resumed_at} " in out
        resumed_at = expected[-1]
    out = run.finish(args, f"resumed at tuning epoch {resumed_at}, finished")
    assert f"resumed projection at tuning epoch {resumed_at} " in out
    assert_same_run(reference, folder, run.origin)


# -- a checkpoint write that fails half-way ----------------------------------------------------
def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


class PartialWriter:
    """A file that takes `budget` bytes, then fails as a full disk does."""

    def __init__(self, f, budget: int) -> None:
        self.f, self.budget = f, budget

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.budget:
            self.f.write(data[:self.budget])
            self.f.flush()
            self.budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def inject_write_failure(monkeypatch, mode: str, target: str) -> dict:
    """Make the write of checkpoint `target` fail; returns what the test sees of it."""
    seen: dict[str, Any] = {}
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

    def is_target(path: str) -> bool:
        return Path(path).name.startswith(target + ".") and path.endswith(".tmp")

    def fdopen(fd, mode_="r", *args, **kwargs):
        path = _fd_path(fd)
        if not is_target(path):
            return real_fdopen(fd, mode_, *args, **kwargs)
        seen["tmp"] = path
        seen["before"] = digests(Path(path).parent)  # the earlier checkpoints as they are now
        if mode == "disk_full":  # every byte goes to /dev/full: the kernel answers ENOSPC
            os.close(fd)
            return open("/dev/full", mode_)
        f = real_fdopen(fd, mode_, *args, **kwargs)
        return PartialWriter(f, 1000) if mode == "partial_write" else f

    def fsync(fd):
        if mode == "fsync" and is_target(_fd_path(fd)):
            seen["written"] = os.path.getsize(_fd_path(fd))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        if mode == "rename" and is_target(str(src)):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src), None, str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return seen


WRITE_FAULTS = {"disk_full": errno.ENOSPC, "partial_write": errno.ENOSPC, "fsync": errno.ENOSPC,
                "rename": errno.EIO}


@pytest.mark.parametrize("mode", sorted(WRITE_FAULTS))
def test_failed_checkpoint_write_keeps_the_previous_one(exp, tiny_cifar10, bench_file, monkeypatch, capsys,
                                                        in_process, mode):
    """The second checkpoint's write fails: one line naming the file and the cause, exit code
    2, checkpoint 1 untouched, no temp file; the run then resumes from checkpoint 1."""
    args = ["--data", str(tiny_cifar10), "--exp_root", str(exp), "--api_path", str(bench_file), *NB201,
            "--epochs", "3", "--ckpt_interval", "1", "--expid_tag", f"write-{mode}"]
    folder = exp / "nasbench201" / f"search-darts-201-1-write-{mode}"
    seen = inject_write_failure(monkeypatch, mode, "checkpoint_2.pth.tar")
    assert run_in_process("darts-201.sh", *args) == 2
    monkeypatch.undo()
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    errors = [l for l in text.splitlines() if "error" in l.lower()]
    assert len(errors) == 1, text[-3000:]
    cause = os.strerror(WRITE_FAULTS[mode])
    assert "error: " in errors[0] and str(folder / "checkpoint_2.pth.tar") in errors[0]
    assert cause.lower() in errors[0].lower()

    assert seen["before"] == {"checkpoint_1.pth.tar": digests(folder)["checkpoint_1.pth.tar"]}
    assert sorted(os.listdir(folder)) == ["checkpoint_1.pth.tar", "config.json", "history.jsonl", "log.txt",
                                          "process.json", "result.json"]
    from common.checkpoint import load_checkpoint

    assert load_checkpoint(folder / "checkpoint_1.pth.tar")["epoch"] == 1
    result = read_json(folder / "result.json")
    assert result["status"] == "failed" and cause.lower() in result["error"].lower()
    assert errors[0] in (folder / "log.txt").read_text()

    assert run_in_process("darts-201.sh", *args, "--resume_epoch", "-1") == 0
    assert read_json(folder / "result.json")["status"] == "finished"
    assert [r["epoch"] for r in history(folder)] == [0, 1, 2] and epochs_of(folder) == [1, 2, 3]


def test_unwritable_history_ends_with_one_line(exp, tiny_cifar10, bench_file, monkeypatch, capsys, in_process):
    """Any OSError writing the run's files (here the history, folder made read-only) ends the
    run with one line naming the file, not a traceback."""
    import common.search

    args = ["--data", str(tiny_cifar10), "--exp_root", str(exp), "--api_path", str(bench_file), *NB201,
            "--epochs", "2", "--expid_tag", "history-eacces"]
    folder = exp / "nasbench201" / "search-darts-201-1-history-eacces"
    real = common.search.append_jsonl

    def append_jsonl(path, row):
        if row["epoch"] == 1:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real(path, row)

    monkeypatch.setattr(common.search, "append_jsonl", append_jsonl)
    assert run_in_process("darts-201.sh", *args) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    errors = [l for l in text.splitlines() if "error" in l.lower()]
    assert "Traceback" not in text and len(errors) == 1, text[-3000:]
    assert str(folder / "history.jsonl") in errors[0] and "permission denied" in errors[0].lower()
    assert read_json(folder / "result.json")["status"] == "failed"


# -- a loss that turns NaN after a checkpoint exists -------------------------------------------
class NanLoss(nn.CrossEntropyLoss):
    """Cross-entropy times NaN: a NaN loss whose gradients are NaN too (weights and alpha)."""

    def forward(self, logits, y):
        return super().forward(logits, y) * float("nan")


def diverge_from(monkeypatch, cls: type, epoch: int, folder: Callable[[], Path], seen: dict,
                 tuning: bool | None = None) -> None:
    """From `epoch` on, `cls.train_epoch` trains with a NaN loss; `seen` records the checkpoints
    as they were when the NaN epoch started."""
    real = cls.train_epoch

    def train_epoch(self, e, *args, **kwargs):
        if e >= epoch and (tuning is None or kwargs.get("tuning", False) == tuning):
            seen.setdefault("before", digests(folder()))
            self.criterion = NanLoss()
        return real(self, e, *args, **kwargs)

    monkeypatch.setattr(cls, "train_epoch", train_epoch)


def assert_diverged(text: str, folder: Path, seen: dict, epoch: int) -> None:
    """One clear line; the checkpoints before the NaN epoch unchanged and loadable, none newer;
    result.json failed with the error."""
    from common.checkpoint import load_checkpoint

    errors = [l for l in text.splitlines() if "error" in l.lower()]
    assert "Traceback" not in text and len(errors) == 1, text[-3000:]
    assert f"error: training loss at epoch {epoch}" in errors[0] and "nan" in errors[0] and "diverged" in errors[0]
    assert seen["before"] and digests(folder) == seen["before"]
    assert not list(folder.glob("*.tmp"))
    last = load_checkpoint(folder / max(seen["before"], key=lambda n: int(n.split("_")[1].split(".")[0])))
    tensors = [v for v in last["state_dict"].values() if v.is_floating_point()] + list(last["alpha"])
    assert tensors and all(bool(torch.isfinite(t).all()) for t in tensors)
    result = read_json(folder / "result.json")
    assert result["status"] == "failed" and "DivergedError" in result["error"] and "nan" in result["error"]


def test_nan_loss_in_search_keeps_the_last_checkpoint(exp, tiny_cifar10, bench_file, monkeypatch, capsys, in_process):
    from common.trainer import Trainer

    args = ["--data", str(tiny_cifar10), "--exp_root", str(exp), "--api_path", str(bench_file), *NB201,
            "--epochs", "3", "--ckpt_interval", "1", "--expid_tag", "nan"]
    folder = exp / "nasbench201" / "search-darts-201-1-nan"
    seen: dict = {}
    diverge_from(monkeypatch, Trainer, 1, lambda: folder, seen)
    assert run_in_process("darts-201.sh", *args) == 2
    monkeypatch.undo()
    out = capsys.readouterr()
    assert_diverged(out.out + out.err, folder, seen, 1)
    assert list(seen["before"]) == ["checkpoint_1.pth.tar"] and [r["epoch"] for r in history(folder)] == [0]
    # the kept checkpoint continues the run
    assert run_in_process("darts-201.sh", *args, "--resume_epoch", "-1") == 0
    assert read_json(folder / "result.json")["status"] == "finished" and epochs_of(folder) == [1, 2, 3]


def test_nan_loss_in_projection_tuning_keeps_the_last_checkpoint(exp, tiny_cifar10, bench_file, monkeypatch, capsys,
                                                                 in_process):
    from common.trainer import Trainer

    common = ["--data", str(tiny_cifar10), "--exp_root", str(exp), "--api_path", str(bench_file), *NB201]
    assert run_in_process("darts-201.sh", *common, "--epochs", "1", "--expid_tag", "nan-proj") == 0
    folder = exp / "nasbench201" / "search-darts-201-1-nan-proj" / "darts-proj-201-seed1-acc-intv1-ep1"
    seen: dict = {}
    diverge_from(monkeypatch, Trainer, 2, lambda: folder, seen, tuning=True)
    capsys.readouterr()
    assert run_in_process("darts-proj-201.sh", *common, "--epochs", "1", "--resume_expid",
                          "search-darts-201-1-nan-proj", "--resume_epoch", "1", "--proj_intv", "1") == 2
    out = capsys.readouterr()
    assert_diverged(out.out + out.err, folder, seen, 2)
    assert list(seen["before"]) == [f"checkpoint_{e}.pth.tar" for e in range(3)]
    assert [r["epoch"] for r in history(folder)] == [0, 1]


def test_nan_loss_in_evaluation_training_keeps_the_last_checkpoint(exp, tiny_cifar10, monkeypatch, capsys,
                                                                   in_process):
    from sota.train import Run

    args = ["--data", str(tiny_cifar10), "--exp_root", str(exp), "--init_channels", "4", "--layers", "3",
            "--batch_size", "16", "--report_freq", "100", "--gpu", "cpu", "--no_tensorboard", "--epochs", "3",
            "--expid_tag", "nan"]
    folder = exp / "sota" / "cifar10" / "eval" / "eval-darts_pt_s5_0-2-nan"
    seen: dict = {}
    diverge_from(monkeypatch, Run, 1, lambda: folder, seen)
    assert run_in_process("eval.sh", *args) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    from common.checkpoint import load_checkpoint

    errors = [l for l in text.splitlines() if "error" in l.lower()]
    assert "Traceback" not in text and len(errors) == 1, text[-3000:]
    assert "error: training loss at epoch 1 is nan: training diverged" in errors[0]
    assert list(seen["before"]) == ["checkpoint_1.pth.tar"] and digests(folder) == seen["before"]
    state = load_checkpoint(folder / "checkpoint_1.pth.tar")
    assert state["epoch"] == 1 and all(bool(torch.isfinite(v).all()) for v in state["state_dict"].values()
                                       if v.is_floating_point())
    result = read_json(folder / "result.json")
    assert result["status"] == "failed" and "DivergedError" in result["error"] and result["epochs_done"] == 1
    assert [r["epoch"] for r in history(folder)] == [0]


# -- checkpoints written by the original code --------------------------------------------------
# The optimizer entries torch 1.x saved (newer versions add foreach, maximize, ...).
OLD_SGD_KEYS = {"params", "lr", "momentum", "dampening", "weight_decay", "nesterov", "initial_lr"}
OLD_ADAM_KEYS = {"params", "lr", "betas", "eps", "weight_decay", "amsgrad"}


def _old_style(opt_state: dict, keys: set[str]) -> dict:
    state = copy.deepcopy(opt_state)
    for group in state["param_groups"]:
        for k in set(group) - keys:
            del group[k]
    for s in state["state"].values():
        if "step" in s:
            s["step"] = int(s["step"])  # a Python int in torch 1.x
    return state


def original_checkpoint(space: str, layout: str, path: Path) -> dict:
    """A trained supernet's checkpoint as the original DARTS-PT code saved it: random values
    everywhere (weights, BatchNorm statistics, momentum, Adam moments), no RNG state."""
    torch.manual_seed(3)
    if space == "nb201":
        from nasbench201.model_search import NB201Supernet

        model, shapes, epochs = NB201Supernet(4, 1, 10), [(6, 5)], 100
    else:
        from sota.model_search import DartsSupernet

        model, shapes, epochs = DartsSupernet(4, 10, 3, "s3"), [(14, 3), (14, 3)], 50
    alphas = [nn.Parameter(1e-3 * torch.randn(*s)) for s in shapes]
    w_opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(alphas, 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, float(epochs), eta_min=0.001)
    for _ in range(3):
        for p in [*model.parameters(), *alphas]:
            p.grad = torch.randn_like(p)
        w_opt.step()
        a_opt.step()
        sched.step()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("num_batches_tracked"):
                t.fill_(1234)
            elif t.is_floating_point():
                t.normal_()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    state = {"epoch": epochs, "optimizer": _old_style(w_opt.state_dict(), OLD_SGD_KEYS),
             "arch_optimizer": _old_style(a_opt.state_dict(), OLD_ADAM_KEYS), "scheduler": sched.state_dict()}
    if layout == "alpha_list":  # 'state_dict' plus 'alpha': a list of Parameters
        state.update(state_dict=sd, alpha=alphas)
    else:  # alpha registered in the model, so inside its state_dict; the DARTS code's 'model' key
        inner = {"_arch_parameters": alphas[0]} if space == "nb201" else \
            {"alphas_normal": alphas[0], "alphas_reduce": alphas[1]}
        state.update({"state_dict" if space == "nb201" else "model": {**sd, **inner}})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return {"state_dict": sd, "alpha": [a.detach().clone() for a in alphas], "optimizer": state["optimizer"],
            "arch_optimizer": state["arch_optimizer"], "scheduler": state["scheduler"]}


def assert_adam_state_equal(loaded: dict, original: dict) -> None:
    assert set(loaded["state"]) == set(original["state"]) and original["state"]
    for i, s in original["state"].items():
        got = loaded["state"][i]
        assert torch.equal(got["exp_avg"], s["exp_avg"]) and torch.equal(got["exp_avg_sq"], s["exp_avg_sq"])
        assert float(got["step"]) == float(s["step"]) == 3


@pytest.mark.parametrize("layout", ["alpha_list", "alpha_in_state_dict"])
@pytest.mark.parametrize("space", ["nb201", "sota"])
def test_original_checkpoint_loads_with_its_values(exp, tiny_cifar10, monkeypatch, in_process, space, layout):
    import common.projection
    from common.checkpoint import load_checkpoint
    from common.search import load_search_checkpoint
    from common.trainer import Trainer
    from tests.fixtures.configs import search_cfg

    if space == "nb201":
        from nasbench201.train_search import build_space
        script, flags, base = "darts-proj-201.sh", NB201, exp / "nasbench201"
    else:
        from sota.train_search import build_space
        script, flags, base = "darts-proj-sota.sh", SOTA, exp / "sota" / "cifar10"
    search = f"search-original-{space}-{layout}"
    ckpt = base / search / f"checkpoint_{100 if space == 'nb201' else 50}.pth.tar"
    original = original_checkpoint(space, layout, ckpt)

    # 1. into a Trainer, as a resumed search loads it: weights, BatchNorm statistics, alpha,
    #    both optimizers' states and the schedule, value for value
    cfg = search_cfg(*flags, "--fast", space=space)
    trainer = Trainer(build_space(cfg, 10, torch.device("cpu")), None, cfg, torch.device("cpu"))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(trainer.w_opt, float(cfg.epochs), eta_min=0.001)
    load_search_checkpoint(trainer, ckpt, scheduler)
    loaded = trainer.model.state_dict()
    assert loaded.keys() == original["state_dict"].keys()
    for k, v in original["state_dict"].items():
        assert torch.equal(loaded[k], v), k
    for a, b in zip(trainer.arch.alpha_list(), original["alpha"], strict=True):
        assert torch.equal(a, b)
    w_state = trainer.w_opt.state_dict()
    n_weights = len(list(trainer.model.parameters()))
    assert set(w_state["state"]) == set(original["optimizer"]["state"]) == set(range(n_weights))
    for i, s in original["optimizer"]["state"].items():
        assert torch.equal(w_state["state"][i]["momentum_buffer"], s["momentum_buffer"]), i
    assert w_state["param_groups"][0]["lr"] == original["optimizer"]["param_groups"][0]["lr"]
    assert_adam_state_equal(trainer.a_opt.state_dict(), original["arch_optimizer"])
    assert scheduler.state_dict() == original["scheduler"]
    for p in trainer.model.parameters():  # the loaded (torch 1.x) optimizer states still step
        p.grad = torch.zeros_like(p)
    trainer.w_opt.step()

    # 2. through a real projection run: its checkpoint_0 holds the supernet before any tuning
    #    step (the weight optimiser starts afresh at a tenth of the learning rate)
    real_save = common.projection.save_checkpoint

    class Stop(BaseException):
        pass

    def save_checkpoint(state, path):
        real_save(state, path)
        raise Stop

    monkeypatch.setattr(common.projection, "save_checkpoint", save_checkpoint)
    with pytest.raises(Stop):
        run_in_process(script, "--data", str(tiny_cifar10), "--exp_root", str(exp), *flags,
                       "--resume_expid", search, "--resume_epoch", "-1", "--proj_intv", "1")
    first = load_checkpoint(next((base / search).glob("*-proj-*")) / "checkpoint_0.pth.tar")
    assert first["epoch"] == 0 and first["projections"] == 0
    assert first["state_dict"].keys() == original["state_dict"].keys()
    for k, v in original["state_dict"].items():
        assert torch.equal(first["state_dict"][k], v), k
    for a, b in zip(first["alpha"], original["alpha"], strict=True):
        assert torch.equal(a, b)
    assert_adam_state_equal(first["arch_optimizer"], original["arch_optimizer"])
    assert first["optimizer"]["state"] == {} and first["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0025)
    assert not any(any(d) for d in first["projection"]["decided"].values())
