"""Progress lines: when a loop prints one (steps and a clock, here a fake one), what it says
(speed, epoch and run ETA), the scoring passes' counts and labels, and labelled softmax(alpha)."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from common.arch import Architecture
from common.config import ConfigError
from common.data import Batches, ImageSet
from common.progress import Progress, duration, run_progress
from common.projection import Scorer, select_edges, select_edges_passes
from common.search import alpha_table
from common.space import Space
from common.trainer import SearchData, Trainer
from nasbench201 import train_search as nb201
from sota import train_search as sota
from sota.spaces import space as sota_space
from tests.conftest import FakeClock
from tests.fixtures.configs import search_cfg


def test_duration_is_short_and_human():
    assert [duration(s) for s in (0, 42.4, 185, 7620, -3)] == ["0s", "42s", "3m05s", "2h07m", "0s"]


def test_lines_are_due_every_report_freq_steps_the_last_step_and_by_time():
    clock = FakeClock(tick=0.0)
    steps = Progress(1, every_steps=5, every_s=30.0, clock=clock).epoch(0, 12)
    assert [s for s in range(12) if steps.due(s)] == [0, 5, 10, 11]
    clock.now = 31.0  # 31 s after the epoch started and no line since: any step is due
    assert steps.due(3)
    steps.log(3, "x")
    assert not steps.due(4)  # the line reset the interval
    quiet = Progress(1, every_steps=5, every_s=0.0, clock=clock).epoch(0, 12)
    clock.now += 1e6
    assert not quiet.due(3)  # --report_secs 0: steps only


def test_line_says_speed_epoch_eta_and_run_eta(log_lines):
    clock = FakeClock(tick=0.0)
    progress = Progress(10, start=4, every_steps=50, clock=clock)  # a run resumed at epoch 4 of 10
    clock.now = 100.0  # the first resumed epoch took 100 s
    steps = progress.epoch(5, 40)
    clock.now = 120.0  # its next: 10 steps in 20 s
    steps.log(9, "loss 1.0000 acc 50.00")
    # 0.5 steps/s, 30 steps left = 60 s; 1.25 of 6 epochs in 120 s, 4.75 left = 456 s
    assert log_lines == ["train 009/040 loss 1.0000 acc 50.00 | 0.50 steps/s, epoch ETA 1m00s, run ETA 7m36s"]


def test_an_epoch_resumed_mid_way_counts_the_pace_of_its_own_steps(log_lines):
    clock = FakeClock(tick=0.0)
    progress = Progress(10, start=4 + 30 / 40, every_steps=50, clock=clock)  # resumed at step 30 of epoch 4
    steps = progress.epoch(4, 40, first=30)
    clock.now = 20.0  # steps 30..34 in 20 s
    steps.log(34, "loss 1.0000 acc 50.00")
    # 0.25 steps/s, 5 steps left = 20 s; 0.125 of the 5.25 epochs left at the start in 20 s: 820 s to go
    assert log_lines == ["train 034/040 loss 1.0000 acc 50.00 | 0.25 steps/s, epoch ETA 20s, run ETA 13m40s"]


class FakeSteps(Trainer):
    """The real Trainer's epoch loop around steps that compute nothing."""

    def alpha_step(self, x, y, n, train=None):
        pass

    def weight_step(self, x, y, n):
        return torch.zeros(len(y), 10), torch.ones(())


def toy_space(model: nn.Module, shapes: dict[str, tuple[int, int]], op_names=None, edge_names=()) -> Space:
    return Space(label="toy", model=model, arch=Architecture(shapes), op_names=op_names or {},
                 edge_names=list(edge_names), genotype=lambda w: None)


