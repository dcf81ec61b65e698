"""Evaluation training in several processes (DistributedDataParallel, gloo on the CPU).

The unit tests check the pieces in one process: shards of the batches, the synchronised batch
norm's state, the per-process seeds. The slow ones start processes: two in-process through
torch.multiprocessing (the synchronised batch norm and the loss weighting, exact in float64),
the others through `bash exp_scripts/eval.sh --nproc 2` (torchrun), compared with one process.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from common.batchnorm import BatchNorm2d, SyncBatchNorm2d
from common.data import TRAIN, Batches, ImageSet, shard_slice
from common.distributed import Group
from sota.genotypes import get_genotype
from sota.model_eval import NetworkCIFAR
from tests.conftest import fails, read_json, run_script

TINY = ["--init_channels", "4", "--layers", "3", "--report_freq", "1", "--gpu", "cpu"]
# float32 sums over the batch in another order (per process, then across processes): the
# first steps' losses of two processes with --sync_bn agree with one process to this.
RTOL = 1e-5


# -- one process -----------------------------------------------------------------------------------

def test_shards_split_each_batch_as_evenly_as_possible():
    for n in (1, 2, 7, 31, 96):
        for processes in (1, 2, 3, 4):
            parts = [shard_slice(n, r, processes) for r in range(processes)]
            sizes = [p.stop - p.start for p in parts]
            assert parts[0].start == 0 and parts[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))  # contiguous, in rank order
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_together_see_the_batches_of_one(processes):
    """Order, crops, flips and cutout are drawn for the whole batch: the shards, put back
    together, are one process's batch, to the bit (a last batch smaller than the others too)."""
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (23, 8, 8, 3), dtype=torch.uint8, generator=g),
                    torch.randint(0, 10, (23,), generator=g), 10, (0.5,) * 3, (0.25,) * 3, padding=2)
    kwargs = dict(augment=True, cutout_length=4, seed=3)
    whole = list(Batches(data, None, 7, **kwargs)((TRAIN, 1), 0.5))
    shards = [list(Batches(data, None, 7, shard=(r, processes), **kwargs)((TRAIN, 1), 0.5))
              for r in range(processes)]
    assert [len(y) for _, y in whole] == [Batches(data, None, 7, augment=False).batch_size_of(s) for s in range(4)]
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([s[step][0] for s in shards]), x)
        assert torch.equal(torch.cat([s[step][1] for s in shards]), y)


