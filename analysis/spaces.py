"""The search spaces the reports know, each by its `SearchSpace` (common.space)."""
from __future__ import annotations

from pathlib import Path

from common.space import ReportHooks, SearchSpace
from nasbench201.train_search import SEARCH_SPACE as NB201_SPACE
from sota.train_search import SEARCH_SPACE as SOTA_SPACE

SPACES: dict[str, SearchSpace] = {space.name: space for space in (NB201_SPACE, SOTA_SPACE)}
_BY_LABEL: dict[str, ReportHooks] = {label: space.report for space in SPACES.values() for label in space.report.labels}


def hooks(label: str | None) -> ReportHooks | None:
    """The hooks of the space whose runs write `label` as result.json "space" ("nasbench201",
    "s1".."s5"); None for an unknown label."""
    return _BY_LABEL.get(label) if label else None


def hooks_of_folder(path: Path) -> ReportHooks | None:
    """The hooks of the space whose experiments folder (named after the space) holds `path`."""
    return next((space.report for space in SPACES.values() if space.name in path.parts), None)


def is_skipped(path: Path) -> bool:
    """Whether `path` is a folder of a space's experiments folder that holds no runs."""
    space = SPACES.get(path.parent.name)
    return space is not None and path.name in space.report.skip_folders