def test_a_slow_epoch_logs_by_time_between_report_freq_steps(log_lines):
    n = 40
    images = torch.zeros(n, 4, 4, 3, dtype=torch.uint8)
    data = ImageSet(images, torch.arange(n) % 10, 10, (0.5,) * 3, (0.5,) * 3, 1)
    train, valid = (Batches(data, idx, 2, augment=False, seed=0) for idx in (torch.arange(20), torch.arange(20, n)))
    cfg = search_cfg("--report_freq", "1000", "--report_secs", "30")
    trainer = FakeSteps(toy_space(nn.Linear(1, 1), {"cell": (1, 2)}), SearchData(train, valid, None), cfg,
                        torch.device("cpu"))
    # every step takes 10 s on this clock (the line's own reads add some): 10 steps, a line every ~30 s
    progress = Progress(3, every_steps=cfg.run.report_freq, every_s=cfg.run.report_secs, clock=FakeClock(10.0))
    trainer.train_epoch(0, train_alpha=True, cutout_prob=0.0, progress=progress)
    steps = [int(m.group(1)) for line in log_lines if (m := re.match(r"train (\d+)/010 loss 1\.0000", line))]
    assert steps[0] == 0 and steps[-1] == 9 and len(steps) >= 4, log_lines
    assert all("steps/s, epoch ETA" in line and "run ETA" in line for line in log_lines)


def test_report_secs_is_a_run_flag():
    assert run_progress(search_cfg("--report_secs", "7").run, 5).every_s == 7.0
    assert run_progress(search_cfg().run, 5).every_s == 30.0
    assert run_progress(search_cfg().run, 5, timed=False).every_s == 0.0  # multi-process: steps only
    with pytest.raises(ConfigError, match="--report_secs -1"):
        search_cfg("--report_secs", "-1")


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))  # something for the weight optimiser

    def forward(self, x, weights, active=None):
        return torch.zeros(len(x), 2) + weights["cell"].sum()


def constant_trainer(*flags: str) -> Trainer:
    n = 8
    data = ImageSet(torch.zeros(n, 4, 4, 3, dtype=torch.uint8), torch.arange(n) % 2, 2, (0.5,) * 3, (0.5,) * 3, 1)
    batches = Batches(data, None, 4, augment=False, seed=0)
    space = toy_space(Constant(), {"cell": (2, 3)}, {"cell": ["none", "skip", "conv"]}, ["1<-0", "2<-0"])
    return Trainer(space, SearchData(batches, batches, None), search_cfg(*flags), torch.device("cpu"))


def test_scoring_passes_name_edge_and_op_and_count_down_every_report_secs(log_lines):
    """A pass's own line only once --report_secs passed since the last one (else debug level);
    each decision's values in one line when the next decision starts or the round ends."""
    score = Scorer(constant_trainer("--report_secs", "9"), epoch=0, total=4, clock=FakeClock(5.0))
    score("cell", 1, 2)  # 5 s after the round's start: no line of its own
    assert log_lines == []
    score("cell", 0, None)  # 10 s: due
    assert log_lines[0] == "  cell edge 1 (2<-0): valid_acc/loss without each op: conv 50.00/0.6931 " \
                           "(5.0 s/pass, 3 left, ETA 15s)"
    assert log_lines[1] == "  scoring pass 2 of 4: cell edge 0 (1<-0) masked: valid_acc 50.0000 valid_loss 0.6931 " \
                           "| 5.0 s/pass, 2 left, ETA 10s"  # the clock is read once per pass: 5 s each
    score("cell", 1, None)
    score.close()
    assert log_lines[2:] == ["  cell node of edges 0, 1: valid_acc/loss without each edge: 0 50.00/0.6931, "
                             "1 50.00/0.6931 (5.0 s/pass, 1 left, ETA 5s)"]


def test_a_decision_logs_one_line_of_every_value_it_was_made_on(log_lines):
    score = Scorer(constant_trainer(), epoch=0)  # --report_secs 30: no pass is due
    for op in range(3):
        score("cell", 1, op)
    for edge in (0, 1, 0):  # a node's inputs: scored again after a drop
        score("cell", edge, None)
    score.close()
    assert [line.split(" (")[0] for line in log_lines] == [
        "  cell edge 1",
        "  cell node of edges 0, 1: valid_acc/loss without each edge: 0 50.00/0.6931, 1 50.00/0.6931 | 0 50.00/0.6931"]
    assert log_lines[0].startswith("  cell edge 1 (2<-0): valid_acc/loss without each op: none 50.00/0.6931, "
                                   "skip 50.00/0.6931, conv 50.00/0.6931 (")
    score.close()  # nothing more to say
    assert len(log_lines) == 2


