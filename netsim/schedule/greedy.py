"""Bounded greedy maximum-weight decomposition: at most K matchings, then a documented fallback.

Each matching is a maximum-weight matching of the bytes that remain (Kuhn-Munkres / Jonker-Volgenant
via :func:`scipy.optimize.linear_sum_assignment`), the greedy "max-weight matching" decomposition
used for hybrid circuit/packet switches since c-Through (Wang et al., SIGCOMM 2010) and Helios
(Farrington et al., SIGCOMM 2010); with a bounded number of matchings it keeps each expert's batch
large and pays few reconfigurations. The matching is held for a duration picked by ``rule``:

* ``max`` (default): the largest entry on the matching, so every pair on it drains completely and each
  (source, destination) pair's bytes arrive in one piece: the largest possible batches, at the price
  of idle circuits (bubbles) beside the biggest pair;
* ``min``: the smallest nonzero entry (no bubble; pairs are cut into slices);
* ``qNN``: the NN-th percentile of the entries on the matching (``q50`` = median);
* ``opt``: the entry value c maximising bytes served / (c / line_rate + reconfig_s), the Eclipse
  utility for this matching (with reconfig_s = 0 it is ``min``).

Fallback for what remains after K matchings (``fallback``):

* ``cleanup`` (default): extra matchings until nothing remains, built cheaply as greedy maximal
  matchings over the remaining pairs sorted by decreasing bytes, each held for its largest pair
  (a greedy bipartite edge colouring: at most 2*degree - 1 matchings; not optimal). Counted in
  ``meta["cleanup_matchings"]`` (also ``fallback_matchings``) apart from ``meta["own_matchings"]``.
* ``leftover``: left in ``leftover_bytes`` for an electrical packet network (a hybrid fabric).

``meta["leftover_bytes_before_fallback"]`` is what the K matchings left. Approximate: greedy, so the
K matchings are not the best K-matching schedule (that problem is NP-hard).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from netsim.errors import ConfigError, ScheduleError

from ._kernels import sorted_matchings_kernel
from .base import Schedule, duration_bytes, from_arrays, validate_link, validate_traffic, is_count

__all__ = ["greedy", "cleanup_matchings", "check_rule", "FALLBACKS"]

FALLBACKS = ("cleanup", "leftover")


def check_rule(rule: str) -> str:
    """Return ``rule`` if it is a known duration rule, else raise :class:`ConfigError`."""
    rule = str(rule).strip().lower()
    if rule in ("max", "min", "opt"):
        return rule
    if rule.startswith("q"):
        try:
            q = float(rule[1:])
        except ValueError:
            q = -1.0
        if 0.0 <= q <= 100.0:
            return rule
    raise ConfigError(f"duration rule {rule!r} is unknown; expected max, min, opt or qNN with 0 <= NN <= 100 (e.g. q50)")


def cleanup_matchings(remaining: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matchings that drain ``remaining`` completely: (perms (m, N), cap bytes (m,), served (m, N))."""
    n = remaining.shape[0]
    rows, cols = np.nonzero(remaining > 0)
    vals = remaining[rows, cols]
    order = np.argsort(-vals, kind="stable")
    perms, caps, served, m = sorted_matchings_kernel(
        rows[order].astype(np.int64), cols[order].astype(np.int64), vals[order].astype(np.float64), n
    )
    if m < 0:  # pragma: no cover
        raise ScheduleError("cleanup: greedy edge colouring used more than 2N + 1 matchings (bug)")
    return perms[:m].copy(), caps[:m].copy(), served[:m].copy()



def apply_fallback(rem: np.ndarray, perms: list, caps: list, served: list, fallback: str) -> int:
    """With ``fallback="cleanup"``, append cleanup matchings that serve everything in ``rem``
    (in place: ``rem`` becomes zero) and return how many; with ``"leftover"`` leave it: 0."""
    if fallback != "cleanup" or float(rem.sum()) <= 0:
        return 0
    p2, c2, s2 = cleanup_matchings(rem)
    perms.extend(p2)
    caps.extend(c2.tolist())
    served.extend(s2)
    rem[:] = 0.0
    return int(p2.shape[0])

def max_weight_matchings(
    remaining: np.ndarray, k: int, rule: str, line_rate: float, reconfig_s: float
) -> tuple[list[np.ndarray], list[float], list[np.ndarray]]:
    """Up to ``k`` greedy max-weight matchings of ``remaining`` (modified in place)."""
    n = remaining.shape[0]
    perms: list[np.ndarray] = []
    caps: list[float] = []
    served_l: list[np.ndarray] = []
    for _ in range(k):
        if not np.any(remaining > 0):
            break
        rows, cols = linear_sum_assignment(remaining, maximize=True)
        e = remaining[rows, cols]
        act = e > 0
        rows, cols, e = rows[act], cols[act], e[act]
        c = duration_bytes(e, rule, line_rate, reconfig_s)
        s = np.minimum(e, c)
        perm = np.full(n, -1, dtype=np.int64)
        perm[rows] = cols
        served = np.zeros(n, dtype=np.float64)
        served[rows] = s
        remaining[rows, cols] = e - s  # exactly 0 where the pair drained
        perms.append(perm)
        caps.append(c)
        served_l.append(served)
    return perms, caps, served_l


def greedy(
    traffic: np.ndarray,
    line_rate: float,
    reconfig_s: float,
    k: int = 4,
    rule: str = "max",
    fallback: str = "cleanup",
    *,
    name: str | None = None,
) -> Schedule:
    """greedy:K[:RULE[:FALLBACK]]: at most K max-weight matchings (RULE max|min|opt|qNN), then cleanup or leftover."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    if not is_count(k):
        raise ConfigError(f"greedy: K = {k!r}; expected an integer number of matchings >= 1")
    rule = check_rule(rule)
    if fallback not in FALLBACKS:
        raise ConfigError(f"greedy: fallback {fallback!r} is unknown; expected one of {', '.join(FALLBACKS)}")
    name = name or f"greedy:{int(k)}:{rule}" + ("" if fallback == "cleanup" else f":{fallback}")
    n = t.shape[0]
    rem = t.copy()
    perms, caps, served = max_weight_matchings(rem, int(k), rule, rate, delta)
    own = len(perms)
    before = float(rem.sum())
    n_clean = apply_fallback(rem, perms, caps, served, fallback)
    m = len(perms)
    perm_arr = np.stack(perms) if m else np.empty((0, n), np.int64)
    served_arr = np.stack(served) if m else np.empty((0, n))
    return from_arrays(
        perm_arr, np.asarray(caps, dtype=np.float64) / rate, served_arr, rem,
        reconfig_s=delta, name=name, line_rate=rate, traffic=t,
        meta={
            "k": int(k),
            "rule": rule,
            "fallback": fallback,
            "own_matchings": own,
            "cleanup_matchings": n_clean,
            "fallback_matchings": n_clean,
            "leftover_bytes_before_fallback": before,
        },
    )
