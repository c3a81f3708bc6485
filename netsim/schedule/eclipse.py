"""Eclipse-like greedy: each matching and duration maximise bytes served per unit of time.

Shaileshh Bojja Venkatakrishnan, Mohammad Alizadeh, Pramod Viswanath, "Costly Circuits, Submodular
Schedules and Approximate Caratheodory Theorems", ACM SIGMETRICS 2016 (Eclipse).

At each step, for a set of candidate durations alpha (in bytes: alpha / line_rate seconds), the matching
M(alpha) is a maximum-weight matching of min(remaining, alpha) and its utility is
weight(M(alpha)) / (alpha / line_rate + reconfig_s); the best (alpha, M) is scheduled and its bytes
subtracted. It stops when nothing remains, when the next step would exceed ``budget_s`` (schedule
time including reconfigurations), or after ``max_matchings`` steps; what remains then goes to the
fallback (``leftover`` by default when a budget is set, since Eclipse sends it to the packet switch;
``cleanup`` otherwise, the greedy cleanup matchings of :mod:`netsim.schedule.greedy`).

Approximate: the paper searches alpha over all entry values; here the candidates are the largest
remaining entry divided by 2^j, j = 0..n_alpha-1 (default 8), plus the smallest remaining entry,
each needing one linear_sum_assignment (so each step costs n_alpha + 1 Hungarian solves: slow beyond
N ~ 256).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from netsim.errors import ConfigError

from .base import Schedule, from_arrays, validate_link, validate_traffic
from .greedy import FALLBACKS, apply_fallback

__all__ = ["eclipse"]


def eclipse(
    traffic: np.ndarray,
    line_rate: float,
    reconfig_s: float,
    budget_s: float = math.inf,
    n_alpha: int = 8,
    max_matchings: int | None = None,
    fallback: str | None = None,
) -> Schedule:
    """eclipse[:BUDGET]: Eclipse-like (SIGMETRICS 2016): max bytes per (duration + reconfig) each step; optional time budget."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    budget = float(budget_s)
    if not (budget > 0):
        raise ConfigError(f"eclipse: budget_s = {budget_s!r}; expected a positive number of seconds")
    if int(n_alpha) < 1:
        raise ConfigError(f"eclipse: n_alpha = {n_alpha!r}; expected an integer >= 1")
    n = t.shape[0]
    cap_m = int(max_matchings) if max_matchings is not None else 4 * n
    if fallback is None:
        fallback = "leftover" if math.isfinite(budget) else "cleanup"
    if fallback not in FALLBACKS:
        raise ConfigError(f"eclipse: fallback {fallback!r} is unknown; expected one of {', '.join(FALLBACKS)}")
    rem = t.copy()
    perms: list[np.ndarray] = []
    caps: list[float] = []
    served_l: list[np.ndarray] = []
    elapsed = 0.0
    while len(perms) < cap_m:
        pos = rem > 0
        if not pos.any():
            break
        top = float(rem.max())
        cands = {top / 2.0**j for j in range(int(n_alpha))}
        cands.add(float(rem[pos].min()))
        best = None
        for alpha in sorted(cands, reverse=True):
            clipped = np.minimum(rem, alpha)
            rows, cols = linear_sum_assignment(clipped, maximize=True)
            w = float(clipped[rows, cols].sum())
            util = w / (alpha / rate + delta)
            if best is None or util > best[0]:
                best = (util, alpha, rows, cols)
        _, alpha, rows, cols = best
        if elapsed + alpha / rate + delta > budget:
            break
        e = rem[rows, cols]
        act = e > 0
        rows, cols, e = rows[act], cols[act], e[act]
        s = np.minimum(e, alpha)
        perm = np.full(n, -1, dtype=np.int64)
        perm[rows] = cols
        served = np.zeros(n)
        served[rows] = s
        rem[rows, cols] = e - s
        perms.append(perm)
        caps.append(alpha)
        served_l.append(served)
        elapsed += alpha / rate + delta
    own = len(perms)
    before = float(rem.sum())
    n_clean = apply_fallback(rem, perms, caps, served_l, fallback)
    m = len(perms)
    name = "eclipse" if not math.isfinite(budget) else f"eclipse:{budget:g}"
    return from_arrays(
        np.stack(perms) if m else np.empty((0, n), np.int64),
        np.asarray(caps, dtype=np.float64) / rate,
        np.stack(served_l) if m else np.empty((0, n)),
        rem,
        reconfig_s=delta, name=name, line_rate=rate, traffic=t,
        meta={
            "budget_s": budget,
            "fallback": fallback,
            "own_matchings": own,
            "cleanup_matchings": n_clean,
            "fallback_matchings": n_clean,
            "leftover_bytes_before_fallback": before,
        },
    )
