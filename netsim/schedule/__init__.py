"""Circuit schedulers for optical circuit switches (OCS): traffic matrix -> matchings and durations.

Every scheduler is a function ``schedule(traffic_bytes, line_rate, reconfig_s, **params) -> Schedule``
(:class:`netsim.schedule.base.Schedule`). :func:`get_scheduler` turns a ``NAME[:ARG[:ARG]]`` string, as
written on the command line (``--scheduler greedy:4:max``), into a callable
``(traffic_bytes, line_rate, reconfig_s) -> Schedule``; :func:`list_schedulers` lists the names.

=============================  ====================================================================
spec                           scheduler
=============================  ====================================================================
``bvn``                        exact Birkhoff-von Neumann after padding to equal line sums
``greedy:K[:RULE[:FALLBACK]]`` <= K max-weight matchings; RULE max (default) | min | opt | qNN;
                               FALLBACK cleanup (default) | leftover
``solstice``                   Solstice (CoNEXT 2015): stuffing, then big slices first
``eclipse[:BUDGET]``           Eclipse-like (SIGMETRICS 2016); BUDGET e.g. ``200us`` (default none)
``rotor[:MODE]``               RotorNet-style N-1 shift permutations; MODE adaptive | uniform
``static``                     one max-weight matching; the rest is leftover
``ideal``                      congestion-free crossbar bound, no circuits
``spectra:S[:DECOMP]``         S parallel OCSes (arXiv:2603.07373); DECOMP greedy | bvn
``hier_bvn:G``                 hierarchical BvN for servers of G GPUs (arXiv:2602.22756)
=============================  ====================================================================
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np

from netsim.errors import ConfigError, UnknownNameError

from .base import Schedule, check_schedule, ideal_time_s, validate_link, validate_traffic
from .bvn import bvn
from .eclipse import eclipse
from .greedy import FALLBACKS, check_rule, greedy
from .hier_bvn import hier_bvn
from .ideal import ideal
from .rotor import MODES, rotor
from .solstice import solstice
from .spectra import DECOMPS, lower_bound_s, spectra
from .static import static

__all__ = [
    "Schedule",
    "SCHEDULERS",
    "get_scheduler",
    "list_schedulers",
    "validate_traffic",
    "validate_link",
    "check_schedule",
    "ideal_time_s",
    "lower_bound_s",
    "bvn",
    "greedy",
    "solstice",
    "eclipse",
    "rotor",
    "static",
    "ideal",
    "spectra",
    "hier_bvn",
]

SCHEDULERS: dict[str, Callable[..., Schedule]] = {
    "bvn": bvn,
    "greedy": greedy,
    "solstice": solstice,
    "eclipse": eclipse,
    "rotor": rotor,
    "static": static,
    "ideal": ideal,
    "spectra": spectra,
    "hier_bvn": hier_bvn,
}

_SYNTAX = {
    "bvn": "bvn",
    "greedy": "greedy:K[:RULE[:FALLBACK]]",
    "solstice": "solstice",
    "eclipse": "eclipse[:BUDGET]",
    "rotor": "rotor[:MODE]",
    "static": "static",
    "ideal": "ideal",
    "spectra": "spectra:S[:DECOMP]",
    "hier_bvn": "hier_bvn:G",
}

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _int_arg(spec: str, what: str, text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1 or str(v) != text.strip().lstrip("+"):
        raise ConfigError(f"scheduler {spec!r}: {what} = {text!r}; expected a positive integer")
    return v


def _time_arg(spec: str, what: str, text: str) -> float:
    t = text.strip().lower()
    if t in ("inf", "none", ""):
        return math.inf
    m = re.fullmatch(r"([0-9.eE+-]+)\s*(s|ms|us|ns)?", t)
    try:
        v = float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"] if m else float("nan")
    except ValueError:
        v = float("nan")
    if not (v > 0):
        raise ConfigError(
            f"scheduler {spec!r}: {what} = {text!r}; expected a positive time such as 200us, 1.5ms or 0.01 (seconds)"
        )
    return v


def _choice(spec: str, what: str, text: str, choices: tuple[str, ...]) -> str:
    t = text.strip().lower()
    if t not in choices:
        raise ConfigError(f"scheduler {spec!r}: {what} = {text!r}; expected one of {', '.join(choices)}")
    return t


def _parse(spec: str) -> tuple[str, dict[str, Any], str]:
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownNameError(f"scheduler {spec!r}: expected a name such as {', '.join(SCHEDULERS)}")
    parts = [p.strip() for p in spec.strip().split(":")]
    name, args = parts[0].lower(), parts[1:]
    if name not in SCHEDULERS:
        raise UnknownNameError(f"scheduler {parts[0]!r} is unknown; expected one of {', '.join(SCHEDULERS)}")
    nmax = {"bvn": 0, "solstice": 0, "static": 0, "ideal": 0, "eclipse": 1, "rotor": 1,
            "greedy": 3, "spectra": 2, "hier_bvn": 1}[name]
    if len(args) > nmax:
        raise ConfigError(
            f"scheduler {spec!r}: {len(args)} argument(s) given; expected {_SYNTAX[name]}"
        )
    kw: dict[str, Any] = {}
    canon = name
    if name == "greedy":
        kw["k"] = _int_arg(spec, "K", args[0]) if args else 4
        kw["rule"] = "max"
        if len(args) > 1:
            try:
                kw["rule"] = check_rule(args[1])
            except ConfigError:
                raise ConfigError(
                    f"scheduler {spec!r}: RULE = {args[1]!r}; expected max, min, opt or qNN (0 <= NN <= 100)"
                ) from None
        kw["fallback"] = _choice(spec, "FALLBACK", args[2], FALLBACKS) if len(args) > 2 else "cleanup"
        canon = f"greedy:{kw['k']}:{kw['rule']}" + ("" if kw["fallback"] == "cleanup" else f":{kw['fallback']}")
    elif name == "eclipse" and args:
        kw["budget_s"] = _time_arg(spec, "BUDGET", args[0])
        canon = f"eclipse:{args[0]}"
    elif name == "rotor" and args:
        kw["mode"] = _choice(spec, "MODE", args[0], MODES)
        canon = f"rotor:{kw['mode']}"
    elif name == "spectra":
        kw["s"] = _int_arg(spec, "S", args[0]) if args else 2
        if len(args) > 1:
            kw["decomp"] = _choice(spec, "DECOMP", args[1], DECOMPS)
        canon = f"spectra:{kw['s']}" + (f":{kw['decomp']}" if "decomp" in kw else "")
    elif name == "hier_bvn":
        if not args:
            raise ConfigError(f"scheduler {spec!r}: expected hier_bvn:G with G GPUs per server")
        kw["gpus_per_server"] = _int_arg(spec, "G", args[0])
        canon = f"hier_bvn:{kw['gpus_per_server']}"
    return name, kw, canon


def get_scheduler(spec: str, **params: Any) -> Callable[[np.ndarray, float, float], Schedule]:
    """Callable ``(traffic_bytes, line_rate, reconfig_s) -> Schedule`` for a ``NAME[:ARG[:ARG]]`` spec.

    Keyword ``params`` are passed on to the scheduler (they override the spec's arguments).
    Raises :class:`UnknownNameError` for an unknown name and :class:`ConfigError` for a bad argument.
    """
    name, kw, canon = _parse(spec)
    kw.update(params)
    fn = SCHEDULERS[name]

    def run(traffic_bytes: np.ndarray, line_rate: float, reconfig_s: float) -> Schedule:
        sched = fn(traffic_bytes, line_rate, reconfig_s, **kw)
        if not params:
            sched.name = canon
        return sched

    run.__name__ = f"schedule_{name}"
    run.__doc__ = fn.__doc__
    run.spec = canon  # type: ignore[attr-defined]
    return run


def list_schedulers() -> dict[str, str]:
    """Scheduler name -> the first line of its docstring (which starts with its spec syntax)."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in SCHEDULERS.items()}
