"""Spectra-style scheduling over S parallel OCSes (each GPU has one port on each switch).

Kevin Liang, Litao Qiao, Isaac Keslassy, Bill Lin, "Scheduling Parallel Optical Circuit Switches for
AI Training", arXiv:2603.07373 (2026). Three steps, as in the paper; their details here are ours:

1. Decompose the traffic into few weighted permutations. ``decomp="greedy"`` (default): up to
   ``k_mwm`` (8) maximum-weight matchings held until their largest pair drains, then greedy
   sorted-edge matchings (:mod:`netsim.schedule.greedy` with rule ``max`` and ``cleanup``): every pair
   is carried whole by one permutation, about max-degree permutations in all. ``decomp="bvn"``: the
   exact BvN decomposition (least circuit time, many permutations).
2. Schedule: longest-processing-time first, each permutation to the switch with the least load, a
   switch's load being sum over its permutations of (duration + reconfig_s).
3. Equalize: while the most and least loaded switches differ by more than reconfig_s, move
   (gap - reconfig_s) / 2 of the longest permutation on the heaviest switch to the lightest one,
   splitting it in two (each piece pays its own reconfiguration; a piece carries the first bytes of
   each pair, the other the rest), or move it whole if it is short enough; at most 8*S rounds.

``meta["lower_bound_s"]``, the makespan lower bound for S switches, with L the largest line sum
(bytes), D the largest number of nonzero pairs in any row or column, r the line rate, delta the
reconfiguration delay, and all bytes carried on circuits::

    LB = max( (L / r + D * delta) / S,  L / (S * r) + delta,  ceil(D / S) * delta )

(summed over the switches, port i's circuit time is >= L / r and the matchings holding row i's D
pairs are >= D; some switch carries >= L / S of the busiest port's bytes and has >= 1 matching; some
switch has >= ceil(D / S) matchings). 0 for an all-zero matrix.

The returned Schedule lists every switch's matchings one after another (so conservation and the
counts hold over all switches) and ``meta["per_switch"]`` holds one Schedule per switch, in which
``total_time_s`` is that switch's time; the top-level ``total_time_s`` is the makespan, the maximum
over switches (all-stop per switch, switches independent).
"""
from __future__ import annotations

import math

import numpy as np

from netsim.errors import ConfigError

from .base import Schedule, from_arrays, ideal_time_s, line_degree, validate_link, validate_traffic, is_count
from .bvn import bvn
from .greedy import greedy

__all__ = ["spectra", "lower_bound_s", "DECOMPS"]

DECOMPS = ("greedy", "bvn")


def lower_bound_s(traffic: np.ndarray, line_rate: float, reconfig_s: float, s: int) -> float:
    """Makespan lower bound for ``s`` parallel OCSes (see the module docstring)."""
    t = validate_traffic(traffic)
    if not np.any(t > 0):
        return 0.0
    big_l = ideal_time_s(t, 1.0)
    d = line_degree(t)
    return max(
        (big_l / line_rate + d * reconfig_s) / s,
        big_l / (s * line_rate) + reconfig_s,
        math.ceil(d / s) * reconfig_s,
    )


def spectra(
    traffic: np.ndarray,
    line_rate: float,
    reconfig_s: float,
    s: int = 2,
    decomp: str = "greedy",
    k_mwm: int = 8,
    max_rounds: int | None = None,
) -> Schedule:
    """spectra:S[:DECOMP]: Spectra-style (arXiv:2603.07373) decomposition over S parallel OCSes, LPT then equalize."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    if not is_count(s):
        raise ConfigError(f"spectra: S = {s!r}; expected an integer number of parallel OCSes >= 1")
    if decomp not in DECOMPS:
        raise ConfigError(f"spectra: decomposition {decomp!r} is unknown; expected one of {', '.join(DECOMPS)}")
    n = t.shape[0]
    s = int(s)
    base = greedy(t, rate, delta, k=int(k_mwm), rule="max") if decomp == "greedy" else bvn(t, rate, delta)
    # items: [duration_s, perm, served]
    items = [[d, p, sv] for d, p, sv in zip(base.durations_s, base.matchings, base.served_bytes)]
    items.sort(key=lambda it: -it[0])
    switches: list[list[list]] = [[] for _ in range(s)]
    loads = np.zeros(s)
    for it in items:  # LPT
        k = int(np.argmin(loads))
        switches[k].append(it)
        loads[k] += it[0] + delta
    splits = moves = 0
    rounds = max_rounds if max_rounds is not None else 8 * s
    tol = 1e-12 * max(float(loads.max(initial=0.0)), 1e-300)
    for _ in range(rounds):
        hi, lo = int(np.argmax(loads)), int(np.argmin(loads))
        gap = loads[hi] - loads[lo]
        if hi == lo or gap <= delta + tol or not switches[hi]:
            break
        j = max(range(len(switches[hi])), key=lambda x: switches[hi][x][0])
        d, perm, served = switches[hi][j]
        x = (gap - delta) / 2.0
        if d + delta < gap and d <= x:
            switches[hi].pop(j)
            switches[lo].append([d, perm, served])
            loads[hi] -= d + delta
            loads[lo] += d + delta
            moves += 1
            continue
        if x <= 0 or x >= d:
            break
        keep = d - x
        first = np.minimum(served, keep * rate)
        switches[hi][j] = [keep, perm, first]
        switches[lo].append([x, perm.copy(), served - first])
        loads[hi] -= x
        loads[lo] += x + delta
        splits += 1
    per_switch = []
    all_p, all_d, all_s = [], [], []
    for k in range(s):
        its = switches[k]
        p = np.stack([it[1] for it in its]) if its else np.empty((0, n), np.int64)
        d = np.array([it[0] for it in its], dtype=np.float64)
        sv = np.stack([it[2] for it in its]) if its else np.empty((0, n))
        per_switch.append(
            from_arrays(p, d, sv, np.zeros((n, n)), reconfig_s=delta, name=f"spectra:{s}[{k}]",
                        line_rate=rate, traffic=t, meta={"switch": k, "partial": True})
        )
        all_p.append(p)
        all_d.append(d)
        all_s.append(sv)
    name = f"spectra:{s}" + ("" if decomp == "greedy" else f":{decomp}")
    out = from_arrays(
        np.concatenate(all_p), np.concatenate(all_d), np.concatenate(all_s), base.leftover_bytes,
        reconfig_s=delta, name=name, line_rate=rate, traffic=t,
        meta={
            "ocs_count": s,
            "decomp": decomp,
            "decomp_matchings": base.n_matchings,
            "splits": splits,
            "moves": moves,
            "switch_loads_s": [float(x) for x in loads],
            "lower_bound_s": lower_bound_s(t, rate, delta, s),
        },
    )
    out.meta["per_switch"] = per_switch
    out.meta["makespan_s"] = out.total_time_s
    return out
