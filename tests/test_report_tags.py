"""Runs of one seed that differ in --expid_tag or --log_tag are other experiments: the report
gives them rows of their own instead of a mean over one seed repeated (in process, on
hand-written result.json files)."""
from __future__ import annotations

import json
from pathlib import Path

from analysis.runs import discover
from analysis.tables import build_groups, eval_table, nb201_table

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def _write(folder: Path, result: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result))


def _nb201(folder: Path, method: str, acc: float, **extra) -> None:
    _write(folder, {"status": "finished", "space": "nasbench201", "method": method, "dataset": "cifar10", "seed": 1,
                    "genotype": ARCH, "benchmark": {"cifar10_test": acc}, **extra})


def test_tagged_runs_of_one_seed_get_rows_of_their_own(tmp_path):
    nb = tmp_path / "nasbench201"
    for tag, acc in (("", 90.0), ("-wide", 80.0), ("-cifar100x", 70.0)):
        search = nb / f"search-darts-201-1{tag}"
        _nb201(search, "darts", acc, epochs=2)
        _nb201(search / "darts-proj-201-seed1-acc-intv5-ep2", "darts-proj", acc + 1, supernet_epoch=2)
    _nb201(nb / "search-darts-201-1" / "darts-proj-201-seed1-acc-intv5-ep2-again", "darts-proj", 60.0,
           supernet_epoch=2)
    _nb201(nb / "search-darts-201-1-cifar100", "darts", 50.0, epochs=2, dataset="cifar100")  # a dataset, no tag
    groups, _ = build_groups(discover(tmp_path))
    _, _, rows = nb201_table(groups[("nasbench201", "cifar10")], ddof=0)
    found = {(r["method"], r["setting"]): (r["seeds"], r["cifar10_test_mean"], r["cifar10_test_std"]) for r in rows}
    assert found == {
        ("DARTS", "2 epochs"): ("1", 90.0, None),
        ("DARTS", "2 epochs, --expid_tag wide"): ("1", 80.0, None),
        ("DARTS", "2 epochs, --expid_tag cifar100x"): ("1", 70.0, None),
        ("DARTS+PT", "supernet epoch 2"): ("1", 91.0, None),
        ("DARTS+PT", "supernet epoch 2, --expid_tag wide"): ("1", 81.0, None),
        ("DARTS+PT", "supernet epoch 2, --expid_tag cifar100x"): ("1", 71.0, None),
        ("DARTS+PT", "supernet epoch 2, --log_tag again"): ("1", 60.0, None),
    }
    assert [r.tag for r in groups[("nasbench201", "cifar100")].all_runs()] == [""]


def test_tagged_evaluations_of_one_genotype_and_seed_are_rows_of_their_own(tmp_path):
    folder = tmp_path / "sota" / "cifar10" / "eval"
    for name, error in (("eval-DARTS_V2-2", 3.0), ("eval-DARTS_V2-2-long", 2.0)):
        _write(folder / name, {"status": "finished", "kind": "eval", "arch": "DARTS_V2", "dataset": "cifar10",
                               "seed": 2, "epochs": 600, "init_channels": 36, "layers": 20, "batch_size": 96,
                               "final_test_error": error})
    _, _, rows = eval_table("cifar10", discover(tmp_path), ddof=0)
    assert {(r["arch"], r["seeds"], r["test_error_mean"], r["test_error_std"]) for r in rows} == {
        ("DARTS_V2", "2", 3.0, None), ("DARTS_V2 (--expid_tag long)", "2", 2.0, None)}
