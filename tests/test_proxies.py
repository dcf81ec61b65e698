"""Zero-cost projection criteria (common/proxies.py) and --proj_batches.

Each proxy is checked against its formula computed directly on a tiny network; selection with
a proxy keeps the op whose removal lowers it most; --proj_batches bounds the scoring passes;
the flags refuse bad values; a tiny projection with a proxy ends with a genotype.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.runs import Run
from analysis.tables import build_groups
from common.arch import Architecture
from common.cli import parse_config
from common.config import PROXY_CRITERIA
from common.data import Batches, ImageSet
from common.projection import Scorer, _project_pool, candidate_score, select_edges, select_op
from common.proxies import PROXIES, grad_norm, jacob_cov, nwot, proxy_score, synflow
from common.space import Plan, Space
from common.trainer import SearchData, Trainer
from tests.conftest import TEST_GPU, read_json, run_script
from tests.fixtures.configs import search_cfg


class TinyNet(nn.Module):
    """conv -> BN -> ReLU (module) -> conv -> relu (functional) -> pool -> linear, scaled by the
    sum of the mixing weights, so it takes a supernet's (x, weights, active)."""

    def __init__(self, bn: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3)

    def pre_relus(self, x):
        a = self.bn(self.conv1(x))
        b = self.conv2(torch.relu(a))
        return a, b

    def forward(self, x, weights, active=None):
        _, b = self.pre_relus(x)
        return self.fc(F.relu(b).mean(dim=(2, 3))) * sum(w.sum() for w in weights.values())


WEIGHTS = {"cell": torch.full((2, 2), 0.5)}


def batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_the_proxies_are_the_configured_criteria():
    assert tuple(PROXIES) == PROXY_CRITERIA


def test_nwot_is_logdet_of_the_relu_code_kernel():
    net, (x, y) = TinyNet(), batch()
    net.eval()
    with torch.no_grad():
        kernel = torch.zeros(6, 6, dtype=torch.float64)
        for z in net.pre_relus(x):
            c = (z.flatten(1) > 0).double()
            kernel += c @ c.T + (1 - c) @ (1 - c).T
    expected = float(np.linalg.slogdet(kernel.numpy())[1])
    assert nwot(copy.deepcopy(net), WEIGHTS, {}, x, y) == pytest.approx(expected, rel=1e-12)


def test_synflow_is_abs_weight_times_gradient_without_batch_norm():
    net, (x, y) = TinyNet(), batch()
    plain = TinyNet(bn=False).double()  # the same weights, batch norm left out
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("bn.")})
    with torch.no_grad():
        for p in plain.parameters():
            p.abs_()
    out = plain(torch.ones(1, 3, 8, 8, dtype=torch.float64), {"cell": WEIGHTS["cell"].double()})
    out.sum().backward()
    expected = sum(float((m.weight * m.weight.grad).abs().sum().detach()) for m in (plain.conv1, plain.conv2, plain.fc))
    assert synflow(copy.deepcopy(net), WEIGHTS, {}, x, y) == pytest.approx(expected, rel=1e-9)


def test_grad_norm_sums_the_weight_gradient_norms():
    net, (x, y) = TinyNet(), batch()
    ref = copy.deepcopy(net).train()
    F.cross_entropy(ref(x, WEIGHTS), y).backward()
    expected = sum(float(m.weight.grad.norm()) for m in (ref.conv1, ref.conv2, ref.fc))
    assert grad_norm(copy.deepcopy(net), WEIGHTS, {}, x, y) == pytest.approx(expected, rel=1e-5)


def test_jacob_cov_scores_the_eigenvalues_of_the_input_jacobian_correlations():
    net, (x, y) = TinyNet(bn=False), batch()  # no batch norm: each image's Jacobian on its own
    rows = []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        net(xi, WEIGHTS).sum().backward()
        rows.append(xi.grad.flatten().double())
    j = torch.stack(rows)
    j = j - j.mean(dim=1, keepdim=True)
    corr = (j @ j.T) / torch.outer(j.norm(dim=1), j.norm(dim=1))
    v = torch.linalg.eigvalsh(corr)
    expected = float(-(torch.log(v + 1e-5) + 1 / (v + 1e-5)).sum())
    assert jacob_cov(copy.deepcopy(net), WEIGHTS, {}, x, y) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", PROXY_CRITERIA)
