"""The commands runs print (common/commands.py): each flag once in the scripts' echo, the
command as typed, and the edits that continue a run."""
from __future__ import annotations

import os
import subprocess
import sys

from common import commands
from tests.conftest import REPO, _script_env


def test_each_flag_once_with_the_value_argparse_keeps():
    words = ["python3", "-m", "m", "--resume_epoch", "100", "--cutout", "--seed", "1", "--resume_epoch", "2",
             "--no_cutout", "--tag=a", "--tag", "b c"]
    assert commands.once(words) == ["python3", "-m", "m", "--resume_epoch", "2", "--no_cutout", "--seed", "1",
                                    "--tag", "b c"]
    assert commands.value(words, "--tag") == "b c" and commands.value(["--tag=x"], "--tag") == "x"
    assert commands.value(words, "--nope") is None
    assert commands.given(words, ["--seed", "--nope", "--resume_epoch"]) == ["--seed", "1", "--resume_epoch", "2"]


def test_a_continuation_drops_and_replaces_flags_as_typed():
    typed = ["bash", "exp_scripts/darts-201.sh", "--epochs", "30", "--overwrite", "--resume_epoch", "5", "--x=1"]
    assert commands.edited(typed, ["--overwrite"], {"--resume_epoch": "-1"}) == \
        ["bash", "exp_scripts/darts-201.sh", "--epochs", "30", "--x=1", "--resume_epoch", "-1"]
    assert commands.edited(typed, ["--resume_epoch", "--x"], {"--overwrite": None}) == \
        ["bash", "exp_scripts/darts-201.sh", "--epochs", "30", "--overwrite"]
    assert commands.shell(["bash", "a b.sh", "--data", "it's"]) == "bash 'a b.sh' --data 'it'\"'\"'s'"


def test_the_typed_command_is_the_scripts_own_process_s_or_its_launcher_s(monkeypatch):
    typed = ["bash", "exp_scripts/eval.sh", "--arch", "a b"]
    monkeypatch.setenv(commands.COMMAND_ENV, "".join(w + commands.SEPARATOR for w in typed))
    for owner, mine in ((os.getpid(), True), (os.getppid(), True), (1, False)):  # 1: another run's command
        monkeypatch.setenv(commands.OWNER_ENV, str(owner))
        assert (commands.typed() == typed) == mine
    assert commands.typed() == sys.orig_argv
    monkeypatch.setenv(commands.OWNER_ENV, str(os.getpid()))
    assert commands.exp_script("eval-c100.sh", "--x", "1") == ["bash", "exp_scripts/eval-c100.sh", "--x", "1"]


def test_the_scripts_pass_the_typed_command_and_echo_each_flag_once(tmp_path):
    """The echo names each flag once, with its value in force; the module gets the arguments as
    given; the run knows the command as typed (here: the module refuses a flag, after the echo)."""
    probe = tmp_path / "python"  # a $PYTHON that shows what the module gets and the typed command
    probe.write_text(f'#!/bin/sh\n[ "$2" = common.commands ] && exec {sys.executable} "$@"\n'
                     'echo "argv: $*"; printf "typed: %s\\n" "$DARTS_PT_COMMAND" | tr "\\037" "|"\n'
                     'echo "owner: $DARTS_PT_COMMAND_PID self: $$"\n')
    probe.chmod(0o755)
    out = subprocess.run(["bash", "exp_scripts/darts-proj-201.sh", "--resume_epoch", "2", "--data", "a b",
                          "--resume_epoch", "3"], cwd=REPO, env=_script_env({"PYTHON": str(probe)}),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    echo = out[0].split(" -m nasbench201.train_search ", 1)[1].split()
    assert echo.count("--resume_epoch") == 1 and echo[echo.index("--resume_epoch") + 1] == "3"
    assert "'a b'" in out[0]
    assert out[1].count("--resume_epoch") == 2  # what the module parses is what the script passes
    assert out[2] == "typed: bash|exp_scripts/darts-proj-201.sh|--resume_epoch|2|--data|a b|--resume_epoch|3|"
    owner, own = out[3].split()[1::2]
    assert owner == own
