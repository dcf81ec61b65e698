"""Interrupted runs continue: SIGINT or SIGTERM stops a run at its next step or epoch end with
what it needs saved, its last line is the command that continues it, and that command, pasted,
ends the run bit for bit as if it had never stopped (common/runstate.py). A run continued from
an earlier checkpoint moves the later trajectory's checkpoints aside.

The end-to-end tests send real signals to the exp_scripts' Python at exact places: the scripts
run under tests/fixtures/pause_runner.py, which waits at a pause point until the signal comes.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common import checkpoint as ckpt
from common import runstate
from common.arch import Architecture
from common.data import Batches, ImageSet
from common.distributed import Group
from common.experiment import resume_checkpoint, set_aside
from common.imagefolder import Stream, open_splits
from common.space import Space
from common.trainer import SearchData, Trainer
from tests.conftest import REPO, TEST_GPU, _script_env, read_json, run_script
from tests.fixtures.configs import search_cfg
from tests.fixtures.datasets import write_imagefolder
from tests.fixtures.processes import wait_for_worker
from tests.test_faults import assert_same_run, differences

# -- stop points, in this process ------------------------------------------------------------


def test_inside_the_training_loops_a_signal_waits_for_the_next_stop_point():
    saved = []
    with runstate.handling_signals():
        with pytest.raises(runstate.Interrupted) as stop, runstate.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert runstate.pending() == signal.SIGTERM  # recorded, nothing raised
            runstate.stop_point(Group(), lambda: saved.append(1) or "epoch 1 step 2")
        assert saved == [1] and stop.value.signum == signal.SIGTERM and stop.value.saved == "epoch 1 step 2"
        assert "saved at epoch 1 step 2" in stop.value.message()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back


def test_a_second_signal_or_one_outside_the_loops_stops_at_once():
    with runstate.handling_signals():
        with pytest.raises(runstate.Interrupted) as stop, runstate.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("the second signal did not stop the run")
        assert stop.value.saved is None
    with runstate.handling_signals(), pytest.raises(runstate.Interrupted):  # a scoring round, say
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    with runstate.handling_signals(), pytest.raises(runstate.Interrupted):  # after the last stop point
        with runstate.deferred():
            os.kill(os.getpid(), signal.SIGINT)


def test_an_evaluation_pass_stops_at_once_saved_as_it_began():
    """In one process a signal stops an epoch's evaluation pass at once; what is saved is the
    state the epoch's training left, the random state too (S4's noise op draws from it)."""
    began, seen = torch.get_rng_state(), []
    with runstate.handling_signals(), runstate.deferred():
        with pytest.raises(runstate.Interrupted) as stop:
            with runstate.stoppable(Group(), torch.device("cpu"),
                                    lambda: seen.append(torch.get_rng_state()) or "the end of epoch 0's steps"):
                torch.rand(10)  # the pass draws
                os.kill(os.getpid(), signal.SIGTERM)
                pytest.fail("the signal did not stop the pass")
    assert stop.value.saved == "the end of epoch 0's steps" and torch.equal(seen[0], began)


def test_no_signal_no_stop():
    with runstate.handling_signals(), runstate.deferred():
        runstate.stop_point(Group(), lambda: pytest.fail("saved without a signal"))


def _checkpoint(path: Path, epoch: int, step: int | None = None) -> None:
    ckpt.save_checkpoint({"epoch": epoch, **({"step": step} if step is not None else {})}, path)


def test_the_latest_checkpoint_is_the_mid_epoch_one_when_newer(tmp_path):
    _checkpoint(ckpt.partial_path(tmp_path), 0, 2)  # stopped in epoch 0, before any epoch's checkpoint
    assert ckpt.latest_checkpoint(tmp_path) == resume_checkpoint(tmp_path, -1, False) == ckpt.partial_path(tmp_path)
    _checkpoint(ckpt.checkpoint_path(tmp_path, 1), 1)
    assert ckpt.latest_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 1)
    for epoch, step in ((1, 0), (1, 3), (2, 0)):  # the start of an epoch, or into it, after checkpoint 1
        _checkpoint(ckpt.partial_path(tmp_path), epoch, step)
        newer = (epoch, step) > (1, 0)
        assert (resume_checkpoint(tmp_path, -1, False) == ckpt.partial_path(tmp_path)) == newer
    assert resume_checkpoint(tmp_path, 1, False) == ckpt.checkpoint_path(tmp_path, 1)
    assert ckpt.latest_checkpoint(tmp_path, "supernet") is None


def test_the_later_trajectory_is_moved_aside(tmp_path, log_lines):
    for e in (1, 2, 3):
        _checkpoint(ckpt.checkpoint_path(tmp_path, e), e)
    _checkpoint(ckpt.partial_path(tmp_path), 3, 1)
    set_aside(tmp_path, ckpt.later_checkpoints(tmp_path, 1), "continuing from epoch 1")
    assert ckpt.checkpoint_epochs(tmp_path) == [1] and not ckpt.partial_path(tmp_path).exists()
    (aside,) = tmp_path.glob(".old-*")
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoint_2.pth.tar", "checkpoint_3.pth.tar",
                                                       ckpt.PARTIAL]
    assert any(line.startswith("continuing from epoch 1: moved checkpoint_2.pth.tar") for line in log_lines)


@pytest.mark.parametrize("sampling", ["fresh", "epoch"])
@pytest.mark.parametrize("tuning", [False, True])
def test_an_epoch_continued_at_step_s_draws_the_batches_of_its_tail(sampling, tuning):
    """The batches of steps S.. are those the whole epoch gives them (the alpha half of `--sampling
    epoch`, shorter than the weight half, restarts in the middle of the epoch)."""
    n = 40  # 22 images train the weights (3 batches of 8), 18 alpha (3 batches, the 3rd of 2)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 4, 4, 3).contiguous()
    data = ImageSet(images, torch.arange(n), 10, (0.5,) * 3, (0.5,) * 3, 1)
    train, valid = (Batches(data, idx, 8, augment=True, seed=5) for idx in (torch.arange(22), torch.arange(22, n)))
    space = Space(label="toy", model=torch.nn.Linear(1, 1), arch=Architecture({"cell": (1, 2)}), op_names={},
                  edge_names=[], genotype=lambda w: None)
    t = Trainer(space, SearchData(train, valid.with_limit(2), None), search_cfg("--sampling", sampling),
                torch.device("cpu"))
    labels = [[(y.tolist(), m) for _, y, m in pair] for pair in t._pairs(3, 0.5, tuning)]
    assert len(labels) == 3
    for start in (1, 2):
        assert [[(y.tolist(), m) for _, y, m in pair] for pair in t._pairs(3, 0.5, tuning, start)] == labels[start:]


def test_data_loader_workers_leave_signals_to_the_run(tmp_path):
    """Ctrl-C and Slurm signal every process of a job: the workers streaming ImageNet go on, so
    the training process can stop at its next step (a worker that died would end it with an error)."""
    write_imagefolder(tmp_path, classes=("a", "b"), n_per_class=8, n_test_per_class=1, size=(40, 36),
                      test_split="val")
    train, _ = open_splits(tmp_path, 32)
    stream = Stream(train, 2, train=True, seed=0, shard=(0, 1), workers=1, device=torch.device("cpu"))
    batches = stream(0)
    next(batches)
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == os.getpid()]
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
    time.sleep(0.5)
    assert len(list(batches)) == len(stream) - 1


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


# -- end to end: real signals, the printed command pasted --------------------------------------

# 96 training images: 48 train the weights, 3 steps of 16 per epoch (an epoch has a middle)
NB201 = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
         "--gpu", TEST_GPU, "--no_tensorboard"]
EVAL = ["--arch", "darts_pt_s5_0", "--init_channels", "4", "--layers", "3", "--batch_size", "32",
        "--report_freq", "100", "--gpu", TEST_GPU, "--no_tensorboard"]


@pytest.fixture(scope="module")
def pause_python(tmp_path_factory) -> Path:
    """$PYTHON for the exp_scripts: this interpreter, running tests/fixtures/pause_runner.py."""
    wrapper = tmp_path_factory.mktemp("bin") / "python"
    runner = REPO / "tests" / "fixtures" / "pause_runner.py"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(runner))} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def nb201(tmp_path_factory, cifar10_dir, bench) -> list[str]:
    exp = tmp_path_factory.mktemp("exp")
    return ["--data", str(cifar10_dir), "--exp_root", str(exp), "--api_path", str(bench[0]), *NB201]


def signalled(pause_python: Path, script: str, args: list[str], pause: str, signum: int, tmp: Path,
              timeout: float = 300) -> str:
    """Run `script` until its pause point, send `signum` to its Python there, let it end; its
    output (it must have stopped on the signal)."""
    marker = tmp / f"paused-{time.monotonic_ns()}"
    env = _script_env({"PYTHON": str(pause_python), "DARTS_PT_TEST_PAUSE": pause, "DARTS_PT_TEST_MARKER": str(marker),
                       "DARTS_PT_TEST_PAUSE_UNTIL": "signal"})
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / script), *args], cwd="/", env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if marker.exists():
        os.kill(int(marker.read_text()), signum)
    out, _ = proc.communicate(timeout=timeout)
    assert marker.exists(), f"{script} never reached {pause}:\n{out[-4000:]}"
    assert proc.returncode == 128 + signum, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    return out


def continuation(out: str) -> str:
    """The command the run's last line says continues it."""
    last = out.rstrip().splitlines()[-1]
    assert "To continue: " in last, out[-3000:]
    return last.split("To continue: ", 1)[1]


