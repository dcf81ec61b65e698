"""Training in several processes under torchrun (evaluation, search and projection).

torchrun starts the processes and tells each its place (WORLD_SIZE, RANK, LOCAL_RANK). Every
global batch is drawn whole, as by one process, and each process trains on its contiguous
shard of it (common.data.Batches); the gradients are averaged over the processes
(DistributedDataParallel for the evaluation network, `average_gradients` for the supernets
and alpha), and each process weights its loss by its share of the batch, so that the average
is the gradient of the global batch's mean loss: the batch size and learning rate of one
process stay right. Process 0 alone writes (logs, checkpoints, results); a user error ends
every process with process 0's one line and exit code 2.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from . import sharding
from .checkpoint import rng_state
from .config import ConfigError
from .data import PROCESS, stream_seed
from .device import select_device
from .entry import USER_ERRORS, error_message
from .experiment import ExperimentError
from .metrics import Stats, summary

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of a run; one process is process 0 of 1."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def start(cls) -> Group:
        """The group torchrun's environment describes, its process group initialised."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        _import_group_defaults()
        # gloo for CPU tensors and the object collectives, NCCL for CUDA tensors: one group
        # serves GPU runs and `--gpu cpu` runs, and is there before the flags are parsed.
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Wait for every process (so that process 0 has said everything before torchrun sees
        one end and stops the others), then leave the process group: its threads end here, not
        at exit (see `_import_group_defaults`)."""
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Only process 0 prints inside the block (argparse's errors and --help)."""
        if self.main:
            yield
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            yield

    def device(self, gpu: str) -> torch.device:
        """`--gpu` in one process. In several, the k-th process of a machine takes the k-th
        visible GPU (`--gpu auto` or an index alike), or the CPU with `--gpu cpu` or without CUDA."""
        if not self.distributed or gpu.strip().lower() == "cpu" or not torch.cuda.is_available():
            return select_device(gpu)
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise ConfigError("nproc", self.size, f"{count} GPU(s) visible, and each process needs one of its own: "
                                                  f"start at most {count} processes per machine, or pass --gpu cpu")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def seed(self, seed: int) -> int:
        """The seed of this process's global RNGs (drop path): process 0 keeps the run's seed,
        as one process does; the others draw masks of their own, reproducibly."""
        return seed if self.main else stream_seed(seed, (PROCESS, self.rank)) % 2**32

    def agree(self, job: Callable[[], T]) -> T:
        """Run `job` (a run's checks and set-up: nothing written yet) on every process, process
        0 first (it alone downloads missing data). A user error on any process is raised on
        every process (process 0 reports it), so that all end together."""
        if not self.distributed:
            return job()
        first = self._settle(job if self.main else None)
        rest = self._settle(None if self.main else job)
        return cast(T, first if self.main else rest)

    def on_main(self, job: Callable[[], object]) -> None:
        """Run `job` (a write) on process 0 alone; the others learn whether a user error (a
        folder that exists, a full disk) ended it, and end with it."""
        if not self.distributed:
            job()
            return
        self._settle(job if self.main else None)

    def _settle(self, job: Callable[[], T] | None) -> T | None:
        """`job`'s result (None without a job), once every process has said whether its job
        failed: the first user error of any process is raised on all of them."""
        result, error = None, None
        if job is not None:
            try:
                result = job()
            except USER_ERRORS as e:
                error = e
        messages: list[str | None] = [None] * self.size
        dist.all_gather_object(messages, None if error is None else error_message(error))
        if error is not None:
            raise error
        failed = next((r for r, m in enumerate(messages) if m is not None), None)
        if failed is not None:
            raise ExperimentError(f"process {failed}: {messages[failed]}")
        return result

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel of `model` in several processes (it broadcasts process 0's
        parameters and buffers, and before every training forward its buffers: with per-process
        batch norm the running statistics are process 0's); `model` itself in one."""
        if not self.distributed:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def weighted(self, loss: Tensor, shard: int, batch: int) -> Tensor:
        """A process's mean loss over its `shard` images, weighted so that DDP's average of the
        processes' gradients is the gradient of the mean loss over the `batch` (exactly 1 when
        the shards are equal)."""
        return loss * (shard * self.size / batch) if self.distributed else loss

    def computing(self, batch: int) -> contextlib.AbstractContextManager[None]:
        """Forwards inside the block compute this process's shard of a global batch of `batch`
        images (what per-image random draws need to know: common/sharding.py)."""
        return sharding.computing(batch, self.rank, self.size)

    def result(self, stats: Stats) -> tuple[float, float]:
        """Accuracy (%) and mean loss over every process's images."""
        if not self.distributed:
            return stats.result()
        totals = stats.totals()
        dist.all_reduce(totals)
        return summary(*totals.tolist())

    def max(self, value: int) -> int:
        """The largest `value` of the processes (a CPU collective: it leaves the GPU alone)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def broadcast(self, tensors: Iterable[Tensor]) -> None:
        """Process 0's values of `tensors` on every process (one broadcast per dtype and device:
        a supernet has thousands of small buffers)."""
        if not self.distributed:
            return
        by_kind: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
        for t in tensors:
            by_kind.setdefault((t.dtype, t.device), []).append(t)
        for same in by_kind.values():
            flat = _flat(same)
            dist.broadcast(flat, 0)
            _unflat(flat, same)

    def check_same(self, tensors: Iterable[Tensor], what: str) -> None:
        """Raise if the processes hold different values of `tensors` (a checksum of them: one
        all-reduce of two numbers, and a host sync): what each process must draw alike, or have
        broadcast, would otherwise go unnoticed until the processes' models parted or a collective
        failed."""
        if not self.distributed:
            return
        flat = _flat([t.detach().double() for t in tensors])
        checksum = flat @ torch.linspace(1.0, 2.0, len(flat), dtype=flat.dtype, device=flat.device)
        extremes = torch.stack([checksum, -checksum])  # the maximum of both: the largest and smallest
        dist.all_reduce(extremes, dist.ReduceOp.MAX)
        largest, smallest = extremes[0].item(), -extremes[1].item()
        if largest != smallest:
            raise RuntimeError(f"the processes hold different {what} (checksums from {smallest!r} to {largest!r})")

    def average_gradients(self, params: Iterable[Tensor]) -> None:
        """Replace the gradients of `params` by their mean over the processes (one all-reduce of
        one flat buffer), as DistributedDataParallel would. A parameter without a gradient tensor
        is left alone: the processes ran the same ops, so they hold gradients for the same ones,
        and the zero-filled gradients of skipped ops are averaged like any other (see
        common/trainer.py's `_full_backward`)."""
        if not self.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = _flat(grads)
            dist.all_reduce(flat)
            _unflat(flat.div_(self.size), grads)

    def rng_states(self, device: torch.device) -> dict[str, Any] | None:
        """What a checkpoint records of the processes, on process 0 (None on the others; a
        collective): their number, process 0's RNG states as "rng" (what one process saves) and,
        in several, every process's by rank as "process_rng"."""
        rngs = self.per_process("rng", rng_state(device))
        return None if rngs is None else {**rngs, "nproc": self.size}

    def per_process(self, key: str, obj: Any) -> dict[str, Any] | None:
        """Every process's `obj` for a checkpoint, on process 0 (None on the others; a
        collective): process 0's as `key` (what one process saves) and, in several, all of them
        by rank as `process_<key>` (`own` reads a process's back)."""
        objs = self.gather(obj)
        if objs is None:
            return None
        return {key: objs[0], **({f"process_{key}": objs} if self.distributed else {})}

    def check_nproc(self, state: dict[str, Any], path: Path) -> None:
        """A checkpoint to continue must come from a run of as many processes: each continues
        the random state it saved, and per-process batch norm depends on the shards."""
        nproc = int(state.get("nproc", 1))
        if nproc != self.size:
            raise ConfigError("nproc", self.size, f"{path} was written by a run of {nproc} process(es): "
                                                  f"pass --nproc {nproc} to resume it")

    def process_rng(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """This process's RNG states in a checkpoint: its own if the checkpoint has one per
        process of this run, else the one the checkpoint has (None if none)."""
        return self.own(state, "rng")

    def own(self, state: dict[str, Any], key: str) -> Any:
        """This process's `key` in a checkpoint that `per_process` wrote: its own if the checkpoint
        has one per process of this run, else the one the checkpoint has (None if none)."""
        objs = state.get(f"process_{key}")
        if objs is not None and len(objs) == self.size:
            return objs[self.rank]
        return state.get(key)

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's `obj`, in rank order, on process 0 (None on the others)."""
        if not self.distributed:
            return [obj]
        objects = [None] * self.size if self.main else None
        dist.gather_object(obj, objects, dst=0)
        return objects


def _import_group_defaults() -> None:
    """Import, before the process group exists, the torch modules whose functions take
    `group=group.WORLD` as a default argument, evaluated once, at import: imported later, they
    hold the group for good, and `destroy_process_group` cannot end it.

    torch.optim imports them on first use (SGD -> torch._dynamo -> FSDP -> torch.distributed.nn),
    after `start`. The group then outlived `close` with its gloo threads running, and now and then
    a process that had finished its work aborted at exit ("terminate called without an active
    exception", SIGABRT; issue 22). A core dump shows why: a pt_gloo_runloop thread was still
    destroying the barrier's work (and the all_gather's it holds) when the main thread began
    finalising the interpreter; freeing a tensor there needs the GIL, a thread that asks for the
    GIL during finalisation is made to exit, and that exit unwinds through a C++ destructor: a
    std::terminate. Imported first, the defaults are None (the group current at each call), and
    `close` joins the group's threads while the interpreter is whole."""
    import torch.distributed.nn  # noqa: F401
    from torch.distributed.fsdp import sharded_grad_scaler  # noqa: F401
    from torch.distributed.optim import zero_redundancy_optimizer  # noqa: F401


def _flat(tensors: list[Tensor]) -> Tensor:
    """The values of same-dtype tensors one after the other, in a new 1-d tensor."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(flat: Tensor, tensors: list[Tensor]) -> None:
    """Copy `flat`'s values back into `tensors` (whatever their memory layout; parameters too)."""
    with torch.no_grad():
        for t, values in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
            t.copy_(values.view(t.shape))
