"""Executors: local processes (one per GPU slot) and Slurm jobs through submitit.

Both start a run only once its predecessor finished (locally: when it ends; on Slurm: with an
`afterok` dependency), never start a finished run again, continue interrupted ones from their
latest checkpoint, and leave failed ones (and what depends on them) alone unless
--retry_failed. A run's output goes to <study>/logs/<run id>.log.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from common.experiment import REPO_ROOT

from .config import SlurmConfig, StudyError
from .flags import EVAL_STAGES
from .manifest import (
    BLOCKED,
    FAILED,
    FINISHED,
    PLANNED,
    RUNNING,
    SUBMITTED,
    Manifest,
    end_attempt,
    refresh,
    relative,
    start_attempt,
    state_counts,
    submit_attempt,
)
from .plan import Context, NotReady, PlanError, Run, command, launch_command, read_result, run_folder

START, WAIT, SKIP, BLOCK = "start", "wait", "skip", "block"
# After Ctrl-C, how long the runs (signalled by the terminal too) get to stop and save on their own.
STOP_ON_THEIR_OWN_S = 20


@dataclass
class Session:
    """One study command at work: its manifest, its runs' context, how it reports."""

    name: str
    ctx: Context
    manifest: Manifest
    retry_failed: bool = False
    slurm_live: dict[str, str] = field(default_factory=dict)   # run id -> state of its Slurm job

    def say(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} [study {self.name}] {message}", flush=True)

    def refresh(self, live: dict[str, str] | None = None) -> None:
        refresh(self.manifest, self.ctx, {**self.slurm_live, **(live or {})})

    def rel(self, path: str | Path | None) -> str:
        return relative(path, self.ctx.study_dir)


def decide(session: Session, run: Run, plan: set[str], settled: set[str], tried: set[str]) -> tuple[str, str]:
    """What to do with a run now: start it, wait for its predecessor, skip it (finished, failed
    without --retry_failed, or on Slurm already), or block it (its predecessor will not finish)."""
    rec = session.manifest[run]
    if rec.state == FINISHED:
        return SKIP, ""
    if rec.state in (RUNNING, SUBMITTED):
        return SKIP, f"{rec.state} ({f'Slurm job {rec.slurm_job_id}' if rec.slurm_job_id else rec.reason})"
    if rec.state == FAILED and (not session.retry_failed or run.id in tried):
        return SKIP, "failed" + ("" if run.id in tried else "; rerun it with --retry_failed")
    up = run.upstream
    if up is None:
        return START, ""
    up_rec = session.manifest.records.get(up.id)
    up_state = up_rec.state if up_rec else PLANNED
    if up_state == FINISHED:
        return START, ""
    if up.id in plan and up.id not in settled:
        return WAIT, ""
    return BLOCK, f"needs {up.id}, which is {up_state}" + ("" if up.id in plan else " (not in this plan)")


def open_log(path: Path, argv: list[str]) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a")
    log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n")
    log.flush()
    return log


def failure_reason(run: Run, ctx: Context, exit_code: int) -> str:
    """The run's own error (result.json), else the last line of its log, else the exit code."""
    error = read_result(run_folder(run, ctx)).get("error")
    if error:
        return str(error)[:300]
    try:
        lines = [line.strip() for line in ctx.log_path(run).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][:300] if lines and not lines[-1].startswith("====") else f"exit code {exit_code}"


def finish_attempt(ctx: Context, run: Run, exit_code: int) -> tuple[bool, str]:
    """Record how a run's process ended: (finished, why not)."""
    finished = read_result(run_folder(run, ctx)).get("status") == FINISHED
    reason = "" if finished else failure_reason(run, ctx, exit_code)
    end_attempt(ctx, run, exit_code if exit_code or finished else 1, reason)  # exit 0, unfinished: failed too
    return finished, reason


# -- local ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    gpu: str | None           # CUDA_VISIBLE_DEVICES of the run, None: leave the environment alone
    device_args: tuple[str, ...]
    label: str


def device_slots(jobs: int | None, user_gpu: str | None) -> list[Slot]:
    """One slot per run at once: each visible GPU in turn (the run sees only it, as GPU 0),
    or the CPU. A user's --gpu is respected as given."""
    gpus = visible_gpus()
    n = jobs or max(len(gpus), 1)
    if user_gpu is not None:
        return [Slot(None, (), f"--gpu {user_gpu}")] * n
    if gpus:
        return [Slot(g, ("--gpu", "0"), f"GPU {g}") for g in (gpus[i % len(gpus)] for i in range(n))]
    return [Slot(None, ("--gpu", "cpu"), "CPU")] * n