def test_scoring_changes_nothing_in_the_supernet(name):
    net = TinyNet().train()
    before = copy.deepcopy(net.state_dict())
    value = proxy_score(name, net, WEIGHTS, {}, [batch(), batch(seed=2)])
    assert math.isfinite(value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics too
    assert all(p.grad is None for p in net.parameters()) and net.training


def test_proxy_score_is_the_mean_over_batches():
    net, b1, b2 = TinyNet(), batch(), batch(seed=2)
    one = [proxy_score("grad_norm", net, WEIGHTS, {}, [b]) for b in (b1, b2)]
    assert proxy_score("grad_norm", net, WEIGHTS, {}, [b1, b2]) == pytest.approx(sum(one) / 2)


# -- selection ------------------------------------------------------------------------------------

class Table:
    """A Score whose proxy values come from a table; exact criteria are not asked for."""

    epoch = 0

    def __init__(self, values):
        self.values, self.asked = values, []

    def __call__(self, kind, edge, op):
        raise AssertionError("a proxy criterion must not run an accuracy pass")

    def proxy(self, name, kind, edge, op):
        self.asked.append(name)
        return self.values[op if op is not None else edge]


def test_select_op_keeps_the_op_whose_removal_lowers_the_proxy_most():
    table = Table([5.0, 2.0, math.nan, 2.0, 7.0])
    assert select_op(table, "cell", 0, 5, "nwot") == 1  # lowest, first on ties; nan ignored
    assert table.asked == ["nwot"] * 5
    assert select_op(Table([math.nan, 3.0]), "cell", 0, 2, "synflow") == 1


def test_select_edges_with_a_proxy_drops_the_edges_whose_removal_lowers_it_least():
    values = {5: 1.0, 6: 9.0, 7: math.nan, 8: 4.0}
    assert sorted(select_edges(Table(values), "normal", [5, 6, 7, 8], "grad_norm")) == [5, 7]


class OpNet(nn.Module):
    """One edge of three linear ops on the pooled image; op 1's weights are 10x the others'.
    `calls` (of the class: proxies run on copies of the model) records the images of each call."""

    calls: list[torch.Tensor] = []

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.ops = nn.ModuleList(nn.Linear(3, 2) for _ in range(3))
        with torch.no_grad():
            self.ops[1].weight.mul_(10)

    def forward(self, x, weights, active=None):
        OpNet.calls.append(x.detach().clone())
        f = x.mean(dim=(2, 3))
        return sum(weights["cell"][0, k] * op(f) for k, op in enumerate(self.ops))


def op_trainer(*flags: str) -> Trainer:
    n = 32
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g)
    data = ImageSet(images, torch.arange(n) % 2, 2, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0)
    batches = Batches(data, None, 8, augment=True, seed=0)
    model = OpNet()
    space = Space(label="toy", model=model, arch=Architecture({"cell": (1, 3)}), op_names={}, edge_names=[],
                  genotype=lambda w: None)
    return Trainer(space, SearchData(batches, batches, None), search_cfg(*flags), torch.device("cpu"))


def test_pool_keeps_the_candidate_whose_projected_supernet_scores_best():
    trainer = op_trainer()
    arch = trainer.arch
    trainer.space.genotype = lambda w: int(w["cell"][0].argmax())

    def project(score, stage, r):  # member p (its epochs numbered from p * 1) takes op p % 3
        arch.project_op("cell", 0, score.epoch % 3)

    plan = Plan(1, 1, ("op",), project, criteria={"op": "synflow"})
    rounds, pool = _project_pool(trainer, plan, 4, 2)
    assert rounds == 1 and [c["genotype"] for c in pool] == ["0", "1", "2"]  # member 3 repeats member 0
    for op, c in enumerate(pool):
        arch.project_op("cell", 0, op)
        assert c["synflow"] == candidate_score(trainer, "synflow", 2)
    best = max(range(3), key=lambda i: pool[i]["synflow"])
    assert best == 1  # op 1 carries the 10x weights
    arch.project_op("cell", 0, 0)
    _project_pool(trainer, plan, 4, 2)
    assert arch.weights()["cell"][0].tolist() == [0.0, 1.0, 0.0] and arch.decided["cell"] == [True]


def test_a_real_scorer_selects_the_op_carrying_the_network_by_synflow():
    trainer = op_trainer()
    assert select_op(Scorer(trainer, 0), "cell", 0, 3, "synflow") == 1


