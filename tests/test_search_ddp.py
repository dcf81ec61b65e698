"""Search and projection in several processes (gloo on the CPU), compared with one process.

The unit tests check the pieces in one process. The slow ones start processes: two through
torch.multiprocessing, which take search steps on their shards of float64 batches (with
--sync_bn they equal one process's steps to rounding, in every space and with SDARTS-RS;
without it the processes still hold one supernet), and two through the exp_scripts
(`--nproc 2`, torchrun): search and projection as one process's, resumed with two processes
only, a bad command or a killed process ending the run with one line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.arch import Architecture
from common.batchnorm import SyncBatchNorm2d
from common.config import ConfigError
from common.data import shard_slice
from common.distributed import Group
from common.methods.sdarts import SDARTS, random_smoothing
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from sota.model_search import DartsSupernet
from sota.operations import NoiseOp
from tests.conftest import REPO, fails, read_json, run_script
from tests.fixtures.configs import search_cfg
from tests.fixtures.processes import wait_for_worker

CASES = ("nb201", "s1", "s2", "s3", "s4", "s5", "s5-sdarts-rs")  # s4: noise drawn in each forward
STEPS = 2  # the first alpha step backpropagates into the weights too (_full_backward), the second not
BATCH = 7  # shards of 4 and 3 images: the loss weighting counts
SIZE = 8   # image side
PER_PROCESS_BN = ("nb201", "s5-sdarts-rs")  # the cases also run without --sync_bn
TOL = dict(rtol=1e-12, atol=1e-13)


# -- one process ------------------------------------------------------------------------------------

def test_one_process_group_changes_nothing():
    """Group() of one process: gradients stay, checkpoints say nproc 1 and hold one RNG state."""
    group = Group()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    group.average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    states = group.rng_states(torch.device("cpu"))
    assert states is not None and states["nproc"] == 1 and "process_rng" not in states
    assert group.process_rng(states) is states["rng"]


def test_resume_needs_as_many_processes():
    state = {"nproc": 2, "rng": "zero", "process_rng": ["zero", "one"]}
    with pytest.raises(ConfigError, match=r"^--nproc 1: .* a run of 2 process\(es\): pass --nproc 2"):
        Group().check_nproc(state, Path("checkpoint_1.pth.tar"))
    Group(1, 2).check_nproc(state, Path("checkpoint_1.pth.tar"))
    assert Group(1, 2).process_rng(state) == "one"
    assert Group(1, 3).process_rng(state) == "zero"  # a checkpoint of another run's processes: its "rng"
    Group().check_nproc({}, Path("original.pth.tar"))  # the original's checkpoints: one process


def test_every_process_needs_images_of_every_batch():
    cfg = search_cfg("--batch_size", "2")
    with pytest.raises(ConfigError, match=r"^--batch_size 2: each of the --nproc 3 processes"):
        dataclasses.replace(cfg, nproc=3)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_noise_shards_are_one_process_noise(layout):
    """S4's noise op in two processes (shards of 4 and 3 images): each gets its rows of the noise
    one process draws for the whole batch, in either layout, on a reduction edge (stride 2) too,
    and its RNG moves on as one process's does."""
    x = torch.randn(BATCH, 4, SIZE, SIZE).contiguous(memory_format=layout)
    for stride in (1, 2):
        op = NoiseOp(stride)
        torch.manual_seed(0)
        whole, after = op(x), torch.get_rng_state()
        parts = []
        for rank in range(2):
            torch.manual_seed(0)
            with Group(rank, 2).computing(BATCH):
                parts.append(op(x[shard_slice(BATCH, rank, 2)]))
            assert torch.equal(torch.get_rng_state(), after)
        assert torch.equal(torch.cat(parts), whole)
    with Group(1, 2).computing(BATCH + 2), pytest.raises(RuntimeError, match="rows 5:9 of a batch of 9"):
        op(x[4:])


# -- processes started in this test (torch.multiprocessing) --------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _space(case: str, sync_bn: bool) -> Space:
    """A tiny float64 supernet, alpha far from uniform, one edge decided (its dead ops are
    skipped: their zero-filled gradients are averaged like the others)."""
    torch.manual_seed(0)
    model = NB201Supernet(C=2, N=1) if case == "nb201" else DartsSupernet(2, 10, 2, case.split("-")[0])
    model = model.double()
    if sync_bn:
        model = SyncBatchNorm2d.convert(model)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    with torch.no_grad():
        for a in arch.parameters():
            a.normal_()
    kind = arch.kinds[0]
    arch.project_op(kind, 1, min(2, arch.alphas[kind].shape[1] - 1))
    return Space(label=case, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)


