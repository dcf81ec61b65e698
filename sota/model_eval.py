"""Evaluation network built from a genotype (quark0/darts model.py NetworkCIFAR).

Module names follow the original so DARTS / DARTS-PT evaluation checkpoints load unchanged.
The trainer sets `drop_path_prob` (ramped over training); drop path applies in training
mode to every op of a cell except identities. Batch norms are common.batchnorm's, exact
when the trainer runs the network channels-last on CPU.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from common.batchnorm import BatchNorm2d
from sota.genotypes import Genotype
from sota.operations import OPS, FactorizedReduce, ReLUConvBN

# Evaluation sizes of the exp_scripts: CIFAR-10 at C=36, 20 cells; CIFAR-100 and SVHN at C=16, 8 cells.
EVAL_SIZE = {"cifar10": (36, 20)}
DEFAULT_EVAL_SIZE = (16, 8)


def eval_size(dataset: str) -> tuple[int, int]:
    """(init channels, cells) of the evaluation network the exp_scripts train on `dataset`."""
    return EVAL_SIZE.get(dataset, DEFAULT_EVAL_SIZE)


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples with probability drop_prob, scaling the kept ones by 1/keep."""
    keep_prob = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep_prob)
    return x.div(keep_prob).mul(mask)


class Cell(nn.Module):
    def __init__(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self._concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.multiplier = len(self._concat)
        self._steps = len(edges) // 2
        self._indices = [j for _, j in edges]
        self._ops = nn.ModuleList(OPS[name](C, 2 if reduction and j < 2 else 1, True) for name, j in edges)

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            edges = (2 * i, 2 * i + 1)
            hs = [self._ops[e](states[self._indices[e]]) for e in edges]
            if self.training and drop_prob > 0:
                # both ops first, then the masks: the RNG order of the original
                hs = [h if isinstance(self._ops[e], nn.Identity) else drop_path(h, drop_prob)
                      for e, h in zip(edges, hs)]
            states.append(hs[0] + hs[1])
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the feature map after the second reduction: DARTS' CIFAR head
    (an 8x8 map, pooled with stride 3; `bn_768` true) or its ImageNet head (a 7x7 map, stride
    2, and no batch norm after the 2x2 convolution: a typo of DARTS' that the original kept
    for its results). Both pool the map down to 2x2."""

    def __init__(self, C: int, num_classes: int, pool_stride: int = 3, bn_768: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            *([BatchNorm2d(768)] if bn_768 else []),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class CellStack(nn.Module):
    """What the CIFAR and ImageNet networks share: `layers` cells of a genotype after the stem(s),
    reduction cells at layers//3 and 2*layers//3 (doubling the channels), and the auxiliary head
    after cell 2*layers//3. Subclasses build their stems, then call `_build_cells`, then add
    their pooling and classifier (the original's module order, hence its state_dict's)."""

    def _build_cells(self, genotype: Genotype, layers: int, C: int, C_stem: int, reduction_prev: bool,
                     auxiliary: bool, num_classes: int, aux_stride: int, bn_768: bool) -> int:
        """Add `cells` (and, if `auxiliary`, `auxiliary_head`); the channels of the last cell."""
        self._layers, self._auxiliary, self.drop_path_prob = layers, auxiliary, 0.0
        C_prev_prev, C_prev, C_curr = C_stem, C_stem, C
        self.cells = nn.ModuleList()
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self._aux_position():
                C_to_auxiliary = C_prev
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(C_to_auxiliary, num_classes, aux_stride, bn_768)
        return C_prev

    def _aux_position(self) -> int:
        return 2 * self._layers // 3

    def _cells(self, s0: Tensor, s1: Tensor) -> tuple[Tensor, Tensor | None]:
        """The last cell's output and (training mode, with the head) the auxiliary logits."""
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_position() and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        return s1, logits_aux


class NetworkCIFAR(CellStack):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype) -> None:
        super().__init__()
        stem_multiplier = 3
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), BatchNorm2d(C_curr))
        C_prev = self._build_cells(genotype, layers, C, C_curr, False, auxiliary, num_classes,
                                   aux_stride=3, bn_768=True)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(logits, auxiliary logits); the latter only in training mode with the head."""
        s0 = self.stem(x)
        out, logits_aux = self._cells(s0, s0)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


def count_mult_adds_m(model: nn.Module, image_size: int) -> float:
    """Multiply-adds (millions) of the convolutions and linear layers for one image in eval mode
    (the auxiliary head is idle), as the NAS papers' "mult-adds" count them."""
    total = 0

    def conv(m: nn.Conv2d, _: object, out: Tensor) -> None:
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, _: object, out: Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)  # type: ignore[arg-type]
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    training, param = model.training, next(model.parameters())
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, dtype=param.dtype, device=param.device))
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return total / 1e6


def count_parameters_mb(model: nn.Module) -> float:
    """Parameters in millions, without the auxiliary head (as DARTS reports model size)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e6
