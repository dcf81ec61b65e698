"""Candidate operations of the NAS-Bench-201 space.

A faithful copy of NAS-Bench-201's cell_operations.py (the code DARTS-PT builds on): the
module layout (e.g. ``ReLUConvBN.op`` = ReLU, Conv, BN) fixes the state_dict key names, so
checkpoints of the original code load unchanged.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from common import net2wider
from common.batchnorm import BatchNorm2d
from common.cellops import CellOp, Pool, Relu
from common.net2wider import Draw, Widened

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


class ReLUConvBN(CellOp):
    # Reads relu(x) first: a cell computes that once for all the ops on the edges leaving a
    # node (common/cellops.py); the result is the same, only the ReLU is not repeated.
    reads = Relu()

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool, track_running_stats: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)

    def body(self, relu_x: Tensor) -> Tensor:
        return self.op[1](relu_x)

    def final_bn(self) -> BatchNorm2d:
        return self.op[2]

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        """DrNAS's ReLUConvBN.wider: the conv's inputs, its outputs, the batch norm as the outputs."""
        _, inputs = net2wider.conv_in(self.op[1], C_in, draw)
        index, outputs = net2wider.conv_out(self.op[1], C_out, draw)
        _, bn = net2wider.batch_norm(self.op[2], C_out, draw, index)
        return inputs + outputs + bn


class Identity(CellOp):
    """skip_connect (same shape): the cell adds w * x."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Zero(CellOp):
    """The `none` op: zeros of the output shape (cells skip it: it would only add 0)."""

    adds_nothing = True

    def __init__(self, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def body(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.C_out, -(-h // s), -(-w // s))

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        self.C_out = C_out
        return []


class FactorizedReduce(CellOp):
    """skip_connect when the shape changes: two offset 1x1 stride-2 convs (or one 1x1 conv).

    The original's stride-2 `convs[0](x)` and `convs[1](pad(x)[:, :, 1:, 1:])` are computed
    as stride-1 1x1 convs of the pixels they sample, `x[:, :, ::2, ::2]` and
    `pad(x)[:, :, 1::2, 1::2]` (for an odd size the last of these is the zero padding, as
    before): the same products and sums with the same weights (and state_dict), and 4x less
    input to convolve. Why: torch 2.14.1's CPU kernel for 1x1 stride-2 convs corrupts the
    heap in backward on channels-last inputs, the CPU default, when the batch splits unevenly
    between threads (odd batches with 2; benchmarks/RESULTS.md, "Native kernel crashes"); the
    stride-1 kernel does not.
    """

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.stride = stride
        if stride == 2:
            halves = [C_out // 2, C_out - C_out // 2]
            self.convs = nn.ModuleList(nn.Conv2d(C_in, c, 1, stride=1, padding=0, bias=False) for c in halves)
            self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0)
        elif stride == 1:
            self.conv = nn.Conv2d(C_in, C_out, 1, stride=1, padding=0, bias=False)
        else:
            raise ValueError(f"FactorizedReduce: invalid stride {stride}")
        self.bn = BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)
        self.reads = Relu() if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.body(torch.relu(x) if self.stride == 2 else x))

    def body(self, x: Tensor) -> Tensor:
        """The convolutions, of relu(x) at stride 2 (of x at stride 1)."""
        if self.stride == 2:
            y = self.pad(x)
            return torch.cat([self.convs[0](x[:, :, ::2, ::2]), self.convs[1](y[:, :, 1::2, 1::2])], dim=1)
        return self.conv(x)

    def final_bn(self) -> BatchNorm2d:
        return self.bn


class AvgPool(CellOp):
    """avg_pool_3x3, with a 1x1 ReLUConvBN in front only when the channel count changes.

    Without it (inside the cells) the pool has no parameters: the cell computes it once per
    node for all the edges leaving it (`reads`)."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool,
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.preprocess = (None if C_in == C_out
                           else ReLUConvBN(C_in, C_out, 1, 1, 0, affine, track_running_stats))
        self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        self.reads = Pool.of(self.op) if self.preprocess is None else None

    def forward(self, x: Tensor) -> Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.op(x)

    def body(self, x: Tensor) -> Tensor:
        return x if self.preprocess is None else self.forward(x)

    def widen(self, C_in: int, C_out: int, draw: Draw) -> list[Widened]:
        return [] if self.preprocess is None else self.preprocess.widen(C_in, C_out, draw)


def _skip(C_in: int, C_out: int, stride: int, affine: bool, track: bool) -> nn.Module:
    if stride == 1 and C_in == C_out:
        return Identity()
    return FactorizedReduce(C_in, C_out, stride, affine, track)


# name -> constructor (C_in, C_out, stride, affine, track_running_stats)
OPS: dict[str, Callable[[int, int, int, bool, bool], nn.Module]] = {
    "none": lambda C_in, C_out, stride, affine, track: Zero(C_out, stride),
    "skip_connect": _skip,
    "nor_conv_1x1": lambda C_in, C_out, stride, affine, track: ReLUConvBN(C_in, C_out, 1, stride, 0, affine, track),
    "nor_conv_3x3": lambda C_in, C_out, stride, affine, track: ReLUConvBN(C_in, C_out, 3, stride, 1, affine, track),
    "avg_pool_3x3": lambda C_in, C_out, stride, affine, track: AvgPool(C_in, C_out, stride, affine, track),
}


class ResNetBasicblock(nn.Module):
    """The stride-2 residual block between stages (BN affine, as in NAS-Bench-201)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 2) -> None:
        super().__init__()
        if stride != 2:
            raise ValueError(f"ResNetBasicblock: only stride 2 is used between stages, got {stride}")
        self.conv_a = ReLUConvBN(inplanes, planes, 3, stride, 1, affine=True)
        self.conv_b = ReLUConvBN(planes, planes, 3, 1, 1, affine=True)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(inplanes, planes, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))