def _steps(case: str, group: Group, sync_bn: bool) -> dict[str, list[torch.Tensor]]:
    """STEPS alpha and weight steps of this process on its shards of float64 batches of BATCH
    images. SDARTS: each process draws its own noise (process 0's must count); otherwise the
    processes' RNGs agree, as in a run (S4's noise op: each process's rows of one draw)."""
    space = _space(case, sync_bn)
    method = SDARTS(random_smoothing, 0.3) if case.endswith("sdarts-rs") else None
    trainer = Trainer(space, None, search_cfg(), torch.device("cpu"), group=group, method=method)
    g = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        xa, x = (torch.randn(BATCH, 3, SIZE, SIZE, generator=g, dtype=torch.float64) for _ in range(2))
        ya, y = (torch.randint(0, 10, (BATCH,), generator=g) for _ in range(2))
        part = shard_slice(BATCH, group.rank, group.size)
        trainer.alpha_step(xa[part], ya[part], BATCH)
        torch.manual_seed(100 * group.rank * case.endswith("sdarts-rs") + step)
        trainer.weight_step(x[part], y[part], BATCH)
    return {"alpha": [a.detach() for a in space.arch.parameters()],
            "state": list(space.model.state_dict().values())}


def _process(rank: int, processes: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=processes)
    group = Group(rank, processes)
    runs = [*((case, True) for case in CASES), *((case, False) for case in PER_PROCESS_BN)]
    torch.save({(case, sync): _steps(case, group, sync) for case, sync in runs}, f"{out}.{rank}")
    group.close()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    out = str(tmp_path_factory.mktemp("steps") / "steps.pt")
    torch.multiprocessing.spawn(_process, args=(2, _free_port(), out), nprocs=2)
    return [torch.load(f"{out}.{rank}", weights_only=False) for rank in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_sync_bn_steps_equal_one_process(two_processes, case):
    """With --sync_bn, two processes' steps give one process's alphas and state_dict (running
    statistics included) to float64 rounding, and both processes hold the same supernet."""
    one = _steps(case, Group(), sync_bn=False)
    zero, first = (p[case, True] for p in two_processes)
    for key in ("alpha", "state"):
        for a, b, c in zip(zero[key], first[key], one[key], strict=True):
            torch.testing.assert_close(a, c, **TOL)
            assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("case", PER_PROCESS_BN)
def test_processes_hold_one_supernet_with_their_own_batch_norm(two_processes, case):
    """Without --sync_bn each process normalises its own shard: the weights and alpha still
    agree to the bit (averaged gradients, process 0's perturbation), the steps differ from one
    process's, and only the running statistics are each process's own."""
    one = _steps(case, Group(), sync_bn=False)
    zero, first = (p[case, False] for p in two_processes)
    space = _space(case, sync_bn=False)
    buffers = [name in dict(space.model.named_buffers()) for name in space.model.state_dict()]
    assert all(torch.equal(a, b) for a, b in zip(zero["alpha"], first["alpha"], strict=True))
    assert all(torch.equal(a, b) for a, b, buffer in zip(zero["state"], first["state"], buffers, strict=True)
               if not buffer)
    assert any(not torch.allclose(a, c) for a, c, buffer in zip(zero["state"], one["state"], buffers, strict=True)
               if not buffer)


# -- torchrun, through the exp_scripts' --nproc 2 ---------------------------------------------------------

TINY = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100", "--gpu", "cpu",
        "--no_tensorboard", "--api_path", "/nonexistent/bench.pth"]


# a log record's first line: "MM/DD HH:MM:SS AM message" (common/experiment.py's format); the
# config block and a multi-line message's other lines are not records
RECORD = re.compile(r"\d\d/\d\d \d\d:\d\d:\d\d [AP]M (.*)")


