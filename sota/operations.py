"""Candidate operations of the DARTS search space (after quark0/darts operations.py).

Module structure and attribute names follow the original so that state_dicts saved by
DARTS / DARTS-PT load unchanged. Every ReLU is out-of-place: in the supernet all ops of
an edge read the same input tensor, and an in-place ReLU would corrupt it for the others.

Each op is a `CellOp` (common/cellops.py): its parameter-free first step (`reads`: the ReLU
most ops start with, or the pool of a pool op) is computed by the supernet cell once per
state for all the ops on the edges leaving it, and its final BatchNorm takes the op's mixing
weight. As standalone modules (the evaluation network) they compute what the original did.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from common import net2wider
from common.batchnorm import BatchNorm2d
from common.cellops import CellOp, Pool, Relu
from common.net2wider import Draw, Widened
from common.sharding import randn_rows


def _after_first(seq: nn.Sequential, y: Tensor) -> Tensor:
    """`seq` without its first layer (the ReLU a cell shares) and its last (the final batch norm)."""
    for layer in list(seq)[1:-1]:
        y = layer(y)
    return y


class _ReLUThenBN(CellOp):
    """`self.op`: ReLU, own layers, BatchNorm."""

    reads = Relu()

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)

    def body(self, relu_x: Tensor) -> Tensor:
        return _after_first(self.op, relu_x)

    def final_bn(self) -> BatchNorm2d:
        return self.op[-1]


class ReLUConvBN(_ReLUThenBN):
    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        """DrNAS's ReLUConvBN.wider: the conv's inputs, its outputs, the batch norm as the outputs."""
        _, inputs = net2wider.conv_in(self.op[1], C_in, draw)
        index, outputs = net2wider.conv_out(self.op[1], C_out, draw)
        _, bn = net2wider.batch_norm(self.op[2], C_out, draw, index)
        return inputs + outputs + bn


def _widen_separable(depthwise: nn.Conv2d, pointwise: nn.Conv2d, bn: nn.BatchNorm2d, C_in: int, C_out: int,
                     draw: Draw) -> list[Widened]:
    """DrNAS's widening of a depthwise-pointwise-BN block (DilConv, each half of SepConv): the
    depthwise conv's channels (drawn), the pointwise conv's inputs as those, its outputs (drawn), the
    batch norm as the outputs."""
    index, dw = net2wider.conv_out(depthwise, C_out, draw, depthwise=True)
    _, pw_in = net2wider.conv_in(pointwise, C_in, draw, index)
    index, pw_out = net2wider.conv_out(pointwise, C_out, draw)
    _, norm = net2wider.batch_norm(bn, C_out, draw, index)
    return dw + pw_in + pw_out + norm


class DilConv(_ReLUThenBN):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        return _widen_separable(self.op[1], self.op[2], self.op[3], C_in, C_out, draw)


class SepConv(_ReLUThenBN):
    """Two stacked ReLU -> depthwise -> pointwise -> BN blocks; only the first is strided."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, kernel_size=1, padding=0, bias=False),
            BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        """DrNAS's SepConv.wider: each half as a DilConv (the first half's batch norm to C_out)."""
        first = _widen_separable(self.op[1], self.op[2], self.op[3], C_in, C_out, draw)
        return first + _widen_separable(self.op[5], self.op[6], self.op[7], C_in, C_out, draw)


class PoolBN(CellOp, nn.Sequential):
    """A supernet pool op: the pool, then a BatchNorm (affine=False) so that its scale matches
    the convs'; the original's nn.Sequential (its forward, children 0 and 1). The pool is the
    shared step."""

    def __init__(self, pool: nn.MaxPool2d | nn.AvgPool2d, C: int) -> None:
        nn.Sequential.__init__(self, pool, BatchNorm2d(C, affine=False))
        self.reads = Pool.of(pool)

    def final_bn(self) -> BatchNorm2d:
        return self[1]

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        """DrNAS's AvgPoolBN/MaxPoolBN.wider: the batch norm, its channels drawn."""
        return net2wider.batch_norm(self[1], C_out, draw)[1]


class Identity(CellOp, nn.Identity):
    """skip_connect at stride 1: the cell adds w * x."""


class _ShapeOnly(CellOp):
    """An op whose output depends on the input's (strided) shape only: `fill` of that shape."""

    fill: Callable[[Tensor], Tensor]

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def body(self, x: Tensor) -> Tensor:
        return type(self).fill(x[:, :, ::self.stride, ::self.stride])


class Zero(_ShapeOnly):
    """The `none` op: zeros of the (strided) output shape (cells skip it: it would only add 0)."""

    adds_nothing = True
    fill = staticmethod(torch.zeros_like)


class NoiseOp(_ShapeOnly):
    """The `noise` op of RobustDARTS space S4: standard normal noise of the output shape,
    drawn from the global torch RNG (so seeding torch makes it reproducible). A process that
    computes a shard of a batch gets the rows of the noise one process draws for the whole
    batch (common/sharding.py)."""

    fill = staticmethod(randn_rows)


class FactorizedReduce(CellOp):
    """Halves the resolution with two 1x1 stride-2 convs on pixel grids offset by one,
    so that every input pixel is seen; used for skip_connect at stride 2.

    The original's `conv_1(x)` and `conv_2(x[:, :, 1:, 1:])` (1x1, stride 2) are computed
    as stride-1 1x1 convs of the grids they sample, `x[:, :, ::2, ::2]` and
    `x[:, :, 1::2, 1::2]`: the same products and sums with the same weights (and state_dict),
    and 4x less input to convolve. Why: torch 2.14.1's CPU kernel for 1x1 stride-2 convs
    corrupts the heap in backward on channels-last inputs, the CPU default, when the batch
    splits unevenly between threads (odd batches with 2; benchmarks/RESULTS.md, "Native kernel
    crashes"); the stride-1 kernel does not.
    """

    reads = Relu()

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=1, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=1, padding=0, bias=False)
        self.bn = BatchNorm2d(C_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.body(torch.relu(x)))

    def body(self, relu_x: Tensor) -> Tensor:
        return torch.cat([self.conv_1(relu_x[:, :, ::2, ::2]), self.conv_2(relu_x[:, :, 1::2, 1::2])], dim=1)

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        """DrNAS's FactorizedReduce.wider: each conv's inputs then outputs (to C_out / 2), all drawn;
        the batch norm copies, after the old channels, the channels of the two output indices
        together (both index the first half: DrNAS's `cat([index1, index2])`)."""
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        widened = []
        indices = []
        for conv in (self.conv_1, self.conv_2):
            widened += net2wider.conv_in(conv, C_in, draw)[1]
            index, out = net2wider.conv_out(conv, C_out // 2, draw)
            indices.append(index)
            widened += out
        return widened + net2wider.batch_norm(self.bn, C_out, draw, torch.cat(indices))[1]

    def final_bn(self) -> BatchNorm2d:
        return self.bn


OpFactory = Callable[[int, int, bool], nn.Module]

# name -> constructor (C, stride, affine)
OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "noise": lambda C, stride, affine: NoiseOp(stride),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1,
                                                           count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda C, stride, affine: (Identity() if stride == 1
                                               else FactorizedReduce(C, C, affine=affine)),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
}
