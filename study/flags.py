"""Run flags: the `--name value` pairs a study passes on to its runs, and to which ones.

A flag goes to every run whose script takes it (`--epochs 2` to searches, projections and
evaluations; `--num_cells 1` only to NAS-Bench-201 runs). `--STAGE.name value` (STAGE one of
search, proj, eval) limits it to one stage: `--eval.epochs 100`. A flag no script takes is a
typo and refused, as are the flags the study itself sets for each run. A few flags are the
scripts' own, not their module's (`--nproc N`: the runs train in N processes); they
go on the script's command line and never reach the module's parser.
"""
from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from common.cli import LAUNCHER_FLAGS, did_you_mean

STAGES = ("search", "proj", "eval", "eval-imagenet")
DEFAULT_STAGES = STAGES[:3]  # ImageNet evaluation only when asked: it needs ImageNet and GPU-days
EVAL_STAGES = ("eval", "eval-imagenet")  # train the genotype a projection registered
# The Python modules behind each stage's exp_scripts.
STAGE_MODULES = {"search": ("nasbench201.train_search", "sota.train_search"),
                 "proj": ("nasbench201.train_search", "sota.train_search"),
                 "eval": ("sota.train",), "eval-imagenet": ("sota.train_imagenet",)}
# Set by the study for each run (a user value would break the chain search -> projection ->
# evaluation, or put runs where the study does not look for them).
OWNED = ("--seed", "--dataset", "--space", "--method", "--exp_root", "--save", "--resume_expid",
         "--resume_epoch", "--arch", "--overwrite", "--dev", "--genotype_name", "--perturb_alpha",
         "--unrolled", "--no_resume", "--dev_resume_epoch")
# Flags of a stage's exp_scripts themselves (exp_scripts/common.sh), not of their module -> takes a value.
SCRIPT_FLAGS = {stage: {"--nproc": True} for stage in STAGES}  # every stage trains under torchrun


class FlagError(ValueError):
    """A run flag that no script takes, or one the study sets itself."""


@dataclass(frozen=True)
class RunFlag:
    stage: str | None   # None: every stage whose script takes the flag
    flag: str           # "--epochs"
    value: str | None   # None: a switch (--fast)

    def tokens(self) -> list[str]:
        name = f"--{self.stage}.{self.flag[2:]}" if self.stage else self.flag
        return [name] if self.value is None else [name, self.value]


@dataclass(frozen=True)
class RunFlags:
    flags: tuple[RunFlag, ...] = ()

    @classmethod
    def parse(cls, tokens: list[str] | tuple[str, ...], study_flags: Sequence[str] = ()) -> RunFlags:
        """The run flags among `tokens`; `study_flags` (the study's own) are suggested too when a
        flag is mistyped."""
        flags, i = [], 0
        while i < len(tokens):
            flag, i = _parse_one(tokens, i, study_flags)
            flags.append(flag)
        return cls(tuple(flags))

    def argv(self) -> list[str]:
        """The flags as the user gives them (what study.json records and compares)."""
        return [t for f in self.flags for t in f.tokens()]

    def for_run(self, stage: str, module: str, script: bool = True) -> list[str]:
        """The flags a run of `stage` through `module` takes, with those of its script unless
        not `script` (what the module itself parses); a stage's own flags come last, so they
        win over general ones (argparse keeps the last value)."""
        known = module_flags(module) | (SCRIPT_FLAGS[stage] if script else {})
        chosen = [f for f in self.flags if f.stage is None] + [f for f in self.flags if f.stage == stage]
        return [t for f in chosen if f.flag in known for t in ([f.flag] if f.value is None else [f.flag, f.value])]

    def value(self, flag: str) -> str | None:
        """The value given to `flag` for every stage (the last one), None if not given."""
        return next((f.value for f in reversed(self.flags) if f.flag == flag and f.stage is None), None)


def _parse_one(tokens: list[str] | tuple[str, ...], i: int, study_flags: Sequence[str]) -> tuple[RunFlag, int]:
    token = tokens[i]
    if not token.startswith("--") or token == "--":
        raise FlagError(f"unexpected argument {token!r}: run flags are --name value pairs")
    name, has_inline, inline = token.partition("=")
    stage, _, bare = name[2:].rpartition(".")
    stage = stage or None
    if stage is not None and stage not in STAGES:
        raise FlagError(f"{name}: a stage prefix is one of {', '.join(STAGES)}")
    flag = "--" + bare
    if flag in LAUNCHER_FLAGS and flag not in SCRIPT_FLAGS[stage or STAGES[0]]:
        raise FlagError(f"{flag} is set by the study for each job (--executor slurm --nodes_per_job N: evaluations "
                        f"on N machines)")
    if flag in OWNED:
        raise FlagError(f"{flag} is set by the study for each run (lists: --space, --dataset, "
                        f"--method, --seed; folders: --exp_root)")
    modules = STAGE_MODULES[stage] if stage else tuple(dict.fromkeys(m for ms in STAGE_MODULES.values()
                                                                   for m in ms))
    flags = [module_flags(m) for m in modules] + [SCRIPT_FLAGS[s] for s in ([stage] if stage else STAGES)]
    takes_value = next((f[flag] for f in flags if flag in f), None)
    if takes_value is None:
        where = f"the {stage} scripts" if stage else "any exp_script"
        known = [f for f in dict.fromkeys([*(f for fs in flags for f in fs), *([] if stage else study_flags)])
                 if f not in OWNED]
        hint = did_you_mean(flag, known).replace("--", f"--{stage}." if stage else "--")
        raise FlagError(f"unknown run flag {name}: not a flag of {where}{hint}")
    if not takes_value:
        if has_inline:
            raise FlagError(f"{name} is a switch and takes no value")
        return RunFlag(stage, flag, None), i + 1
    if has_inline:
        return RunFlag(stage, flag, inline), i + 1
    if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
        raise FlagError(f"{name} needs a value")
    return RunFlag(stage, flag, tokens[i + 1]), i + 2


@functools.cache
def module_flags(module: str) -> dict[str, bool]:
    """Every option of a run module's parser -> whether it takes a value (but the launcher flags
    its --help lists: the exp_scripts' own, SCRIPT_FLAGS)."""
    parser = build_parser(module)
    return {s: a.nargs != 0 for a in parser._actions for s in a.option_strings if s not in LAUNCHER_FLAGS}


@functools.cache
def build_parser(module: str) -> argparse.ArgumentParser:
    """The run module's own parser; bad values raise instead of exiting."""
    parser = importlib.import_module(module).build_parser()
    parser.exit_on_error = False

    def error(message: str) -> None:
        raise FlagError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser
