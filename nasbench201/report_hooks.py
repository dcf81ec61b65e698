"""What the reports (analysis/) ask of NAS-Bench-201 (common.space.ReportHooks)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.data import DATASETS, NUM_CLASSES
from common.space import ReportHooks, RunName

from .genotypes import nb201_params_mb
from .model_search import EDGE_KEYS
from .operations import NB201_OPS

LABEL = "nasbench201"
# search-{save}-{seed}[-{dataset}][-{tag}] (train_search.search_name); the exp_scripts' saves end
# in -201, which keeps a seed-like part of the save (darts-201) out of the seed
_SEARCH_NAME = (re.compile(r"^search-(.+?-201)-(\d+)(?:-(.+))?$"), re.compile(r"^search-(.+?)-(\d+)(?:-(.+))?$"))
# longest first: cifar100 before cifar10
_NAMED_DATASETS = sorted(DATASETS, key=len, reverse=True)


def draw_cell(result: Mapping[str, Any], path_stem: Path, method: str, seed: int | None) -> Path:
    from .visualize import plot_arch  # matplotlib, only when a report draws

    arch = result["genotype"]
    return plot_arch(arch, path_stem.with_name(path_stem.name + ".png"), f"{method}, seed {seed}\n{arch}")


def params_mb(arch: str, dataset: str) -> float | None:
    return nb201_params_mb(arch, NUM_CLASSES.get(dataset.lower(), 10))


def search_folder(folder: Path) -> RunName:
    """Runs under nasbench201/ are NAS-Bench-201's; the name says save, seed, a dataset other than
    CIFAR-10 and the --expid_tag."""
    m = next((m for pattern in _SEARCH_NAME if (m := pattern.match(folder.name))), None)
    if m is None:
        return RunName(space=LABEL, dataset="cifar10")
    extra = m.group(3) or ""  # [{dataset}][-{tag}]
    dataset = next((d for d in _NAMED_DATASETS if extra == d or extra.startswith(f"{d}-")), "cifar10")
    tag = extra.removeprefix(dataset).removeprefix("-") if dataset != "cifar10" else extra
    return RunName(space=LABEL, dataset=dataset, save=m.group(1), seed=int(m.group(2)), tag=tag)


REPORT_HOOKS = ReportHooks(labels=(LABEL,), title=lambda label: "NAS-Bench-201", benchmark=True,
                           alpha_labels=lambda label, kind: (list(EDGE_KEYS), list(NB201_OPS)),
                           draw_cell=draw_cell, params_mb=params_mb, search_folder=search_folder)
