"""DARTS-format genotypes: parsing from mixing weights, and the catalog looked up by `--arch`.

The catalog holds the classic DARTS cells, the genotypes published with DARTS-PT (the
packaged published_genotypes.json) and a user registry: one JSON file `<name>.json` per
genotype that projection runs register, in `experiments/sota/genotypes/` of the repo or
in the folder named by the environment variable DARTS_PT_GENOTYPES.

A genotype lists, for each of the 4 intermediate nodes, its 2 incoming edges as
(op, input) pairs; inputs 0 and 1 are the cell inputs c_{k-2}, c_{k-1}, input i+2 is node i.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
from collections import namedtuple
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.experiment import read_json, write_json
from sota.operations import OPS

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

_CELLS = ("normal", "reduce")
_REPO = Path(__file__).resolve().parents[1]
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
REGISTRY_ENV = "DARTS_PT_GENOTYPES"

DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5],
)
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)


# -- parsing mixing weights ------------------------------------------------------------------

def parse_genotype(weights: Mapping[str, torch.Tensor | np.ndarray],
                   edge_ops: Mapping[str, list[list[str]]], steps: int = 4) -> Genotype:
    """Genotype of mixing weights ({"normal"/"reduce": [14, n]}, usually softmax(alpha) with
    projected rows), as DARTS does: per node the 2 incoming edges with the largest non-`none`
    weight, on each its best non-`none` op. `edge_ops[kind][e]` names the columns of edge e."""
    cells = {kind: _parse_cell(_to_numpy(weights[kind]), edge_ops[kind], steps) for kind in _CELLS}
    concat = list(range(2, 2 + steps))
    return Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"],
                    reduce_concat=list(concat))


def _to_numpy(w: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(w, torch.Tensor):
        w = w.detach().float().cpu().numpy()
    return np.asarray(w, dtype=np.float64)


def _parse_cell(w: np.ndarray, edge_ops: list[list[str]], steps: int) -> list[tuple[str, int]]:
    gene, start = [], 0
    for node in range(steps):
        edges = range(start, start + node + 2)
        # sorted() is stable even with reverse=True, so ties go to the lower input, as in DARTS
        best_edges = sorted(edges, key=lambda e: _edge_strength(w[e], edge_ops[e]), reverse=True)[:2]
        for e in best_edges:  # strongest first, as DARTS orders them (fixes eval `_ops` indices)
            gene.append((edge_ops[e][_best_op(w[e], edge_ops[e])], e - start))
        start += node + 2
    return gene


def _candidates(ops: list[str]) -> list[int]:
    candidates = [k for k, op in enumerate(ops) if op != "none"]
    if not candidates:
        raise ValueError(f"edge with ops {ops} has no op besides 'none'")
    return candidates


def _edge_strength(row: np.ndarray, ops: list[str]) -> float:
    # As the original: the largest non-`none` weight, nothing else. So in a space with `none`
    # (s3), an edge projected to `none` (0 on every other op) ties with the edges topology
    # projection dropped (all 0), and the stable sort keeps the lower index: the genotype may
    # then name a dropped edge, with the first non-`none` op of its row. It can always be
    # built (every gene is a non-`none` op on a valid input); the published s3 genotypes came
    # from this rule.
    return max(row[k] for k in _candidates(ops))


def _best_op(row: np.ndarray, ops: list[str]) -> int:
    return max(_candidates(ops), key=lambda k: row[k])  # first maximum on ties, as DARTS


# -- conversions -----------------------------------------------------------------------------

def genotype_to_dict(g: Genotype) -> dict[str, Any]:
    """JSON form, as the entries of published_genotypes.json: edges as [op, input] lists."""
    return {"normal": [[op, int(j)] for op, j in g.normal],
            "normal_concat": [int(i) for i in g.normal_concat],
            "reduce": [[op, int(j)] for op, j in g.reduce],
            "reduce_concat": [int(i) for i in g.reduce_concat]}


def genotype_from_dict(d: Mapping[str, Any]) -> Genotype:
    """Inverse of genotype_to_dict (other keys, e.g. a registry file's "meta", are ignored)."""
    missing = [k for k in Genotype._fields if k not in d]
    if missing:
        raise ValueError(f"genotype dict lacks {missing}")
    g = Genotype(normal=[(str(op), int(j)) for op, j in d["normal"]],
                 normal_concat=[int(i) for i in d["normal_concat"]],
                 reduce=[(str(op), int(j)) for op, j in d["reduce"]],
                 reduce_concat=[int(i) for i in d["reduce_concat"]])
    _validate(g)
    return g


def genotype_from_string(s: str) -> Genotype:
    """Parse a printed genotype, `Genotype(normal=[('sep_conv_3x3', 0), ...],
    normal_concat=range(2, 6), ...)`, or its JSON form. Only literals (and `range` with
    literal arguments) are accepted; nothing is evaluated."""
    s = s.strip()
    if s.startswith("{"):
        return genotype_from_dict(json.loads(s))
    try:
        call = ast.parse(s, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"not a genotype literal: {s[:80]!r}") from e
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise ValueError(f"expected Genotype(...), got: {s[:80]!r}")
    values = [_literal(a) for a in call.args]
    values += [None] * (len(Genotype._fields) - len(values))
    fields = dict(zip(Genotype._fields, values))
    for kw in call.keywords:
        if kw.arg not in fields:
            raise ValueError(f"unexpected Genotype field {kw.arg!r}")
        fields[kw.arg] = _literal(kw.value)
    return genotype_from_dict({k: v for k, v in fields.items() if v is not None})


def _literal(node: ast.expr) -> Any:
    """ast.literal_eval, plus `range(a, b)` with literal arguments (DARTS prints concat so)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and not node.keywords:
        return list(range(*(int(ast.literal_eval(a)) for a in node.args)))
    return ast.literal_eval(node)


def _validate(g: Genotype) -> None:
    for kind in _CELLS:
        edges = getattr(g, kind)
        if len(edges) % 2:
            raise ValueError(f"{kind} cell needs 2 edges per node, got {len(edges)} edges")
        for pos, (op, j) in enumerate(edges):
            if op not in OPS:
                raise ValueError(f"{kind} cell: unknown op {op!r}; valid: {', '.join(OPS)}")
            if not 0 <= j < pos // 2 + 2:
                raise ValueError(f"{kind} cell: node {pos // 2} cannot read input {j}")
        concat = getattr(g, f"{kind}_concat")
        if not all(0 <= i < len(edges) // 2 + 2 for i in concat):
            raise ValueError(f"{kind}_concat {concat} names missing nodes")


# -- catalog ---------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _builtin() -> dict[str, Genotype]:
    published = json.loads((Path(__file__).with_name("published_genotypes.json")).read_text())
    catalog = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}
    catalog.update({name: genotype_from_dict(d) for name, d in published.items()})
    return catalog


def builtin_genotype_names() -> list[str]:
    """Names of the built-in catalog: the classic DARTS cells and the genotypes published with DARTS-PT."""
    return sorted(_builtin())


def default_registry() -> Path:
    """Folder of registered genotypes: $DARTS_PT_GENOTYPES, else <repo>/experiments/sota/genotypes."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else _REPO / "experiments" / "sota" / "genotypes"


def registry(exp_root: str | Path | None) -> Path:
    """Where the runs under `exp_root` (--exp_root) register genotypes; the default one if None."""
    return Path(exp_root) / "sota" / "genotypes" if exp_root else default_registry()


def add_exp_root_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp_root", default=None,
                        help="experiments folder whose registered genotypes to include "
                             f"(default: ${REGISTRY_ENV}, else the repository's experiments/)")


