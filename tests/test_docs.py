"""The documentation (README.md, docs/*.md): every relative link and `#anchor` leads somewhere,
every command shown runs a script that exists with flags that script takes, and CI runs the
README's test command.

A command is a line of a ``` block that starts with `bash exp_scripts/...`, `bash <file>`,
`python -m MODULE` or `python <file>.py` (after `VAR=value` prefixes, `&&`, `;` and `|`). An
exp_script is asked what it runs (`DARTS_PT_PRINT_COMMAND=1`, see exp_scripts/common.sh), and
the module's own parser (its `build_parser()`; the study's `parse_config`) parses the arguments.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SKIPPED_MODULES = {"pytest", "venv", "pip"}  # tools, not this repository's commands
FENCE = re.compile(r"^\s*```\s*(\w*)")
SHELL = {"", "bash", "sh", "shell", "console"}  # blocks of other languages (python, json) hold no commands
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def split_fences(text: str) -> tuple[list[str], list[list[str]]]:
    """The lines outside ``` blocks (inside ones blank, so line numbers stay), and each shell
    block's lines."""
    prose, blocks, block, shell = [], [], None, True
    for line in text.splitlines():
        if fence := FENCE.match(line):
            if block is None:
                block, shell = [], fence.group(1) in SHELL
            else:
                if shell:
                    blocks.append(block)
                block = None
            prose.append("")
        elif block is not None:
            block.append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, punctuation but `-` and `_` dropped, lower
    case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file (a repeated one also as `-1`, `-2`, ...)."""
    seen: dict[str, int] = {}
    for line in split_fences(path.read_text())[0]:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            seen.setdefault(f"{base}-{n}" if n else base, 1)
    return set(seen)


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code blocks and code spans."""
    found = []
    for number, line in enumerate(split_fences(path.read_text())[0], 1):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                found.append((number, target))
    return found


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        where = f"{_rel(path)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{where}: no heading #{anchor} in {dest.name}")
    return problems


@dataclass(frozen=True)
class Command:
    doc: str       # file:block, for messages
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.doc}: {shlex.join(self.argv)}"


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def block_commands(doc: str, lines: list[str]) -> list[Command]:
    """The commands of one ``` block: continuation lines joined, `NAME=value` lines expanded
    into later `$NAME`s (as bash splits an unquoted variable)."""
    joined, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            joined.append(pending + line)
            pending = ""
    variables: dict[str, str] = {}
    commands = []
    for line in joined:
        for name, value in variables.items():
            line = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", lambda _, v=value: v, line)
        words = _words(line)
        if len(words) == 1 and ASSIGNMENT.match(words[0]):
            name, _, value = words[0].partition("=")
            variables[name] = value
            continue
        simple: list[str] = []
        for word in [*words, ";"]:
            if word in {"&&", "||", ";", "|", "&"}:
                while simple and ASSIGNMENT.match(simple[0]):
                    simple.pop(0)  # VAR=value before a command: its environment
                if simple:
                    commands.append(Command(doc, tuple(simple)))
                simple = []
            else:
                simple.append(word)
    return commands


def doc_commands() -> list[Command]:
    found = []
    for path in DOCS:
        for i, block in enumerate(split_fences(path.read_text())[1], 1):
            found += [c for c in block_commands(f"{_rel(path)} block {i}", block) if _is_ours(c.argv)]
    return found


def _is_ours(argv: tuple[str, ...]) -> bool:
    if len(argv) < 2:
        return False
    if argv[0] == "bash":
        return not argv[1].startswith("-")  # `bash -c '...'` (srun): its inner command is not parsed
    if argv[0] in ("python", "python3"):
        return (argv[1] == "-m" and len(argv) > 2 and argv[2] not in SKIPPED_MODULES) or argv[1].endswith(".py")
    return False


def module_and_args(argv: tuple[str, ...]) -> tuple[str, list[str]]:
    """The Python module a command runs, and its arguments."""
    if argv[0] == "bash":
        env = {**os.environ, "DARTS_PT_PRINT_COMMAND": "1"}
        out = subprocess.run(["bash", str(REPO / argv[1]), *argv[2:]], env=env, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        module, *args = out.stdout.decode().rstrip("\0").split("\0")
        return module, args
    if argv[1] == "-m":
        return argv[2], list(argv[3:])
    return str(Path(argv[1]).with_suffix("")).replace("/", "."), list(argv[2:])


def refusal(module: str, args: list[str]) -> str | None:
    """What the module's parser says against `args` (None: it takes them)."""
    if module == "study":
        from study.config import StudyError, parse_config

        try:
            parse_config(args)
        except StudyError as e:
            return str(e)
        return None
    spec = importlib.util.find_spec(module)
    if spec is None:
        return f"no module {module}"
    if spec.submodule_search_locations:  # a package: `python -m` runs its __main__
        module += ".__main__"
    build = getattr(importlib.import_module(module), "build_parser", None)
    if build is None:
        flags = [a for a in args if a.startswith("-")]
        return f"{module} has no build_parser() to check {flags} against" if flags else None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build().parse_args(args)
    except SystemExit as e:
        return None if e.code == 0 else (err.getvalue().strip().splitlines() or [f"exit {e.code}"])[-1]
    return None


