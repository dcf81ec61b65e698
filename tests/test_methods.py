"""The method contract (common/method.py, common/methods/): the worked example of
docs/adding-a-method.md runs as written, the methods name their report rows, and nothing but the
methods decides by a method's name."""
from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from common.arch import Architecture
from common.checkpoint import save_checkpoint
from common.config import ConfigError
from common.data import Batches, ImageSet
from common.method import EVAL, GENOTYPE, TRAIN
from common.methods import METHODS, method_of_save, report_label
from common.projection import Scorer
from common.search import load_search_checkpoint, run_identity
from common.space import Space
from common.trainer import SearchData, Trainer
from nasbench201 import train_search as nb201
from nasbench201.model_search import NB201Supernet
from tests.conftest import REPO
from tests.fixtures.configs import search_cfg


def doc_example(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The first Python block of docs/adding-a-method.md, as a module."""
    text = (REPO / "docs" / "adding-a-method.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "docs/adding-a-method.md has no python block"
    module = types.ModuleType("tdarts_of_the_docs")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(code.group(1), "docs/adding-a-method.md", "exec"), module.__dict__)
    return module


def tiny_trainer(cfg) -> Trainer:
    torch.manual_seed(0)
    model = NB201Supernet(C=2, N=1)
    space = Space(label="nasbench201", model=model, arch=Architecture(model.arch_shapes()), op_names={},
                  edge_names=[], genotype=lambda w: None)
    images = ImageSet(torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8), torch.arange(32) % 10, 10,
                      (0.5,) * 3, (0.5,) * 3, 1)
    train, valid = (Batches(images, idx, 8, augment=True, seed=0) for idx in (torch.arange(16), torch.arange(16, 32)))
    return Trainer(space, SearchData(train, valid, None), cfg, torch.device("cpu"))


def test_the_worked_example_of_the_docs_runs(monkeypatch, tmp_path):
    """Registered as the page says, the example is a --method with its flag, trains alpha through
    softmax(alpha / T) (decided edges projected), anneals T, keeps T in its checkpoints (a
    projection starts from it), records itself in result.json and names its report rows."""
    example = doc_example(monkeypatch)
    monkeypatch.setitem(METHODS, "tdarts", example.TDARTS)
    monkeypatch.setattr(nb201, "METHODS", (*nb201.METHODS, "tdarts"))
    with pytest.raises(ConfigError, match=r"^--temperature 0\.0: must be a finite number > 0"):
        search_cfg("--method", "tdarts", "--temperature", "0")
    with pytest.raises(ConfigError, match=r"^--temperature 4\.0: only --method tdarts has one"):
        search_cfg("--method", "darts", "--temperature", "4")

    cfg = search_cfg("--method", "tdarts", "--temperature", "4", "--epochs", "3")
    trainer = tiny_trainer(cfg)
    method, arch = trainer.method, trainer.arch
    assert isinstance(method, example.TemperatureDARTS)
    assert method.start_epoch(0, 3, tuning=False) == " temperature 4"
    before = arch.parameters()[0].detach().clone()
    trainer.train_epoch(0, train_alpha=method.trains_alpha, cutout_prob=0.0)
    assert not torch.equal(arch.parameters()[0], before)
    for phase in (TRAIN, EVAL, GENOTYPE):
        torch.testing.assert_close(trainer.weights(phase)["cell"], torch.softmax(arch.alphas["cell"] / 4, -1))
    arch.project_op("cell", 0, 1)
    assert torch.equal(trainer.weights(EVAL)["cell"][0], torch.eye(5)[1])
    seen: list[torch.Tensor] = []  # what the supernet mixes with in an evaluation and a scoring pass
    hook = trainer.model.register_forward_pre_hook(lambda m, args: seen.append(args[1]["cell"].clone()))
    trainer.evaluate(trainer.data.valid, (0,))
    Scorer(trainer, epoch=0)("cell", 2, 3)
    hook.remove()
    masked = trainer.weights(EVAL)["cell"].detach().clone()
    masked[2, 3] = 0.0
    torch.testing.assert_close(seen[0], trainer.weights(EVAL)["cell"])
    torch.testing.assert_close(seen[-1], masked)

    assert method.start_epoch(2, 3, tuning=False) == " temperature 1"
    path = tmp_path / "checkpoint_3.pth.tar"
    save_checkpoint({"epoch": 3, **trainer.state(), **trainer.group.rng_states(trainer.device)}, path)
    assert torch.load(path, weights_only=True)["method_state"] == {"temperature": 1.0}
    projection = tiny_trainer(search_cfg("--method", "tdarts-proj", "--temperature", "4"))
    load_search_checkpoint(projection, path, with_optimizers=False)
    assert projection.method.start_epoch(0, 25, tuning=True) == " temperature 1"

    identity = run_identity(cfg, trainer.space, method)
    assert (identity["method"], identity["temperature"]) == ("tdarts", 4.0)
    assert report_label("tdarts-proj", identity) == "DARTS (T=4)+PT"


def test_methods_name_their_report_rows():
    assert report_label("darts", {"unrolled": False}) == "DARTS"
    assert report_label("darts-proj", {"unrolled": True}) == "DARTS (2nd order)+PT"
    assert report_label("blank-proj", {"unrolled": True}) == "fix-alpha+PT"  # no alpha step to unroll
    assert report_label("sdarts", {"perturb_alpha": "pgd_linf"}) == "SDARTS-ADV"
    assert report_label("sdarts-proj", {"perturb_alpha": "random", "unrolled": True}) == "SDARTS (2nd order)+PT"
    assert report_label("gdas-proj", {}) == "GDAS+PT" and report_label("pcdarts-proj", {}) == "PC-DARTS+PT"
    assert report_label("nosuch", {}) == "nosuch"  # a method this version does not know: its name
    assert report_label(None, {}) == "unknown"
    assert method_of_save("darts2-proj-201") == ("darts", {"unrolled": True})
    assert method_of_save("sdarts-adv-sota") == ("sdarts", {"perturb_alpha": "pgd_linf"})
    assert method_of_save("darts-sota") == ("darts", {}) and method_of_save("mine") is None
    assert method_of_save("pcdarts-proj-201") == ("pcdarts", {})


# -- nothing but the methods decides by a method's name ----------------------------------------------

NAMES = {*METHODS, *(f"{m}-proj" for m in METHODS), "darts2", "sdarts-rs", "sdarts-adv"}
FLOORS = [p for d in ("common", "nasbench201", "sota", "analysis") for p in sorted((REPO / d).glob("*.py"))]


def method_decisions(path: Path, root: Path = REPO) -> list[str]:
    """Comparisons with a method's name (`method == "blank"`, `in ("darts", ...)`) and
    `startswith`/`endswith`/`replace` of one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("startswith", "endswith", "replace", "removeprefix"):
            parts = list(node.args)
        else:
            continue
        names = {c.value for part in parts for c in ast.walk(part) if isinstance(c, ast.Constant)} & NAMES
        found += [f"{path.relative_to(root)}:{node.lineno} {sorted(names)}"] if names else []
    return found


def test_the_core_spaces_and_reports_decide_nothing_by_method_name():
    assert [] == [d for path in FLOORS for d in method_decisions(path)]


def test_the_check_sees_a_decision(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f(cfg):\n    return cfg.method != "blank" or cfg.method.startswith("sdarts")\n')
    assert method_decisions(bad, tmp_path) == ["bad.py:2 ['blank']", "bad.py:2 ['sdarts']"]
