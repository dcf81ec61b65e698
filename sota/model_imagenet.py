"""ImageNet evaluation network built from a genotype (the original's sota/cnn/model_imagenet.py).

Module names follow the original so the state_dict of its ImageNet checkpoints loads unchanged
(sota/train_imagenet.py's `--load`). The cells are sota.model_eval's (drop path included); what
differs from NetworkCIFAR is the input side (two stems that bring 224x224 images down to 28x28
with three stride-2 convolutions), the first cell's reduced previous state, the auxiliary head
(no batch norm after its 2x2 convolution, as in the paper's runs) and the global 7x7 average
pool. Every ReLU is out-of-place; the original's in-place ones act on tensors that only ever
enter a ReLU next, so the numbers are the same.
"""
from __future__ import annotations

from torch import Tensor, nn

from common.batchnorm import BatchNorm2d
from sota.genotypes import Genotype
from sota.model_eval import CellStack

IMAGE_SIZE = 224  # the original's crop size
DOWNSAMPLING = 32  # stems (x8) and the two reduction cells (x4)
AUX_MAP_SIZES = (7, 8)  # the auxiliary head's pool and 2x2 convolution leave a 1x1 map only for these


def final_map_size(image_size: int) -> int:
    """Side of the last cell's feature map for square inputs of `image_size` pixels."""
    return image_size // DOWNSAMPLING


class NetworkImageNet(CellStack):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype,
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
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
        # stem0's output, cell 0's first input, is twice stem1's size: cell 0 reduces it
        C_prev = self._build_cells(genotype, layers, C, C, True, auxiliary, num_classes, aux_stride=2, bn_768=False)
        # the original's AvgPool2d(7), for the map of `image_size` inputs (7x7 at 224)
        self.global_pooling = nn.AvgPool2d(final_map_size(image_size))
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(logits, auxiliary logits); the latter only in training mode with the head."""
        s0 = self.stem0(x)
        out, logits_aux = self._cells(s0, self.stem1(s0))
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux
