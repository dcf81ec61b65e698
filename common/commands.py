"""The shell commands runs print for the user to paste: how to continue an interrupted run,
how to project a finished search, how to evaluate a projected genotype; and the command line
exp_scripts/common.sh echoes before it runs a module.

The exp_scripts pass the command as the user typed it (`bash exp_scripts/darts-201.sh --epochs
30`) to Python through the environment (COMMAND_ENV, with OWNER_ENV naming the script's
process, which execs Python: a run started by another run, e.g. by the study, does not take
its parent's). A module run directly (`python -m ...`) has its own command line.

Standard library only: `python -m common.commands ARGS` prints ARGS with each flag once (the
echo of exp_scripts/common.sh), before torch is wanted.
"""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

COMMAND_ENV = "DARTS_PT_COMMAND"      # the words of the typed command, each followed by SEPARATOR
OWNER_ENV = "DARTS_PT_COMMAND_PID"    # the process of the script that set it
SEPARATOR = "\x1f"                    # ASCII unit separator: no argument holds one
SCRIPTS = Path(__file__).resolve().parents[1] / "exp_scripts"

Flag = tuple[str | None, list[str]]   # (--name, the words it spans: name and values); None: a word before any flag


def typed() -> list[str]:
    """The command that started this run, as typed: the exp_script's (this process's, or its
    parent's: a torchrun worker's launcher is the script's process), else this Python's."""
    words, owner = os.environ.get(COMMAND_ENV), os.environ.get(OWNER_ENV)
    if words and owner in (str(os.getpid()), str(os.getppid())):
        return words.split(SEPARATOR)[:-1]
    return list(sys.orig_argv)


def split(words: Iterable[str]) -> list[Flag]:
    """The words as flags, each with its values (the words up to the next `--` word); words
    before the first flag (`bash SCRIPT`, `python -m MODULE`) stand alone."""
    flags: list[Flag] = []
    for word in words:
        if word.startswith("--"):
            flags.append((word.split("=", 1)[0], [word]))
        elif flags and flags[-1][0] is not None:
            flags[-1][1].append(word)
        else:
            flags.append((None, [word]))
    return flags


def _key(name: str) -> str:
    """Flags that set one value: `--no_X` undoes `--X` (common/cli.py add_switch)."""
    return "--" + name.removeprefix("--no_") if name.startswith("--no_") else name


def once(words: Iterable[str]) -> list[str]:
    """The words with each flag once, where it first appears, with the value it last has (the
    one argparse keeps)."""
    last: dict[str, list[str]] = {}
    order: list[str | list[str]] = []
    for name, span in split(words):
        if name is None:
            order.append(span)
            continue
        if _key(name) not in last:
            order.append(_key(name))
        last[_key(name)] = span
    return [w for item in order for w in (last[item] if isinstance(item, str) else item)]


def edited(words: Iterable[str], drop: Iterable[str] = (), add: Mapping[str, str | None] | None = None) -> list[str]:
    """The words without the flags of `drop` and of `add`, then `add`'s (`--flag value`, or
    `--flag` for None)."""
    add = add or {}
    gone = {_key(f) for f in [*drop, *add]}
    kept = [w for name, span in split(words) if name is None or _key(name) not in gone for w in span]
    return kept + [w for flag, value in add.items() for w in ([flag] if value is None else [flag, value])]


def value(words: Iterable[str], flag: str) -> str | None:
    """The value `flag` has in the words (its last), None if not given."""
    spans = [span for name, span in split(words) if name == flag]
    if not spans:
        return None
    span = spans[-1]
    return span[0].split("=", 1)[1] if "=" in span[0] else (span[1] if len(span) > 1 else None)


def given(words: Iterable[str], flags: Iterable[str]) -> list[str]:
    """`--flag value` of each of `flags` the words give (its last value), in that order."""
    words = list(words)
    return [w for f in flags if (v := value(words, f)) is not None for w in (f, v)]


def exp_script(name: str, *args: str) -> list[str]:
    """`bash exp_scripts/NAME ARGS`, the script named as the user named the one they ran (a
    sibling of it), else by its path from the working directory (absolute outside it)."""
    words = typed()
    if len(words) > 1 and words[0] == "bash" and words[1].endswith(".sh"):
        path = os.path.join(os.path.dirname(words[1]), name)
    else:
        path = os.path.relpath(SCRIPTS / name)
        path = path if not path.startswith("..") else str(SCRIPTS / name)
    return ["bash", path, *args]


def shell(words: Iterable[str]) -> str:
    """The words as one command line to paste into a shell."""
    return shlex.join(words)


if __name__ == "__main__":
    print(shell(once(sys.argv[1:])))