def _registry_file(name: str, registry: Path | None) -> Path:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid genotype name {name!r}: use letters, digits and _ . + - only")
    return Path(registry or default_registry()) / f"{name}.json"


def all_genotype_names(registry: Path | None = None) -> list[str]:
    folder = Path(registry or default_registry())
    registered = {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()
    return sorted(set(builtin_genotype_names()) | registered)


def get_genotype(name: str, registry: Path | None = None) -> Genotype:
    """Built-in genotype `name`, else the one registered under it; KeyError if neither."""
    if name in _builtin():  # a copy, so callers cannot alter the cached catalog
        return genotype_from_dict(genotype_to_dict(_builtin()[name]))
    path = _registry_file(name, registry) if _NAME_RE.match(name) else None  # no path tricks
    if path and path.is_file():
        try:
            return genotype_from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as e:
            raise ValueError(f"malformed genotype file {path}: {e}") from e
    raise KeyError(_unknown_message(name, registry))


def _unknown_message(name: str, registry: Path | None) -> str:
    names = all_genotype_names(registry)
    by_lower = {n.lower(): n for n in names}
    close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower), n=5)]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return (f"unknown genotype {name!r}{hint}. List all names with `python -m sota.genotypes` "
            f"(registry: {Path(registry or default_registry())})")


