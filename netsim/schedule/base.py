"""The :class:`Schedule` every circuit scheduler returns, and the helpers they share.

A schedule is a sequence of matchings of an optical circuit switch (OCS). Matching ``k`` is an int64
array ``perm`` of length N: ``perm[i]`` is the destination port that source ``i`` is connected to,
or ``-1`` when port ``i`` sends nothing in that slot. It is held for ``durations_s[k]`` seconds, and a
reconfiguration of ``reconfig_s`` seconds is charged before each matching (the all-stop model:
``total_time_s = sum(durations_s) + n_matchings * reconfig_s``). ``served_bytes[k][i]`` is what source
``i`` actually sends to ``perm[i]`` in that slot; it never exceeds ``line_rate * durations_s[k]`` nor
what was left of the pair. Bytes that the matchings do not carry are in ``leftover_bytes``.

Conservation, which every scheduler keeps and :func:`check_schedule` verifies::

    sum_k served_bytes[k][i] (at pair i -> perm_k[i])  +  leftover_bytes[i, j]  ==  traffic[i, j]

Exceptions: ``ideal`` (no circuits, ``meta["crossbar"] = True``: the crossbar carries every byte) and
``hier_bvn`` (circuits carry bytes relayed inside a server; conservation holds per server pair).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netsim.bounds import line_sum_time
from netsim.errors import ConfigError, ScheduleError, TrafficError
from netsim.traffic import check_matrix

__all__ = [
    "Schedule",
    "validate_traffic",
    "validate_link",
    "ideal_time_s",
    "check_schedule",
]


@dataclass
class Schedule:
    """A sequence of OCS matchings with their durations, the bytes they carry and what is left."""

    matchings: list[np.ndarray]
    durations_s: list[float]
    reconfig_s: float
    served_bytes: list[np.ndarray]
    leftover_bytes: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_matchings(self) -> int:
        """Number of matchings, cleanup matchings included (see ``meta`` for the split)."""
        return len(self.matchings)

    @property
    def n_ports(self) -> int:
        return int(self.leftover_bytes.shape[0])

    @property
    def circuit_time_s(self) -> float:
        """Sum of the matchings' durations, without reconfiguration."""
        return float(math.fsum(self.durations_s))

    @property
    def total_time_s(self) -> float:
        """Time to run the whole schedule, all-stop.

        ``sum(durations) + n_matchings * reconfig_s`` for one OCS; the crossbar bound ``ideal_s`` for
        ``ideal`` (``meta["crossbar"]``); the makespan, the largest switch's total, for parallel OCSes
        (``meta["per_switch"]``). Leftover bytes (a hybrid's packet network) are not counted here.
        """
        if self.meta.get("crossbar"):
            return float(self.meta["ideal_s"])
        per_switch = self.meta.get("per_switch")
        if per_switch is not None:
            return max((s.total_time_s for s in per_switch), default=0.0)
        return self.circuit_time_s + self.n_matchings * float(self.reconfig_s)

    @property
    def reconfig_total_s(self) -> float:
        """Reconfiguration time charged (per switch for parallel OCSes: the makespan switch's)."""
        per_switch = self.meta.get("per_switch")
        if per_switch is not None:
            if not per_switch:
                return 0.0
            worst = max(per_switch, key=lambda s: s.total_time_s)
            return worst.reconfig_total_s
        return self.n_matchings * float(self.reconfig_s)

    @property
    def bubble_fraction(self) -> float:
        """Circuit time carrying no data over circuit time.

        Circuit time counts every one of the N ports for the duration of every matching (an idle port,
        ``perm[i] == -1``, is a bubble too): ``1 - sum(served) / (line_rate * N * sum(durations))``.
        0 for ``ideal`` and for an empty schedule.
        """
        if self.meta.get("crossbar"):
            return 0.0
        rate = float(self.meta.get("line_rate", 0.0))
        port_time = self.n_ports * self.circuit_time_s
        if rate <= 0 or port_time <= 0:
            return 0.0
        carried = float(sum(float(s.sum()) for s in self.served_bytes)) / rate
        return float(min(1.0, max(0.0, 1.0 - carried / port_time)))

    def served_matrix(self) -> np.ndarray:
        """N x N bytes carried by the circuits, summed over the matchings."""
        n = self.n_ports
        out = np.zeros((n, n), dtype=np.float64)
        for perm, served in zip(self.matchings, self.served_bytes):
            act = perm >= 0
            np.add.at(out, (np.nonzero(act)[0], perm[act]), served[act])
        return out

    def perm_array(self) -> np.ndarray:
        """The matchings stacked, shape (n_matchings, N)."""
        if not self.matchings:
            return np.empty((0, self.n_ports), dtype=np.int64)
        return np.stack(self.matchings)

    def summary(self) -> dict[str, Any]:
        """Scalar figures for a results row."""
        out = {
            "scheduler": self.name,
            "n_matchings": self.n_matchings,
            "circuit_time_s": self.circuit_time_s,
            "total_time_s": self.total_time_s,
            "reconfig_total_s": self.reconfig_total_s,
            "bubble_fraction": self.bubble_fraction,
            "leftover_bytes": float(self.leftover_bytes.sum()),
        }
        for k, v in self.meta.items():
            if isinstance(v, (int, float, str, bool, np.integer, np.floating)) and k not in out:
                out[k] = v.item() if isinstance(v, np.generic) else v
        return out


