"""A study's runs: which exp_script each one is, its command, and the folder it writes.

A run is one (space, dataset, method, seed, stage). Its command is what a user would type:
`bash exp_scripts/<script>.sh` with the study's `--seed/--dataset/--space/--exp_root`, the
chain's links (a projection's `--resume_expid` and `--resume_epoch -1`, an evaluation's
`--arch <genotype the projection registered>`) and the user's run flags. Its folder is
named by the run module's own Layout, from the arguments the script would pass.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.checkpoint import checkpoint_epochs, partial_path
from common.config import ConfigError
from common.experiment import REPO_ROOT, read_json
from common.run import resolve_projection

from .flags import EVAL_STAGES, FlagError, RunFlags, build_parser

SCRIPTS_DIR = REPO_ROOT / "exp_scripts"
NB201 = "nb201"
SPACES = (NB201, "s1", "s2", "s3", "s4", "s5")
# imagefolder: your own images (--data DIR), searched and projected as CIFAR is; no benchmark to query.
IMAGEFOLDER = "imagefolder"
DATASETS = {NB201: ("cifar10", "cifar100", "imagenet16-120", IMAGEFOLDER),
            "sota": ("cifar10", "cifar100", "svhn", IMAGEFOLDER)}
METHODS = ("darts", "darts2", "blank", "sdarts-rs", "sdarts-adv", "gdas", "drnas", "pcdarts")
SDARTS_ADV = ("--perturb_alpha", "pgd_linf")
UNROLLED = ("--unrolled",)  # second-order DARTS; its projection takes it from the search run's result.json


@dataclass(frozen=True)
class Script:
    file: str
    extra: tuple[str, ...] = ()   # arguments that make the script this method


# (kind of space, method) -> stage -> script. SDARTS-ADV is the SDARTS-RS scripts with PGD
# perturbation, and second-order DARTS (darts2) the DARTS scripts with --unrolled, each under its
# own --save so that its folders differ from SDARTS-RS's and first-order DARTS's.
METHOD_SCRIPTS: dict[tuple[str, str], dict[str, Script]] = {
    (NB201, "darts"): {"search": Script("darts-201.sh"), "proj": Script("darts-proj-201.sh")},
    (NB201, "darts2"): {"search": Script("darts-201.sh", UNROLLED + ("--save", "darts2-201")),
                        "proj": Script("darts-proj-201.sh", ("--save", "darts2-proj-201"))},
    (NB201, "blank"): {"search": Script("blank-201.sh"), "proj": Script("blank-proj-201.sh")},
    ("sota", "darts"): {"search": Script("darts-sota.sh"), "proj": Script("darts-proj-sota.sh")},
    ("sota", "darts2"): {"search": Script("darts-sota.sh", UNROLLED + ("--save", "darts2-sota")),
                         "proj": Script("darts-proj-sota.sh", ("--save", "darts2-proj-sota"))},
    ("sota", "blank"): {"search": Script("blank-sota.sh"), "proj": Script("blank-proj-sota.sh")},
    (NB201, "gdas"): {"search": Script("gdas-201.sh"), "proj": Script("gdas-proj-201.sh")},
    ("sota", "sdarts-rs"): {"search": Script("sdarts-rs-sota.sh"), "proj": Script("sdarts-rs-proj-sota.sh")},
    (NB201, "drnas"): {"search": Script("drnas-201.sh"), "proj": Script("drnas-proj-201.sh")},
    ("sota", "drnas"): {"search": Script("drnas-sota.sh"), "proj": Script("drnas-proj-sota.sh")},
    (NB201, "pcdarts"): {"search": Script("pcdarts-201.sh"), "proj": Script("pcdarts-proj-201.sh")},
    ("sota", "pcdarts"): {"search": Script("pcdarts-sota.sh"), "proj": Script("pcdarts-proj-sota.sh")},
    ("sota", "sdarts-adv"): {
        "search": Script("sdarts-rs-sota.sh", SDARTS_ADV + ("--save", "sdarts-adv-sota")),
        "proj": Script("sdarts-rs-proj-sota.sh", SDARTS_ADV + ("--save", "sdarts-adv-proj-sota"))},
    ("sota", "gdas"): {"search": Script("gdas-sota.sh"), "proj": Script("gdas-proj-sota.sh")},
}
# The paper's evaluation protocol per dataset (C=36, 20 cells on CIFAR-10; C=16, 8 cells otherwise);
# your own images get DARTS' (CIFAR-10's) protocol, which --eval.init_channels / --eval.layers change.
EVAL_SCRIPTS = {"cifar10": Script("eval.sh"), "cifar100": Script("eval-c100.sh"), "svhn": Script("eval-svhn.sh"),
                IMAGEFOLDER: Script("eval.sh")}
IMAGENET_SCRIPT = Script("eval-imagenet.sh")  # the transfer of a searched genotype (C=48, 14 cells)
UPSTREAM = {"proj": "search", "eval": "proj", "eval-imagenet": "proj"}


class PlanError(ValueError):
    """A study that cannot be planned (space, dataset or method that do not go together)."""


class NotReady(Exception):
    """A run's command needs what an unfinished predecessor writes."""