@pytest.mark.parametrize("flags,crit,batches_per_pass", [
    ((), "acc", 4),                           # the whole alpha half, as the original
    (("--proj_batches", "2"), "acc", 2),
    ((), "grad_norm", 1),                     # a proxy: one batch, as Zero-Cost-PT
    (("--proj_batches", "3"), "grad_norm", 3),
])
def test_proj_batches_bounds_each_pass_and_every_op_sees_the_same_images(flags, crit, batches_per_pass):
    scorer = Scorer(op_trainer(*flags), 3)
    passes = []
    for op in range(3):
        OpNet.calls.clear()
        if crit == "acc":
            scorer("cell", 0, op)
        else:
            scorer.proxy(crit, "cell", 0, op)
        passes.append(list(OpNet.calls))
    assert [len(p) for p in passes] == [batches_per_pass] * 3
    if flags:  # a limited pass: the same first batches for every op of the round
        assert all(torch.equal(a, b) for p in passes[1:] for a, b in zip(passes[0], p))



# -- flags, reports, end to end -------------------------------------------------------------------

@pytest.mark.parametrize("space,flags,message", [
    ("nb201", ["--proj_batches", "-1"], "error: --proj_batches -1: must be at least 0"),
    ("nb201", ["--proj_pool", "0", "--proj_crit", "nwot"], "error: --proj_pool 0: must be at least 1"),
    ("nb201", ["--proj_pool", "3"], "error: --proj_pool 3: a pool needs zero-cost criteria only, and acc"),
    ("sota", ["--proj_pool", "3", "--proj_crit_normal", "nwot", "--proj_crit_reduce", "nwot"],
     "error: --proj_pool 3: a pool needs zero-cost criteria only, and acc"),
    ("nb201", ["--proj_crit", "jacob"], "error: argument --proj_crit: invalid choice: 'jacob'"),
    ("sota", ["--proj_crit_reduce", "snip"], "error: argument --proj_crit_reduce: invalid choice: 'snip'"),
])
def test_bad_flags_end_with_one_line(space, flags, message, capsys):
    if space == "nb201":
        from nasbench201.train_search import SEARCH_SPACE
    else:
        from sota.train_search import SEARCH_SPACE
    with pytest.raises(SystemExit) as e:
        parse_config(SEARCH_SPACE.parser(), SEARCH_SPACE.config, flags)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(message) and err.count("\n") == 1


def test_proxy_criteria_are_accepted_and_skip_tuning():
    from nasbench201.train_search import projection_name
    from sota.train_search import SEARCH_SPACE as SOTA

    cfg = search_cfg("--proj_crit", "nwot", "--proj_batches", "2")
    assert cfg.space.proj_crit == "nwot" and cfg.projection.proj_batches == 2
    assert projection_name(cfg, 100) == "exp-seed1-nwot-intv5-ep100-b2"  # apart from the acc runs' folder
    pooled = search_cfg("--proj_crit", "nwot", "--proj_pool", "10")
    assert projection_name(pooled, 100) == "exp-seed1-nwot-intv5-ep100-pool10"
    sota = search_cfg("--proj_crit_normal", "synflow", "--proj_crit_reduce", "synflow", "--proj_crit_edge",
                      "jacob_cov", space="sota")
    model = type("M", (), {"edge_ops": lambda self, kind: []})()
    space = Space(label="s5", model=model, arch=Architecture({"normal": (14, 8), "reduce": (14, 8)}),  # type: ignore[arg-type]
                  op_names={}, edge_names=[], genotype=lambda w: None)
    plan = SOTA.plan(sota, space)
    assert not plan.tunes and plan.criterion == {"normal": "synflow", "reduce": "synflow", "edge": "jacob_cov"}
    mixed = SOTA.plan(search_cfg("--proj_crit_normal", "nwot", space="sota"), space)
    assert mixed.tunes  # an exact criterion left: the supernet is tuned between projections