def pasted(command: str, *more: str) -> str:
    """Run a printed command as a user pastes it (with `more` arguments typed after it); its output."""
    proc = subprocess.run(["bash", "-c", " ".join([command, *map(shlex.quote, more)])], cwd="/",
                          env=_script_env(None), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def hint(out: str, words: str) -> str:
    """The command a log line `... WORDS `COMMAND`` names."""
    line = next(line for line in out.splitlines() if words in line)
    return line.split(words + " `", 1)[1].rstrip("`")


def search_dir(args: list[str], tag: str) -> Path:
    return Path(args[args.index("--exp_root") + 1]) / "nasbench201" / f"search-darts-201-1-{tag}"


@pytest.fixture(scope="module")
def searched(nb201) -> tuple[list[str], str]:
    """An uninterrupted 3-epoch search (no checkpoint before its end: --ckpt_interval 20) and its output."""
    args = [*nb201, "--epochs", "3"]
    return args, run_script("darts-201.sh", *args, "--expid_tag", "ref").stdout


@pytest.mark.slow
@pytest.mark.parametrize("pause, signum, saved, step", [
    ("step:5", signal.SIGINT, "epoch 1 step 2", 2),                               # in epoch 1, its 2nd step
    ("evaluation:2", signal.SIGTERM, "the end of epoch 1's training steps", 3),   # in epoch 1's valid pass
])
def test_a_search_stopped_before_its_first_checkpoint_continues_as_uninterrupted(searched, pause_python, tmp_path,
                                                                                 pause, signum, saved, step):
    args, _ = searched
    tag = f"cut{signum}"
    cut = search_dir(args, tag)
    out = signalled(pause_python, "darts-201.sh", [*args, "--expid_tag", tag], pause, signum, tmp_path)
    assert f"interrupted by {signal.Signals(signum).name}, saved at {saved}. To continue: " in out
    assert ckpt.checkpoint_epochs(cut) == [] and ckpt.partial_path(cut).is_file()
    assert read_json(cut / "result.json")["status"] == "interrupted"
    command = continuation(out)
    assert command.endswith(f"--expid_tag {tag} --resume_epoch -1")
    assert f"resumed from epoch 1 step {step}" in pasted(command)
    assert_same_run(search_dir(args, "ref"), cut)


@pytest.mark.slow
@pytest.mark.parametrize("pause, signum, stopped", [
    ("step:5", signal.SIGTERM, "saved at epoch 1 step 2"),                  # tuning epoch 1, mid-way
    ("evaluation:2", signal.SIGINT, "saved at the end of epoch 1's training steps"),  # its valid pass
    ("score:8", signal.SIGINT, "(it continues from checkpoint_1.pth.tar)"),  # round 2, scoring its 3rd op: at once
])
def test_a_projection_stopped_continues_as_uninterrupted(searched, pause_python, tmp_path, pause, signum, stopped):
    """The search's last lines name the command that projects it; run as printed (with the
    interval and batch size of a tiny run after it), it is the reference projection."""
    args, out = searched
    project = hint(out, "project it with")
    assert project.startswith(f"bash {REPO}/exp_scripts/darts-proj-201.sh --resume_expid search-darts-201-1-ref "
                              "--resume_epoch 3 --exp_root ")
    tiny = ["--proj_intv", "1", *NB201]
    base = search_dir(args, "ref")
    if not (base / "darts-proj-201-seed1-acc-intv1-ep3-full").exists():
        pasted(project, *tiny, "--log_tag", "full")
    words = shlex.split(project)
    tag = f"cut{pause.split(':')[0]}"
    out = signalled(pause_python, Path(words[1]).name, [*words[2:], *tiny, "--log_tag", tag], pause, signum, tmp_path)
    assert f"interrupted by {signal.Signals(signum).name}{', ' if 'saved' in stopped else ' '}{stopped}" in out
    assert "resumed projection at tuning epoch 1" in pasted(continuation(out))
    name = "darts-proj-201-seed1-acc-intv1-ep3"
    assert_same_run(base / f"{name}-full", base / f"{name}-{tag}")


@pytest.mark.slow
def test_a_projection_stopped_while_training_its_supernet_on_continues_as_uninterrupted(nb201, pause_python,
                                                                                         tmp_path):
    """A projection of an epoch-1 checkpoint with --epochs 2 first trains the supernet one more
    search epoch, checkpointed in its own folder: stopped in it, it continues there."""
    run_script("darts-201.sh", *nb201, "--epochs", "1", "--expid_tag", "early")
    args = [*nb201, "--resume_expid", "search-darts-201-1-early", "--resume_epoch", "1", "--epochs", "2",
            "--proj_intv", "1"]
    run_script("darts-proj-201.sh", *args, "--log_tag", "full")
    base = search_dir(nb201, "early")
    cut = base / "darts-proj-201-seed1-acc-intv1-ep1-to2-cut"
    out = signalled(pause_python, "darts-proj-201.sh", [*args, "--log_tag", "cut"], "step:2", signal.SIGTERM, tmp_path)
    assert "interrupted by SIGTERM, saved at epoch 1 step 2. To continue: " in out
    assert ckpt.partial_path(cut, "supernet").is_file() and not ckpt.checkpoint_epochs(cut, "supernet")
    assert "from search epoch 1 step 2" in pasted(continuation(out))
    assert_same_run(base / "darts-proj-201-seed1-acc-intv1-ep1-to2-full", cut)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, cifar10_dir) -> list[str]:
    """An uninterrupted 2-epoch evaluation (3 steps of 32 per epoch, drop path on)."""
    args = ["--data", str(cifar10_dir), "--exp_root", str(tmp_path_factory.mktemp("exp")), *EVAL, "--epochs", "2"]
    run_script("eval.sh", *args, "--expid_tag", "ref")
    return args


