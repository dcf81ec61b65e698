"""sota/train.py's training step, progress lines and resume, in process on a tiny network
(the unit tier; tests/test_eval.py runs eval.sh end to end)."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common.distributed import Group
from common.progress import Progress
from sota.genotypes import get_genotype
from sota.train import Run, build_parser, config
from tests.conftest import FakeClock


def make_run(data: Path, *flags: str) -> Run:
    args = build_parser().parse_args(["--data", str(data), "--init_channels", "4", "--layers", "3",
                                      "--batch_size", "16", "--epochs", "2", "--gpu", "cpu", *flags])
    return Run(config(args), get_genotype("darts_pt_s5_0"), torch.device("cpu"), Group())


def quiet(epochs: int = 2) -> Progress:
    return Progress(epochs, every_steps=1000, every_s=0.0)


def test_auxiliary_loss_is_weighted_by_auxiliary_weight(cifar10_dir):
    """One step (--fast: one batch) by hand: loss = CE(logits) + auxiliary_weight * CE(aux logits),
    backpropagated, clipped and stepped by SGD."""
    torch.manual_seed(0)
    r = make_run(cifar10_dir, "--auxiliary", "--auxiliary_weight", "0.7", "--fast")
    net = copy.deepcopy(r.net).train()
    x, y, _ = next(iter(r.train_batches(0)))
    logits, logits_aux = net(x)
    main, aux = nn.functional.cross_entropy(logits, y), nn.functional.cross_entropy(logits_aux, y)
    assert abs(aux.item()) > 0.1  # the term matters
    loss = main + 0.7 * aux
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), r.cfg.optim.grad_clip)
    o = r.cfg.optim
    torch.optim.SGD(net.parameters(), o.learning_rate, momentum=o.momentum, weight_decay=o.weight_decay).step()

    _, logged = r.train_epoch(0, quiet())
    assert logged == pytest.approx(loss.item(), rel=1e-5)
    for (name, trained), by_hand in zip(r.net.named_parameters(), net.parameters()):
        torch.testing.assert_close(trained, by_hand, rtol=1e-4, atol=1e-6, msg=name)


def test_a_slow_epoch_logs_by_time(cifar10_dir, log_lines):
    r = make_run(cifar10_dir)  # 96 training images: 6 steps of 16
    r.train_epoch(0, Progress(2, every_steps=1000, every_s=30.0, clock=FakeClock(10.0)))
    steps = [int(m.group(1)) for line in log_lines if (m := re.match(r"train (\d+)/006 loss", line))]
    assert steps[0] == 0 and steps[-1] == 5 and len(steps) >= 3, log_lines
    assert all("steps/s, epoch ETA" in line and "run ETA" in line for line in log_lines if line.startswith("train "))


def test_resume_restores_the_saved_generators(cifar10_dir, tmp_path):
    """What a checkpoint's run draws next (drop-path masks, augmentation) after `Run.load` is what
    the run would have drawn after writing it."""
    r = make_run(cifar10_dir)
    torch.manual_seed(5)
    np.random.seed(5)
    state = r.state()
    assert state is not None
    expected = torch.rand(4).tolist(), np.random.rand(2).tolist()
    other = make_run(cifar10_dir)
    torch.manual_seed(6)
    np.random.seed(6)
    other.load(state, tmp_path / "checkpoint_1.pth.tar")
    assert (torch.rand(4).tolist(), np.random.rand(2).tolist()) == expected