def test_reports_keep_proxy_and_limited_runs_apart():
    def run(name, **result):
        return Run(path=Path(name), rel=name, kind="projection", status="finished",
                result={"space": "nasbench201", "dataset": "cifar10", "method": "darts-proj", "seed": 1,
                        "supernet_epoch": 100, **result}, history=[], space="nasbench201", dataset="cifar10",
                method="darts-proj", seed=1)

    runs = [run("a"), run("b", proj_crit="acc", proj_batches=0), run("c", proj_crit="nwot"),
            run("d", proj_crit="loss", proj_batches=4),
            run("e", proj_crit={"normal": "nwot", "reduce": "nwot", "edge": "acc"}, proj_batches=1),
            run("f", proj_crit="synflow", proj_pool=10, proj_pool_batches=100)]
    groups, _ = build_groups(runs)
    rows = {row.label: [r.rel for r in row.runs] for row in groups[("nasbench201", "cifar10")].rows.values()}
    assert rows == {"DARTS+PT": ["a", "b"], "DARTS+PT (nwot)": ["c"], "DARTS+PT (loss, 4 batches)": ["d"],
                    "DARTS+PT (normal nwot, reduce nwot, edge acc, 1 batch)": ["e"],
                    "DARTS+PT (synflow, pool 10)": ["f"]}


@pytest.mark.slow
def test_a_proxy_projection_ends_with_a_genotype_without_tuning(small_cifar10, bench, tmp_path):
    env = ["--data", str(small_cifar10), "--exp_root", str(tmp_path), "--api_path", str(bench[0]),
           "--batch_size", "8", "--init_channels", "4", "--num_cells", "1", "--gpu", TEST_GPU, "--no_tensorboard"]
    run_script("darts-201.sh", *env, "--epochs", "1")
    run_script("darts-proj-201.sh", *env, "--resume_epoch", "1", "--proj_intv", "1", "--proj_crit", "nwot",
               "--proj_batches", "1")
    proj = tmp_path / "nasbench201" / "search-darts-201-1" / "darts-proj-201-seed1-nwot-intv1-ep1-b1"
    result = read_json(proj / "result.json")
    assert result["status"] == "finished" and result["proj_crit"] == "nwot" and result["proj_batches"] == 1
    assert result["genotype"] in bench[1]  # a NAS-Bench-201 architecture
    assert not (proj / "history.jsonl").exists()  # no tuning epochs
    log = (proj / "log.txt").read_text()
    decisions = [line for line in log.splitlines() if ": nwot without each op: " in line]  # one per edge
    assert len(decisions) == 6 and all(d.split("op: ")[1].split(" (")[0].count(", ") == 4 for d in decisions)  # 5 ops
    assert "valid_acc" not in log.split("zero-cost criteria only")[1]

    run_script("darts-proj-201.sh", *env, "--resume_epoch", "1", "--proj_intv", "1", "--proj_crit", "synflow",
               "--proj_pool", "2", "--proj_pool_batches", "1")
    pooled = read_json(proj.parent / "darts-proj-201-seed1-synflow-intv1-ep1-pool2" / "result.json")
    assert pooled["status"] == "finished" and (pooled["proj_pool"], pooled["proj_pool_batches"]) == (2, 1)
    best = max(pooled["pool"], key=lambda c: c["synflow"])
    assert 1 <= len(pooled["pool"]) <= 2 and pooled["genotype"] == best["genotype"]


@pytest.mark.parametrize("space", ["nb201", pytest.param("s5", marks=pytest.mark.slow)])
def test_every_proxy_scores_the_real_supernets(space):
    """Finite scores on tiny supernets of both spaces, channels-last as on the CPU, with one op
    masked; the same value again (deterministic), and a different one without the mask."""
    if space == "nb201":
        from nasbench201.model_search import NB201Supernet
        model = NB201Supernet(4, 1, 10)
    else:
        from sota.model_search import DartsSupernet
        model = DartsSupernet(4, 10, 2, "s5")
    model = model.to(memory_format=torch.channels_last).train()
    arch = Architecture(model.arch_shapes())
    kind = arch.kinds[-1]  # with 2 layers both DARTS cells reduce
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (4,), generator=g)
    for name in PROXY_CRITERIA:
        masked = proxy_score(name, model, arch.masked(kind, 0, 1), arch.masked_active(kind, 0, 1), [(x, y)])
        again = proxy_score(name, model, arch.masked(kind, 0, 1), arch.masked_active(kind, 0, 1), [(x, y)])
        with torch.no_grad():
            whole = proxy_score(name, model, arch.weights(), arch.active(), [(x, y)])
        assert math.isfinite(masked) and masked == again and masked != whole, name