def eval_dir(args: list[str], tag: str) -> Path:
    return Path(args[args.index("--exp_root") + 1]) / "sota" / "cifar10" / "eval" / f"eval-darts_pt_s5_0-2-{tag}"


@pytest.mark.slow
@pytest.mark.parametrize("pause, epochs, saved, resumed", [
    ("stop:5", [1], "epoch 1 step 2", "1 step 2"),                                  # epoch 1, after 2 steps
    ("evaluation:1", [], "the end of epoch 0's training steps", "0 step 3"),    # epoch 0's test pass
])
def test_an_evaluation_stopped_continues_as_uninterrupted(evaluated, pause_python, tmp_path, pause, epochs, saved,
                                                          resumed):
    tag = f"cut{pause.split(':')[0]}"
    cut = eval_dir(evaluated, tag)
    out = signalled(pause_python, "eval.sh", [*evaluated, "--expid_tag", tag], pause, signal.SIGINT, tmp_path)
    assert f"interrupted by SIGINT, saved at {saved}. To continue: " in out
    assert ckpt.checkpoint_epochs(cut) == epochs and ckpt.partial_path(cut).is_file()
    assert f"resumed from epoch {resumed}" in pasted(continuation(out))
    assert_same_run(eval_dir(evaluated, "ref"), cut)  # checkpoints, best model, history, result


