"""User-facing errors.

Every error a user can cause is a :class:`NetsimError` subclass whose message names the offending
value and what was expected. The CLI prints it on one line and exits with status 2.
"""
from __future__ import annotations

import re

# numpy >= 2 scalar reprs: np.int64(1), np.float64(0.5), np.str_('a'), np.True_
_NP_SCALAR = re.compile(r"\bnp\.(?:u?int\d*|float\d*|longdouble|complex\d*|str_|bytes_|bool_?)"
                        r"\(((?:[^()]|\([^()]*\))*)\)")
_NP_BOOL = re.compile(r"\bnp\.(True|False)_\b")


def plain(value):
    """A numpy scalar as the Python value it holds (``np.int64(1)`` -> ``1``); anything else as
    it is. For messages: ``f"{plain(v)!r}"`` reads as the user wrote the number."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def plain_text(text: str) -> str:
    """``text`` with numpy scalar reprs replaced by what they hold (``np.float64(0.5)`` ->
    ``0.5``, ``np.str_('a')`` -> ``'a'``, ``np.True_`` -> ``True``)."""
    if "np." not in text:
        return text
    return _NP_BOOL.sub(r"\1", _NP_SCALAR.sub(r"\1", text))


class NetsimError(Exception):
    """Base class of every user-facing netsim error. A numpy scalar repr in the message (a
    value formatted with ``!r`` straight from an array) is shown as the plain number."""

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (plain_text(args[0]),) + args[1:]
        super().__init__(*args)


class ConfigError(NetsimError, ValueError):
    """A parameter has an unknown name, a wrong type or a value out of range."""


class UnknownNameError(ConfigError):
    """An unknown topology, workload preset, routing source, scheduler, fabric or experiment."""


class TopologyError(NetsimError):
    """A topology fails validation (disconnected, non-positive bandwidth, dangling port...)."""


class TrafficError(NetsimError):
    """A traffic matrix is malformed (NaN, negative entries, wrong shape)."""


class TraceError(NetsimError):
    """A routing trace file is truncated, has wrong columns or out-of-range values."""


class ScheduleError(NetsimError):
    """A circuit schedule cannot be built for the given traffic and parameters."""
