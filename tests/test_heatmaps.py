"""Alpha heat-maps: a projection's show the choices it made (decided edges one-hot, dropped
edges zero) or say that they show softmax(alpha), and their rows name a cell's nodes as the
cell diagrams do."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from analysis import figures
from analysis.runs import Run
from analysis.tables import Group, Row
from common.search import epoch_report
from sota.report_hooks import REPORT_HOOKS
from sota.spaces import EDGE_INPUTS, EDGE_NAMES, STATE_NAMES
from sota.visualize import _draw_cell
from tests.test_projection import make_trainer


class Heatmaps:
    """A Board that keeps what it is asked to draw."""

    def __init__(self) -> None:
        self.drawn: dict[str, tuple[torch.Tensor, list[str], str]] = {}

    def scalars(self, values, step) -> None:
        pass

    def heatmap(self, tag, matrix, rows, cols, step, title=None) -> None:
        self.drawn[tag] = (matrix.detach().clone(), rows, title)


def test_darts_heatmap_rows_name_the_states_as_the_cell_diagram():
    ax = Figure().subplots()
    edges = [("sep_conv_3x3", j) for j in (0, 1, 1, 2, 0, 3, 2, 4)]
    _draw_cell(ax, edges, [2, 3, 4, 5], "normal cell")
    drawn = {t.get_text() for t in ax.texts}
    assert set(STATE_NAMES) <= drawn
    for name, (node, j) in zip(EDGE_NAMES, EDGE_INPUTS):
        source, target = name.split(" → ")
        assert source == STATE_NAMES[j] and target == STATE_NAMES[node + 2]
    assert EDGE_NAMES[:3] == ["$c_{k-2}$ → 0", "$c_{k-1}$ → 0", "$c_{k-2}$ → 1"]
    assert REPORT_HOOKS.alpha_labels("s5", "normal")[0] == EDGE_NAMES


def test_darts_logs_name_the_states_in_plain_text():
    """LaTeX ($c_{k-2}$) only in figures: the log's alpha tables and scoring lines read c[k-2]."""
    from common.search import alpha_table
    from sota.train_search import build_space
    from tests.fixtures.configs import search_cfg

    space = build_space(search_cfg("--init_channels", "2", "--layers", "3", space="sota"), 10, torch.device("cpu"))
    table = alpha_table(space, "normal", torch.full((14, 7), 1 / 7))
    assert "$" not in table and " 0: c[k-2] → 0  " in table and "13: 2 → 3  " in table
    assert space.edge_names[:2] == ["0: c[k-2] → 0", "1: c[k-1] → 0"]


def test_nb201_heatmap_rows_name_the_nodes_as_the_cell_diagram(tmp_path, monkeypatch):
    from nasbench201 import visualize
    from nasbench201.report_hooks import REPORT_HOOKS as NB201_HOOKS

    kept = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: kept.append(fig))
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    visualize.plot_arch(arch, tmp_path / "cell.png", "t")
    drawn = {t.get_text() for t in kept[0].axes[0].texts}
    rows = NB201_HOOKS.alpha_labels("nasbench201", "cell")[0]
    assert all(set(row.split("<-")) <= drawn for row in rows)


def named_trainer(project=()):
    trainer = make_trainer({"normal": torch.ones(4, 3)}, project)
    trainer.space.edge_names = ["a", "b", "c", "d"]
    trainer.space.op_names = {"normal": ["x", "y", "z"]}
    return trainer


def test_tuning_heatmaps_show_the_projected_choices():
    trainer = named_trainer(project=[("normal", 0, 2)])
    trainer.arch.drop_edges("normal", 1, [3])
    board = Heatmaps()
    row = epoch_report(trainer, 0, board, {"train_acc": 50.0}, tuning=True)
    matrix, rows, title = board.drawn["tune/alpha/normal"]
    assert matrix[0].tolist() == [0.0, 0.0, 1.0] and matrix[3].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(matrix[1:3], torch.full((2, 3), 1 / 3), atol=1e-3)
    assert rows == ["a *", "b", "c", "d *"] and "projected" in title
    assert row["projected"]["normal"][0] == [0.0, 0.0, 1.0]
    assert row["softmax"]["normal"][0] != [0.0, 0.0, 1.0]  # the history keeps softmax(alpha) too

    board = Heatmaps()
    search_row = epoch_report(named_trainer(), 0, board, {"train_acc": 50.0})
    assert "projected" not in search_row and board.drawn["alpha/normal"][2] == "alpha/normal: softmax(alpha)"


def _run(kind: str, history: list[dict]) -> Run:
    return Run(Path("x"), "x", kind, "finished", {"genotype": "g"}, history)


def test_report_heatmap_of_a_projection_shows_its_choices(monkeypatch):
    kept = {}

    def save(fig, path):
        kept[path.name] = fig
        return path

    monkeypatch.setattr(figures, "_save", save)
    softmax = [[0.2, 0.3, 0.5], [0.4, 0.3, 0.3]]
    projected = [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    group = Group("s5", "cifar10", REPORT_HOOKS)
    proj = Row("DARTS+PT", None, [_run("projection", [{"softmax": {"normal": softmax},
                                                      "projected": {"normal": projected}}])])
    search = Row("DARTS", None, [_run("search", [{"softmax": {"normal": softmax}}])])
    old = Row("DARTS+PT", "old", [_run("projection", [{"softmax": {"normal": softmax}}])])
    for row, name in ((proj, "proj.png"), (search, "search.png"), (old, "old.png")):
        figures.alpha_figure(group, row, Path(name))
    shown = {name: np.asarray(fig.axes[0].images[0].get_array()) for name, fig in kept.items()}
    titles = {name: fig._suptitle.get_text().replace("\n", " ") for name, fig in kept.items()}  # wrapped
    assert shown["proj.png"].tolist() == projected and "projected edges as decided" in titles["proj.png"]
    assert shown["search.png"].tolist() == softmax and titles["search.png"].endswith("final softmax(alpha)")
    assert titles["old.png"].endswith("final softmax(alpha) (not projected)")


def test_report_heatmap_titles_fit_their_figure(monkeypatch):
    """NAS-Bench-201's heat-map is narrow (5 ops): its long title is wrapped, not cut."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from nasbench201.report_hooks import REPORT_HOOKS as NB201_HOOKS

    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig) or path)
    projected = np.eye(5)[[3, 1, 3, 1, 0, 3]].tolist()
    run = _run("projection", [{"softmax": {"cell": projected}, "projected": {"cell": projected}}])
    figures.alpha_figure(Group("nasbench201", "cifar10", NB201_HOOKS), Row("DARTS+PT", None, [run], "DARTS+PT"),
                         Path("x.png"))
    fig = kept[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.tight_layout()
    title = fig._suptitle.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width and title.y1 <= fig.bbox.height
    assert fig._suptitle.get_text().replace("\n", " ").endswith("(one-hot, dropped ones 0)")
