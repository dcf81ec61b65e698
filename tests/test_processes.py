"""The multi-process pieces, checked directly in two processes in the unit tier.

Two processes (torch.multiprocessing, gloo on localhost, float64, tiny) check against one
process: the loss weighting under DistributedDataParallel (`Group.weighted`), the averaged
gradients of alpha and of the supernet's weights (`Group.average_gradients`), the synchronised
batch norm, SDARTS' perturbation (each process draws its own, process 0's counts) and the check
that catches one left unbroadcast; and that leaving the process group ends gloo's threads (a
group that outlived `Group.close` aborted processes at exit). Shards of 4 and 3 images, so that
the weighting matters. The slow tests of test_ddp.py and test_search_ddp.py check whole runs.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from common.arch import Architecture
from common.batchnorm import SyncBatchNorm2d
from common.data import shard_slice
from common.distributed import Group
from common.methods.sdarts import SDARTS, random_smoothing
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from tests.fixtures.configs import search_cfg

BATCH = 7
TOL = dict(rtol=1e-12, atol=1e-13)
TIMEOUT_S = 120  # a collective that waits forever fails the test instead


def _data(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(len(shape))
    return torch.randn(BATCH, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (BATCH,), generator=g)


def _mine(group: Group) -> slice:
    return shard_slice(BATCH, group.rank, group.size)


def _weighted(group: Group) -> list[torch.Tensor]:
    """Weight gradients of a DistributedDataParallel step on this process's shard, its loss weighted."""
    torch.manual_seed(0)
    net = nn.Linear(5, 3).double()
    model = group.wrap(net, torch.device("cpu"))  # kept until after the backward, which it averages
    x, y = _data(5)
    loss = nn.functional.cross_entropy(model(x[_mine(group)]), y[_mine(group)])
    group.weighted(loss, len(y[_mine(group)]), BATCH).backward()
    return [p.grad for p in net.parameters()]


