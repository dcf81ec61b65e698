"""Progress lines of the long loops: when to print one, and how fast the run goes.

A training epoch prints a line every --report_freq steps, at its last step, and whenever
--report_secs seconds have passed since its last line, so a slow epoch still says how it
is doing. Each line ends with the speed and the time left:

    train 120/391 loss 1.2345 acc 55.10 | 2.31 steps/s, epoch ETA 1m57s, run ETA 3h02m

Looking at the clock costs nothing; reading the loss and accuracy is a device sync, so the
loops read them only when `due` says a line is to be printed. The clock is injectable:
tests drive it by hand.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .config import RunConfig
from .experiment import LOGGER

log = logging.getLogger(LOGGER)

Clock = Callable[[], float]


def duration(seconds: float) -> str:
    """A short human duration: 42s, 3m05s, 2h07m."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def time_left(elapsed: float, done: float, total: float) -> str:
    """The time the rest of `total` units takes at the pace of the `done` ones, or '?'."""
    return duration(elapsed * (total - done) / done) if done > 0 else "?"


class Progress:
    """A run of `epochs` epochs, of which the first `start` were done before this process
    (a resumed run; a fraction when it resumed mid-epoch): the run ETA extrapolates the pace of
    this process's epochs, evaluation and scoring passes included."""

    def __init__(self, epochs: int, start: float = 0, *, every_steps: int = 50, every_s: float = 30.0,
                 clock: Clock = time.monotonic) -> None:
        self.epochs, self.start = epochs, start
        self.every_steps, self.every_s, self.clock = every_steps, every_s, clock
        self.started = clock()

    def epoch(self, epoch: int, steps: int, first: int = 0) -> EpochProgress:
        """The progress of epoch `epoch`, whose steps before `first` were done before this process."""
        return EpochProgress(self, epoch, steps, first)

    def run_eta(self, epoch: int, fraction: float) -> str:
        """Time left in the run, `fraction` of epoch `epoch` being done."""
        return time_left(self.clock() - self.started, epoch - self.start + fraction, self.epochs - self.start)


class EpochProgress:
    """The training steps of one epoch."""

    def __init__(self, run: Progress, epoch: int, steps: int, first: int = 0) -> None:
        self.run, self.epoch, self.steps, self.first = run, epoch, steps, first
        self.started = self.last = run.clock()

    def due(self, step: int) -> bool:
        """Whether step `step` (0-based) prints a line: every --report_freq steps, the last
        step, and any step --report_secs seconds after the previous line (0: never by time)."""
        run = self.run
        return (step % run.every_steps == 0 or step == self.steps - 1
                or 0 < run.every_s <= run.clock() - self.last)

    def log(self, step: int, text: str) -> None:
        """Log `train step/steps text | speed and ETAs` for step `step` (0-based) just done."""
        now = self.last = self.run.clock()
        elapsed, done = now - self.started, step + 1 - self.first  # the pace of this process's steps
        rate = f"{done / elapsed:.2f} steps/s" if elapsed > 0 else "? steps/s"
        log.info("train %03d/%03d %s | %s, epoch ETA %s, run ETA %s", step, self.steps, text, rate,
                 time_left(elapsed, done, self.steps - self.first),
                 self.run.run_eta(self.epoch, (step + 1) / self.steps))


def run_progress(run: RunConfig, epochs: int, start: float = 0, timed: bool = True) -> Progress:
    """The progress of a run of `epochs` epochs from epoch `start`, logged every --report_freq
    steps and (if `timed`) every --report_secs seconds."""
    return Progress(epochs, start, every_steps=run.report_freq, every_s=run.report_secs if timed else 0.0)
