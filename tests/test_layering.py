"""The house in floors: `common/` is the ground floor and imports nothing above it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("nasbench201", "sota", "analysis", "study", "benchmarks", "tests")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "common").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_common_imports_nothing_above_it(path: Path) -> None:
    upward = [m for m in imported_modules(path) if m.split(".")[0] in UPPER]
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sota.genotypes import get_genotype\n")
    assert imported_modules(bad) == ["sota.genotypes"]
