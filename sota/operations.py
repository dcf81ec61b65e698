"""Candidate operations of the DARTS search space (after quark0/darts operations.py).

Module structure and attribute names follow the original so that state_dicts saved by
DARTS / DARTS-PT load unchanged. Every ReLU is out-of-place: in the supernet all ops of
an edge read the same input tensor, and an in-place ReLU would corrupt it for the others.

Ops that start with that ReLU (`relu_first`) accept it precomputed (`relu_x`): the
supernet computes relu(x) once per input state instead of once per op and edge. The
result is the same; only the repeated ReLU (and its backward) is saved.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from common.batchnorm import BatchNorm2d


def _after_relu(seq: nn.Sequential, y: Tensor) -> Tensor:
    """`seq` (which starts with a ReLU) applied to an input whose ReLU is already taken."""
    for i, layer in enumerate(seq):
        if i:
            y = layer(y)
    return y


class ReLUConvBN(nn.Module):
    relu_first = True

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        return self.op(x) if relu_x is None else _after_relu(self.op, relu_x)


class DilConv(nn.Module):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN."""

    relu_first = True

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

    def forward(self, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        return self.op(x) if relu_x is None else _after_relu(self.op, relu_x)


class SepConv(nn.Module):
    """Two stacked ReLU -> depthwise -> pointwise -> BN blocks; only the first is strided."""

    relu_first = True

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

    def forward(self, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        return self.op(x) if relu_x is None else _after_relu(self.op, relu_x)


class Zero(nn.Module):
    """The `none` op: zeros of the (strided) output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x[:, :, ::self.stride, ::self.stride])


class NoiseOp(nn.Module):
    """The `noise` op of RobustDARTS space S4: standard normal noise of the output shape,
    drawn from the global torch RNG (so seeding torch makes it reproducible)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return torch.randn_like(x[:, :, ::self.stride, ::self.stride])


class FactorizedReduce(nn.Module):
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

    relu_first = True

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=1, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=1, padding=0, bias=False)
        self.bn = BatchNorm2d(C_out, affine=affine)

    def forward(self, x: Tensor, relu_x: Tensor | None = None) -> Tensor:
        x = self.relu(x) if relu_x is None else relu_x
        return self.bn(torch.cat([self.conv_1(x[:, :, ::2, ::2]), self.conv_2(x[:, :, 1::2, 1::2])], dim=1))


Identity = nn.Identity

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
