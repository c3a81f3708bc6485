"""Circuit schedulers for optical circuit switches (OCS): traffic matrix -> matchings and durations.

Every scheduler is a function ``schedule(traffic_bytes, line_rate, reconfig_s, **params) -> Schedule``
(:class:`netsim.schedule.base.Schedule`). :func:`get_scheduler` turns a ``NAME[:ARG[:ARG]]`` string, as
written on the command line (``--scheduler greedy:4:max``), into a callable
``(traffic_bytes, line_rate, reconfig_s) -> Schedule``; :func:`list_schedulers` lists the names.

=============================  ====================================================================
spec                           scheduler
=============================  ====================================================================
``bvn[:RULE]``                 exact Birkhoff-von Neumann after padding to equal line sums; RULE
                               bottleneck (default, max-min matching) | max (max-weight) | any
                               (naive: any perfect matching on the support)
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
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from netsim.errors import ConfigError, UnknownNameError
from netsim.namespec import NameSpec, parse_name_spec

from .base import Schedule, check_schedule, ideal_time_s, validate_link, validate_traffic
from .bvn import RULES as BVN_RULES, bvn
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
    "SchedulerSpec",
    "parse_scheduler",
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
    "bvn": "bvn[:RULE]",
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


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``--scheduler`` value: the scheduler's ``name``, its keyword arguments ``kw`` and
    the canonical spelling ``canon`` (what rows store).

    ``spectra`` without ``S`` and ``hier_bvn`` without ``G`` leave that argument to the fabric
    (:meth:`for_fabric`): S = the topology's port planes, G = its GPUs per server.
    """

    name: str
    kw: tuple = ()
    canon: str = ""

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.kw)

    def for_fabric(self, planes: int, gpus_per_server: int) -> "SchedulerSpec":
        """Fill the arguments a fabric decides (spectra's S, hier_bvn's G)."""
        kw = self.kwargs
        if self.name == "spectra" and kw.get("s") is None:
            kw["s"] = int(planes)
            canon = f"spectra:{kw['s']}" + (f":{kw['decomp']}" if "decomp" in kw else "")
            return SchedulerSpec(self.name, tuple(sorted(kw.items())), canon)
        if self.name == "hier_bvn" and kw.get("gpus_per_server") is None:
            kw["gpus_per_server"] = int(gpus_per_server)
            return SchedulerSpec(self.name, tuple(sorted(kw.items())),
                                 f"hier_bvn:{kw['gpus_per_server']}")
        return self


def _time_arg(ns: NameSpec, what: str, text: str) -> float:
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
            f"scheduler {ns.text!r}: {what} = {text!r}; expected a positive time such as 200us, 1.5ms or 0.01 (seconds)"
        )
    return v


def parse_scheduler(spec: str) -> SchedulerSpec:
    """Parse a ``NAME[:ARG...]`` scheduler spec (:mod:`netsim.namespec`) into a :class:`SchedulerSpec`."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownNameError(f"scheduler {spec!r}: expected a name such as {', '.join(SCHEDULERS)}")
    ns = parse_name_spec(spec, "scheduler")
    name, args = ns.name, ns.args
    if name not in SCHEDULERS:
        raise UnknownNameError(f"scheduler {spec.split(':')[0].strip()!r} is unknown; expected one of {', '.join(SCHEDULERS)}")
    nmax = {"bvn": 1, "solstice": 0, "static": 0, "ideal": 0, "eclipse": 1, "rotor": 1,
            "greedy": 3, "spectra": 2, "hier_bvn": 1}[name]
    ns.at_most(nmax, _SYNTAX[name])
    kw: dict[str, Any] = {}
    canon = name
    if name == "greedy":
        kw["k"] = ns.int_arg(0, "K", default=4)
        kw["rule"] = "max"
        if len(args) > 1:
            try:
                kw["rule"] = check_rule(args[1])
            except ConfigError:
                raise ConfigError(
                    f"scheduler {spec!r}: RULE = {args[1]!r}; expected max, min, opt or qNN (0 <= NN <= 100)"
                ) from None
        kw["fallback"] = ns.choice_arg(2, "FALLBACK", FALLBACKS, default="cleanup")
        canon = f"greedy:{kw['k']}:{kw['rule']}" + ("" if kw["fallback"] == "cleanup" else f":{kw['fallback']}")
    elif name == "bvn":
        kw["rule"] = ns.choice_arg(0, "RULE", BVN_RULES, default="bottleneck")
        canon = f"bvn:{kw['rule']}"
    elif name == "eclipse" and args:
        kw["budget_s"] = _time_arg(ns, "BUDGET", args[0])
        canon = f"eclipse:{args[0]}"
    elif name == "rotor" and args:
        kw["mode"] = ns.choice_arg(0, "MODE", MODES)
        canon = f"rotor:{kw['mode']}"
    elif name == "spectra":
        kw["s"] = ns.int_arg(0, "S", default=None)
        if len(args) > 1:
            kw["decomp"] = ns.choice_arg(1, "DECOMP", DECOMPS)
        canon = "spectra" + (f":{kw['s']}" if kw["s"] is not None else "") + (
            f":{kw['decomp']}" if "decomp" in kw else "")
    elif name == "hier_bvn":
        kw["gpus_per_server"] = ns.int_arg(0, "G", default=None)
        canon = "hier_bvn" + (f":{kw['gpus_per_server']}" if kw["gpus_per_server"] else "")
    return SchedulerSpec(name, tuple(sorted(kw.items())), canon)


def get_scheduler(spec: "str | SchedulerSpec", **params: Any) -> Callable[[np.ndarray, float, float], Schedule]:
    """Callable ``(traffic_bytes, line_rate, reconfig_s) -> Schedule`` for a ``NAME[:ARG[:ARG]]`` spec.

    Keyword ``params`` are passed on to the scheduler (they override the spec's arguments).
    Raises :class:`UnknownNameError` for an unknown name and :class:`ConfigError` for a bad argument.
    """
    ss = spec if isinstance(spec, SchedulerSpec) else parse_scheduler(spec)
    name, canon = ss.name, ss.canon
    kw = {k: v for k, v in ss.kw if v is not None}
    if name == "spectra" and "s" not in kw and "s" not in params:
        kw["s"] = 2  # the function's own default when no fabric decides (plain matrices)
    if name == "hier_bvn" and "gpus_per_server" not in kw and "gpus_per_server" not in params:
        raise ConfigError(f"scheduler {spec!r}: expected hier_bvn:G with G GPUs per server")
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
