"""SDARTS perturbations: valid mixing weights, PGD only ever raises the loss, alpha untouched."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.arch import Architecture
from common.data import Batches, ImageSet
from common.methods.sdarts import SDARTS, clip_rows, linf_pgd, random_smoothing
from common.space import Space
from common.trainer import SearchData, Trainer
from sota.model_search import DartsSupernet
from tests.fixtures.configs import search_cfg


def tiny(space="s5"):
    torch.manual_seed(0)
    model = DartsSupernet(4, 10, 3, space)
    arch = Architecture(model.arch_shapes())
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    return model, arch, x, y


def assert_valid_rows(w: torch.Tensor) -> None:
    assert (w >= 0).all() and (w <= 1).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[0]))


def test_clip_rows_keeps_an_all_negative_row_valid():
    w = clip_rows(torch.tensor([[-0.2, -0.1, -0.3], [0.5, 0.7, -0.2]]))
    assert torch.equal(w[0], torch.tensor([0.0, 1.0, 0.0]))
    assert_valid_rows(w)


def assert_within(p: torch.Tensor, w: torch.Tensor, epsilon: float) -> None:
    """Each row of p is the renormalisation of a point within epsilon of w's row (L-inf):
    some scale s > 0 gives |s * p - w| <= epsilon. (Clipping to [0, 1] does not bind when
    every weight of w is in (epsilon, 1 - epsilon).)"""
    assert ((w > epsilon) & (w < 1 - epsilon)).all(), "the check needs weights away from 0 and 1"
    lo = ((w - epsilon) / p).max(-1).values
    hi = ((w + epsilon) / p).min(-1).values
    assert (lo <= hi * (1 + 1e-6)).all(), (lo, hi)


def test_random_smoothing_gives_valid_weights_within_epsilon():
    model, arch, x, y = tiny()
    w = {k: v.detach() for k, v in arch.weights().items()}
    p = random_smoothing(model, w, x, y, 0.1)
    for k in w:
        assert_valid_rows(p[k])
        assert not torch.equal(p[k], w[k])
        assert_within(p[k], w[k], 0.1)
        with pytest.raises(AssertionError):  # the check can fail: not within a tenth of that
            assert_within(p[k], w[k], 0.01)
    same = random_smoothing(model, w, x, y, 0.0)  # epsilon 0 changes nothing (but rounding)
    for k in w:
        torch.testing.assert_close(same[k], w[k], rtol=1e-6, atol=0)


def test_pgd_moves_the_weights_raises_the_loss_and_stays_within_epsilon():
    model, arch, x, y = tiny("s3")
    w = {k: v.detach() for k, v in arch.weights().items()}
    model.eval()
    with torch.no_grad():
        before = F.cross_entropy(model(x, w), y)
    model.train()
    torch.manual_seed(0)
    p = linf_pgd(model, w, x, y, 0.1)
    assert model.training  # PGD attacks in eval mode and restores the mode
    model.eval()
    with torch.no_grad():
        after = F.cross_entropy(model(x, p), y)
    assert after > before
    for k in p:
        assert not torch.equal(p[k], w[k])
        assert_valid_rows(p[k])
        assert_within(p[k], w[k], 0.1)


class PeakAtClean(torch.nn.Module):
    """Logits whose loss (class 0) is largest at the clean weights w0: any move lowers it."""

    def __init__(self, w0: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x, weights, active=None):
        d = sum(((weights[k] - self.w0[k]) ** 2).sum() for k in weights)
        return torch.stack([d, -d]).expand(len(x), 2)


def test_pgd_keeps_the_clean_weights_when_the_attack_does_not_raise_the_loss():
    _, arch, x, _ = tiny("s3")
    w = {k: v.detach() for k, v in arch.weights().items()}
    torch.manual_seed(0)
    p = linf_pgd(PeakAtClean(w), w, x, torch.zeros(len(x), dtype=torch.long), 0.1)
    assert all(torch.equal(p[k], w[k]) for k in w)


def test_weight_step_under_perturbation_leaves_alpha_and_projection_alone():
    model, arch, x, y = tiny()
    arch.project_op("normal", 0, 3)
    images = torch.randint(0, 255, (16, 16, 16, 3), dtype=torch.uint8)
    data = ImageSet(images, torch.randint(0, 10, (16,)), 10, (0.5,) * 3, (0.5,) * 3, 2)
    batches = Batches(data, None, 8, augment=True)
    seen = {}

    def spy(model_, weights, x_, y_, eps, project):
        seen["in"] = {k: v.clone() for k, v in weights.items()}
        seen["out"] = random_smoothing(model_, weights, x_, y_, eps, project)
        return seen["out"]

    space = Space(label="s5", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    trainer = Trainer(space, SearchData(batches, batches, None), search_cfg(), torch.device("cpu"),
                      method=SDARTS(spy, 0.3))
    received = []
    trainer.forward = lambda x_, weights, active: received.append(weights) or model(x_, weights, active)
    alpha_before = [a.detach().clone() for a in arch.parameters()]
    trainer.weight_step(x, y)
    # what the model trains on: perturbed rows, the projected row still one-hot
    assert len(received) == 1 and torch.equal(received[0]["normal"], seen["out"]["normal"].index_copy(
        0, torch.tensor([0]), torch.eye(7)[3:4])) and torch.equal(received[0]["normal"][0], torch.eye(7)[3])
    assert not torch.equal(received[0]["normal"][1:], seen["in"]["normal"][1:])
    for a, b in zip(arch.parameters(), alpha_before):
        assert torch.equal(a, b)  # "alpha is restored after the weight step"
    assert torch.equal(seen["in"]["normal"][0], torch.eye(7)[3])  # projected row was one-hot ...
    assert torch.equal(arch.weights()["normal"][0], torch.eye(7)[3])  # ... and still is