def decisions(log: str) -> list[str]:
    """The projection's choices in order: its edge, then the genotype after it, each round."""
    messages = (m[1] for m in map(RECORD.fullmatch, log.splitlines()) if m)
    return [m for m in messages if re.match(r"genotype after projection \d|projection \d+: ", m)]


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cifar10_dir) -> list[str]:
    """A 2-epoch NAS-Bench-201 search of one process; the arguments that find it."""
    root = tmp_path_factory.mktemp("exp")
    args = ["--data", str(cifar10_dir), "--exp_root", str(root), *TINY, "--epochs", "2"]
    run_script("darts-201.sh", *args)
    return args


def nb201(args: list[str]) -> Path:
    return Path(args[args.index("--exp_root") + 1]) / "nasbench201"


TWO = ["--nproc", "2", "--sync_bn"]


@pytest.fixture(scope="module")
def searched_by_two(searched) -> Path:
    """The search of `searched`, in two processes with --sync_bn; its folder."""
    run_script("darts-201.sh", *searched, *TWO, "--expid_tag", "two")
    return nb201(searched) / "search-darts-201-1-two"


@pytest.mark.slow
def test_search_in_two_processes_is_one_process_search(searched, searched_by_two):
    """--sync_bn: the same genotypes, alphas and weights as one process (to float32 rounding);
    process 0 alone wrote, the files one process writes; the checkpoint says 2 processes."""
    one, two = nb201(searched) / "search-darts-201-1", searched_by_two
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert read_json(two / "result.json")["genotype"] == read_json(one / "result.json")["genotype"]
    a, b = (torch.load(f / "checkpoint_2.pth.tar", weights_only=True) for f in (one, two))
    assert (a["nproc"], b["nproc"], len(b["process_rng"])) == (1, 2, 2)
    torch.testing.assert_close(b["alpha"][0], a["alpha"][0], rtol=0, atol=5e-5)  # Adam steps are 3e-4
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-3, atol=1e-4)
    log = (two / "log.txt").read_text()
    assert log.count("search finished") == 1 and "2 processes" in log


@pytest.mark.slow
def test_projection_in_two_processes_decides_as_one(searched):
    """Each process scores its shard, the scores are summed over the processes: two processes
    (--sync_bn) project the edges in one process's order, to the same ops and genotype (--fast:
    each scoring pass and tuning epoch is one batch, of 8 images per process)."""
    args = [*searched, "--resume_epoch", "2", "--proj_intv", "1", "--fast"]
    run_script("darts-proj-201.sh", *args, "--log_tag", "one")
    run_script("darts-proj-201.sh", *args, "--log_tag", "two", "--nproc", "2", "--sync_bn")
    one, two = (nb201(searched) / "search-darts-201-1" / f"darts-proj-201-seed1-acc-intv1-ep2-{tag}"
                for tag in ("one", "two"))
    order = decisions((one / "log.txt").read_text())
    assert len(order) == 2 * 6 and decisions((two / "log.txt").read_text()) == order
    assert read_json(two / "result.json")["genotype"] == read_json(one / "result.json")["genotype"]
    assert read_json(two / "result.json")["status"] == "finished"


