"""Which rows of a global batch this process computes, for what a model draws per image.

In a run of several processes each process computes its contiguous shard of every global batch
(common/data.py's `shard_slice`). An op that draws random numbers per image (S4's `noise`) must
give each image what one process would: every process draws the numbers of the whole batch, as
one process does (their RNGs agree: one seed, the same draws), and keeps its own rows. The
Trainer says which batch its forwards compute (`Group.computing`); outside that, a forward
computes a whole batch, as in one process.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

from .data import shard_slice

# (images in the global batch, this process's rows of it); None: the forward computes a whole batch
_ROWS: ContextVar[tuple[int, slice] | None] = ContextVar("batch_rows", default=None)


@contextlib.contextmanager
def computing(batch: int, rank: int, processes: int) -> Iterator[None]:
    """Forwards inside the block compute process `rank`'s rows of a global batch of `batch` images."""
    token = _ROWS.set((batch, shard_slice(batch, rank, processes)) if processes > 1 else None)
    try:
        yield
    finally:
        _ROWS.reset(token)


def randn_rows(like: Tensor) -> Tensor:
    """Standard normal noise of `like`'s shape and layout: `torch.randn_like` of the whole global
    batch, of which `like` holds this process's rows, restricted to those rows."""
    rows = _ROWS.get()
    if rows is None:
        return torch.randn_like(like)
    batch, mine = rows
    if mine.stop - mine.start != len(like):
        raise RuntimeError(f"a forward of {len(like)} images inside the rows {mine.start}:{mine.stop} "
                           f"of a batch of {batch}: the Trainer computes another batch than it says")
    whole = torch.empty((batch, *like.shape[1:]), dtype=like.dtype, device=like.device,
                        memory_format=_layout(like))
    return torch.randn_like(whole)[mine]


def _layout(like: Tensor) -> torch.memory_format:
    """The layout torch.randn_like(like) fills (channels-last for a channels-last batch, even a
    strided view of one): the values it draws follow the memory order."""
    filled = torch.empty_like(like)
    if filled.dim() == 4 and not filled.is_contiguous() and filled.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
