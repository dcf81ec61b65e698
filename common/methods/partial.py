"""`--k`, the partial-channels flag that PC-DARTS and DrNAS share (common/cellops.py `NodeSum`).

One flag for both methods, added once to a parser whichever of them comes first; its default is
the run's method's (PC-DARTS: 4, hard-coded in its authors' model_search.py:31; DrNAS: 1), so it
is None until a method reads it. Another method refuses it (`refuse`).
"""
from __future__ import annotations

import argparse

from ..config import check

FLAG = "--k"
METHODS = ("pcdarts", "drnas")  # the methods whose supernets have partial channels


def add_flag(g: argparse._ArgumentGroup) -> None:
    """Add --k unless a method offered before added it (a parser takes a flag once)."""
    if FLAG in g._option_string_actions:
        return
    g.add_argument(FLAG, type=int, default=None,
                   help="partial channels: each mixed op computes on 1/k of its channels, the rest pass the edge by "
                        "(--method pcdarts: default 4, as its authors' model_search.py:31; --method drnas: default "
                        "1, 201-space/train_search.py's --k; with --stages, the first stage's)")


def value(args: argparse.Namespace, default: int) -> int:
    """The run's k: --k, or the method's `default` when left out."""
    return default if args.k is None else args.k


def refuse(args: argparse.Namespace) -> None:
    """--k given to a method without partial channels."""
    check(args.k is None, "k", args.k, f"partial channels are {' and '.join(METHODS)}'s (--method "
                                       f"{' or --method '.join(METHODS)}); leave it out")
