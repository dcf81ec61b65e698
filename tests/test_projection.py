"""Perturbation-based selection on constructed cases where the right answer is known.

A toy supernet whose edges' ops add known multiples of one image feature to the logit
margin runs through the real Trainer, Architecture, Batches and Scorer: removing an op
(or an edge) changes the margin by a known amount, so we know what must be selected.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from common.arch import Architecture
from common.data import Batches, ImageSet
from common.projection import Scorer, select_edges, select_op
from common.space import Space
from common.trainer import SearchData, Trainer
from sota.spaces import NODE_EDGES
from tests.fixtures.configs import search_cfg


class MarginNet(nn.Module):
    """Binary classifier: logit margin = (sum over edges and ops of w[e,k] * c[e,k]) * f(x),
    with f(x) > 0 for class 1 and < 0 for class 0. The margin's sign gives the accuracy
    (100% if positive, 0% if negative), its size the loss."""

    def __init__(self, contrib: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.contrib = contrib
        self.scale = nn.Parameter(torch.ones(()))  # something for the weight optimiser

    def forward(self, x, weights, active=None):
        s = sum((weights[k] * c).sum() for k, c in self.contrib.items())
        f = x.mean(dim=(1, 2, 3))
        margin = self.scale * s * f
        return torch.stack([-margin, margin], dim=1)


def make_trainer(contrib: dict[str, torch.Tensor], project=()) -> Trainer:
    n = 32
    labels = torch.arange(n) % 2
    images = torch.where(labels[:, None, None, None] == 1, 200, 50).to(torch.uint8).expand(n, 32, 32, 3)
    data = ImageSet(images.contiguous(), labels, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 4)
    batches = Batches(data, None, 8, augment=True, seed=0)
    model = MarginNet(contrib)
    arch = Architecture({k: tuple(c.shape) for k, c in contrib.items()})
    for kind, edge, op in project:
        arch.project_op(kind, edge, op)
    cfg = search_cfg("--learning_rate", "0.1", "--weight_decay", "0")
    space = Space(label="toy", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    return Trainer(space, SearchData(batches, batches, None), cfg, torch.device("cpu"))


def test_op_removal_that_hurts_most_is_kept():
    # edge 0: op 2 carries the classifier (+9), op 1 works against it (-3), op 0 does nothing;
    # the other edges contribute nothing
    contrib = {"cell": torch.zeros(3, 3)}
    contrib["cell"][0] = torch.tensor([0.0, -3.0, 9.0])
    trainer = make_trainer(contrib)
    score = Scorer(trainer, epoch=0)
    assert score("cell", 0, 2)[0] == 0.0 and score("cell", 0, 1)[0] == 100.0  # sanity of the construction
    assert select_op(score, "cell", 0, 3, "acc") == 2
    assert select_op(score, "cell", 0, 3, "loss") == 2
    # an op whose removal helps (op 1) is never chosen; a neutral one (op 0) only over it
    contrib["cell"][0] = torch.tensor([0.5, -3.0, 2.0])
    assert select_op(Scorer(make_trainer(contrib), 0), "cell", 0, 3, "loss") == 2


def test_masking_is_not_renormalised():
    contrib = {"cell": torch.tensor([[0.0, 0.0, 9.0]])}
    trainer = make_trainer(contrib)
    w = trainer.arch.masked("cell", 0, 1)
    soft = torch.softmax(trainer.arch.alphas["cell"], -1).detach()
    assert w["cell"][0, 1] == 0 and torch.equal(w["cell"][0, [0, 2]], soft[0, [0, 2]])


def test_topology_keeps_two_edges_dropping_those_whose_removal_hurts_least():
    # node 4 (edges 9-13), each edge already one-hot on op 0 with margins +5 +3 -1 +1 -2
    contrib = {"normal": torch.zeros(14, 2)}
    contrib["normal"][9:14, 0] = torch.tensor([5.0, 3.0, -1.0, 1.0, -2.0])
    trainer = make_trainer(contrib, project=[("normal", e, 0) for e in range(14)])
    kept = select_edges(Scorer(trainer, 0), "normal", NODE_EDGES[4], "loss")
    assert sorted(kept) == [9, 10]
    trainer.arch.drop_edges("normal", 4, [e for e in NODE_EDGES[4] if e not in kept])
    w = trainer.arch.weights()["normal"]
    assert [bool(w[e].any()) for e in NODE_EDGES[4]] == [True, True, False, False, False]
    assert trainer.arch.active()["normal"][11] == [] and trainer.arch.decided_nodes["normal"] == [4]


@pytest.mark.parametrize("crit,stats,expected", [
    ("acc", [(50.0, 1.0), (20.0, 0.5), (20.0, 3.0)], 1),   # lowest accuracy, first on ties
    ("loss", [(50.0, 1.0), (20.0, 0.5), (90.0, 3.0)], 2),  # highest loss
])
def test_select_op_criteria(crit, stats, expected):
    assert select_op(lambda kind, edge, op: stats[op], "cell", 0, 3, crit) == expected


def test_select_edges_criteria_on_a_score_table():
    # accuracy after removing each edge: removing 5 hurts most, 8 least
    acc = {5: 10.0, 6: 60.0, 7: 50.0, 8: 90.0}
    kept = select_edges(lambda kind, e, op: (acc[e], 0.0), "normal", [5, 6, 7, 8], "acc")
    assert sorted(kept) == [5, 7]
    with pytest.raises(ValueError, match="criterion"):
        select_edges(lambda kind, e, op: (acc[e], 0.0), "normal", [5, 6, 7], "bogus")
