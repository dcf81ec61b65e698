"""torchrun --standalone, ending as the run it starts ends (exp_scripts/common.sh's `--nproc N`).

    python -m common.launch --nproc_per_node 4 -m sota.train --arch darts_pt_s5_0

takes torchrun's arguments and runs them as `torchrun --standalone` does. torchrun reports
any process that exits non-zero as a failure of its own (a traceback, exit code 1); a run
that refuses a bad command has already said why in one line (process 0) and exits with code
2 on every process, so this launcher passes that code on and adds nothing. Other failures (a
process that crashed or was killed) end with one line saying which process failed and how.
"""
from __future__ import annotations

import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

USER_ERROR = 2  # common.entry.exit_code's code for a refused command


def main(argv: list[str] | None = None) -> int:
    args = parse_args(["--standalone", *(sys.argv[1:] if argv is None else argv)])
    # torchrun logs every process that ends non-zero, and each one it stops after that; the
    # report printed below says it once.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as e:
        codes = {f.exitcode for f in e.failures.values()}
        # negative: stopped by a signal, as torchrun stops the others once one has ended
        if USER_ERROR in codes and all(c == USER_ERROR or c < 0 for c in codes):
            return USER_ERROR
        print(f"error: {failure_line(e)}", file=sys.stderr)
        return 1
    return 0


def failure_line(e: ChildFailedError) -> str:
    """torchrun's report of the process that failed first, in one line (what it printed itself
    comes before, e.g. its traceback)."""
    rank, failure = e.get_first_failure()
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return (f"process {rank} ended with {how}, so torchrun stopped the others; the run's last checkpoint is "
            f"kept: continue it with the same command and --resume_epoch -1 (a projection: the same command)")


if __name__ == "__main__":
    raise SystemExit(main())
