"""What the reports (analysis/) ask of the DARTS space S1-S5 (common.space.ReportHooks)."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.data import NUM_CLASSES
from common.space import ReportHooks, RunName

from .genotypes import Genotype, builtin_genotype_names, genotype_from_dict, genotype_from_string, genotype_to_dict
from .model_eval import NetworkCIFAR, count_parameters_mb, eval_size
from .spaces import EDGE_NAMES, KIND_KEYS, SPACES, column_names

FOLDER = "sota"  # the space's folder under --exp_root (train_search.LAYOUT)
# search-{save}-{space}-{seed}[-{tag}] (train_search.search_name); the exp_scripts' saves end in
# -sota, which keeps a space-like part of the save out of the space
_SPACE = "|".join(SPACES)
_SEARCH_NAME = (re.compile(rf"^search-(.+?-sota)-(?:({_SPACE})-)?(\d+)(?:-(.+))?$"),
                re.compile(rf"^search-(.+?)-(?:({_SPACE})-)?(\d+)(?:-(.+))?$"))


def alpha_labels(label: str, kind: str) -> tuple[list[str], list[str]] | None:
    if label not in SPACES or kind not in KIND_KEYS:
        return None
    return list(EDGE_NAMES), column_names(SPACES[label][KIND_KEYS[kind]])


def _parse(genotype: Any) -> Genotype | None:
    """A result.json genotype (printed, JSON or dict), None if it is not one."""
    try:
        return genotype_from_string(genotype) if isinstance(genotype, str) else genotype_from_dict(genotype)
    except Exception:  # noqa: BLE001 - whatever does not parse is not a genotype of this space
        return None


def canonical_genotype(genotype: Any) -> str | None:
    """The JSON form with sorted keys, which a printed Genotype(...) and its dict share."""
    parsed = _parse(genotype)
    return json.dumps(genotype_to_dict(parsed), sort_keys=True) if parsed else None


def draw_cell(result: Mapping[str, Any], path_stem: Path, method: str, seed: int | None) -> Path:
    from .visualize import plot_genotype  # matplotlib, only when a report draws

    name = result.get("genotype_name") or f"seed {seed}"
    return plot_genotype(genotype_from_string(result["genotype"]), path_stem, title=f"{method}: {name}")[0]


def params_mb(genotype: str, dataset: str) -> float | None:
    """At the exp_scripts' evaluation size for `dataset`, without the auxiliary head."""
    parsed = _parse(genotype)
    if parsed is None:
        return None
    C, layers = eval_size(dataset)
    return count_parameters_mb(NetworkCIFAR(C, NUM_CLASSES.get(dataset.lower(), 10), layers, False, parsed))


def search_folder(folder: Path) -> RunName:
    """Runs under sota/<dataset>/; the name says save, space, seed and the --expid_tag."""
    m = next((m for pattern in _SEARCH_NAME if (m := pattern.match(folder.name))), None)
    dataset = folder.parent.name if folder.parent.parent.name == FOLDER else None
    if m is None:
        return RunName(dataset=dataset)
    return RunName(space=m.group(2), dataset=dataset, save=m.group(1), seed=int(m.group(3)), tag=m.group(4) or "")


REPORT_HOOKS = ReportHooks(labels=tuple(SPACES), title=lambda label: f"DARTS space {label.upper()}", benchmark=False,
                           alpha_labels=alpha_labels, draw_cell=draw_cell, params_mb=params_mb,
                           search_folder=search_folder, canonical_genotype=canonical_genotype,
                           catalog=builtin_genotype_names, skip_folders=("genotypes",))  # the registry