@pytest.mark.slow
def test_projection_resumes_with_its_processes_only(searched, tmp_path):
    """An interrupted two-process projection continues to the uninterrupted one's end (each
    process restores its own RNG state); one process may not continue it, and says so in one
    line without touching the folder."""
    args = [*searched, "--resume_epoch", "2", "--proj_intv", "1", "--log_tag", "cut", "--fast"]
    run_script("darts-proj-201.sh", *args, "--nproc", "2")
    folder = nb201(searched) / "search-darts-201-1" / "darts-proj-201-seed1-acc-intv1-ep2-cut"
    full = tmp_path / "full"
    shutil.copytree(folder, full)
    result = read_json(folder / "result.json")
    result["status"] = "running"  # as if stopped after the checkpoint of tuning epoch 2 (of 6)
    (folder / "result.json").write_text(json.dumps(result))
    for later in folder.glob("checkpoint_*.pth.tar"):
        if int(later.name.split("_")[1].split(".")[0]) > 2:
            later.unlink()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    msg = fails("darts-proj-201.sh", *args)
    errors = [line for line in msg.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --nproc 1: ") and "pass --nproc 2" in errors[0], msg
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    run_script("darts-proj-201.sh", *args, "--nproc", "2")
    assert read_json(folder / "result.json")["genotype"] == read_json(full / "result.json")["genotype"]
    assert (folder / "history.jsonl").read_text() == (full / "history.jsonl").read_text()
    a, b = (torch.load(f / "checkpoint_6.pth.tar", weights_only=True) for f in (folder, full))
    assert torch.equal(a["alpha"][0], b["alpha"][0])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


@pytest.mark.slow
def test_runs_of_two_processes_end_cleanly(searched):
    """20 two-process runs back to back (10 searches, 10 projections, --fast) each exit 0 with a
    finished result.json, and no process aborts at exit: a process group that outlived
    Group.close (common/distributed.py) aborted about one such run in 30."""
    folder = nb201(searched)
    for i in range(10):
        search = run_script("darts-201.sh", *searched, "--nproc", "2", "--fast", "--expid_tag", f"end{i}")
        projection = run_script("darts-proj-201.sh", *searched, "--nproc", "2", "--fast", "--resume_epoch", "2",
                                "--proj_intv", "1", "--log_tag", f"end{i}")
        for proc in (search, projection):
            assert "terminate called" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
        assert read_json(folder / f"search-darts-201-1-end{i}" / "result.json")["status"] == "finished"
        assert read_json(folder / "search-darts-201-1" / f"darts-proj-201-seed1-acc-intv1-ep2-end{i}" /
                         "result.json")["status"] == "finished"


@pytest.mark.slow
def test_bad_command_ends_every_process_with_one_line(searched):
    """96 training images: halves of 48, and batches of 47 leave a last batch of 1 image."""
    root = Path(searched[searched.index("--exp_root") + 1])
    before = sorted(p.name for p in root.rglob("*"))
    proc = run_script("darts-201.sh", *searched, "--batch_size", "47", "--nproc", "2", "--expid_tag", "bad",
                      check=False)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in out, out[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: --batch_size 47: the last batch"), out[-3000:]
    assert sorted(p.name for p in root.rglob("*")) == before


@pytest.mark.slow
def test_a_process_that_dies_ends_the_run_with_one_line(searched, searched_by_two):
    """Process 1 killed mid-search: torchrun stops process 0 (it marks the run failed), the
    launcher names the process that died in its last line, and the checkpoints stay whole. One
    process may not continue the run; a checkpoint process 0 cannot write ends both processes
    with one line; two continue the run to the uninterrupted run's end, to the bit."""
    marker = f"{os.getpid()}-{time.time()}"
    args = [*searched, *TWO, "--ckpt_interval", "1", "--expid_tag", "killed"]
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / "darts-201.sh"), *args], cwd="/", text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
                                 "DARTS_PT_TEST_RUN": marker})
    folder = nb201(searched) / "search-darts-201-1-killed"
    pid = wait_for_worker(proc, marker, 1, (folder / "checkpoint_1.pth.tar").exists)
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors == out.splitlines()[-1:], out[-3000:]
    assert errors[0].startswith("error: process 1 ended with signal SIGKILL, so torchrun stopped the others"), out
    result = read_json(folder / "result.json")  # torchrun's SIGTERM to process 0 is not an interruption
    assert result["status"] == "failed" and result["error"].startswith("process 1 ended with signal SIGKILL"), result
    assert not (folder / "checkpoint_2.pth.tar").exists()

    msg = fails("darts-201.sh", *searched, "--sync_bn", "--expid_tag", "killed", "--resume_epoch", "-1")
    errors = [line for line in msg.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --nproc 1: ") and "pass --nproc 2" in errors[0], msg

    (folder / "checkpoint_2.pth.tar").mkdir()  # process 0 cannot write it: every process ends, with one line
    msg = fails("darts-201.sh", *args, "--resume_epoch", "1")
    errors = [line for line in msg.splitlines() if re.match(r"(\S+ \S+ [AP]M )?error: ", line)]  # logged
    assert len(errors) == 1 and "cannot write checkpoint" in errors[0] and "checkpoint_2.pth.tar" in errors[0], msg
    (folder / "checkpoint_2.pth.tar").rmdir()
    run_script("darts-201.sh", *args, "--resume_epoch", "-1")
    assert (folder / "history.jsonl").read_text() == (searched_by_two / "history.jsonl").read_text()
    a, b = (torch.load(f / "checkpoint_2.pth.tar", weights_only=True) for f in (folder, searched_by_two))
    assert torch.equal(a["alpha"][0], b["alpha"][0])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