@dataclass(frozen=True)
class Run:
    space: str
    dataset: str
    method: str
    seed: int
    stage: str

    @property
    def id(self) -> str:
        return f"{self.space}-{self.dataset}-{self.method}-seed{self.seed}-{self.stage}"

    @property
    def kind(self) -> str:
        return NB201 if self.space == NB201 else "sota"

    @property
    def upstream(self) -> Run | None:
        """The run this one continues: a projection's search, an evaluation's projection."""
        up = UPSTREAM.get(self.stage)
        return None if up is None else Run(self.space, self.dataset, self.method, self.seed, up)

    @property
    def script(self) -> Script:
        if self.stage == "eval-imagenet":
            return IMAGENET_SCRIPT
        if self.stage == "eval":
            return EVAL_SCRIPTS[self.dataset]
        return METHOD_SCRIPTS[(self.kind, self.method)][self.stage]


@dataclass(frozen=True)
class Context:
    """Where a study's runs and logs go, and the run flags they all get."""

    study_dir: Path
    run_flags: RunFlags

    @property
    def runs_root(self) -> Path:
        return self.study_dir / "runs"

    def log_path(self, run: Run) -> Path:
        return self.study_dir / "logs" / f"{run.id}.log"

    def attempt_path(self, run: Run) -> Path:
        return self.study_dir / "attempts" / f"{run.id}.json"


def plan_runs(spaces: tuple[str, ...], datasets: tuple[str, ...], methods: tuple[str, ...],
              seeds: tuple[int, ...], stages: tuple[str, ...]) -> list[Run]:
    """Every run of the lists, chain by chain (search, projection, evaluation)."""
    runs = []
    for space in spaces:
        kind = NB201 if space == NB201 else "sota"
        for dataset in datasets:
            if dataset not in DATASETS[kind]:
                raise PlanError(f"--dataset {dataset} is not searched in {space} "
                                f"(there: {', '.join(DATASETS[kind])})")
            for method in methods:
                if (kind, method) not in METHOD_SCRIPTS:
                    raise PlanError(f"--method {method} is for the DARTS spaces s1..s5, not {space}")
                for seed in seeds:
                    # NAS-Bench-201 has no evaluation stage: its benchmark query stands in for it.
                    runs += [Run(space, dataset, method, seed, s) for s in stages
                             if not (s in EVAL_STAGES and kind == NB201)]
    return runs


# -- commands ----------------------------------------------------------------------------------

def study_args(run: Run, ctx: Context, arch: str | None, script: bool = True) -> list[str]:
    """The script arguments of a run, before resume flags (not `script`: without the script's
    own flags, what its module parses); `arch` fills an evaluation's --arch."""
    args = ["--seed", str(run.seed)]
    if run.stage != "eval-imagenet":  # ImageNet is its script's only dataset
        args += ["--dataset", run.dataset]
    if run.kind == "sota" and run.stage not in EVAL_STAGES:
        args += ["--space", run.space]
    args += ["--exp_root", str(ctx.runs_root), *run.script.extra]
    if run.stage == "proj":
        search = run.upstream
        args += ["--resume_expid", run_config(search, ctx).name, "--resume_epoch", "-1"]
    elif run.stage in EVAL_STAGES:
        args += ["--arch", arch or f"<genotype_name of {run.upstream.id}>"]
    return args + ctx.run_flags.for_run(run.stage, script_command(run.script.file)[0], script)


def command(run: Run, ctx: Context, arch: str | None = None) -> list[str]:
    return ["bash", str(SCRIPTS_DIR / run.script.file), *study_args(run, ctx, arch)]


