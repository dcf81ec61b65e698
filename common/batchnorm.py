"""BatchNorm2d whose channels-last CPU training path is as accurate as the NCHW one.

On CPU, PyTorch's batch-norm kernel for channels-last tensors accumulates the batch
statistics (and the backward's reductions) naively in float32, while its NCHW kernel
accumulates in double: with 64 x 32 x 32 values per channel the channels-last results
are ~30x less accurate (~1e-5 relative), which is more than a change of summation order
should cost. The search trainer runs the supernets channels-last on CPU because convs and
pools are much faster so (common/trainer.py, `--memory_format`); this module keeps batch
norm exact there: in training mode, on CPU, for float32 channels-last inputs, statistics
and gradients are reduced with torch's cascade summation (as accurate as the NCHW kernel,
about as fast as it). Everything else (eval mode, CUDA, NCHW, other dtypes) is
`nn.BatchNorm2d` unchanged, with the same parameters, buffers and state_dict keys.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of a channels-last [N, C, H, W] tensor seen as [N*H*W, C]."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
                running_var: Tensor | None, momentum: float, eps: float) -> Tensor:
        n, c, h, w = x.shape
        m = n * h * w
        v = x.permute(0, 2, 3, 1).reshape(m, c)  # a view: channels-last memory is [N, H, W, C]
        mean = v.sum(0).div_(m)
        xc = v - mean
        # The output, a tensor of its own (not a view: in-place ops on it must be allowed),
        # holds xc^2 first.
        y = torch.empty_like(x, memory_format=torch.channels_last)
        y2 = y.permute(0, 2, 3, 1).view(m, c)
        var_sum = torch.mul(xc, xc, out=y2).sum(0)
        invstd = var_sum.div(m).add_(eps).rsqrt_()
        if running_mean is not None and running_var is not None:
            with torch.no_grad():  # as the native kernel: unbiased variance in the running estimate
                running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                running_var.mul_(1 - momentum).add_(var_sum, alpha=momentum / max(m - 1, 1))
        scale = invstd if weight is None else invstd * weight
        if bias is None:
            torch.mul(xc, scale, out=y2)
        else:
            torch.addcmul(bias, xc, scale, out=y2)
        ctx.save_for_backward(xc, invstd, weight)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, invstd, weight = ctx.saved_tensors
        m, c = xc.shape
        n, _, h, w = grad.shape
        g = grad.permute(0, 2, 3, 1).reshape(m, c)
        gx = torch.empty_like(grad, memory_format=torch.channels_last)
        gx2 = gx.permute(0, 2, 3, 1).view(m, c)
        sum_g = g.sum(0)
        sum_gxc = torch.mul(g, xc, out=gx2).sum(0)
        a = invstd if weight is None else invstd * weight
        # dx = a * (g - mean(g) - xc * invstd^2 * mean(g * xc))
        torch.addcmul(a * sum_g / -m, g, a, out=gx2)
        gx2.addcmul_(xc, a * invstd * invstd * sum_gxc / -m)
        grad_weight = sum_gxc * invstd if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_g if ctx.needs_input_grad[2] else None
        return gx, grad_weight, grad_bias, None, None, None, None


def _accurate_path(bn: nn.BatchNorm2d, x: Tensor) -> bool:
    return (bn.training and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and bn.momentum is not None and (bn.track_running_stats or bn.running_mean is None)
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            and x.shape[0] * x.shape[2] * x.shape[3] > 1 and not torch.is_autocast_enabled("cpu"))


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same arguments, parameters, buffers and state_dict), exact on
    channels-last CPU inputs in training mode (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if not _accurate_path(self, x):
            return super().forward(x)
        self._check_input_dim(x)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        return _ChannelsLastBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                            self.momentum, self.eps)