def is_genotype_literal(arch: str) -> bool:
    """Whether `arch` is a genotype literal (repr or JSON) rather than a catalog name."""
    return arch.lstrip().startswith(("Genotype(", "{"))


def resolve_arch(arch: str, registry: Path | None = None) -> Genotype:
    """What `--arch` accepts: a catalog name, or a genotype literal (repr or JSON)."""
    if is_genotype_literal(arch):
        return genotype_from_string(arch)
    return get_genotype(arch, registry)


def check_genotype_name(name: str, registry: Path | None = None, experiment: Path | None = None) -> None:
    """Raise ValueError unless the run in folder `experiment` may register its genotype as `name`
    (whatever genotype it selects): a valid name that no built-in genotype and no other run's
    registered genotype holds. The run's own entry (a resumed or redone run) is no other's."""
    path = _registry_file(name, registry)
    if name in _builtin():
        raise ValueError(f"genotype name {name!r} is a built-in genotype's; choose another name")
    if path.is_file() and not _registered_by(path, experiment):
        owner = _read_entry(path).get("meta", {}).get("experiment")
        holder = f"the genotype of {owner} ({path})" if owner else f"the genotype in {path}"
        raise ValueError(f"genotype name {name!r} is taken by {holder}; choose another name, or remove {path} to "
                         f"reuse it")


def _read_entry(path: Path) -> dict[str, Any]:
    entry = read_json(path)
    return entry if isinstance(entry.get("meta", {}), dict) else {}


def _registered_by(path: Path, experiment: Path | None) -> bool:
    """Whether the registry entry `path` is that of the run in folder `experiment`: the same
    dataset, search and projection folders (a registry serves one experiments folder, which
    may have moved since)."""
    owner = _read_entry(path).get("meta", {}).get("experiment")
    return experiment is not None and isinstance(owner, str) and Path(owner).parts[-3:] == experiment.parts[-3:]


def register_genotype(name: str, genotype: Genotype, registry: Path | None = None,
                      meta: dict | None = None) -> Path:
    """Store `genotype` as `<registry>/<name>.json` so eval scripts find it by name. Registering
    the same genotype again is a no-op; a different genotype under a taken name is refused,
    unless the name is the same run's (meta's "experiment": a projection redone with
    --overwrite), whose entry it replaces."""
    path = _registry_file(name, registry)
    entry = genotype_to_dict(genotype)
    _validate(genotype_from_dict(entry))
    try:
        existing = genotype_to_dict(get_genotype(name, registry))
    except KeyError:
        existing = None
    experiment = (meta or {}).get("experiment")
    own = isinstance(experiment, str) and _registered_by(path, Path(experiment))
    if existing not in (None, entry) and not own:
        raise ValueError(f"genotype name {name!r} is taken by a different genotype; choose another name")
    if existing == entry and path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**entry, "meta": meta or {}})
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="List the genotype catalog or print genotypes.")
    parser.add_argument("names", nargs="*", help="genotypes to print (default: list all names)")
    add_exp_root_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    folder = registry(args.exp_root)
    if not args.names:
        print("\n".join(all_genotype_names(folder)))
    for name in args.names:
        print(f"{name}: {get_genotype(name, folder)}")


if __name__ == "__main__":
    main()