def launch_command(run: Run, ctx: Context) -> list[str]:
    """The command to run now: the evaluation's genotype read from its projection, and what
    continues an interrupted or failed run from its folder."""
    arch = None
    if run.stage in EVAL_STAGES:
        arch = genotype_name(run_folder(run.upstream, ctx))
        if arch is None:
            raise NotReady(f"{run.upstream.id} has not registered a genotype")
    folder = run_folder(run, ctx, arch)
    if run.stage == "proj" and folder is not None:
        check_projection(run, ctx)
    return command(run, ctx, arch) + resume_args(run, folder)


def check_projection(run: Run, ctx: Context) -> None:
    """What the projection would refuse at its start for what it writes outside its folder (the
    DARTS space: a genotype name another run holds), refused before it is launched."""
    rc = run_config(run, ctx)
    space = importlib.import_module(rc.module).SEARCH_SPACE
    p = resolve_projection(rc.cfg, space)
    try:
        space.check_projection(p.cfg, p.folder)
    except ConfigError as e:
        raise PlanError(f"{run.id}: {e}") from None


def resume_args(run: Run, folder: Path | None) -> list[str]:
    """A projection continues by itself when its command is rerun. A search or evaluation
    continues from its latest checkpoint (an evaluation's mid-epoch one included); without one,
    its folder is moved aside (the runs' --overwrite) and it starts again."""
    if run.stage == "proj" or folder is None or not folder.exists():
        return []
    resumable = checkpoint_epochs(folder) or partial_path(folder).is_file()
    return ["--resume_epoch", "-1"] if resumable else ["--overwrite"]


# -- folders -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedRun:
    module: str
    cfg: Any            # the run module's typed configuration
    name: str           # a search's folder name (the projection's --resume_expid)


@functools.lru_cache(maxsize=4096)  # a study refreshes every run's folder after each run's end
def run_config(run: Run, ctx: Context, arch: str | None = None) -> ResolvedRun:
    """The configuration the run's module will run with (script defaults, then ours), parsed
    and checked by the module itself."""
    module, defaults = script_command(run.script.file)
    entry = importlib.import_module(module)
    args = study_args(run, ctx, arch, script=False)
    if run.dataset == IMAGEFOLDER and "--data" not in args:  # the scripts' default data/ holds no image folder
        raise PlanError(f"{run.id}: --dataset {IMAGEFOLDER} needs --data DIR, the folder holding train/<class>/ "
                        f"and test/<class>/ (--{run.stage}.data DIR for this stage only)")
    try:
        cfg = entry.config(build_parser(module).parse_args([*defaults, *args]))
    except (FlagError, argparse.ArgumentError, ConfigError) as e:
        raise PlanError(f"{run.id}: {e}") from None
    name = entry.LAYOUT.search_name(cfg) if run.stage == "search" else ""
    return ResolvedRun(module, cfg, name)


def run_folder(run: Run, ctx: Context, arch: str | None = None) -> Path | None:
    """The run's folder, named by the run module itself; None until it can be known (a
    projection's name holds its supernet's epoch, an evaluation's its genotype name)."""
    if run.stage in EVAL_STAGES and arch is None:
        arch = genotype_name(run_folder(run.upstream, ctx))
        if arch is None:
            return None
    rc = run_config(run, ctx, arch)
    entry = importlib.import_module(rc.module)
    if run.stage in EVAL_STAGES:
        return entry.run_folder(rc.cfg, rc.cfg.arch)  # registered names are never genotype literals
    layout = entry.LAYOUT
    if run.stage == "search":
        return layout.space_dir(rc.cfg) / rc.name
    base = layout.space_dir(rc.cfg) / rc.cfg.projection.resume_expid
    if read_result(base).get("status") != "finished":
        return None  # --resume_epoch -1 names the supernet's final epoch only once it is there
    return resolve_projection(rc.cfg, entry.SEARCH_SPACE).folder  # named as the run will name it


def read_result(folder: Path | None) -> dict[str, Any]:
    return {} if folder is None else read_json(folder / "result.json")


def genotype_name(proj_folder: Path | None) -> str | None:
    """The name under which a finished projection registered its genotype."""
    result = read_result(proj_folder)
    return result.get("genotype_name") if result.get("status") == "finished" else None


@functools.cache
def script_command(script: str) -> tuple[str, tuple[str, ...]]:
    """(module, default arguments) of an exp_script, as the script itself states them."""
    out = subprocess.run(["bash", str(SCRIPTS_DIR / script)], capture_output=True, check=True,
                         env={**os.environ, "DARTS_PT_PRINT_COMMAND": "1"}).stdout.decode()
    module, *args = out.split("\0")[:-1]
    return module, tuple(args)