def visible_gpus() -> list[str]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(count)]
    return names[:count]


@dataclass
class Launched:
    run: Run
    slot: int
    proc: subprocess.Popen
    log: IO[str]
    started: float


class Stop(Exception):
    """SIGTERM: stop the runs (they resume on the next study command) and exit."""


class LocalExecutor:
    def __init__(self, session: Session, jobs: int | None, lock_fd: int | None = None) -> None:
        self.session, self.lock_fd = session, lock_fd
        self.slots = device_slots(jobs, session.ctx.run_flags.value("--gpu"))
        self.running: dict[str, Launched] = {}

    def run(self, runs: list[Run]) -> int:
        s = self.session
        todo = sum(s.manifest[r].state != FINISHED for r in runs)
        s.say(f"{len(runs)} runs: {len(runs) - todo} finished, {todo} to do; up to {len(self.slots)} at once "
              f"({', '.join(sorted({x.label for x in self.slots}))})")
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        try:
            self._loop(runs)
        except (KeyboardInterrupt, Stop) as e:
            self._stop(told=isinstance(e, KeyboardInterrupt))
            s.say("stopped; the same command resumes the study")
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        return self._summary(runs)

    def _loop(self, runs: list[Run]) -> None:
        s, plan = self.session, {r.id for r in runs}
        settled: set[str] = set()
        tried: set[str] = set()
        while True:
            s.refresh({rid: RUNNING for rid in self.running})
            for run in runs:
                if run.id in self.running or run.id in settled:
                    continue
                action, reason = decide(s, run, plan, settled, tried)
                if action == START and self._free_slot() is not None:
                    tried.add(run.id)
                    self._start(run, self._free_slot())
                elif action == SKIP:
                    settled.add(run.id)
                    if reason:
                        s.say(f"skip     {run.id}: {reason}")
                elif action == BLOCK:
                    settled.add(run.id)
                    s.manifest[run].state, s.manifest[run].reason = BLOCKED, reason
                    s.say(f"blocked  {run.id}: {reason}")
            s.manifest.save()
            if not self.running:
                return
            while not self._reap(settled):
                time.sleep(0.2)

    def _free_slot(self) -> int | None:
        busy = {launched.slot for launched in self.running.values()}
        return next((i for i in range(len(self.slots)) if i not in busy), None)

    def _start(self, run: Run, slot_index: int) -> None:
        s, slot = self.session, self.slots[slot_index]
        rec = s.manifest[run]
        try:
            argv = launch_command(run, s.ctx)
            argv[2:2] = slot.device_args  # right after the script: any --gpu of the user's wins
        except (NotReady, PlanError) as e:
            start_attempt(s.ctx, run, command(run, s.ctx))
            end_attempt(s.ctx, run, 1, str(e))
            rec.state, rec.reason = FAILED, str(e)
            s.say(f"FAILED   {run.id}: {e}")
            return
        folder = run_folder(run, s.ctx)
        resuming = folder is not None and folder.exists()
        start_attempt(s.ctx, run, argv)
        log = open_log(s.ctx.log_path(run), argv)
        env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": slot.gpu} if slot.gpu is not None else {})}
        proc = spawn(argv, log, env, self.lock_fd)
        self.running[run.id] = Launched(run, slot_index, proc, log, time.time())
        rec.state, rec.command = RUNNING, argv
        s.say(f"start    {run.id} on {slot.label}" + (" (continuing its folder)" if resuming else "")
              + f"; log {s.rel(s.ctx.log_path(run))}")

    def _reap(self, settled: set[str]) -> bool:
        """Record the runs that ended; whether any did."""
        s, ended = self.session, False
        for rid, job in list(self.running.items()):
            code = job.proc.poll()
            if code is None:
                continue
            ended = True
            job.log.close()
            del self.running[rid]
            finished, reason = finish_attempt(s.ctx, job.run, code)
            took = time.time() - job.started
            if finished:
                s.say(f"finished {rid} in {took:.1f} s: {s.rel(run_folder(job.run, s.ctx))}")
            else:
                settled.add(rid)
                s.say(f"FAILED   {rid} (exit code {code}) after {took:.1f} s: {reason}; "
                      f"log {s.rel(s.ctx.log_path(job.run))}")
        return ended

    def _stop(self, told: bool = False) -> None:
        """Stop the runs (SIGTERM, then SIGKILL); each resumes from its checkpoint later. After
        Ctrl-C (`told`), which the terminal sends the runs too, they first get a while to stop
        at their next step, saved there: a second signal would stop them at once."""
        s = self.session
        if told:
            _wait(self.running.values(), time.time() + STOP_ON_THEIR_OWN_S)
        for job in self.running.values():
            if job.proc.poll() is None:
                job.proc.terminate()
        deadline = time.time() + 30
        for job in self.running.values():
            try:
                job.proc.wait(max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()
            job.log.close()
            end_attempt(s.ctx, job.run, None, "stopped with the study")
        self.running.clear()
        s.refresh()
        s.manifest.save()

    def _summary(self, runs: list[Run]) -> int:
        s = self.session
        records = [s.manifest[r] for r in runs]
        s.say(f"done: {state_counts(records)}")
        finished = sum(r.state == FINISHED for r in records)
        if finished:
            smoke = any(f.flag == "--fast" for f in s.ctx.run_flags.flags)  # reports leave smoke runs out unless asked
            s.say(f"report: python -m analysis {s.ctx.study_dir}" + (" --include_fast (its runs are --fast smoke runs)"
                                                                     if smoke else ""))
        return 0 if finished == len(runs) else 1


def _wait(jobs: Iterable[Launched], deadline: float) -> None:
    """Until the jobs have ended, or the deadline."""
    for job in jobs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            job.proc.wait(max(deadline - time.time(), 0.01))


def spawn(argv: list[str], log: IO[str], env: dict[str, str], lock_fd: int | None) -> subprocess.Popen:
    """Start a run. It inherits the study lock: if this process dies, no other study process
    starts the run again while it goes on."""
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            pass_fds=() if lock_fd is None else (lock_fd,))


