"""The original's schedules, defaults and catalogs, asserted where a drift would go unnoticed."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from common.arch import Architecture
from common.data import ImageSet
from common.methods.darts import DARTS
from common.methods.sdarts import sdarts_epsilon
from common.run import search_data
from common.space import Space
from nasbench201 import train_search as nb201
from sota import train as sota_eval
from sota import train_imagenet
from sota import train_search as sota
from sota.genotypes import genotype_to_dict, get_genotype
from sota.model_eval import NetworkCIFAR
from tests.conftest import REPO
from tests.fixtures.configs import search_cfg
from tests.fixtures.reference import reference_file


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet16-120"])
def test_search_cutout_is_the_original_runs_unless_ramped(dataset, monkeypatch):
    """The original set a ramped probability on an attribute its Cutout never read: every
    search epoch cut at --cutout_prob, and its ImageNet16-120 pipeline had no Cutout at all."""
    flags = ["--cutout", "--cutout_prob", "0.8", "--epochs", "5", "--dataset", dataset]
    cfg = search_cfg(*flags)
    assert [cfg.cutout_prob(e) for e in range(5)] == [0.8] * 5
    assert cfg.cutout_length == (0 if dataset == "imagenet16-120" else 16)
    ramped = search_cfg(*flags, "--cutout_ramp")
    assert [ramped.cutout_prob(e) for e in range(5)] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert ramped.cutout_length == 16
    assert search_cfg("--epochs", "5").cutout_prob(3) == 0.0 and search_cfg().cutout_length == 0
    images = ImageSet(torch.zeros(8, 16, 16, 3, dtype=torch.uint8), torch.arange(8) % 2, 2, (0.5,) * 3, (0.5,) * 3, 2)
    said: list[str] = []
    monkeypatch.setattr("common.run.log.info", lambda msg, *args: said.append(msg % args))
    for c in (cfg, ramped):
        data = search_data(c, images, images, torch.device("cpu"))
        assert data.train.cutout_length == data.valid.cutout_length == c.cutout_length
    assert said == (["--cutout: no cutout on imagenet16-120, as the original (its pipeline had none); "
                     "--cutout_ramp cuts it"] if dataset == "imagenet16-120" else [])


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # no optimizer steps here
@pytest.mark.parametrize("flags,probs", [([], [0.5, 0.5, 0.5]), (["--cutout_ramp"], [0.0, 0.25, 0.5])])
def test_search_epochs_train_with_the_cutout_schedule(tmp_path, monkeypatch, flags, probs):
    from types import SimpleNamespace

    from common import search
    from common.distributed import Group
    from common.experiment import Board, Timer

    cfg = search_cfg("--cutout", "--cutout_prob", "0.5", "--epochs", "3", "--ckpt_interval", "10", *flags)
    seen = []
    trainer = SimpleNamespace(cfg=cfg, space=SimpleNamespace(tests_each_search_epoch=False), method=DARTS(),
                              device=torch.device("cpu"), state=dict, group=Group(),
                              progress=lambda epochs, start: None,
                              train_epoch=lambda epoch, **kw: (seen.append(kw["cutout_prob"]), (0.0, 0.0))[1])
    monkeypatch.setattr(search, "epoch_report", lambda trainer, epoch, board, row: row)
    model = torch.nn.Linear(1, 1)
    trainer.w_opt = torch.optim.SGD(model.parameters(), 0.1)
    scheduler = search.Scheduler(trainer.w_opt, 3.0)
    search.search_epochs(trainer, scheduler, 0, Timer(), tmp_path, Board(tmp_path, enabled=False))
    assert seen == pytest.approx(probs)


def test_sdarts_epsilon_ramps_linearly_from_0_03():
    assert [sdarts_epsilon(0.3, e, 50) for e in (0, 25, 49)] == pytest.approx([0.03, 0.165, 0.03 + 0.27 * 49 / 50])


class StubScore:
    """A scorer whose accuracy falls with the op index (the last op's removal hurts most) and
    rises with the edge index (the lowest edges' removal hurts most)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        return (float(edge), 0.0) if op is None else (-float(op), 0.0)


def schedule(module, argv: list[str], shapes: dict) -> tuple[int, dict[int, str]]:
    """Run a space's projection plan over its tuning epochs: (tune_epochs, epoch -> what it decided)."""
    cfg = module.config(module.build_parser().parse_args(argv))
    arch = Architecture(shapes)
    space = Space(label="x", model=torch.nn.Module(), arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    space.model.edge_ops = lambda kind: [[f"op{k}" for k in range(shapes[kind][1])]] * shapes[kind][0]
    plan = module.build_plan(cfg, space)
    done, rounds = {}, 0
    for epoch in range(plan.tune_epochs):
        if plan.is_projection_epoch(epoch):
            before = (sum(map(sum, arch.decided.values())), sum(map(len, arch.decided_nodes.values())))
            plan.project(StubScore(epoch), plan.stage(rounds), rounds)
            rounds += 1
            after = (sum(map(sum, arch.decided.values())), sum(map(len, arch.decided_nodes.values())))
            done[epoch] = "op" if after[1] == before[1] else "topology"
            assert after != before, f"epoch {epoch} decided nothing"
    return plan.tune_epochs, done


def test_nb201_projection_schedule_at_the_default_interval():
    epochs, done = schedule(nb201, [], {"cell": (6, 5)})
    assert epochs == 25 and done == {e: "op" for e in (0, 5, 10, 15, 20, 24)}


def test_darts_projection_schedule_at_the_default_interval():
    epochs, done = schedule(sota, [], {"normal": (14, 7), "reduce": (14, 7)})
    assert epochs == 81
    assert done == {**{e: "op" for e in range(0, 70, 5)}, 70: "topology", 75: "topology", 80: "topology"}


# Normalisation of the original (nasbench201/utils.py _data_transforms_*, and its
# train_search.py for ImageNet16-120), as published; written out, not imported from common/data.py.
PUBLISHED_NORMALISATION = {
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet16-120": (tuple(v / 255 for v in (122.68, 116.66, 104.01)), tuple(v / 255 for v in (63.22, 61.26, 65.09))),
}


@pytest.mark.parametrize("dataset", sorted(PUBLISHED_NORMALISATION))
def test_datasets_are_normalised_with_the_published_mean_and_std(tmp_path, dataset):
    from common.data import load_dataset
    from tests.fixtures import datasets

    writer = {"imagenet16-120": "imagenet16"}.get(dataset, dataset)
    getattr(datasets, f"write_{writer}")(tmp_path, n_train=20, n_test=6, seed=0)
    mean, std = PUBLISHED_NORMALISATION[dataset]
    for train in (True, False):
        data = load_dataset(dataset, tmp_path, train=train)
        assert data.mean == pytest.approx(mean, abs=1e-12) and data.std == pytest.approx(std, abs=1e-12)


def test_published_genotypes_are_the_reference_ones():
    published = json.loads(reference_file("published_genotypes.json").read_text())
    assert len(published) == 56
    for name, expected in published.items():
        assert genotype_to_dict(get_genotype(name)) == expected, name


def test_drop_path_changes_training_outputs_only():
    torch.manual_seed(0)
    net = NetworkCIFAR(4, 10, 3, False, get_genotype("darts_pt_s5_0"))
    x = torch.randn(4, 3, 16, 16)
    out = {}
    for mode, prob in (("train", 0.0), ("train", 0.5), ("eval", 0.0), ("eval", 0.5)):
        net.train(mode == "train")
        net.drop_path_prob = prob
        torch.manual_seed(1)  # drop path's masks are the only random draws
        out[mode, prob] = net(x)[0]
    assert not torch.allclose(out["train", 0.0], out["train", 0.5])
    assert torch.equal(out["eval", 0.0], out["eval", 0.5])


# -- each script's defaults, read from the script itself ----------------------------------------

PARSERS = {"nasbench201.train_search": nb201.build_parser, "sota.train_search": sota.build_parser,
           "sota.train": sota_eval.build_parser, "sota.train_imagenet": train_imagenet.build_parser}

SEARCH = dict(batch_size=64, init_channels=16, cutout=False, learning_rate=0.025)
LAST = 0  # a projection's --resume_epoch left out: the search run's last epoch (the original's scripts: 100, 50)
EVAL = dict(epochs=600, batch_size=96, auxiliary=True, cutout=True, seed=2, learning_rate=0.025)
GDAS = dict(tau_max=10.0, tau_min=0.1, learning_rate=0.025, learning_rate_min=0.001, momentum=0.9, weight_decay=5e-4,
            nesterov=True, arch_learning_rate=3e-4, arch_weight_decay=1e-3, grad_clip=5.0)
EXPECTED = {
    "darts-201.sh": dict(SEARCH, method="darts", seed=1, epochs=100, num_cells=5),
    "blank-201.sh": dict(SEARCH, method="blank", seed=1, epochs=100, num_cells=5),
    "darts-proj-201.sh": dict(SEARCH, method="darts-proj", seed=1, epochs=100, resume_epoch=LAST, proj_intv=5),
    "blank-proj-201.sh": dict(SEARCH, method="blank-proj", seed=1, epochs=100, resume_epoch=LAST, proj_intv=5),
    "darts-sota.sh": dict(SEARCH, method="darts", seed=2, epochs=50, layers=8, space="s5"),
    "blank-sota.sh": dict(SEARCH, method="blank", seed=2, epochs=50, layers=8, space="s5"),
    "sdarts-rs-sota.sh": dict(SEARCH, method="sdarts", seed=2, epochs=50, layers=8, perturb_alpha="random",
                              epsilon_alpha=0.3),
    "darts-proj-sota.sh": dict(SEARCH, method="darts-proj", seed=2, epochs=50, resume_epoch=LAST, proj_intv=5,
                               crit="acc"),
    "blank-proj-sota.sh": dict(SEARCH, method="blank-proj", seed=2, epochs=50, resume_epoch=LAST, proj_intv=5),
    "sdarts-rs-proj-sota.sh": dict(SEARCH, method="sdarts-proj", seed=2, epochs=50, resume_epoch=LAST, proj_intv=5,
                                   perturb_alpha="random", epsilon_alpha=0.3),
    # GDAS as AutoDL-Projects runs it (docs/gdas.md): its configs' optimiser, its temperatures
    "gdas-201.sh": dict(GDAS, method="gdas", seed=1, epochs=250, batch_size=64, init_channels=16, num_cells=5),
    "gdas-proj-201.sh": dict(GDAS, method="gdas-proj", seed=1, batch_size=64, resume_epoch=LAST, proj_intv=5),
    "gdas-sota.sh": dict(GDAS, method="gdas", seed=2, epochs=250, batch_size=256, init_channels=16, layers=8,
                         space="s5"),
    "gdas-proj-sota.sh": dict(GDAS, method="gdas-proj", seed=2, batch_size=256, resume_epoch=LAST, proj_intv=5),
    # DrNAS as xiangning-chen/DrNAS runs it (docs/drnas.md): 201-space/ and DARTS-space/train_search.py
    "drnas-201.sh": dict(SEARCH, method="drnas", seed=1, epochs=100, num_cells=5, learning_rate_min=0.001,
                         arch_learning_rate=3e-4, k=1, reg_type="l2", reg_scale=1e-3, begin=0),
    "drnas-proj-201.sh": dict(method="drnas-proj", seed=1, resume_epoch=LAST, proj_intv=5, learning_rate=0.025,
                              arch_learning_rate=3e-4),
    "drnas-sota.sh": dict(method="drnas", seed=2, epochs=50, batch_size=64, learning_rate=0.1, learning_rate_min=0.0,
                          init_channels=36, layers=20, space="s5", arch_learning_rate=6e-4, reg_type="l2",
                          reg_scale=1e-3, stages="6:7:25,4:4:25", begin=10),
    "drnas-proj-sota.sh": dict(method="drnas-proj", seed=2, resume_epoch=LAST, proj_intv=5, crit="acc",
                               learning_rate=0.1, learning_rate_min=0.0, arch_learning_rate=6e-4),
    # PC-DARTS as yuhuixu1993/PC-DARTS runs it (docs/pcdarts.md); on NAS-Bench-201 as DrNAS' 201-space does
    "pcdarts-sota.sh": dict(method="pcdarts", seed=2, epochs=50, batch_size=256, learning_rate=0.1,
                            learning_rate_min=0.0, momentum=0.9, weight_decay=3e-4, init_channels=16, layers=8,
                            space="s5", grad_clip=5.0, train_portion=0.5, arch_learning_rate=6e-4,
                            arch_weight_decay=1e-3, k=4, arch_start_epoch=15, unrolled=False, cutout=False),
    "pcdarts-proj-sota.sh": dict(method="pcdarts-proj", seed=2, resume_epoch=LAST, proj_intv=5, crit="acc",
                                 batch_size=256, learning_rate=0.1, learning_rate_min=0.0, arch_learning_rate=6e-4),
    "pcdarts-201.sh": dict(method="pcdarts", seed=1, epochs=100, batch_size=64, learning_rate=0.025,
                           learning_rate_min=0.001, momentum=0.9, weight_decay=3e-4, init_channels=16, num_cells=5,
                           arch_learning_rate=3e-4, arch_weight_decay=1e-3, k=4, arch_start_epoch=0),
    "pcdarts-proj-201.sh": dict(method="pcdarts-proj", seed=1, resume_epoch=LAST, proj_intv=5, learning_rate=0.025,
                                arch_learning_rate=3e-4),
    "eval.sh": dict(EVAL, dataset="cifar10", init_channels=36, layers=20),
    "eval-c100.sh": dict(EVAL, dataset="cifar100", init_channels=16, layers=8),
    "eval-svhn.sh": dict(EVAL, dataset="svhn", init_channels=16, layers=8),
    # the original's train_imagenet.py, with DARTS' auxiliary head
    "eval-imagenet.sh": dict(epochs=250, batch_size=128, auxiliary=True, auxiliary_weight=0.4, seed=0,
                             learning_rate=0.1, weight_decay=3e-5, momentum=0.9, grad_clip=5.0, label_smooth=0.1,
                             gamma=0.97, decay_period=1, init_channels=48, layers=14, drop_path_prob=0.0,
                             image_size=224, ckpt_keep_every=50),
}


@pytest.fixture(scope="module")
def echo_python(tmp_path_factory) -> Path:
    """A stand-in interpreter that prints the command line a script would run."""
    path = tmp_path_factory.mktemp("bin") / "python"
    path.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_script_defaults(script: str, echo_python: Path):
    out = subprocess.run(["bash", str(REPO / "exp_scripts" / script)], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": str(echo_python)}, cwd="/").stdout
    argv = out.splitlines()
    argv = argv[argv.index("-m"):]
    module, argv = argv[1], argv[2:]
    args = vars(PARSERS[module]().parse_args(argv))
    assert {k: args[k] for k in EXPECTED[script]} == EXPECTED[script]


def test_every_run_script_is_checked():
    assert set(EXPECTED) == {p.name for p in (REPO / "exp_scripts").glob("*.sh")} - {"common.sh", "study.sh"}


@pytest.mark.parametrize("space,flags,search,tuning", [
    ("nb201", [], [], []),                                      # the original: alpha half only
    ("sota", [], [0, 1, 2, 3], []),                             # the original: every search epoch
    ("nb201", ["--eval_freq", "2"], [1, 3], [1, 3]),
    ("sota", ["--eval_freq", "0"], [], []),
])
def test_test_set_passes_follow_the_original_unless_asked(space, flags, search, tuning):
    from types import SimpleNamespace

    from common.search import tests_at

    built = {"nb201": nb201, "sota": sota}[space].build_space
    cfg = search_cfg(*flags, "--init_channels", "2", *(["--layers", "3"] if space == "sota" else []), space=space)
    trainer = SimpleNamespace(cfg=cfg, space=built(cfg, 10, torch.device("cpu")))
    assert [e for e in range(4) if tests_at(trainer, e, tuning=False)] == search
    assert [e for e in range(4) if tests_at(trainer, e, tuning=True)] == tuning
