"""Tables and figures of a study: every run under experiments/, compared as the paper does.

    python -m analysis [EXPERIMENTS_DIR] [--out DIR] [--ddof 1] [--include_fast]

writes the report (analysis.report) under DIR, by default EXPERIMENTS_DIR/report.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis",
                                description="Tables (Markdown, CSV) and figures of every run under an "
                                            "experiments folder, compared as in the DARTS-PT paper.")
    p.add_argument("experiments", nargs="?", type=Path, default=REPO_ROOT / "experiments",
                   help="experiments folder (default: <repo>/experiments)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: EXPERIMENTS/report); "
                   "replaced whole on every run")
    p.add_argument("--ddof", type=int, default=0, choices=[0, 1],
                   help="std over runs: 0 population (numpy's default), 1 sample")
    p.add_argument("--include_fast", action="store_true",
                   help="put --fast smoke runs in the tables (in rows of their own); by default they are "
                        "listed apart and left out of every comparison")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # imported here: --help and a bad argument answer without loading torch, the spaces and matplotlib
    from .report import ReportError, build_report

    root = args.experiments
    if not root.is_dir():
        print(f"error: experiments folder {root} does not exist", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else root / "report"
    try:
        summary = build_report(root, out, args.ddof, args.include_fast)
    except (ReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{summary['runs']} runs ({summary['status'] or 'none'}); {len(summary['groups'])} tables, "
          f"{len(summary['figures'])} figures")
    if summary["fast_left_out"]:
        print(f"{summary['fast_left_out']} --fast smoke runs left out of the tables: pass --include_fast to put them "
              f"in, in rows of their own")
    print(f"report: {Path(summary['out']) / 'index.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
