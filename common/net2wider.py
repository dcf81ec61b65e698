"""Widening layers by copying channels (Net2WiderNet, Chen, Goodfellow, Shlens, ICLR 2016), as DrNAS
grows its partial-channel supernets between stages (xiangning-chen/DrNAS `net2wider.py`).

A layer widened from `old` to `new` channels keeps its old channels and appends copies: new channel
`old + j` is a copy of old channel `index[j]`, along the conv weight's input (dim 1) or output (dim 0)
channels, or a batch norm's channels (running statistics, and weight and bias if affine). The index
is drawn (`Draw`: DrNAS draws `torch.randint(0, old, (new - old,))`) or handed on from the layer the
copies come from, so that a conv and the batch norm after it copy the same channels. As DrNAS, the
copies are not rescaled (Net2WiderNet divides the next layer's weights by the copy counts).

A widened parameter is a new `nn.Parameter` (`Widened` says which old one it replaces and how), so
optimisers must be told (`widen_momentum`): DrNAS's `configure_optimizer` carries each SGD momentum
buffer over, widened with the same index copies as its parameter.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Draw = Callable[[int, int], Tensor]  # (old, new channels) -> the new - old old channels to copy


def random_draw(generator: torch.Generator) -> Draw:
    """DrNAS's draw, from `generator`: `new - old` channels uniformly among the `old`, with repetition."""
    return lambda old, new: torch.randint(0, old, (new - old,), generator=generator)


@dataclass(frozen=True)
class Widened:
    """`new` replaces `old`: copies of old's channels `index` appended along `dim`."""

    old: nn.Parameter
    new: nn.Parameter
    dim: int
    index: Tensor


def _grown(t: Tensor, dim: int, index: Tensor) -> Tensor:
    return torch.cat([t, t.index_select(dim, index.to(t.device))], dim)


def _index(old: int, new: int, draw: Draw, index: Tensor | None) -> Tensor:
    if index is None:
        index = draw(old, new)
    if index.numel() != new - old:
        raise ValueError(f"widening {old} to {new} channels copies {new - old} channels, not {index.numel()}")
    return index


def _replace(module: nn.Module, name: str, dim: int, index: Tensor) -> Widened:
    old = getattr(module, name)
    new = nn.Parameter(_grown(old.detach(), dim, index), requires_grad=old.requires_grad)
    setattr(module, name, new)
    return Widened(old, new, dim, index)


def conv_in(conv: nn.Conv2d, new: int, draw: Draw, index: Tensor | None = None) -> tuple[Tensor, list[Widened]]:
    """Widen a conv's input channels to `new` (DrNAS's InChannelWider); the index used."""
    index = _index(conv.weight.shape[1], new, draw, index)
    conv.in_channels = new
    return index, [_replace(conv, "weight", 1, index)]


def conv_out(conv: nn.Conv2d, new: int, draw: Draw, index: Tensor | None = None,
             depthwise: bool = False) -> tuple[Tensor, list[Widened]]:
    """Widen a conv's output channels to `new` (DrNAS's OutChannelWider); a depthwise conv's input
    channels and groups follow. The index used."""
    index = _index(conv.weight.shape[0], new, draw, index)
    conv.out_channels = new
    if depthwise:
        conv.in_channels = conv.groups = new
    return index, [_replace(conv, "weight", 0, index)]


def batch_norm(bn: nn.BatchNorm2d, new: int, draw: Draw, index: Tensor | None = None) -> tuple[Tensor, list[Widened]]:
    """Widen a batch norm to `new` channels (DrNAS's BNWider): its running statistics, and its weight
    and bias if affine; `num_batches_tracked` stays. The index used."""
    index = _index(bn.num_features, new, draw, index)
    for name in ("running_mean", "running_var"):
        buffer = getattr(bn, name)
        if buffer is not None:
            setattr(bn, name, _grown(buffer, 0, index))
    widened = [_replace(bn, name, 0, index) for name in ("weight", "bias") if getattr(bn, name) is not None]
    bn.num_features = new
    return index, widened


def widen_momentum(optimizer: torch.optim.Optimizer, widened: Iterable[Widened]) -> None:
    """Point `optimizer` at the widened parameters (in place of the ones they replace, in the same
    order) and widen their momentum buffers with the same copies (DrNAS's `configure_optimizer`);
    other state (a parameter that never had a buffer) starts afresh, as in a new optimizer."""
    replaced: dict[nn.Parameter, nn.Parameter] = {}
    state = optimizer.state
    for w in widened:
        buffer = state.pop(w.old, {}).get("momentum_buffer")
        if buffer is not None:
            state[w.new] = {"momentum_buffer": _grown(buffer, w.dim, w.index)}
        replaced[w.old] = w.new
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            while p in replaced:  # a conv widened twice (input, then output channels)
                p = replaced[p]
            params.append(p)
        group["params"] = params