def _raise_stop(signum: int, frame: Any) -> None:
    raise Stop()


# -- Slurm (submitit) -------------------------------------------------------------------------

RDZV_PORT = 29400  # plus the job id modulo 1000: jobs sharing a machine meet at different ports


def node_args(job_id: str, hostnames: list[str], node: int) -> list[str]:
    """The exp_script flags of machine `node` of a job on `hostnames`: torchrun's c10d
    rendezvous on the first machine (exp_scripts/common.sh run_distributed)."""
    endpoint = f"{hostnames[0]}:{RDZV_PORT + int(''.join(c for c in job_id if c.isdigit()) or 0) % 1000}"
    return ["--nnodes", str(len(hostnames)), "--node_rank", str(node), "--rdzv_endpoint", endpoint,
            "--rdzv_id", job_id]


@dataclass(frozen=True)
class RunJob:
    """What a Slurm job runs: one run's exp_script. Its command is made when the job starts, so
    an evaluation reads the genotype its projection (finished by then) registered, and a
    requeued job continues from the run's latest checkpoint. A job of several machines runs one
    task per machine, each the same script with its `node_args`; the first keeps the records."""

    run: Run
    ctx: Context

    def __call__(self) -> str:
        import submitit

        env = submitit.JobEnvironment()
        folder = run_folder(self.run, self.ctx)
        if read_result(folder).get("status") == FINISHED:  # e.g. requeued after the run had finished
            return str(folder)
        argv = launch_command(self.run, self.ctx)
        if env.num_nodes > 1:
            argv += node_args(str(env.job_id), list(env.hostnames), env.node)
            if env.global_rank:  # the other machines train along; the first one's records say how it went
                subprocess.run(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=True)
                return str(folder)
        start_attempt(self.ctx, self.run, argv, env.job_id)
        with open_log(self.ctx.log_path(self.run), argv) as log:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        finished, reason = finish_attempt(self.ctx, self.run, code)
        if not finished:
            raise RuntimeError(f"{self.run.id} failed (exit code {code}): {reason}; "
                               f"log {self.ctx.log_path(self.run)}")
        return str(run_folder(self.run, self.ctx))

    def checkpoint(self) -> Any:
        """At the time limit submitit requeues the job; the run resumes from its checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def slurm_states(manifest: Manifest) -> dict[str, str]:
    """Run id -> submitted (pending) or running, for the runs whose Slurm job is in the queue."""
    ids = {r.slurm_job_id: r.id for r in manifest.records.values() if r.slurm_job_id}
    if not ids or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(["squeue", "--noheader", "--format=%i %T", f"--user={getpass.getuser()}"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        # Without the queue a rerun could submit a run twice: better not to do anything.
        raise StudyError(f"cannot read the Slurm queue (squeue: {e}); try again") from None
    states = {}
    for line in out.splitlines():
        job, _, state = line.strip().partition(" ")
        if job in ids:
            states[ids[job]] = SUBMITTED if state in ("PENDING", "CONFIGURING", "REQUEUED") else RUNNING
    return states


class SlurmExecutor:
    """Submits every run that is to run, at once, chained by `afterok` dependencies. With
    submitit's local or debug cluster (tests) jobs cannot depend on each other, so each job
    waits for its predecessor's job to end instead."""

    def __init__(self, session: Session, config: SlurmConfig, cluster: str = "slurm") -> None:
        self.session, self.config, self.cluster = session, config, cluster
        self.jobs: dict[str, Any] = {}    # run id -> submitit job of this command
        self.outcomes: dict[str, bool] = {}   # local and debug clusters: run id -> its job succeeded

    def run(self, runs: list[Run]) -> int:
        s, plan = self.session, {r.id for r in runs}
        s.refresh()
        executor = self._executor()
        settled: set[str] = set()
        waiting: dict[str, str] = {}      # run id -> job id to depend on
        for run in runs:
            rec = s.manifest[run]
            action, reason = decide(s, run, plan, settled, set())
            if action == SKIP:
                if rec.state in (RUNNING, SUBMITTED):
                    waiting[run.id] = rec.slurm_job_id
                    s.say(f"queued   {run.id}: {reason}")
                else:
                    settled.add(run.id)
                    if reason:
                        s.say(f"skip     {run.id}: {reason}")
                continue
            up = run.upstream
            if action == WAIT and (up.id not in waiting or not self._job_ok(up.id)):
                action, reason = BLOCK, f"needs {up.id}, which was not submitted or failed"
            if action == BLOCK:
                settled.add(run.id)
                rec.state, rec.reason = BLOCKED, reason
                s.say(f"blocked  {run.id}: {reason}")
                continue
            dependency = waiting.get(up.id) if action == WAIT and self.cluster == "slurm" else None
            waiting[run.id] = self._submit(executor, run, dependency)
        s.manifest.save()
        s.say(f"{len(self.jobs)} jobs submitted; follow them with: bash exp_scripts/study.sh "
              f"--name {s.name} --status")
        if self.cluster != "slurm":  # local and debug jobs live as long as this process: see them end
            for run_id in self.jobs:
                self._job_ok(run_id)
            s.refresh()
            s.manifest.save()
        return 1 if any(s.manifest[r].state in (FAILED, BLOCKED) for r in runs) else 0

    def _executor(self) -> Any:
        import submitit

        c = self.config
        executor = submitit.AutoExecutor(folder=self.session.ctx.study_dir / "slurm", cluster=self.cluster,
                                         slurm_max_num_timeout=20)
        executor.update_parameters(
            timeout_min=c.time_min, gpus_per_node=c.gpus_per_job, cpus_per_task=c.cpus_per_job,
            **({"mem_gb": c.mem_gb} if c.mem_gb is not None else {}),
            **({"slurm_partition": c.partition} if c.partition else {}),
            # the job's Python must find this repository's modules to unpickle RunJob
            slurm_setup=[f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"])
        return executor

    def _submit(self, executor: Any, run: Run, dependency: str | None) -> str:
        s = self.session
        extra = {"kill-on-invalid-dep": "yes", **dict(self.config.extra)}
        if dependency:
            extra["dependency"] = f"afterok:{dependency}"
        nodes = self.config.nodes_per_job if run.stage in EVAL_STAGES else 1
        executor.update_parameters(name=run.id, slurm_additional_parameters=extra, nodes=nodes, tasks_per_node=1)
        job = executor.submit(RunJob(run, s.ctx))
        self.jobs[run.id] = job
        submit_attempt(s.ctx, run, str(job.job_id))
        rec = s.manifest[run]
        rec.state, rec.slurm_job_id, rec.command, rec.reason = SUBMITTED, str(job.job_id), command(run, s.ctx), ""
        s.say(f"submit   {run.id}: job {job.job_id}" + (f" after {dependency}" if dependency else ""))
        s.manifest.save()
        return str(job.job_id)

    def _job_ok(self, run_id: str) -> bool:
        """Slurm checks dependencies itself; local and debug jobs are waited for here."""
        job = self.jobs.get(run_id)
        if self.cluster == "slurm" or job is None:
            return True
        if run_id not in self.outcomes:
            try:
                job.result()
                self.session.say(f"finished {run_id}")
                self.outcomes[run_id] = True
            except Exception as e:  # noqa: BLE001 - any failure of the job blocks its dependants
                self.session.say(f"FAILED   {run_id}: {str(e).strip().splitlines()[-1][:300]}")
                self.outcomes[run_id] = False
            self.session.refresh()
        return self.outcomes[run_id]
