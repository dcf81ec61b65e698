"""python -m study (exp_scripts/study.sh): plan, run, resume, or show a study.

Exit codes: 0 every run of the plan finished (Slurm: submitted), 1 some failed or were
blocked, 2 a bad command or a study another process is running, 130 stopped.
"""
from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys

from .config import StudyConfig, StudyError, parse_config
from .executors import LocalExecutor, Session, SlurmExecutor, slurm_states
from .flags import RunFlags
from .manifest import FINISHED, Manifest, ManifestError, StudyBusy, StudyLock, refresh, status_table
from .plan import Context, NotReady, PlanError, Run, command, launch_command, plan_runs, run_config, script_command


def main(argv: list[str] | None = None, cluster: str = "slurm") -> int:
    """`cluster`: submitit's cluster for --executor slurm ("local" or "debug" in tests)."""
    try:
        cfg = parse_config(argv)
        if cfg.status:
            return show_status(cfg)
        return run_study(cfg, cluster)
    except (StudyError, PlanError, StudyBusy, ManifestError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def show_status(cfg: StudyConfig) -> int:
    """The state of each run of the study, or of the plan the command gives (the study's command
    with --status added: its runs not started yet show as planned). Writes nothing."""
    manifest = Manifest.load(cfg.study_dir)
    if manifest is None:
        raise StudyError(f"no study {cfg.name} in {cfg.study_dir.parent}")
    runs, flags = resolve_plan(cfg, manifest)
    ctx = Context(cfg.study_dir, flags)
    manifest.add(runs, ctx)
    refresh(manifest, ctx, slurm_states(manifest))
    print(f"study {cfg.name}: {cfg.study_dir}")
    print(status_table(manifest, [run.id for run in runs]))
    return 0


def resolve_plan(cfg: StudyConfig, manifest: Manifest | None) -> tuple[list[Run], RunFlags]:
    """The runs this command is about, and the run flags they get. Without lists: the study's
    own runs (with its run flags, unless new ones are given)."""
    if not cfg.planned:
        if manifest is None:
            raise StudyError(f"study {cfg.name} does not exist yet: give --space, --dataset, --method and --seed")
        flags = cfg.run_flags if cfg.run_flags.flags else RunFlags.parse(manifest.run_flags)
        _check_flags(manifest, flags)
        return manifest.runs(), flags
    if manifest is not None:
        _check_flags(manifest, cfg.run_flags)
    runs = plan_runs(cfg.spaces, cfg.datasets, cfg.methods, cfg.seeds, cfg.stages)
    if not runs:
        raise StudyError("the plan has no runs (NAS-Bench-201 has no eval stage)")
    return runs, cfg.run_flags


def _check_flags(manifest: Manifest, flags: RunFlags) -> None:
    """A study's runs keep their run flags, so that its tables compare like with like: new flags
    may only reach runs that are new (--layers for an added DARTS space, --eval.* for added
    evaluations)."""
    old = RunFlags.parse(manifest.run_flags)
    for run in manifest.runs():
        module = script_command(run.script.file)[0]
        before, now = old.for_run(run.stage, module), flags.for_run(run.stage, module)
        if before != now:
            raise StudyError(f"{run.id} runs with the run flags [{shlex.join(before)}], this command would "
                             f"give it [{shlex.join(now)}]: give the study's flags "
                             f"[{shlex.join(manifest.run_flags)}] (plus flags for new runs only), or another --name")


def run_study(cfg: StudyConfig, cluster: str) -> int:
    manifest = Manifest.load(cfg.study_dir)
    runs, flags = resolve_plan(cfg, manifest)
    ctx = Context(cfg.study_dir, flags)
    for run in runs:  # every run's arguments parse (bad values fail here, before anything is written)
        run_config(run, ctx)
    if cfg.dry_run:
        return print_plan(cfg, manifest, runs, ctx)
    if cfg.executor == "slurm":
        check_slurm(cluster)
    with StudyLock(cfg.study_dir) as lock:
        manifest = Manifest.load(cfg.study_dir) or Manifest(cfg.study_dir / "study.json", cfg.name, flags.argv())
        manifest.run_flags = flags.argv()
        manifest.add(runs, ctx)
        session = Session(cfg.name, ctx, manifest, cfg.retry_failed, slurm_states(manifest))
        if cfg.executor == "slurm":
            return SlurmExecutor(session, cfg.slurm, cluster).run(runs)
        return LocalExecutor(session, cfg.jobs, lock.fd).run(runs)


def check_slurm(cluster: str) -> None:
    if importlib.util.find_spec("submitit") is None:
        raise StudyError("--executor slurm needs submitit: pip install 'submitit>=1.5'")
    if cluster == "slurm" and shutil.which("srun") is None:
        raise StudyError("--executor slurm: no Slurm here (srun not found); run this on a Slurm login node")


def print_plan(cfg: StudyConfig, manifest: Manifest | None, runs: list[Run], ctx: Context) -> int:
    """One line per run: id, state, what it waits for, its command. Writes nothing."""
    manifest = manifest or Manifest(cfg.study_dir / "study.json", cfg.name, ctx.run_flags.argv())
    manifest.add(runs, ctx)
    refresh(manifest, ctx, slurm_states(manifest))
    print(f"study {cfg.name}: {cfg.study_dir} ({len(runs)} runs; dry run, nothing written)")
    for run in runs:
        rec = manifest[run]
        refused = ""
        try:
            argv = rec.command if rec.state == FINISHED else launch_command(run, ctx)
        except NotReady:
            argv = command(run, ctx)
        except PlanError as e:  # what its launch would refuse
            argv, refused = command(run, ctx), f"  (refused: {e})"
        print(f"{run.id}  {rec.state}  after {rec.depends_on or '-'}  {shlex.join(argv)}{refused}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
