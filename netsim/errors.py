"""User-facing errors.

Every error a user can cause is a :class:`NetsimError` subclass whose message names the offending
value and what was expected. The CLI prints it on one line and exits with status 2.
"""
from __future__ import annotations


class NetsimError(Exception):
    """Base class of every user-facing netsim error."""


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
