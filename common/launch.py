"""torchrun, ending as the run it starts ends (exp_scripts/common.sh's `--nproc G`, `--nnodes N`).

    python -m common.launch --nproc_per_node 4 -m sota.train --arch darts_pt_s5_0
    python -m common.launch --nnodes 2 --nproc_per_node 8 --rdzv_endpoint node1:29500 \
        --rdzv_id JOB -m sota.train_imagenet ...            # the same on each of the 2 machines

takes torchrun's arguments and runs them as `torchrun --standalone` does on one machine, and
with the c10d rendezvous at `--rdzv_endpoint` on several (`--node_rank 0` marks the machine that
hosts it, which torchrun otherwise finds by host name). torchrun reports
any process that exits non-zero as a failure of its own (a traceback, exit code 1); a run
that refuses a bad command has already said why in one line (process 0) and exits with code
2 on every process, so this launcher passes that code on and adds nothing. A SIGTERM or SIGINT
(torchrun passes it on to every process; or one that reached some of them) stops the processes
together at their next step, saved (common/runstate.py): process 0 has said how to continue, and
this launcher ends with the signal's code. Other failures (a process that crashed or was
killed) end with one line saying which process failed and how.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from .entry import mark_failed
from .runstate import FOLDER_NOTE_ENV
from .threads import USER_OMP_ENV

USER_ERROR = 2  # common.entry.exit_code's code for a refused command


def torchrun_argv(argv: list[str]) -> list[str]:
    """torchrun's arguments: standalone on one machine, the c10d rendezvous on several."""
    if not any(a.split("=")[0] == "--rdzv_endpoint" for a in argv):
        return ["--standalone", *argv]
    rendezvous, rest = ["--rdzv_backend", "c10d"], list(argv)
    if "--node_rank" in rest[:-1]:  # the rendezvous store's host; c10d numbers the machines itself
        i = rest.index("--node_rank")
        rendezvous += ["--rdzv_conf", f"is_host={str(rest[i + 1] == '0').lower()}"]
        del rest[i:i + 2]
    return [*rendezvous, *rest]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(torchrun_argv(sys.argv[1:] if argv is None else argv))
    os.environ[USER_OMP_ENV] = os.environ.get("OMP_NUM_THREADS", "")  # before torchrun sets its own
    # torchrun logs every process that ends non-zero, and each one it stops after that; the
    # report printed below says it once.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="darts-pt-launch-") as tmp:
        note = Path(tmp) / "folder"
        os.environ[FOLDER_NOTE_ENV] = str(note)  # the processes torchrun starts inherit it
        try:
            run(args)
        except SignalException as e:  # torchrun passed the signal on; process 0 said where the run stopped
            return 128 + int(e.sigval)
        except ChildFailedError as e:
            codes = {f.exitcode for f in e.failures.values()}
            # negative: stopped by a signal, as torchrun stops the others once one has ended
            if USER_ERROR in codes and all(c == USER_ERROR or c < 0 for c in codes):
                return USER_ERROR
            if all(map(_interrupted, codes)):  # a signal stopped them all (process 0 said where)
                code = e.get_first_failure()[1].exitcode
                return 128 - code if code < 0 else code
            line = failure_line(e)
            if note.exists() and not _interrupted_first(e):
                mark_failed(Path(note.read_text()), line)  # process 0 only saw torchrun's SIGTERM
            print(f"error: {line}", file=sys.stderr)
            return 1
    return 0


def _interrupted_first(e: ChildFailedError) -> bool:
    """Process 0 ended first, stopped by SIGTERM or SIGINT (it said `interrupted` itself)."""
    rank, failure = e.get_first_failure()
    return rank == 0 and _interrupted(failure.exitcode)


def _interrupted(code: int) -> bool:
    """An exit code of a process SIGTERM or SIGINT stopped (killed by it, or ending on it)."""
    stops = {int(s) for s in (signal.SIGTERM, signal.SIGINT)}
    return -code in stops or code - 128 in stops


def failure_line(e: ChildFailedError) -> str:
    """torchrun's report of the process that failed first, in one line (what it printed itself
    comes before, e.g. its traceback)."""
    rank, failure = e.get_first_failure()
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return (f"process {rank} ended with {how}, so torchrun stopped the others; the run's last checkpoint is "
            f"kept: continue it with the same command and --resume_epoch -1 (a projection: the same command)")


if __name__ == "__main__":
    raise SystemExit(main())