# -- several processes -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_agree_to_stop_where_one_was_signalled(nb201, tmp_path):
    """SIGTERM reaches process 1 only: both stop at the same step, save, and the command pasted
    continues both to the end of an uninterrupted run of two processes."""
    args = [*nb201, "--epochs", "3", "--nproc", "2", "--gpu", "cpu"]
    args[args.index("--exp_root") + 1] = str(tmp_path)  # a folder of its own
    run_script("darts-201.sh", *args, "--expid_tag", "ref2")
    marker, cut = f"{os.getpid()}-{time.time()}", search_dir(args, "cut2")
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / "darts-201.sh"), *args, "--expid_tag", "cut2"],
                            cwd="/", text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=_script_env({"DARTS_PT_TEST_RUN": marker}))
    log = cut / "log.txt"
    pid = wait_for_worker(proc, marker, 1, lambda: "epoch 1 lr" in (log.read_text() if log.exists() else ""))
    os.kill(pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "Traceback" not in out and "error:" not in out, out[-3000:]
    assert "interrupted by SIGTERM, saved at " in out
    state = torch.load(ckpt.latest_checkpoint(cut), weights_only=True)
    assert state["nproc"] == 2 and len(state["process_rng"]) == 2
    assert "resumed from epoch" in pasted(continuation(out))
    assert_same_run(search_dir(args, "ref2"), cut)


# -- continuing from an earlier checkpoint: the later trajectory is moved aside ---------------------

@pytest.mark.slow
def test_a_search_continued_from_an_earlier_epoch_never_picks_the_old_trajectory(searched, pause_python, tmp_path):
    args = [*searched[0], "--ckpt_interval", "1", "--expid_tag", "old"]
    run_script("darts-201.sh", *args)
    folder = search_dir(args, "old")
    later = {e: (folder / f"checkpoint_{e}.pth.tar").read_bytes() for e in (2, 3)}
    out = signalled(pause_python, "darts-201.sh", [*args, "--resume_epoch", "1"], "step:2", signal.SIGINT, tmp_path)
    assert "moved checkpoint_2.pth.tar, checkpoint_3.pth.tar aside to " in out
    assert ckpt.checkpoint_epochs(folder) == [1] and ckpt.partial_path(folder).is_file()
    (aside,) = folder.glob(".old-*")
    assert {e: (aside / f"checkpoint_{e}.pth.tar").read_bytes() for e in (2, 3)} == later
    assert "resumed from epoch 1 step 2" in pasted(continuation(out))  # not from the old checkpoint 3
    old, new = (torch.load(f / "checkpoint_3.pth.tar", weights_only=True) for f in (aside, folder))
    assert not differences(old, new)  # the same trajectory again, from epoch 1


@pytest.mark.slow
def test_an_evaluation_continued_from_an_earlier_epoch_never_picks_the_old_trajectory(evaluated, pause_python,
                                                                                       tmp_path):
    args = [*evaluated[:-1], "3", "--ckpt_keep_every", "1", "--expid_tag", "old"]  # 3 epochs, every checkpoint kept
    run_script("eval.sh", *args)
    folder = eval_dir(args, "old")
    best = torch.load(folder / "model_best.pth.tar", weights_only=True)["epoch"]
    out = signalled(pause_python, "eval.sh", [*args, "--resume_epoch", "1"], "stop:2", signal.SIGTERM, tmp_path)
    (aside,) = folder.glob(".old-*")
    moved = {"checkpoint_2.pth.tar", "checkpoint_3.pth.tar"} | ({"model_best.pth.tar"} if best > 1 else set())
    assert {p.name for p in aside.iterdir()} == moved
    assert ckpt.checkpoint_epochs(folder) == [1] and ckpt.partial_path(folder).is_file()
    assert "resumed from epoch 1 step 2" in pasted(continuation(out))
    assert json.loads((folder / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 2


# -- a study: Ctrl-C stops its runs where they are, saved; the same command continues them ----------

@pytest.mark.slow
def test_a_study_stopped_with_ctrl_c_continues_its_runs_from_where_they_stopped(tmp_path, cifar10_dir, bench):
    args = ["--name", "s", "--exp_root", str(tmp_path), "--space", "nb201", "--dataset", "cifar10", "--method",
            "darts", "--seed", "4", "--stages", "search", "--data", str(cifar10_dir), "--api_path", str(bench[0]),
            *NB201, "--epochs", "3"]
    folder = tmp_path / "studies" / "s" / "runs" / "nasbench201" / "search-darts-201-4"
    # the study and its runs: a terminal's foreground group, where Ctrl-C is not ignored (a process
    # inherits an ignored SIGINT, as tests started in the background by a shell have it, and Python
    # then raises no KeyboardInterrupt in the study)
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / "study.sh"), *args], cwd="/", text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_script_env(None),
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while "epoch 1 lr" not in ((folder / "log.txt").read_text() if (folder / "log.txt").exists() else "") \
            and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=300)
    assert "stopped; the same command resumes the study" in out, out[-3000:]
    log = (folder / "log.txt").read_text()
    assert "interrupted by SIGINT, saved at " in log, log[-3000:]  # at its next step or epoch end
    assert ckpt.partial_path(folder).is_file() and ckpt.checkpoint_epochs(folder) == []
    rows = len((folder / "history.jsonl").read_text().splitlines())
    assert f"{rows}/3 epochs" in run_script("study.sh", *args, "--status").stdout  # a partial is no epoch

    run_script("study.sh", *args, timeout=600)
    assert "resumed from epoch " in (folder / "log.txt").read_text()
    assert read_json(folder / "result.json")["status"] == "finished"
    assert [json.loads(r)["epoch"] for r in (folder / "history.jsonl").read_text().splitlines()] == [0, 1, 2]