# ------------------------------------------------------------------------------------------------
# validation


def validate_traffic(traffic: Any, name: str = "traffic") -> np.ndarray:
    """Check a traffic matrix and return it as a fresh float64 array with a zero diagonal.

    Raises :class:`TrafficError` for a non-square or empty shape, NaN or infinite entries, or negative
    entries, naming the first offending entry (:func:`netsim.traffic.check_matrix`). The diagonal (a
    GPU's traffic to itself, which stays local) is ignored: it is set to zero in the returned copy.
    """
    return check_matrix(traffic, what=name, zero_diagonal=True)


def is_count(value: Any) -> bool:
    """Whether ``value`` is a positive integer (not a bool): a number of matchings, switches..."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def validate_link(line_rate: Any, reconfig_s: Any) -> tuple[float, float]:
    """Check ``line_rate`` (bytes/s, > 0) and ``reconfig_s`` (s, >= 0); raise :class:`ConfigError`."""
    try:
        rate = float(line_rate)
    except (TypeError, ValueError):
        raise ConfigError(f"line_rate = {line_rate!r}; expected a positive number of bytes/s") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"line_rate = {line_rate!r}; expected a positive finite number of bytes/s")
    try:
        delta = float(reconfig_s)
    except (TypeError, ValueError):
        raise ConfigError(f"reconfig_s = {reconfig_s!r}; expected a number of seconds >= 0") from None
    if not math.isfinite(delta) or delta < 0:
        raise ConfigError(f"reconfig_s = {reconfig_s!r}; expected a finite number of seconds >= 0")
    return rate, delta


def ideal_time_s(traffic: np.ndarray, line_rate: float) -> float:
    """Congestion-free crossbar bound: max(max row sum, max column sum) / line_rate."""
    return line_sum_time(traffic, float(line_rate), include_diagonal=True)


def line_degree(traffic: np.ndarray) -> int:
    """Largest number of nonzero entries in any row or column (a lower bound on the matchings)."""
    nz = traffic > 0
    return int(max(nz.sum(axis=1).max(initial=0), nz.sum(axis=0).max(initial=0)))


# ------------------------------------------------------------------------------------------------
# construction helpers


def from_arrays(
    perms: np.ndarray,
    durations_s: np.ndarray,
    served: np.ndarray,
    leftover: np.ndarray,
    *,
    reconfig_s: float,
    name: str,
    line_rate: float,
    traffic: np.ndarray,
    meta: dict[str, Any] | None = None,
) -> Schedule:
    """Build a Schedule from stacked (m, N) arrays; the lists hold row views (no copies)."""
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    served = np.ascontiguousarray(served, dtype=np.float64)
    m = perms.shape[0]
    full_meta: dict[str, Any] = {
        "line_rate": float(line_rate),
        "ideal_s": ideal_time_s(traffic, line_rate),
        "n_matchings": int(m),
    }
    if meta:
        full_meta.update(meta)
    return Schedule(
        matchings=[perms[k] for k in range(m)],
        durations_s=[float(x) for x in np.asarray(durations_s, dtype=np.float64)],
        reconfig_s=float(reconfig_s),
        served_bytes=[served[k] for k in range(m)],
        leftover_bytes=np.asarray(leftover, dtype=np.float64),
        name=name,
        meta=full_meta,
    )


def quantize(traffic: np.ndarray) -> tuple[np.ndarray, float]:
    """Integer version of a traffic matrix for exact decompositions: ``(Q, scale)``, Q ~ traffic*scale.

    A matrix of whole bytes whose line sums stay below 2**52 is kept as is (scale 1), so its
    decomposition is exact. Otherwise scale is a power of two giving the largest line sum about 2**50
    units; a positive entry never rounds to 0 units (it becomes 1).
    """
    lmax = float(max(traffic.sum(axis=1).max(), traffic.sum(axis=0).max())) if traffic.size else 0.0
    if lmax <= 0:
        return np.zeros(traffic.shape, dtype=np.int64), 1.0
    if lmax < 2.0**52 and np.all(traffic == np.floor(traffic)):
        return traffic.astype(np.int64), 1.0
    scale = 2.0 ** math.floor(math.log2(2.0**50 / lmax))
    q = np.rint(traffic * scale).astype(np.int64)
    q[(q == 0) & (traffic > 0)] = 1
    return q, scale


def duration_bytes(entries: np.ndarray, rule: str, line_rate: float, reconfig_s: float) -> float:
    """How many bytes' worth of time to hold a matching whose active pairs have ``entries`` bytes.

    ``max``: the largest entry (every pair drains); ``min``: the smallest; ``qNN``: the NN-th
    percentile; ``opt``: the breakpoint c maximising sum(min(e, c)) / (c / line_rate + reconfig_s).
    """
    e = np.sort(entries[entries > 0])
    if e.size == 0:
        return 0.0
    if rule == "max":
        return float(e[-1])
    if rule == "min":
        return float(e[0])
    if rule == "opt":
        n = e.size
        prefix = np.concatenate(([0.0], np.cumsum(e)[:-1]))
        served = prefix + (n - np.arange(n)) * e
        ratio = served / (e / line_rate + reconfig_s)
        return float(e[int(np.argmax(ratio))])
    if rule.startswith("q"):
        q = float(rule[1:]) / 100.0
        return float(np.quantile(e, q, method="higher"))
    raise ConfigError(f"duration rule {rule!r} is unknown; expected max, min, opt or qNN (0 <= NN <= 100)")


def check_schedule(sched: Schedule, traffic: np.ndarray, line_rate: float | None = None, rtol: float = 1e-6) -> None:
    """Raise :class:`ScheduleError` unless ``sched`` is a valid schedule of ``traffic``.

    Checks: each matching a partial permutation (no destination twice, no i -> i, values in
    [-1, N)); served bytes >= 0, zero on idle ports, within ``line_rate * duration``; conservation per
    pair within ``rtol`` of the largest line sum (skipped for ``crossbar``, ``relayed`` and ``partial``
    schedules: the crossbar, relayed bytes, one switch of several).
    """
    t = validate_traffic(traffic)
    n = t.shape[0]
    rate = float(line_rate if line_rate is not None else sched.meta.get("line_rate", 0.0))
    scale = max(float(t.sum(axis=1).max(initial=0.0)), float(t.sum(axis=0).max(initial=0.0)), 1e-300)
    if len(sched.matchings) != len(sched.durations_s) or len(sched.matchings) != len(sched.served_bytes):
        raise ScheduleError(f"{sched.name}: matchings, durations_s and served_bytes differ in length")
    for k, (perm, dur, served) in enumerate(zip(sched.matchings, sched.durations_s, sched.served_bytes)):
        if perm.shape != (n,) or served.shape != (n,):
            raise ScheduleError(f"{sched.name}: matching {k} has shape {perm.shape}; expected ({n},)")
        if dur < 0 or not math.isfinite(dur):
            raise ScheduleError(f"{sched.name}: matching {k} has duration {dur!r}; expected >= 0")
        act = perm >= 0
        if np.any(perm < -1) or np.any(perm >= n):
            raise ScheduleError(f"{sched.name}: matching {k} has a port outside [-1, {n})")
        dst = perm[act]
        if np.unique(dst).size != dst.size:
            raise ScheduleError(f"{sched.name}: matching {k} uses a destination twice")
        if np.any(dst == np.nonzero(act)[0]):
            raise ScheduleError(f"{sched.name}: matching {k} connects a port to itself")
        if np.any(served < 0) or np.any(served[~act] != 0):
            raise ScheduleError(f"{sched.name}: matching {k} serves negative bytes or bytes on an idle port")
        if rate > 0 and np.any(served > rate * dur * (1 + 1e-9) + rtol * 1e-3 * scale):
            raise ScheduleError(f"{sched.name}: matching {k} serves more than line_rate * duration")
    if sched.meta.get("crossbar") or sched.meta.get("relayed") or sched.meta.get("partial"):
        return
    total = sched.served_matrix() + sched.leftover_bytes
    err = np.abs(total - t)
    if np.any(err > rtol * scale):
        i, j = np.unravel_index(int(np.argmax(err)), err.shape)
        raise ScheduleError(
            f"{sched.name}: pair ({i}, {j}) gets {float(total[i, j])!r} bytes (served + leftover); "
            f"traffic is {float(t[i, j])!r}"
        )
    if np.any(sched.leftover_bytes < -rtol * scale):
        raise ScheduleError(f"{sched.name}: negative leftover bytes")