def test_sync_bn_keeps_the_state_dict_and_is_batch_norm_in_one_process():
    """Checkpoints of --sync_bn runs load into a plain network and back; without a process
    group the synchronised batch norm computes what BatchNorm2d does, to the bit."""
    torch.manual_seed(0)
    plain = NetworkCIFAR(4, 10, 3, True, get_genotype("darts_pt_s5_0"))
    sync = SyncBatchNorm2d.convert(NetworkCIFAR(4, 10, 3, True, get_genotype("darts_pt_s5_0")))
    sync.load_state_dict(plain.state_dict())
    bns = [m for m in sync.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, SyncBatchNorm2d) for m in bns)
    assert {k: v.shape for k, v in sync.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    nets = [n.to(memory_format=torch.channels_last) for n in (plain, sync)]
    (a, _), (b, _) = (n(x) for n in nets)
    assert torch.equal(a, b)
    for k, v in plain.state_dict().items():
        assert torch.equal(sync.state_dict()[k], v), k


def test_each_process_draws_its_own_reproducible_masks():
    seeds = [Group(rank, 4).seed(2) for rank in range(4)]
    assert seeds[0] == 2  # process 0 keeps the run's seed, as one process does
    assert len(set(seeds)) == 4 and seeds == [Group(rank, 4).seed(2) for rank in range(4)]
    assert all(0 <= s < 2**32 for s in seeds)  # NumPy's limit


@pytest.mark.parametrize("batch,processes", [(16, 3), (7, 2), (5, 4), (12, 1)])
def test_weighted_losses_average_to_the_gradient_of_the_batch_mean(batch, processes):
    """DDP averages the processes' gradients: with each shard's mean loss weighted by
    Group.weighted, that average is the gradient of the whole batch's mean loss, also when
    the shards are unequal (16 over 3: 6/5/5)."""
    torch.manual_seed(0)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    x, y = torch.randn(batch, 5, dtype=torch.float64), torch.randint(0, 3, (batch,))
    expected, = torch.autograd.grad(nn.functional.cross_entropy(x @ w, y), w)
    grads = []
    for rank in range(processes):
        part = shard_slice(batch, rank, processes)
        loss = nn.functional.cross_entropy(x[part] @ w, y[part])
        weighted = Group(rank, processes).weighted(loss, part.stop - part.start, batch)
        grads.append(torch.autograd.grad(weighted, w)[0])
    torch.testing.assert_close(sum(grads) / processes, expected, rtol=1e-12, atol=1e-12)


# -- processes started in this test (torch.multiprocessing) -------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, stride=2, bias=False), BatchNorm2d(6), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 10)).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 9, 9, generator=g, dtype=torch.float64), torch.randint(0, 10, (16,), generator=g)


def _one_step(rank: int, processes: int, port: int, out: str) -> None:
    """A DDP step of process `rank` on its shard, with the synchronised batch norm and the loss
    weighting of sota/train.py; process 0 saves the gradients and batch-norm buffers."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=processes)
    group = Group(rank, processes)
    net = SyncBatchNorm2d.convert(_net())
    model = group.wrap(net, torch.device("cpu"))
    x, y = _batch()
    part = shard_slice(len(y), rank, processes)
    loss = nn.functional.cross_entropy(model(x[part]), y[part])
    group.weighted(loss, part.stop - part.start, len(y)).backward()
    if group.main:
        torch.save({"grads": [p.grad for p in net.parameters()], "buffers": list(net.buffers())}, out)
    group.close()


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])  # shards 8/8, and 6/5/5: the loss weighting matters
def test_sync_bn_step_equals_one_process(tmp_path, processes):
    """In float64 a DDP step with synchronised batch norm gives one process's gradients and
    running statistics, to rounding (the backward's sums over processes included)."""
    out = str(tmp_path / "step.pt")
    torch.multiprocessing.spawn(_one_step, args=(processes, _free_port(), out), nprocs=processes)
    got = torch.load(out, weights_only=True)
    net = _net()
    x, y = _batch()
    nn.functional.cross_entropy(net(x), y).backward()
    for a, b in zip(got["grads"], [p.grad for p in net.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(got["buffers"], list(net.buffers()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# -- torchrun, through exp_scripts/eval.sh --nproc 2 ----------------------------------------------------

def eval_dir(root: Path) -> Path:
    return root / "sota" / "cifar10" / "eval"


def history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


def step_losses(log: str) -> list[tuple[float, float]]:
    """(running mean loss, accuracy) after each training step of the log (--report_freq 1):
    `<date> <time> <AM|PM> train 001/004 loss 2.3e+00 acc 12.5 | ...`."""
    return [(float(f[6]), float(f[8])) for f in (line.split() for line in log.splitlines()) if f[3:4] == ["train"]]


@pytest.mark.slow
def test_sync_bn_first_steps_equal_one_process(tmp_path, cifar10_dir):
    """Two processes with --sync_bn train as one process does on the same global batch of 31
    (shards of 16 and 15 images: the loss weighting counts): the first two steps' losses (the
    forward, then the gradient of the first step) agree to RTOL; the test pass, sharded (its
    last batch, 1 image, leaves process 1 nothing), gives one process's accuracy. Drop path is
    off (--drop_path_prob 0), the only randomness a process draws itself; crops, flips and
    cutout are drawn with the whole batch, so they are one process's."""
    args = ["--data", str(cifar10_dir), "--exp_root", str(tmp_path), *TINY, "--no_tensorboard",
            "--batch_size", "31", "--epochs", "1", "--drop_path_prob", "0"]
    run_script("eval.sh", *args, "--expid_tag", "one")
    run_script("eval.sh", *args, "--nproc", "2", "--sync_bn", "--expid_tag", "two")
    one, two = (eval_dir(tmp_path) / f"eval-darts_pt_s5_0-2-{tag}" for tag in ("one", "two"))
    a, b = (step_losses((f / "log.txt").read_text()) for f in (one, two))
    assert len(a) == len(b) == 4  # 96 images: 3 batches of 31 and one of 3
    for (loss_a, acc_a), (loss_b, acc_b) in zip(a[:2], b[:2], strict=True):
        assert loss_b == pytest.approx(loss_a, rel=RTOL) and acc_a == acc_b
    (ha,), (hb,) = history(one), history(two)
    assert hb["test_acc"] == ha["test_acc"] and hb["test_loss"] == pytest.approx(ha["test_loss"], rel=1e-4)
    assert (read_json(two / "result.json")["nproc"], read_json(two / "result.json")["sync_bn"]) == (2, True)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, cifar10_dir) -> tuple[list[str], Path, str]:
    """2 epochs in two processes, per-process batch norm, drop path on (0.1 in epoch 1:
    random masks of each process's own), TensorBoard on, every checkpoint kept (for the resume
    test): (arguments but --nproc, folder, output)."""
    root = tmp_path_factory.mktemp("ddp")
    args = ["--data", str(cifar10_dir), "--exp_root", str(root), *TINY, "--batch_size", "16", "--epochs", "2",
            "--ckpt_keep_every", "1"]
    proc = run_script("eval.sh", *args, "--nproc", "2")
    return args, eval_dir(root) / "eval-darts_pt_s5_0-2", proc.stdout + proc.stderr


@pytest.mark.slow
def test_process_0_alone_writes(ddp_run):
    _, folder, out = ddp_run
    names = sorted(p.name for p in folder.iterdir())
    events = [n for n in names if n.startswith("events.out.tfevents")]
    assert len(events) == 1  # one TensorBoard writer
    assert sorted(set(names) - set(events)) == ["checkpoint_1.pth.tar", "checkpoint_2.pth.tar", "config.json",
                                                "history.jsonl", "log.txt", "model_best.pth.tar", "process.json",
                                                "result.json"]
    log = (folder / "log.txt").read_text()
    for text in ("params ", "epoch 0 lr", "epoch 1 lr", "finished: "):
        assert log.count(text) == 1 and out.count(text) == 1, text  # no second process's lines
    assert len(step_losses(log)) == 2 * 6  # 96 images in 6 batches of 16, per epoch
    assert [h["epoch"] for h in history(folder)] == [0, 1]
    result = read_json(folder / "result.json")
    assert result["status"] == "finished" and (result["nproc"], result["sync_bn"]) == (2, False)


@pytest.mark.slow
def test_resume_continues_every_process(ddp_run, tmp_path):
    """Resuming from checkpoint 1 (--resume_epoch -1 after the last one is gone) repeats the
    uninterrupted run to the bit: each process restored its own RNG state (its drop-path
    masks). The checkpoints load into a one-process network; one process cannot resume them."""
    args, folder, _ = ddp_run
    full = tmp_path / "full"
    shutil.copytree(folder, full)
    (folder / "checkpoint_2.pth.tar").unlink()
    run_script("eval.sh", *args, "--nproc", "2", "--resume_epoch", "-1")
    assert (folder / "history.jsonl").read_text() == (full / "history.jsonl").read_text()
    a, b = (torch.load(f / "checkpoint_2.pth.tar", weights_only=True) for f in (folder, full))
    assert a["nproc"] == 2 and len(a["process_rng"]) == 2
    assert not torch.equal(a["process_rng"][0]["torch"], a["process_rng"][1]["torch"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    NetworkCIFAR(4, 10, 3, True, get_genotype("darts_pt_s5_0")).load_state_dict(a["state_dict"])  # strict

    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    msg = fails("eval.sh", *args, "--resume_epoch", "-1")
    errors = [line for line in msg.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--nproc 1" in errors[0] and "pass --nproc 2" in errors[0], msg
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize("args,flag", [
    (["--arch", "darts_pt_s5_O"], "--arch"),       # refused on every process, before anything is written
    (["--batch_size", "19"], "--batch_size"),      # the last batch (1 image) leaves process 1 nothing
    (["--nproc", "0"], "--nproc"),                 # the script's own check
])
def test_bad_command_ends_every_process_with_one_line(tmp_path, cifar10_dir, args, flag):
    proc = run_script("eval.sh", "--data", str(cifar10_dir), "--exp_root", str(tmp_path), *TINY, "--epochs", "1",
                      "--nproc", "2", *args, check=False)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in out, out[-3000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: {flag} "), out[-3000:]
    assert not (tmp_path / "sota").exists()
