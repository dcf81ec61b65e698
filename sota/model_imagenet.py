"""ImageNet evaluation network built from a genotype (the original's sota/cnn/model_imagenet.py).

Module names follow the original so its ImageNet checkpoints load unchanged. The cells are
sota.model_eval's (drop path included); what differs from NetworkCIFAR is the input side (two
stems that bring 224x224 images down to 28x28 with three stride-2 convolutions), the first
cell's reduced previous state, the auxiliary head (no batch norm after its 2x2 convolution,
as in the paper's runs) and the global 7x7 average pool. Every ReLU is out-of-place; the
original's in-place ones act on tensors that only ever enter a ReLU next, so the numbers are
the same.
"""
from __future__ import annotations

from torch import Tensor, nn

from common.batchnorm import BatchNorm2d
from sota.genotypes import Genotype
from sota.model_eval import Cell

IMAGE_SIZE = 224  # the original's crop size
DOWNSAMPLING = 32  # stems (x8) and the two reduction cells (x4)
AUX_MAP_SIZES = (7, 8)  # the auxiliary head's pool and 2x2 convolution leave a 1x1 map only for these


def final_map_size(image_size: int) -> int:
    """Side of the last cell's feature map for square inputs of `image_size` pixels."""
    return image_size // DOWNSAMPLING


class AuxiliaryHeadImageNet(nn.Module):
    """Auxiliary classifier on the 7x7 map after cell 2*layers//3 (the second reduction)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),  # 7x7 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            # the original (after DARTS) has no BatchNorm2d(768) here: a typo it kept for its results
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class NetworkImageNet(nn.Module):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(C // 2),
            nn.ReLU(inplace=False),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(C),
        )
        C_prev_prev, C_prev, C_curr = C, C, C
        self.cells = nn.ModuleList()
        reduction_prev = True  # stem0's output, cell 0's first input, is twice stem1's size
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
            self.auxiliary_head = AuxiliaryHeadImageNet(C_to_auxiliary, num_classes)
        # the original's AvgPool2d(7), for the map of `image_size` inputs (7x7 at 224)
        self.global_pooling = nn.AvgPool2d(final_map_size(image_size))
        self.classifier = nn.Linear(C_prev, num_classes)

    def _aux_position(self) -> int:
        return 2 * self._layers // 3

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(logits, auxiliary logits); the latter only in training mode with the head."""
        logits_aux = None
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_position() and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1)), logits_aux
