"""The methods that train supernets, by the name `--method` gives them (the contract: common/method.py).

`--unrolled` (AlphaConfig.unrolled) makes a method's architecture step second order where the
method has DARTS' step (DARTS, SDARTS); result.json records it as `unrolled`, and the reports
name such rows "... (2nd order)".
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import SearchConfig, check
from ..method import Method, MethodDef
from ..space import SupernetRequest
from . import drnas, partial, sdarts
from .blank import FixAlpha
from .darts import DARTS
from .darts2 import DARTS2
from .gdas import GDAS_DEF
from .pcdarts import PCDARTS_DEF


def _order(identity: Mapping[str, Any]) -> str:
    return " (2nd order)" if identity.get("unrolled") is True else ""


def _darts(cfg: SearchConfig) -> Method:
    return DARTS2() if cfg.alpha.unrolled else DARTS()


def _sdarts(cfg: SearchConfig) -> Method:
    o = cfg.method_options
    return sdarts.SDARTS(sdarts.PERTURBATIONS[o.perturb_alpha], o.epsilon_alpha, o.perturb_alpha,
                         second_order=cfg.alpha.unrolled)


def _blank_options(args: argparse.Namespace, chosen: bool) -> None:
    check(not (chosen and args.unrolled), "unrolled", True,
          "fix-alpha (--method blank) never trains alpha, so it has no second-order alpha step; leave --unrolled out")


def _sdarts_label(identity: Mapping[str, Any]) -> str:
    return ("SDARTS-ADV" if identity.get("perturb_alpha") == "pgd_linf" else "SDARTS") + _order(identity)


def _sdarts_script(cfg: SearchConfig) -> tuple[str, ...]:
    """SDARTS-ADV runs through SDARTS-RS's scripts, with PGD (as the original's)."""
    pgd = cfg.method_options.perturb_alpha == "pgd_linf"
    return ("sdarts-rs", *(("--perturb_alpha", "pgd_linf") if pgd else ()))


METHODS: dict[str, MethodDef] = {
    "darts": MethodDef("darts", build=_darts, label=lambda identity: "DARTS" + _order(identity),
                       saves={"darts": {}, "darts2": {"unrolled": True}}),
    "blank": MethodDef("blank", build=lambda cfg: FixAlpha(), label=lambda identity: "fix-alpha",
                       options=_blank_options, saves={"blank": {}}),
    "sdarts": MethodDef("sdarts", build=_sdarts, label=_sdarts_label, add_flags=sdarts.add_flags,
                        options=sdarts.options,
                        saves={"sdarts": {}, "sdarts-rs": {"perturb_alpha": "random"},
                               "sdarts-adv": {"perturb_alpha": "pgd_linf"}},
                        script=_sdarts_script),
    "gdas": GDAS_DEF,
    "drnas": MethodDef("drnas", build=drnas.build, label=lambda identity: "DrNAS" + _order(identity),
                       add_flags=drnas.add_flags, options=drnas.options, saves={"drnas": {}},
                       supernet=drnas.supernet, search_run_flags=("k", "stages", "begin", "reg_type", "reg_scale")),
    "pcdarts": PCDARTS_DEF,
}


def build_method(cfg: SearchConfig) -> Method:
    """The Method of a run's configuration."""
    return METHODS[cfg.method].build(cfg)


def supernet_request(cfg: SearchConfig) -> SupernetRequest:
    """The supernet the run's method trains, which its space builds."""
    return METHODS[cfg.method].supernet(cfg)


def search_run_flags(names: Iterable[str]) -> list[str]:
    """The flags of the methods `names` that a projection takes from its search run."""
    return [flag for name in names for flag in METHODS[name].search_run_flags]


def add_method_flags(group: argparse._ArgumentGroup, names: Iterable[str]) -> None:
    """The flags of the methods `names` (those a space offers)."""
    for name in names:
        METHODS[name].add_flags(group)


def method_options(args: argparse.Namespace, names: Iterable[str], method: str) -> Any:
    """The typed options of the run's method `method`, each offered method checking its own
    flags (another method's flags given are refused)."""
    if method not in partial.METHODS and hasattr(args, "k"):
        partial.refuse(args)
    options = None
    for name in names:
        value = METHODS[name].options(args, name == method)
        if name == method:
            options = value
    return options


def report_label(method: str | None, identity: Mapping[str, Any]) -> str:
    """How the reports name the runs of `method` (result.json's: darts, blank-proj, ...) whose
    result.json (or folder name) says `identity`: "DARTS", "SDARTS-ADV+PT", ..."""
    if not method:
        return "unknown"
    base = method.removesuffix("-proj")
    label = METHODS[base].label(identity) if base in METHODS else base
    return label + "+PT" if method.endswith("-proj") else label


def method_of_save(save: str) -> tuple[str, Mapping[str, Any]] | None:
    """The method and identity a run's --save names (the exp_scripts' and studies' names start
    with them: darts-201, sdarts-adv-proj-sota, ...); the longest matching prefix wins."""
    prefixes = [(prefix, name, identity) for name, d in METHODS.items() for prefix, identity in d.saves.items()]
    for prefix, name, identity in sorted(prefixes, key=lambda p: len(p[0]), reverse=True):
        if save.startswith(prefix):
            return name, identity
    return None
