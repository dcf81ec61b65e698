"""Which checkpoints a run keeps (--ckpt_keep_every): the latest, what a resume needs, and
those of every N-th epoch; evaluations keep every 50th by default, searches and projections all."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from common.checkpoint import checkpoint_epochs, prune_checkpoints
from common.cli import search_config
from common.distributed import Group
from common.experiment import Timer


def test_the_latest_and_every_nth_are_kept(tmp_path):
    for e in range(1, 8):
        (tmp_path / f"checkpoint_{e}.pth.tar").write_bytes(b"")
        prune_checkpoints(tmp_path, 3, keep=e)
    assert checkpoint_epochs(tmp_path) == [3, 6, 7]
    prune_checkpoints(tmp_path, 0, keep=7)
    assert checkpoint_epochs(tmp_path) == [7]
    (tmp_path / "checkpoint_9.pth.tar").write_bytes(b"")  # a later one of a run resumed from 7
    prune_checkpoints(tmp_path, 1, keep=7)
    assert checkpoint_epochs(tmp_path) == [7, 9]  # 1: every checkpoint stays


def test_defaults_per_entry_point():
    from sota.train import build_parser as eval_parser
    from sota.train import config as eval_config
    from sota.train_search import build_parser as search_parser

    assert eval_config(eval_parser().parse_args([])).run.ckpt_keep_every == 50
    cfg = search_config(search_parser().parse_args([]))
    assert cfg.run.ckpt_keep_every == 1
    assert search_config(search_parser().parse_args(["--ckpt_keep_every", "0"])).run.ckpt_keep_every == 0


def test_projection_can_keep_only_what_resume_needs(tmp_path):
    from common.projection import _save

    def trainer(keep_every: int) -> SimpleNamespace:
        return SimpleNamespace(state=dict, arch=SimpleNamespace(projection_state=dict), device=torch.device("cpu"),
                               group=Group(),
                               cfg=SimpleNamespace(run=SimpleNamespace(ckpt_keep_every=keep_every)))

    for keep_every, kept in ((1, [0, 5, 10, 11]), (0, [11]), (10, [0, 10, 11])):
        folder = tmp_path / str(keep_every)
        for epoch in (0, 5, 10, 11):
            _save(trainer(keep_every), folder, epoch, 1, Timer())
        assert checkpoint_epochs(folder) == kept
