"""NetworkImageNet against a straightforward transcription of the original's model_imagenet.py.

The transcription uses torch's own BatchNorm2d and the original's in-place ReLUs; ours must
have the same state_dict layout and give the same outputs in float64 (train and eval mode,
auxiliary head, drop path with the same masks).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sota.genotypes import get_genotype
from sota.model_eval import count_parameters_mb
from sota.model_imagenet import NetworkImageNet
from sota.operations import OPS, FactorizedReduce, ReLUConvBN


def _drop_path(x, drop_prob):
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, dtype=x.dtype).bernoulli_(keep)
    return x.div(keep).mul(mask)


class RefCell(nn.Module):
    def __init__(self, genotype, C_prev_prev, C_prev, C, reduction, reduction_prev):
        super().__init__()
        self.preprocess0 = FactorizedReduce(C_prev_prev, C) if reduction_prev else ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        op_names, indices = zip(*(genotype.reduce if reduction else genotype.normal), strict=True)
        self._concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.multiplier = len(self._concat)
        self._steps = len(op_names) // 2
        self._ops = nn.ModuleList(OPS[n](C, 2 if reduction and i < 2 else 1, True) for n, i in zip(op_names, indices,
                                                                                                  strict=True))
        self._indices = indices

    def forward(self, s0, s1, drop_prob):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            op1, op2 = self._ops[2 * i], self._ops[2 * i + 1]
            h1, h2 = op1(states[self._indices[2 * i]]), op2(states[self._indices[2 * i + 1]])
            if self.training and drop_prob > 0.:
                if not isinstance(op1, nn.Identity):
                    h1 = _drop_path(h1, drop_prob)
                if not isinstance(op2, nn.Identity):
                    h2 = _drop_path(h2, drop_prob)
            states += [h1 + h2]
        return torch.cat([states[i] for i in self._concat], dim=1)


class RefAuxiliaryHeadImageNet(nn.Module):
    def __init__(self, C, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class RefNetworkImageNet(nn.Module):
    def __init__(self, C, num_classes, layers, auxiliary, genotype):
        super().__init__()
        self._layers, self._auxiliary, self.drop_path_prob = layers, auxiliary, 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True), nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        C_prev_prev, C_prev, C_curr = C, C, C
        self.cells = nn.ModuleList()
        reduction_prev = True
        for i in range(layers):
            if i in [layers // 3, 2 * layers // 3]:
                C_curr *= 2
                reduction = True
            else:
                reduction = False
            cell = RefCell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells += [cell]
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == 2 * layers // 3:
                C_to_auxiliary = C_prev
        if auxiliary:
            self.auxiliary_head = RefAuxiliaryHeadImageNet(C_to_auxiliary, num_classes)
        self.global_pooling = nn.AvgPool2d(7)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, input):
        logits_aux = None
        s0 = self.stem0(input)
        s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3 and self._auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1)), logits_aux


@pytest.mark.parametrize("arch", ["darts_pt_s5_0", "DARTS_V2"])
def test_outputs_and_layout_match_the_original(arch):
    genotype = get_genotype(arch)
    torch.manual_seed(0)
    ours = NetworkImageNet(8, 11, 5, True, genotype).double()
    ref = RefNetworkImageNet(8, 11, 5, True, genotype).double()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    for drop in (0.0, 0.3):  # drop path draws the same masks in the same order
        ours.drop_path_prob = ref.drop_path_prob = drop
        torch.manual_seed(1)
        a, a_aux = ours(x)
        torch.manual_seed(1)
        b, b_aux = ref(x)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a_aux, b_aux, rtol=1e-12, atol=1e-12)
    for k, v in ref.state_dict().items():  # batch-norm running statistics moved alike
        torch.testing.assert_close(ours.state_dict()[k], v, rtol=1e-12, atol=1e-12, msg=k)
    ours.eval(), ref.eval()
    (a, a_aux), (b, b_aux) = ours(x), ref(x)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert a_aux is None and b_aux is None


def test_paper_size_has_the_published_parameter_count():
    """C=48, 14 layers: DARTS (second order) is 4.7M parameters on ImageNet in the DARTS paper
    (auxiliary head excluded)."""
    net = NetworkImageNet(48, 1000, 14, True, get_genotype("DARTS_V2"))
    assert count_parameters_mb(net) == pytest.approx(4.7, abs=0.05)


def test_smaller_images_pool_their_own_final_map():
    net = NetworkImageNet(8, 5, 3, False, get_genotype("darts_pt_s5_0"), image_size=64)
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5) and aux is None


def test_mult_adds_count_convolutions_and_classifier():
    from sota.model_eval import count_mult_adds_m

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    assert count_mult_adds_m(net, 32) * 1e6 == pytest.approx(16 * 16 * 8 * (3 * 9 + 9) + 8 * 16 * 16 * 10)
    big = NetworkImageNet(48, 1000, 14, True, get_genotype("DARTS_V2")).train()
    assert 500 < count_mult_adds_m(big, 224) < 600 and big.training  # DARTS' ImageNet network: "574M" in its paper
