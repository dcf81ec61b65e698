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
On that path `scaled_add` also computes `acc + scale * bn(x)` in place, for the supernet
cells' weighted sums (common/cellops.py).

`SyncBatchNorm2d` is its variant for multi-process training (`--sync_bn`): batch statistics
over the whole batch of all processes, on CPU and CUDA alike (torch's nn.SyncBatchNorm runs
on GPUs only, and the tests run on CPU).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of a channels-last [N, C, H, W] tensor seen as [N*H*W, C].

    With `scale` (a 0-d tensor) and `acc`, it computes `acc + scale * bn(x)` into `acc` in place:
    a supernet cell adding a weighted op into its node (common/cellops.py). The scale folds into
    the per-channel factor, and its gradient is a sum the backward computes anyway:
    d/d scale = sum_c invstd_c * weight_c * sum(g * xc)_c + bias_c * sum(g)_c."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
                running_var: Tensor | None, momentum: float, eps: float, scale: Tensor | None = None,
                acc: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        m = n * h * w
        v = x.permute(0, 2, 3, 1).reshape(m, c)  # a view: channels-last memory is [N, H, W, C]
        mean = v.sum(0).div_(m)
        xc = v - mean
        # The output (a tensor of its own, not a view: in-place ops on it must be allowed) holds
        # xc^2 first; an accumulated output needs a scratch tensor for it.
        y = torch.empty_like(x, memory_format=torch.channels_last) if acc is None else acc
        y2 = y.permute(0, 2, 3, 1).view(m, c)
        var_sum = (xc * xc if acc is not None else torch.mul(xc, xc, out=y2)).sum(0)
        invstd = var_sum.div(m).add_(eps).rsqrt_()
        if running_mean is not None and running_var is not None:
            with torch.no_grad():  # as the native kernel: unbiased variance in the running estimate
                running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                running_var.mul_(1 - momentum).add_(var_sum, alpha=momentum / max(m - 1, 1))
        a = _factor(invstd, weight, scale)
        shift = None if bias is None else bias if scale is None else bias * scale
        if acc is None:
            torch.mul(xc, a, out=y2) if shift is None else torch.addcmul(shift, xc, a, out=y2)
        else:
            y2.addcmul_(xc, a)
            if shift is not None:
                y2.add_(shift)
            ctx.mark_dirty(acc)
        ctx.save_for_backward(xc, invstd, weight, bias, scale)
        ctx.accumulated = acc is not None
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, invstd, weight, bias, scale = ctx.saved_tensors
        m, c = xc.shape
        g = grad.permute(0, 2, 3, 1).reshape(m, c)
        gx = torch.empty_like(grad, memory_format=torch.channels_last)
        gx2 = gx.permute(0, 2, 3, 1).view(m, c)
        sum_g = g.sum(0)
        sum_gxc = torch.mul(g, xc, out=gx2).sum(0)
        a = _factor(invstd, weight, scale)
        # dx = a * (g - mean(g) - xc * invstd^2 * mean(g * xc))
        torch.addcmul(a * sum_g / -m, g, a, out=gx2)
        gx2.addcmul_(xc, a * invstd * invstd * sum_gxc / -m)
        s = 1.0 if scale is None else scale
        grad_weight = s * sum_gxc * invstd if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = s * sum_g if bias is not None and ctx.needs_input_grad[2] else None
        grad_scale = None
        if scale is not None and ctx.needs_input_grad[7]:
            grad_scale = (sum_gxc * _factor(invstd, weight, None)).sum()
            if bias is not None:
                grad_scale = grad_scale + (bias * sum_g).sum()
        grad_acc = grad if ctx.accumulated else None
        return gx, grad_weight, grad_bias, None, None, None, None, grad_scale, grad_acc


def _factor(invstd: Tensor, weight: Tensor | None, scale: Tensor | None) -> Tensor:
    """The per-channel factor of xc in the output: invstd (* weight) (* scale)."""
    a = invstd if weight is None else invstd * weight
    return a if scale is None else a * scale


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
        return self._channels_last(x)

    def fuses(self, x: Tensor, acc: Tensor | None) -> bool:
        """Whether `scaled_add(x, scale, acc)` runs fused: on the channels-last CPU training path."""
        return _accurate_path(self, x) and (acc is None or (acc.shape == x.shape and acc.dtype == x.dtype
                                                             and acc.is_contiguous(memory_format=torch.channels_last)))

    def scaled_add(self, x: Tensor, scale: Tensor, acc: Tensor | None) -> Tensor:
        """`acc + scale * self(x)` into acc, in one pass over the output (see `fuses`)."""
        return self._channels_last(x, scale, acc)

    def _channels_last(self, x: Tensor, scale: Tensor | None = None, acc: Tensor | None = None) -> Tensor:
        self._check_input_dim(x)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        return _ChannelsLastBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                            self.momentum, self.eps, scale, acc)


_CHANNELS = (0, 2, 3)  # the dimensions batch norm reduces: all but the channels


def _per_channel(v: Tensor) -> Tensor:
    return v.view(1, -1, 1, 1)


class _SyncBatchNorm(torch.autograd.Function):
    """Training-mode batch norm with the statistics of every process's shard together: each
    process reduces its shard, torch.distributed sums the reductions over the processes (in
    float64), and every process normalises with the same global mean and variance.

    The backward sums the gradient's reductions the same way; the weight and bias gradients
    stay those of the process's shard, and DistributedDataParallel averages them with the other
    parameters' (as nn.SyncBatchNorm does)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, running_mean: Tensor | None,
                running_var: Tensor | None, momentum: float, eps: float) -> Tensor:
        c = x.shape[1]
        sums = torch.cat([x.sum(_CHANNELS).double(), x.new_full((1,), x.numel() // c, dtype=torch.float64)])
        dist.all_reduce(sums)
        count = sums[c]  # values per channel in the global batch, kept on the device (no host sync)
        mean = (sums[:c] / count).to(x.dtype)
        xc = x - _per_channel(mean)
        var_sum = xc.mul(xc).sum(_CHANNELS).double()  # two passes, as accurate as one process's
        dist.all_reduce(var_sum)
        invstd = (var_sum / count + eps).rsqrt().to(x.dtype)
        if running_mean is not None and running_var is not None:
            with torch.no_grad():  # as the native kernel: unbiased variance in the running estimate
                running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                unbiased = (var_sum / (count - 1).clamp(min=1)).to(x.dtype)
                running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        y = xc * _per_channel(invstd if weight is None else invstd * weight)
        if bias is not None:
            y += _per_channel(bias)
        ctx.save_for_backward(xc, invstd, weight, count)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        xc, invstd, weight, count = ctx.saved_tensors
        c = xc.shape[1]
        sum_g = grad.sum(_CHANNELS)
        sum_gxc = grad.mul(xc).sum(_CHANNELS)
        sums = torch.cat([sum_g, sum_gxc]).double()
        dist.all_reduce(sums)
        mean_g, mean_gxc = (sums / count).to(grad.dtype).split(c)
        a = invstd if weight is None else invstd * weight
        # dx = a * (g - mean(g) - xc * invstd^2 * mean(g * xc)), the means over the global batch
        gx = (grad - _per_channel(mean_g) - xc * _per_channel(invstd * invstd * mean_gxc)) * _per_channel(a)
        grad_weight = sum_gxc * invstd if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_g if ctx.needs_input_grad[2] else None
        return gx, grad_weight, grad_bias, None, None, None, None


def _synchronised() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d (same arguments, parameters, buffers and state_dict) whose training-mode
    statistics are those of the global batch of a multi-process run (see _SyncBatchNorm); in
    one process, or in eval mode, it is BatchNorm2d."""

    def fuses(self, x: Tensor, acc: Tensor | None) -> bool:
        return not (self.training and _synchronised()) and super().fuses(x, acc)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _synchronised()):
            return super().forward(x)
        self._check_input_dim(x)
        momentum = self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        tracked = self.track_running_stats
        return _SyncBatchNorm.apply(x, self.weight, self.bias, self.running_mean if tracked else None,
                                    self.running_var if tracked else None, momentum or 0.0, self.eps)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """`module` with every BatchNorm2d replaced by a SyncBatchNorm2d of the same state (call
        it before an optimizer takes the parameters: the replacements hold new ones)."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            where: dict[str, Any] = next(({"device": t.device, "dtype": t.dtype}
                                          for t in (module.weight, module.running_mean) if t is not None), {})
            sync = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                       **where)
            sync.load_state_dict(module.state_dict())
            return sync.train(module.training)
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module
