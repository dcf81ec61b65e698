"""Which batches a search epoch and a tuning epoch feed to the alpha and weight steps.

The original's `train()` draws each step's weight batch and alpha batch from a new
iterator (`next(iter(queue))`), `len(train_queue)` steps per epoch; its projection tuning
iterates a real epoch of the weight half and draws each alpha batch fresh. `--sampling
epoch` trains on real epochs of both halves instead.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from common.arch import Architecture
from common.data import TRAIN, TUNE_TRAIN, TUNE_VALID, VALID, Batches, ImageSet
from common.space import Space
from common.trainer import SearchData, Trainer
from tests.fixtures.configs import search_cfg


class Recorder(Trainer):
    """The real Trainer, recording the labels of the batches its steps receive."""

    def alpha_step(self, x, y, batch=None, train=None):
        assert batch == len(y)  # one process: its batch is the whole batch
        self.seen["alpha"].append(y.tolist())

    def weight_step(self, x, y, batch=None):
        assert batch == len(y)
        self.seen["weight"].append(y.tolist())
        return torch.zeros(len(y), 10), torch.zeros(())


def make(sampling: str) -> Recorder:
    n = 44  # halves of 22: 3 batches of 8 per pass, the last one partial
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 4, 4, 3).contiguous()
    data = ImageSet(images, torch.arange(n), 10, (0.5,) * 3, (0.5,) * 3, 1)
    train, valid = (Batches(data, idx, 8, augment=True, seed=5) for idx in (torch.arange(22), torch.arange(22, n)))
    model = nn.Linear(1, 1)
    space = Space(label="toy", model=model, arch=Architecture({"cell": (1, 2)}), op_names={}, edge_names=[],
                  genotype=lambda w: None)
    cfg = search_cfg("--sampling", sampling)
    trainer = Recorder(space, SearchData(train, valid, None), cfg, torch.device("cpu"))
    trainer.seen = {"alpha": [], "weight": []}
    return trainer


def labels(batches) -> list[list[int]]:
    return [y.tolist() for _, y in batches]


def test_search_epoch_draws_fresh_batches_as_the_original():
    t = make("fresh")
    t.train_epoch(4, train_alpha=True, cutout_prob=0.0)
    steps = len(t.data.train)
    assert steps == 3 and len(t.seen["weight"]) == len(t.seen["alpha"]) == steps
    assert t.seen["weight"] == [t.data.train.sample((TRAIN, 4, s))[1].tolist() for s in range(steps)]
    assert t.seen["alpha"] == [t.data.valid.sample((VALID, 4, s))[1].tolist() for s in range(steps)]
    assert all(len(b) == 8 for b in t.seen["weight"])  # never the partial last batch of a pass
    seen = [i for b in t.seen["weight"] for i in b]
    assert len(set(seen)) < len(seen)  # images repeat within an epoch (sampling with replacement)


def test_tuning_epoch_iterates_the_weight_half_and_draws_alpha_batches():
    t = make("fresh")
    t.train_epoch(2, train_alpha=True, cutout_prob=0.0, tuning=True)
    assert t.seen["weight"] == labels(t.data.train((TUNE_TRAIN, 2)))  # a real epoch: every image once
    assert sorted(i for b in t.seen["weight"] for i in b) == list(range(22))
    assert t.seen["alpha"] == [t.data.valid.sample((TUNE_VALID, 2, s))[1].tolist() for s in range(3)]


@pytest.mark.parametrize("tuning", [False, True])
def test_epoch_sampling_uses_real_epochs_of_both_halves(tuning: bool):
    t = make("epoch")
    t.train_epoch(1, train_alpha=True, cutout_prob=0.0, tuning=tuning)
    keys = (TUNE_TRAIN, TUNE_VALID) if tuning else (TRAIN, VALID)
    assert t.seen["weight"] == labels(t.data.train((keys[0], 1)))
    assert t.seen["alpha"] == labels(t.data.valid((keys[1], 1, 0)))


def test_blank_trains_no_alpha():
    t = make("fresh")
    t.train_epoch(0, train_alpha=False, cutout_prob=0.0)
    assert t.seen["alpha"] == [] and len(t.seen["weight"]) == 3