def _trainer(group: Group, perturb=None) -> Trainer:
    """A tiny float64 NAS-Bench-201 supernet with synchronised batch norm (the processes' steps
    then equal one process's), alpha far from uniform."""
    torch.manual_seed(0)
    model = SyncBatchNorm2d.convert(NB201Supernet(C=2, N=1).double())
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    with torch.no_grad():
        for a in arch.parameters():
            a.normal_()
    space = Space(label="nb201", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    return Trainer(space, None, search_cfg(), torch.device("cpu"), group=group,
                   method=SDARTS(perturb, 0.3) if perturb else None)


def _steps(group: Group, perturb=None) -> dict[str, list[torch.Tensor]]:
    """An alpha step and a weight step on this process's shards; before the weight step each
    process seeds its RNG apart (SDARTS: process 0's perturbation must count)."""
    t = _trainer(group, perturb)
    xa, ya = _data(3, 6, 6)
    x, y = (v.flip(0) for v in (xa, ya))
    t.alpha_step(xa[_mine(group)], ya[_mine(group)], BATCH)
    alpha_grads = [a.grad.clone() for a in t.arch.parameters()]
    torch.manual_seed(10 + 100 * group.rank)
    t.weight_step(x[_mine(group)], y[_mine(group)], BATCH)
    return {"alpha_grads": alpha_grads, "weights": [p.detach() for p in t.model.parameters()]}


def _sync_bn(group: Group) -> dict[str, Any]:
    """The synchronised batch norm's output and input gradient of this process's shard, its
    weight and bias gradients (the shard's part) and running statistics."""
    torch.manual_seed(0)
    bn = SyncBatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    x, _ = _data(3, 5, 5)
    x = (5 + x[_mine(group)]).requires_grad_()  # a mean far from 0
    out = bn(x)
    (out * _data(3, 5, 5)[0].flip(0)[_mine(group)]).sum().backward()
    return {"out": out.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
            "running": [bn.running_mean, bn.running_var]}


class _Unbroadcast(Group):
    """A group that forgets to broadcast: each process keeps the perturbation it drew."""

    def broadcast(self, tensors) -> None:
        pass


def _unbroadcast(group: Group) -> str:
    try:
        _steps(_Unbroadcast(group.rank, group.size), random_smoothing)
    except RuntimeError as e:
        return str(e)
    return "no error"


def _threads() -> list[str]:
    """The names of this process's threads (Linux)."""
    tasks = Path("/proc/self/task")
    return sorted((t / "comm").read_text().strip() for t in tasks.iterdir()) if tasks.is_dir() else []


def _process(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    # torch.optim imports these on first use (the Trainers below); imported after the process
    # group exists, they would keep it (and its threads) alive past Group.close
    imported_late = "torch.distributed.nn" not in sys.modules
    group = Group.start()
    results = {"weighted": _weighted(group), "steps": _steps(group), "sdarts": _steps(group, random_smoothing),
               "sync_bn": _sync_bn(group), "unbroadcast": _unbroadcast(group)}
    group.close()
    torch.save({**results, "imported_late": imported_late, "threads": _threads()}, f"{out}.{rank}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> list[dict[str, Any]]:
    """What each of two processes computed."""
    out = str(tmp_path_factory.mktemp("processes") / "results.pt")
    context = torch.multiprocessing.spawn(_process, args=(_free_port(), out), nprocs=2, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"two processes still ran after {TIMEOUT_S} s: a collective waits")
    return [torch.load(f"{out}.{rank}", weights_only=False) for rank in range(2)]


def _close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_weighted_loss_gives_the_batch_gradient(two):
    """DDP averages the processes' gradients of their weighted shard losses: the gradient of the
    whole batch's mean loss, on both processes."""
    for p in two:
        _close(p["weighted"], _weighted(Group()))


def test_alpha_and_weight_gradients_are_averaged(two):
    """An alpha step's gradient and the weights after a weight step, from two processes'
    shards, are one process's (synchronised batch norm), and the processes agree to the bit."""
    one = _steps(Group())
    for key in ("alpha_grads", "weights"):
        _close(two[0]["steps"][key], one[key])
        assert all(torch.equal(a, b) for a, b in zip(two[0]["steps"][key], two[1]["steps"][key], strict=True))


def test_sync_bn_normalises_over_the_whole_batch(two):
    one = _sync_bn(Group())
    for key in ("out", "x_grad"):
        _close([torch.cat([p["sync_bn"][key] for p in two])], [one[key]])
    for key in ("weight_grad", "bias_grad"):  # each process's part; DDP sums them (and divides by 2)
        _close([two[0]["sync_bn"][key] + two[1]["sync_bn"][key]], [one[key]])
    for p in two:
        _close(p["sync_bn"]["running"], one["running"])


def test_sdarts_perturbation_is_process_0s(two):
    """Each process draws its own SDARTS noise (seeded apart); they all train with process 0's,
    which is one process's (seeded as process 0)."""
    one = _steps(Group(), random_smoothing)
    for p in two:
        _close(p["sdarts"]["weights"], one["weights"])
    assert all(torch.equal(a, b) for a, b in zip(two[0]["sdarts"]["weights"], two[1]["sdarts"]["weights"],
                                                 strict=True))


def test_a_perturbation_left_unbroadcast_stops_every_process(two):
    for p in two:
        assert p["unbroadcast"].startswith("the processes hold different perturbed mixing weights"), p["unbroadcast"]


def test_closing_the_group_ends_its_threads(two):
    """The run's optimisers import torch's modules with group defaults after the group started;
    Group.close still ends gloo's threads (pt_gloo_runloop, gloo_tcp_loop), so that nothing of the
    group is left to tear down at exit."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux's /proc")
    for p in two:
        assert p["imported_late"], "torch.distributed.nn was imported before the group started: nothing is checked"
        assert not [t for t in p["threads"] if "gloo" in t], p["threads"]
