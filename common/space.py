"""The contract between a search space and the shared search, projection and report code.

A search space is a package (nasbench201/, sota/) that describes itself with one
`SearchSpace` value; `common.run.main(SEARCH_SPACE)` then runs search and projection for
it, and `analysis` (the reports) reads its runs through it. Nothing in common/ imports a
space package. To add a space:

1. Write the supernet: an `nn.Module` whose `forward(x, weights, active=None)` takes the
   mixing weights as an argument (a dict cell kind -> [edges, ops] tensor, usually
   softmax(alpha) with projected rows replaced) and skips ops whose weight is exactly 0
   (`active`: per kind and edge, the op indices that may be non-zero, known on the host),
   and whose `arch_shapes()` gives those shapes. Keeping alpha out of the model keeps the
   state_dict in the original code's layout.
2. Describe the space with a `SearchSpace`: its command-line flags and typed options
   (`parser`, `config`), where its runs live (`layout`), how to build a `Space` from a
   configuration (model, alpha, genotype parsing and printing, benchmark query, what to write
   after projection) and its projection `plan`. How the supernet is trained (DARTS, SDARTS, ...)
   is the method's (common/method.py), on any space.
3. Give the package a `train_search.py` whose `__main__` calls `common.run.main`, and
   exp_scripts that run it.
4. Tell the reports what they cannot read from result.json (`ReportHooks`), and add the
   space to `analysis.spaces`.
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor, nn

from .arch import Architecture
from .config import EXACT_CRITERIA, ConfigError, SearchConfig
from .net2wider import Draw, Widened

Weights = dict[str, Tensor]


def edge_weights_key(kind: str) -> str:
    """The mixing weights' optional entry for a per-edge weight of cell kind `kind` ([edges]; PC-DARTS'
    edge normalisation beta): it scales the whole edge, its op sum and its passed channels alike. A
    supernet of a space with `Space.node_inputs` reads it; without it every edge weighs 1."""
    return f"{kind}.edges"


@dataclass(frozen=True)
class SupernetRequest:
    """The supernet a method trains (`MethodDef.supernet`), which the space builds.

    partial_channels: the k of each stage of the run (PC-DARTS, DrNAS: each mixed op computes on
        C/k of its channels, the rest pass by; 1: all channels). The supernet is built with the
        first; a method moves it to the next through `Space.widen`. The space refuses, naming
        `flag` and its value `given`, a k that does not divide the channels of one of its cells.
    """

    partial_channels: tuple[int, ...] = (1,)
    flag: str = "k"
    given: str = "1"


@dataclass
class Space:
    """A built search space: what search and projection run on."""

    label: str                                   # "nasbench201", or the DARTS space "s1".."s5"
    model: nn.Module
    arch: Architecture
    op_names: dict[str, list[str]]               # heat-map column labels per cell kind
    edge_names: list[str]                        # heat-map row labels
    genotype: Callable[[Weights], Any]           # mixing weights -> genotype
    genotype_str: Callable[[Any], str] = str
    query: Callable[[Any], dict[str, float] | None] = lambda g: None   # benchmark look-up
    finalize: Callable[[Path, Any, dict], None] | None = None   # after projection: (folder, genotype, result)
    tests_each_search_epoch: bool = True         # the original's per-search-epoch test-set pass
    edge_ops: dict[str, list[list[str]]] | None = None  # per kind and edge its ops' names (None: op_names)
    # The original code of some methods registers alpha among the model's parameters here
    # (NAS-Bench-201's TinyNetwork), so clipping `model.parameters()` clipped alpha's gradient too.
    alpha_in_model: bool = False
    # Partial channels 1/k from now on, the mixed ops widened by copying channels (common/net2wider.py):
    # (k, draw) -> the parameters replaced. None: the supernet has no partial channels to change.
    widen: Callable[[int, Draw], list[Widened]] | None = None
    # The edges into each intermediate node of a cell, in edge order (the DARTS space: 2, 3, 4, 5): the
    # groups a per-edge weight is normalised over (PC-DARTS' edge normalisation), which the supernet
    # takes as `edge_weights_key(kind)` in its mixing weights. None: the space takes no edge weights.
    node_inputs: tuple[int, ...] | None = None

    def op_name(self, kind: str, edge: int, op: int) -> str:
        """The name of op `op` of edge `edge` (as logs name it)."""
        names = self.edge_ops[kind][edge] if self.edge_ops else self.op_names.get(kind, [])
        return names[op] if op < len(names) else f"op{op}"


@dataclass(frozen=True)
class Layout:
    """Where a space keeps its experiments, and how runs are named."""

    space_dir: Callable[[SearchConfig], Path]                # holds the search folders
    search_name: Callable[[SearchConfig], str]
    projection_name: Callable[[SearchConfig, int], str]      # (config, supernet epoch)
    scripts: str = ""  # the exp_scripts' suffix: a method's are {stem}-{suffix}.sh, {stem}-proj-{suffix}.sh


def check_partial_channels(request: SupernetRequest, widths: Collection[int]) -> None:
    """Refuse, naming the request's flag, a k that does not divide every width of `widths`: the
    channel shuffle splits a cell's channels into k groups. (A stride-2 skip_connect halves C/k of
    a reduction cell, 2C/k or 4C/k: even whenever k divides C.)"""
    for k in request.partial_channels:
        if bad := [c for c in widths if c % k]:
            raise ConfigError(request.flag, request.given,
                              f"partial channels 1/{k} cannot split cells of {bad[0]} channels (the supernet's have "
                              f"{', '.join(map(str, widths))}); choose a k that divides them all, or change "
                              f"--init_channels")


def supernet_epochs(cfg: SearchConfig, epoch: int) -> str:
    """What a projection folder's name says of its supernet: `ep{epoch}` for the search
    checkpoint of that epoch projected as it is, `ep{epoch}-to{epochs}` for one first trained
    up to --epochs, so that the two never share a folder."""
    return f"ep{epoch}" if cfg.epochs <= epoch else f"ep{epoch}-to{cfg.epochs}"


class Score(Protocol):
    """A scoring pass: (cell kind, edge, op or None for the whole edge) -> (accuracy %, loss)
    of the supernet with that op (edge) removed."""

    epoch: int

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]: ...

    def proxy(self, name: str, kind: str, edge: int, op: int | None) -> float:
        """Zero-cost proxy `name` (common/proxies.py) of the supernet with that op (edge) removed."""
        ...


@dataclass(frozen=True)
class Plan:
    """When projection decides what, and how.

    Projection rounds happen at tuning epochs 0, interval, 2 * interval, ... and at the last
    tuning epoch; round r decides stage `stages[r]` (e.g. "op" or "topology") by calling
    `project(score, stage, r)`, which changes the Architecture in place.
    """

    tune_epochs: int
    interval: int
    stages: tuple[str, ...]
    project: Callable[[Score, str, int], None]
    # (stage, tuning epoch) -> the scoring passes of that round, for the log (0: unknown)
    passes: Callable[[str, int], int] = lambda stage, epoch: 0
    criteria: Mapping[str, str] = field(default_factory=lambda: {"op": "acc"})  # per decision: --proj_crit*

    @property
    def criterion(self) -> str | dict[str, str]:
        """The criterion, for result.json: one name, or per decision when they differ."""
        names = set(self.criteria.values())
        return names.pop() if len(names) == 1 else dict(self.criteria)

    @property
    def tunes(self) -> bool:
        """Zero-cost proxies score the supernet as it is: with no exact criterion (acc, loss)
        the rounds run back to back, without tuning epochs."""
        return any(c in EXACT_CRITERIA for c in self.criteria.values())

    def is_projection_epoch(self, epoch: int) -> bool:
        return epoch % self.interval == 0 or epoch == self.tune_epochs - 1

    def stage(self, round_index: int) -> str:
        return self.stages[min(round_index, len(self.stages) - 1)]


@dataclass(frozen=True)
class RunName:
    """What a run folder's name and place say of the run, for a run whose result.json does
    not (none written yet, or a broken one); None where they say nothing."""

    space: str | None = None     # space label, as result.json's "space"
    dataset: str | None = None
    save: str | None = None      # --save, which the exp_scripts name after the method (darts-201, ...)
    seed: int | None = None
    tag: str = ""                # a search folder's --expid_tag, a projection folder's --log_tag


def projection_run_name(name: str) -> RunName:
    """Save, seed and tag of a projection folder `{save}-seed{seed}-...-ep{E}[-to{N}][-bN][-poolN]
    [-{log_tag}]`, every space's `Layout.projection_name`; the whole name is the save when it has
    no seed."""
    m = re.search(r"-seed(\d+)(?:-|$)", name)
    if m is None:
        return RunName(save=name)
    tag = re.search(r"-ep\d+(?:-to\d+)?(?:-b\d+)?(?:-pool\d+)?(?:-(.+))?$", name[m.end() - 1:])
    return RunName(save=name[:m.start()], seed=int(m.group(1)), tag=(tag.group(1) or "") if tag else "")


@dataclass(frozen=True)
class ReportHooks:
    """What the reports (analysis/) ask a space: what its runs' result.json files leave to the
    space's own knowledge of its genotypes, cells and folder names.

    labels: the result.json "space" values of the space's runs.
    title: label -> how tables name it ("NAS-Bench-201", "DARTS space S5").
    benchmark: whether selected genotypes are scored by a benchmark look-up rather than by
        evaluation runs trained from scratch (it decides the table).
    alpha_labels: (label, cell kind) -> heat-map row (edge) and column (op) labels; None if unknown.
    draw_cell: (result.json, path stem, method, seed) -> PNG of the run's selected cell.
    params_mb: (genotype, dataset) -> parameters (millions) of its evaluation network; None if
        the string is not a genotype of the space.
    search_folder: what a search folder's name and place (the space's Layout) say of its runs.
    canonical_genotype: a result.json genotype (string or dict) as a comparable string, None if
        not one; it joins evaluation runs to the searches that chose their genotype.
    catalog: names of the genotypes published with the space.
    skip_folders: folders in the space's experiments folder that hold no runs.
    """

    labels: tuple[str, ...]
    title: Callable[[str], str]
    benchmark: bool
    alpha_labels: Callable[[str, str], tuple[list[str], list[str]] | None]
    draw_cell: Callable[[Mapping[str, Any], Path, str, int | None], Path]
    params_mb: Callable[[str, str], float | None]
    search_folder: Callable[[Path], RunName]
    canonical_genotype: Callable[[Any], str | None] = lambda genotype: None  # no evaluation runs to join
    catalog: Callable[[], Collection[str]] = tuple
    skip_folders: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchSpace:
    """A search space as the shared entry point and the reports see it."""

    name: str                                               # folder under --exp_root
    parser: Callable[[], argparse.ArgumentParser]
    config: Callable[[argparse.Namespace], SearchConfig]
    layout: Layout
    build: Callable[[SearchConfig, int, Any], Space]        # (config, classes, device)
    plan: Callable[[SearchConfig, Space], Plan]
    report: ReportHooks
    # What a projection (config, its folder) writes outside its folder, checked before it starts
    # (the DARTS space: the name it registers its genotype under); raises ConfigError.
    check_projection: Callable[[SearchConfig, Path], None] = lambda cfg, folder: None