# -- the tests -------------------------------------------------------------------------------------

def test_the_guide_pages_exist_and_the_readme_lists_them():
    readme = (REPO / "README.md").read_text()
    pages = {p.name for p in DOCS[1:]}
    assert {"data.md", "nasbench201.md", "darts-space.md", "evaluation.md", "multi-gpu.md", "fast-projection.md",
            "results.md", "studies.md", "speed.md", "differences.md", "code-map.md"} <= pages
    assert not [p for p in sorted(pages) if f"(docs/{p})" not in readme], "pages the README's contents leave out"
    assert len(readme.splitlines()) <= 220


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_relative_links_and_anchors_lead_somewhere(path):
    assert broken_links(path) == []


def test_every_documented_command_runs_a_script_that_takes_its_flags():
    commands = doc_commands()
    assert len(commands) > 40  # the parsing found the docs' commands
    problems = []
    for c in commands:
        file = None if c.argv[1] == "-m" else c.argv[1]
        if file is not None and not (REPO / file).is_file():
            problems.append(f"{c}: {file} does not exist")
        elif c.argv[0] != "bash" or file.startswith("exp_scripts/"):  # other shell scripts: existence only
            why = refusal(*module_and_args(c.argv))
            if why is not None:
                problems.append(f"{c}: {why}")
    assert problems == []


def test_ci_runs_the_readme_test_command():
    readme = [c.argv for b in split_fences((REPO / "README.md").read_text())[1] for c in block_commands("", b)]
    tests = [argv for argv in readme if argv[:3] == ("python", "-m", "pytest")]
    assert tests == [("python", "-m", "pytest", "-q", "-m", "not slow", "tests"),  # the unit tier, then everything
                     ("python", "-m", "pytest", "-q", "-rs", "tests")]
    ci = [c.argv for c in block_commands(".ci/run", (REPO / ".ci" / "run").read_text().splitlines())]
    assert [a for a in ci if a[1:3] == ("-m", "pytest")] == [("python3", *tests[1][1:])]


# -- the checks themselves -------------------------------------------------------------------------

def test_the_checks_catch_a_broken_link_a_missing_script_and_an_unknown_flag(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n## Two words\n[ok](#two-words) [gone](#nowhere) [file](missing.md)\n")
    assert broken_links(page) == [f"{page}:3: #nowhere: no heading #nowhere in page.md",
                                  f"{page}:3: missing.md: no such file"]
    block = ['T="--data /tmp/x --gpu cpu"', "bash exp_scripts/darts-201.sh $T --epoch 2  # a typo",
             "python -m venv .venv && python -m analysis runs/ --outt x"]
    commands = [c for c in block_commands("t", block) if _is_ours(c.argv)]
    assert [c.argv for c in commands] == [("bash", "exp_scripts/darts-201.sh", "--data", "/tmp/x", "--gpu", "cpu",
                                           "--epoch", "2"), ("python", "-m", "analysis", "runs/", "--outt", "x")]
    assert "error: --epoch: no such flag (did you mean --epochs" in refusal(*module_and_args(commands[0].argv))
    assert "--outt" in refusal(*module_and_args(commands[1].argv))
    assert "--bogus" in refusal("study", ["--name", "s", "--bogus", "1"])
    assert refusal("study", ["--name", "s", "--eval.epochs", "3"]) is None
