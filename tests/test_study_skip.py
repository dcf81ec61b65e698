"""A study never starts a finished run again: the unit tier's check, in process, with the
run itself faked (no exp_script runs); tests/test_study.py checks it end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import time_limit

ARGS = ["--space", "nb201", "--dataset", "cifar10", "--method", "darts", "--seed", "1", "--stages", "search",
        "--gpu", "cpu"]


@pytest.fixture
def fake_runs(monkeypatch):
    """Each run the study starts "runs" by writing its folder's result.json with the status
    set in `state["status"]`; the runs started are recorded."""
    import study.executors

    state: dict = {"status": "finished", "started": []}

    def spawn(argv, log, env, lock_fd):
        exp_root = Path(argv[argv.index("--exp_root") + 1])
        folder = exp_root / "nasbench201" / f"search-darts-201-{argv[argv.index('--seed') + 1]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps({"status": state["status"]}))
        state["started"].append(argv)
        return subprocess.Popen([sys.executable, "-c", "pass"])

    monkeypatch.setattr(study.executors, "spawn", spawn)
    return state


def run_study(root: Path, capsys, *extra: str) -> tuple[int, str]:
    from study.__main__ import main

    capsys.readouterr()
    with time_limit(30, "an in-process study with faked runs"):
        code = main(["--name", "s", "--exp_root", str(root), *ARGS, *extra])
    return code, capsys.readouterr().out


def test_finished_runs_are_not_started_again(tmp_path, fake_runs, capsys):
    code, out = run_study(tmp_path, capsys)
    assert code == 0 and len(fake_runs["started"]) == 1 and "1 runs: 0 finished, 1 to do" in out
    code, out = run_study(tmp_path, capsys)  # the same command again: nothing to do
    assert code == 0 and len(fake_runs["started"]) == 1 and "1 runs: 1 finished, 0 to do" in out
    assert " start " not in out

    # the folder is the truth: a run whose result.json no longer says finished runs again
    folder = tmp_path / "studies" / "s" / "runs" / "nasbench201" / "search-darts-201-1"
    (folder / "result.json").write_text(json.dumps({"status": "running"}))
    code, out = run_study(tmp_path, capsys)
    assert code == 0 and len(fake_runs["started"]) == 2 and "(continuing its folder)" in out
