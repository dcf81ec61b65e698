"""Genotype parsing, the genotype catalog and registry, and cell diagrams."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sota.genotypes import (
    DARTS_V2,
    Genotype,
    all_genotype_names,
    genotype_from_dict,
    genotype_from_string,
    genotype_to_dict,
    get_genotype,
    parse_genotype,
    register_genotype,
    resolve_arch,
)
from sota.spaces import space
from sota.visualize import main as visualize_main
from sota.visualize import plot_genotype


def edge_ops(name: str) -> dict[str, list[list[str]]]:
    s = space(name)
    return {"normal": s["primitives_normal"], "reduce": s["primitives_reduct"]}


# -- parsing ---------------------------------------------------------------------------------

def test_parse_ignores_none_even_when_largest() -> None:
    # s3 columns: none, skip_connect, sep_conv_3x3; none dominates every edge
    w = np.tile([0.8, 0.05, 0.15], (14, 1))
    w[1] = [0.9, 0.08, 0.02]    # node 0: both edges kept (only 2), edge 1 prefers skip
    w[3] = [0.6, 0.3, 0.1]      # node 1: edges 3 (0.3) and 2 (0.15) beat 4 (0.15, later)
    w[8] = [0.5, 0.25, 0.25]    # node 2: edge 8, tie skip/sep -> first (skip), then edge 5
    w[13] = [0.99, 0.0, 0.01]   # node 3: weakest edge
    w[11] = [0.1, 0.1, 0.8]
    g = parse_genotype({"normal": w, "reduce": torch.tensor(w)}, edge_ops("s3"))
    expected = [("sep_conv_3x3", 0), ("skip_connect", 1),
                ("skip_connect", 1), ("sep_conv_3x3", 0),
                ("skip_connect", 3), ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 2), ("sep_conv_3x3", 0)]
    assert g == Genotype(expected, [2, 3, 4, 5], expected, [2, 3, 4, 5])


def test_parse_s5_without_none() -> None:
    w = np.full((14, 7), 0.1)
    w[0, 3] = w[1, 0] = 0.5            # node 0
    w[4, 6] = 0.9; w[2, 2] = 0.4       # node 1: edge 4 then edge 2
    w[7, 1] = 0.3; w[6, 5] = 0.2       # node 2
    w[9, 4] = 0.6; w[13, 2] = 0.7      # node 3: edge 13 first (stronger)
    g = parse_genotype({"normal": w, "reduce": w}, edge_ops("s5"))
    assert g.normal == [("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("dil_conv_5x5", 2), ("skip_connect", 0),
                        ("avg_pool_3x3", 2), ("dil_conv_3x3", 1), ("skip_connect", 4), ("sep_conv_5x5", 0)]
    assert g.normal_concat == g.reduce_concat == [2, 3, 4, 5]


def test_parse_ranks_none_edges_with_dropped_ones_as_the_original() -> None:
    # projected s3 weights: kept edges one-hot, dropped edges all zero. The original ranks
    # edges by their largest non-`none` weight only, with a stable sort: an edge projected
    # to `none` ties with a dropped edge and the lower index wins, its op the first non-none.
    w = np.zeros((14, 3))
    w[0, 2] = w[1, 1] = 1
    w[2, 0] = 1; w[4, 1] = 1                   # node 1 keeps 2 (one-hot none) and 4, drops 3: picks 4, 2
    w[6, 0] = 1; w[8, 2] = 1                   # node 2 keeps 6 (one-hot none) and 8, drops 5, 7: picks 8, 5
    w[12, 1] = w[13, 2] = 1
    g = parse_genotype({"normal": w, "reduce": w}, edge_ops("s3"))
    assert g.normal == [("sep_conv_3x3", 0), ("skip_connect", 1),
                        ("skip_connect", 2), ("skip_connect", 0),
                        ("sep_conv_3x3", 3), ("skip_connect", 0),   # edge 5 (input 0) was dropped
                        ("skip_connect", 3), ("sep_conv_3x3", 4)]


def test_parse_uses_each_edges_own_op_list() -> None:
    ops = edge_ops("s1")
    w = np.tile([0.4, 0.6], (14, 1))  # second op everywhere, strongest edges first by index
    g = parse_genotype({"normal": w, "reduce": w}, ops)
    starts = [0, 2, 5, 9]
    expected = [(ops["normal"][starts[n] + j][1], j) for n in range(4) for j in (0, 1)]
    assert g.normal == expected


# -- catalog ---------------------------------------------------------------------------------

def test_catalog_resolves_builtin_and_published() -> None:
    assert get_genotype("DARTS_V2") == DARTS_V2
    g = get_genotype("darts_pt_s5_0")
    assert g.normal[:2] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]
    names = all_genotype_names()
    assert {"DARTS_V1", "DARTS_V2", "darts_pt_s5_0", "blank_pt_s4_svhn_2"} <= set(names)
    assert sum(n.startswith(("darts_pt_", "blank_pt_")) for n in names) >= 56


def test_unknown_name_lists_close_matches(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as err:
        get_genotype("darts_pt_s5_O", registry=tmp_path)
    message = err.value.args[0]
    assert "darts_pt_s5_0" in message and "python -m sota.genotypes" in message


def test_register_round_trip_and_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = get_genotype("darts_pt_s3_1")
    path = register_genotype("my_run", g, registry=tmp_path, meta={"seed": 2})
    assert path == tmp_path / "my_run.json"
    assert get_genotype("my_run", registry=tmp_path) == g
    assert "my_run" in all_genotype_names(tmp_path)
    assert register_genotype("my_run", g, registry=tmp_path) == path  # identical: fine
    with pytest.raises(ValueError, match="taken"):
        register_genotype("my_run", DARTS_V2, registry=tmp_path)
    with pytest.raises(ValueError, match="taken"):
        register_genotype("DARTS_V2", g, registry=tmp_path)
    with pytest.raises(ValueError, match="invalid"):
        register_genotype("../evil", g, registry=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_run.json"]  # no temporary files left
    monkeypatch.setenv("DARTS_PT_GENOTYPES", str(tmp_path))
    assert resolve_arch("my_run") == g


def test_dict_and_string_round_trips() -> None:
    g = get_genotype("blank_pt_s1_1")
    assert genotype_from_dict(genotype_to_dict(g)) == g
    assert genotype_from_string(repr(g)) == g
    darts_style = repr(DARTS_V2).replace("[2, 3, 4, 5]", "range(2, 6)")
    assert "range(2, 6)" in darts_style and genotype_from_string(darts_style) == DARTS_V2
    assert resolve_arch(repr(DARTS_V2)) == DARTS_V2


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "Genotype(normal=print('x'))",
                                  "Genotype(normal=[('conv_9x9', 0)], normal_concat=[2], reduce=[], "
                                  "reduce_concat=[])"])
def test_genotype_from_string_rejects_non_literals(text: str) -> None:
    with pytest.raises(ValueError):
        genotype_from_string(text)


# -- diagrams --------------------------------------------------------------------------------

def test_plot_genotype_writes_png_and_pdf(tmp_path: Path) -> None:
    paths = plot_genotype(get_genotype("darts_pt_s5_0"), tmp_path / "cells", title="darts_pt_s5_0")
    assert [p.name for p in paths] == ["cells.png", "cells.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_visualize_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    visualize_main(["DARTS_V1", "--out", str(tmp_path)])
    assert capsys.readouterr().out.split() == [str(tmp_path / "DARTS_V1.png"), str(tmp_path / "DARTS_V1.pdf")]


def test_catalog_and_diagram_commands_read_the_runs_registry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--exp_root` points both commands at the genotypes projection registered under it."""
    from sota.genotypes import main as genotypes_main
    from sota.genotypes import registry

    register_genotype("mine_s3", DARTS_V2, registry(tmp_path))
    genotypes_main(["--exp_root", str(tmp_path)])
    assert "mine_s3" in capsys.readouterr().out.split()
    genotypes_main([])
    assert "mine_s3" not in capsys.readouterr().out.split()
    visualize_main(["mine_s3", "--exp_root", str(tmp_path), "--out", str(tmp_path)])
    assert capsys.readouterr().out.split()[0] == str(tmp_path / "mine_s3.png")