class CountingScore:
    """A scorer that counts its passes; removing a higher op or edge hurts more."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.calls = epoch, 0

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        self.calls += 1
        return -float(edge if op is None else op), 0.0


@pytest.mark.parametrize("module,argv,shapes", [
    (nb201, ["--proj_intv", "1"], {"cell": (6, 5)}),
    (sota, ["--proj_intv", "1", "--space", "s1"], {"normal": (14, 2), "reduce": (14, 2)}),
    (sota, ["--proj_intv", "1"], {"normal": (14, 7), "reduce": (14, 7)}),
])
def test_plan_says_how_many_scoring_passes_each_round_makes(module, argv, shapes):
    cfg = module.config(module.build_parser().parse_args(argv))
    space = toy_space(nn.Module(), shapes)
    space.model.edge_ops = lambda kind: [[f"op{k}" for k in range(shapes[kind][1])]] * shapes[kind][0]
    plan, rounds, counts = module.build_plan(cfg, space), 0, []
    for epoch in filter(plan.is_projection_epoch, range(plan.tune_epochs)):
        stage, score = plan.stage(rounds), CountingScore(epoch)
        expected = plan.passes(stage, epoch)
        plan.project(score, stage, rounds)
        rounds += 1
        counts.append((stage, score.calls))
        assert score.calls == expected, f"round {rounds} ({stage})"
    ops = shapes[next(iter(shapes))][1]
    assert {c for s, c in counts if s == "op" and c} == {ops * len(shapes)}
    if module is sota:  # nodes of 5, 4 and 3 inputs: 12, 7 and 3 passes per cell kind, in random order
        assert sum(c for s, c in counts if s == "topology") == 2 * (12 + 7 + 3)


def test_select_edges_passes_counts_select_edges():
    for n in range(2, 7):
        score = CountingScore(0)
        select_edges(score, "normal", list(range(n)), "acc")
        assert score.calls == select_edges_passes(n)


def test_softmax_alpha_is_labelled_by_edge_and_op():
    w = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    space = toy_space(nn.Module(), {"cell": (2, 3)}, {"cell": ["none", "skip_connect", "conv"]}, ["1<-0", "2<-0"])
    assert alpha_table(space, "cell", w).splitlines() == [
        "        none  skip_connect    conv",
        "1<-0  0.1000        0.2000  0.7000",
        "2<-0  0.3000        0.3000  0.4000",
    ]
    # S1: each edge its own ops, named beside their values
    s1 = sota_space("s1")
    space.edge_ops = {"cell": s1["primitives_normal"][:2]}
    rows = alpha_table(space, "cell", w[:, :2]).splitlines()
    assert rows[0] == f"1<-0  {s1['primitives_normal'][0][0]} 0.1000  {s1['primitives_normal'][0][1]} 0.2000"
    assert rows[1].startswith(f"2<-0  {s1['primitives_normal'][1][0]} 0.3000")


def test_alpha_tables_are_logged_while_searching_not_while_tuning(log_lines):
    """Tuning epochs keep softmax(alpha) in history.jsonl (and at debug level): a projection's
    log stays a line or two per epoch."""
    from common.search import epoch_report
    from tests.test_heatmaps import Heatmaps, named_trainer

    trainer = named_trainer()
    epoch_report(trainer, 0, Heatmaps(), {"train_acc": 50.0})
    assert sum(line.startswith("softmax(alpha) normal:\n") for line in log_lines) == 1
    log_lines.clear()
    row = epoch_report(trainer, 1, Heatmaps(), {"train_acc": 50.0}, tuning=True)
    assert not any("softmax(alpha)" in line for line in log_lines) and row["softmax"]["normal"]
