"""How a supernet cell computes its mixed edges: shared steps per state, weights folded into the node.

Every edge leaving a cell state reads the same tensor, and many candidate ops begin with the same
parameter-free step: ReLU (the convolutions, FactorizedReduce) or a pool (NAS-Bench-201's
avg_pool_3x3; the DARTS space's max and avg pools, which come before their per-edge BatchNorm).
`StateInputs` is the node plan of one state: it computes each such step once, when the first op
on an edge leaving the state asks for it, and hands the same tensor to every other op that reads
it (a step equals another if it is the same function with the same settings, e.g. a 3x3 max pool
of stride 2). A step no active op reads (masked, zero weight) is never computed.

Each candidate op is a `CellOp`: `final_bn(body(reads(x)))`. A cell adds it into its node with
`mix_into`: `acc + w * op(x)`, where `acc` is the node's running sum. On the channels-last CPU
path the op's final batch norm scales by w and adds into `acc` itself (`BatchNorm2d.scaled_add`):
no `w * op(x)` tensor, no separate sum, and alpha's gradient comes from the sums the batch norm's
backward computes anyway. Elsewhere (NCHW, CUDA, float64, eval mode) the sum is accumulated in
place with `addcmul_`. The math is the original's `sum_j sum_k w[e, k] * op_k(state_j)`; only
the order of the float additions differs (one running sum per node instead of one per edge).

Partial channels (PC-DARTS, DrNAS: `NodeSum` with k > 1): each mixed edge computes its ops on the
first C/k channels of its input, lets the other channels pass by (through a 2x2 max pool on a
stride-2 edge), concatenates the two and shuffles the channels into k groups. Concatenation and
shuffle are a fixed permutation, so a node sums its edges' op outputs (the same running sum, fused
as above) and their passed channels separately and shuffles once, which is what the original's
per-edge shuffles add up to.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batchnorm import BatchNorm2d
from .net2wider import Draw, Widened

SharedStep = Callable[[Tensor], Tensor]  # hashable: equal steps of one state are computed once


@dataclass(frozen=True)
class Relu:
    """relu(state): the first step of every op that starts with ReLU."""

    def __call__(self, x: Tensor) -> Tensor:
        return torch.relu(x)


@dataclass(frozen=True)
class Pool:
    """A parameter-free pool; pools of the same settings on one state give the same tensor."""

    max: bool
    kernel: int
    stride: int
    padding: int
    count_include_pad: bool = True

    @staticmethod
    def of(pool: nn.MaxPool2d | nn.AvgPool2d) -> Pool:
        if isinstance(pool, nn.MaxPool2d):
            if pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
                raise ValueError(f"unsupported max pool {pool}")
            return Pool(True, _square(pool.kernel_size), _square(pool.stride), _square(pool.padding))
        if pool.ceil_mode or pool.divisor_override is not None:
            raise ValueError(f"unsupported average pool {pool}")
        return Pool(False, _square(pool.kernel_size), _square(pool.stride), _square(pool.padding),
                    pool.count_include_pad)

    def __call__(self, x: Tensor) -> Tensor:
        if self.max:
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        if x.device.type == "cpu" and not self.count_include_pad and not torch.compiler.is_compiling():
            return self._avg_as_conv(x)
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=self.count_include_pad)

    def _avg_as_conv(self, x: Tensor) -> Tensor:
        """The average pool as its sums (a depthwise convolution with a kernel of ones) divided by
        the number of input pixels in each window, as torch's pool divides them: the same math,
        2-3x faster on the CPU for the supernets' channel counts than torch's channels-last pool."""
        c = x.shape[1]
        ones = x.new_ones(c, 1, self.kernel, self.kernel)
        sums = F.conv2d(x, ones, stride=self.stride, padding=self.padding, groups=c)
        return sums.div_(_window_counts(tuple(x.shape[-2:]), self.kernel, self.stride, self.padding, x.dtype))


def _square(size: int | tuple[int, ...]) -> int:
    """A pool setting the same along both sides, as one int (the supernets' pools are square)."""
    if isinstance(size, int):
        return size
    if len(set(size)) != 1:
        raise ValueError(f"unsupported non-square pool setting {size}")
    return size[0]


@functools.lru_cache(maxsize=64)
def _window_counts(size: tuple[int, int], kernel: int, stride: int, padding: int, dtype: torch.dtype) -> Tensor:
    """[1, 1, H', W']: input pixels (padding excluded) in each pooling window of a CPU tensor."""
    with torch.inference_mode(False):  # cached: a training step may need it for backward
        ones = torch.ones(1, 1, *size, dtype=dtype)
        return F.conv2d(ones, torch.ones(1, 1, kernel, kernel, dtype=dtype), stride=stride, padding=padding)


class CellOp(nn.Module):
    """A candidate op, as a cell computes it: `final_bn(body(reads(x)))`, which equals its
    `forward(x)` (the original's computation, which standalone use and the reference keep).

    `reads`: the shared first step (None: the state itself), computed once per state for all the
    ops on the edges leaving it; `body`: the op's own layers after that step, up to its final
    batch norm; `final_bn()`: that batch norm (None if the op has none), which the cell fuses
    with the mixing weight. Subclasses keep the original module layout (state_dict keys)."""

    reads: SharedStep | None = None
    adds_nothing = False  # the `none` op: zeros, which a cell never computes (it would only add 0)

    def body(self, x: Tensor) -> Tensor:
        return x

    def final_bn(self) -> BatchNorm2d | None:
        return None

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        """Grow the op to C_in input and C_out output channels (DrNAS's progressive widening,
        common/net2wider.py); the parameters it replaced. An op without state has nothing to grow."""
        if next(self.parameters(), None) is not None or next(self.buffers(), None) is not None:
            raise NotImplementedError(f"{type(self).__name__} cannot be widened")
        return []


class StateInputs:
    """A cell state and the shared first steps of the ops that read it, each computed on first use."""

    def __init__(self, x: Tensor) -> None:
        self.x = x
        self._steps: dict[SharedStep, Tensor] = {}
        self._partial: dict[tuple[str, int], tuple[StateInputs, StateInputs]] = {}

    def get(self, step: SharedStep | None) -> Tensor:
        if step is None:
            return self.x
        out = self._steps.get(step)
        if out is None:
            out = self._steps[step] = step(self.x)
        return out

    def partial(self, k: int) -> tuple[StateInputs, StateInputs]:
        """Partial channels 1/k: the state's first C/k channels, which the ops of the edges leaving
        it read, and the other channels, which pass those edges by; made once per state."""
        key = ("partial", k)
        if key not in self._partial:
            c = self.x.shape[1] // k
            # A channel slice of a channels-last state is dense in no layout: ops on it would run
            # their NCHW (or slow) kernels and produce NCHW outputs. One copy keeps the layout.
            fmt = torch.channels_last if _channels_last(self.x) else torch.contiguous_format
            self._partial[key] = (StateInputs(self.x[:, :c].contiguous(memory_format=fmt)), StateInputs(self.x[:, c:]))
        return self._partial[key]


def mix_into(acc: Tensor | None, op: CellOp, inputs: StateInputs, w: Tensor) -> Tensor:
    """`acc + w * op(state)` (`w * op(state)` when acc is None); may update acc in place.

    acc is a node's running sum, made here: nothing else holds it or saved it for backward."""
    y = op.body(inputs.get(op.reads))
    bn = op.final_bn()
    if bn is not None:
        if bn.fuses(y, acc):
            return bn.scaled_add(y, w, acc)
        y = bn(y)
    return w * y if acc is None else acc.addcmul_(y, w)


def mix_edge(acc: Tensor | None, ops: Sequence[CellOp], inputs: StateInputs, weights: Sequence[Tensor],
             active: Iterable[int]) -> Tensor | None:
    """`acc` plus one edge's weighted ops of the state `inputs`: `weights` (0-d tensors per op,
    see `op_weights`), `active` the indices of the ops that may be non-zero. None when nothing
    was added to a None `acc` (no op active, or only `none`)."""
    for k in active:
        if not ops[k].adds_nothing:
            acc = mix_into(acc, ops[k], inputs, weights[k])
    return acc


def op_weights(weights: Tensor) -> list[Sequence[Tensor]]:
    """The [edges, ops] mixing weights as 0-d tensors per edge and op: one autograd node for all
    of them, instead of one indexing node per op computed."""
    return [row.unbind(0) for row in weights.unbind(0)]


class NodeSum:
    """One node's sum of the mixed edges into it, with partial channels 1/k (k = 1: none).

    k = 1: `acc + sum_e sum_o w[e, o] * op_o(state_e)`, the running sum of `mix_edge`.
    k > 1 (PC-DARTS, DrNAS): each edge's ops read the first C/k channels of its state and the other
    channels pass by (`passed`: the shared step they take first, e.g. a stride-2 edge's 2x2 max
    pool); the edge's output is `channel_shuffle(cat([ops' sum, passed channels]), k)`. The node
    keeps the two sums apart and joins them once (`channel_shuffle` and `cat` are a permutation).
    An edge with no op to compute (projection dropped it) adds nothing, its passed channels
    neither; an edge whose active ops add nothing (`none`) still passes its channels.
    PC-DARTS' edge weight beta scales an edge: the caller passes its op weights times beta, and
    `scale` (beta) multiplies its passed channels."""

    def __init__(self, k: int = 1) -> None:
        self.k = k
        self.ops: Tensor | None = None
        self.passed: Tensor | None = None

    def add(self, ops: Sequence[CellOp], inputs: StateInputs, weights: Sequence[Tensor], active: Sequence[int],
            passed: SharedStep | None = None, scale: Tensor | None = None) -> None:
        """Add the edge whose ops `ops` read the state `inputs` (`weights`, `active`: as `mix_edge`);
        `scale`: the edge's weight (0-d), by which its passed channels are multiplied."""
        if self.k == 1:
            self.ops = mix_edge(self.ops, ops, inputs, weights, active)
            return
        if not active:
            return
        part, rest = inputs.partial(self.k)
        self.ops = mix_edge(self.ops, ops, part, weights, active)
        through = rest.get(passed) if scale is None else rest.get(passed) * scale
        self.passed = through if self.passed is None else self.passed + through

    def result(self) -> Tensor | None:
        """The node (None: nothing flowed into it)."""
        if self.k == 1 or self.passed is None:
            return self.ops
        rest = self.passed
        ops = self.ops if self.ops is not None else rest.new_zeros(rest.shape[0], rest.shape[1] // (self.k - 1),
                                                                   *rest.shape[2:])
        return shuffle_join(ops, rest, self.k)


def shuffle_join(ops: Tensor, rest: Tensor, k: int) -> Tensor:
    """`channel_shuffle(cat([ops, rest], 1), k)` of PC-DARTS and DrNAS (view as [B, k, C/k, H, W],
    swap the two channel axes, flatten): channel j*k of the result is ops' channel j, channel
    j*k + g (g >= 1) is rest's channel (g-1)*C/k + j. Written into a tensor of ops' memory format
    (the original's transpose and view would leave a channels-last run with an NCHW node)."""
    b, m, h, w = ops.shape
    out = ops.new_empty(b, m * k, h, w).contiguous(memory_format=torch.channels_last if _channels_last(ops)
                                                   else torch.contiguous_format)
    groups = out.unflatten(1, (m, k))
    groups[:, :, 0] = ops
    groups[:, :, 1:] = rest.unflatten(1, (k - 1, m)).transpose(1, 2)
    return out


def _channels_last(x: Tensor) -> bool:
    """Whether a 4-d tensor is laid out channels-last (and not also NCHW, as a 1x1 image is)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
