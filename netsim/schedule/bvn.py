"""bvn[:RULE]: Birkhoff-von Neumann (BvN) decomposition after padding to equal line sums.

Birkhoff (1946) and von Neumann (1953) show that a matrix whose rows and columns all sum to L is a
nonnegative combination of at most N^2 - 2N + 2 permutation matrices (Marcus and Ree, 1959, for the
bound); the decomposition used for input-queued switches by Chang, Chen and Huang (INFOCOM 2000,
"Birkhoff-von Neumann input buffered crossbar switches") and for circuit switches since.

Algorithm here:

1. The traffic (bytes) is made integer (:func:`netsim.schedule.base.quantize`: whole bytes are kept
   as they are, so a byte matrix decomposes exactly; other matrices are scaled to about 2**50 units).
2. Padding: every row and column deficit to the largest line sum L is filled north-west-corner style
   (at most 2N - 1 new entries; padding may land on the diagonal, which just idles that port).
   ``meta["padded_fraction"]`` = padding / (real + padding) = 1 - sum(traffic) / (N * L).
3. Repeatedly: a perfect matching on the support of what remains, chosen by RULE, held for its
   smallest entry, which is subtracted. Each step empties at least one entry, so there are at most
   nnz - N + 1 <= N^2 - 2N + 2 matchings whatever the rule.

The matching rules (``RULE``, default ``bottleneck``, the one with the fewest matchings of the three
on MoE dispatch matrices: ``benchmarks/bench_schedule.py`` prints the counts):

* ``max``: a maximum-weight perfect matching on the support (largest sum of remaining entries;
  scipy's ``linear_sum_assignment``, entries outside the support forbidden by a cost above any
  perfect matching on it). The max-weight choice is the usual strong form of BvN scheduling in
  switch and circuit-scheduling work (e.g. the maximum-weight-matching decompositions compared
  in Solstice, Liu et al., CoNEXT 2015, and in Eclipse, Bojja Venkatakrishnan et al., SIGMETRICS
  2016); on a sum of k edge-disjoint weighted permutations with distinct weights it peels them
  one by one (exactly k matchings).
* ``bottleneck``: a perfect matching whose smallest entry is largest (max-min; binary search over
  the entry values with scipy's Hopcroft-Karp ``maximum_bipartite_matching``): the "greedy
  Birkhoff heuristic" of Dufosse and Ucar, "Notes on Birkhoff-von Neumann decomposition of doubly
  stochastic matrices", Linear Algebra and its Applications 497 (2016), which takes the largest
  coefficient at every step. Also exactly k on the k-permutation sum.
* ``any`` (the naive variant): any perfect matching on the support (augmenting paths by BFS, warm
  started from the previous matching minus the pairs that emptied), the textbook existence proof
  (Birkhoff 1946; the constructive step of Chang, Chen and Huang, INFOCOM 2000). Fast, but it lands
  near the N^2 - 2N + 2 worst case: kept as the named naive baseline, not the BvN to compare with.

A matching's circuits carry real bytes first and padding after; ``served_bytes`` counts only real
bytes. A pair that carries only padding still has its circuit in ``perm`` (the OCS is configured with
the whole permutation) with 0 served bytes; a padding loop i -> i is shown as ``-1``.

Exact, apart from the quantisation of non-integer matrices (relative error ~2**-50 on durations).
No rule minimises the number of matchings (that is NP-hard, Dufosse and Ucar 2016); ``max`` and
``bottleneck`` are greedy heuristics for it, ``any`` is not one.
"""
from __future__ import annotations

import numpy as np

from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from netsim.errors import ConfigError, ScheduleError

from ._kernels import decompose_kernel, pad_kernel
from .base import Schedule, from_arrays, quantize, validate_link, validate_traffic

__all__ = ["bvn", "decompose_padded", "RULES"]

#: BvN matching rules: the strong ones first (``bottleneck`` is the default), ``any`` the naive one
RULES = ("bottleneck", "max", "any")


def _perfect_on(mask: np.ndarray) -> np.ndarray | None:
    """A perfect matching (row -> column) of the bipartite graph ``mask`` (Hopcroft-Karp), or None."""
    n = mask.shape[0]
    rows, cols = np.nonzero(mask)
    if len(cols) < n:
        return None
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    g = csr_matrix((np.ones(len(cols), np.int8), cols, indptr), shape=(n, n))
    perm = maximum_bipartite_matching(g, perm_type="column")
    return None if np.any(perm < 0) else perm.astype(np.int64)


def _bottleneck(M: np.ndarray, hi: int) -> np.ndarray:
    """A perfect matching on ``M > 0`` whose smallest entry is largest.

    The answer is at most ``hi`` (the previous step's bottleneck: entries only shrink) and at most
    every row's and column's largest entry; that cap is tried first (it is the answer in about two
    steps of three on the study's matrices). Below it the answer is usually among the next few
    values, so the search gallops down the distinct values below the cap (the 1, 4, 16...
    largest; the smallest entry always admits a perfect matching, the support does) and then
    bisects the bracket it found: 2.5x faster than bisecting all the values."""
    up = min(int(hi), int(M.max(axis=1).min()), int(M.max(axis=0).min()))
    best = _perfect_on(M >= up)
    if best is not None:
        return best
    cand = M[(M > 0) & (M < up)]
    k = 1
    while True:
        kk = min(k, cand.size)
        top = np.unique(np.partition(cand, cand.size - kk)[cand.size - kk:])[::-1]  # descending
        best = _perfect_on(M >= top[-1])
        if best is not None:
            break
        k *= 4
    lo_i, hi_i = 0, len(top) - 1  # top[hi_i] admits one: find the first (largest) value that does
    while lo_i < hi_i:
        mid = (lo_i + hi_i) // 2
        p = _perfect_on(M >= top[mid])
        if p is None:
            lo_i = mid + 1
        else:
            hi_i, best = mid, p
    return best


def _max_weight(M: np.ndarray) -> np.ndarray:
    """A maximum-weight perfect matching on the support of ``M`` (entries 0 forbidden)."""
    n = M.shape[0]
    top = float(M.max())
    cost = np.where(M > 0, -M / top, float(n + 1))  # any perfect matching on the support costs < 0
    _, cols = linear_sum_assignment(cost)
    return cols.astype(np.int64)


def _decompose_rule(M: np.ndarray, R: np.ndarray, Tf: np.ndarray, scale: float, cap: int,
                    rule: str):
    """Decompose padded integer matrix ``M`` (equal line sums) with a strong matching rule.

    Same bookkeeping as :func:`netsim.schedule._kernels.decompose_kernel`: ``R`` the real part in
    units, ``Tf`` the real bytes (served bytes come from it, real before padding); all three are
    modified in place. One matching solve per step, O(N) numpy work for the rest.
    """
    n = M.shape[0]
    rows = np.arange(n)
    perms, coefs, served = [], [], []
    remaining = int(M[0].sum())
    hi = int(M.max())
    while remaining > 0:
        if len(perms) >= cap:
            return None
        perm = _max_weight(M) if rule == "max" else _bottleneck(M, hi)
        if perm is None:
            return None
        val = M[rows, perm]
        if np.any(val <= 0):
            return None
        c = int(val.min())
        hi = c if rule == "bottleneck" else hi
        r = R[rows, perm]
        s = np.minimum(r, c)
        tf = Tf[rows, perm]
        sv = np.where(s == r, tf, np.minimum(s / scale, tf))
        sv = np.where(s > 0, sv, 0.0)
        Tf[rows, perm] = tf - sv
        R[rows, perm] = r - s
        M[rows, perm] = val - c
        perms.append(perm)
        coefs.append(c)
        served.append(sv)
        remaining -= c
    m = len(perms)
    return (np.array(perms, np.int64).reshape(m, n), np.array(coefs, np.int64),
            np.array(served, np.float64).reshape(m, n), m)


def decompose_padded(
    traffic: np.ndarray,
    line_rate: float,
    reconfig_s: float,
    *,
    name: str,
    prefer_support: bool,
    big_slices: bool,
    rule: str = "any",
) -> Schedule:
    """Pad ``traffic`` to equal line sums and decompose it (shared by ``bvn`` and ``solstice``).

    ``rule``: the matching taken at each step (:data:`RULES`; only ``any`` with ``big_slices``)."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    n = t.shape[0]
    q, scale = quantize(t)
    m_pad, added = pad_kernel(q, prefer_support)
    total_units = int(q.sum()) + int(added)
    padded_fraction = float(added) / total_units if total_units > 0 else 0.0
    nnz = int(np.count_nonzero(m_pad))
    if nnz == 0:
        return from_arrays(
            np.empty((0, n), np.int64), np.empty(0), np.empty((0, n)), np.zeros((n, n)),
            reconfig_s=delta, name=name, line_rate=rate, traffic=t,
            meta={"padded_fraction": 0.0, "line_sum_bytes": 0.0},
        )
    cap = max(1, nnz - n + 1)
    tf = t.copy()
    if rule == "any":
        perms, coefs, served, m, ths = decompose_kernel(m_pad, q.copy(), tf, float(scale), cap,
                                                        big_slices)
    else:
        out = _decompose_rule(m_pad, q.copy(), tf, float(scale), cap, rule)
        perms, coefs, served, m = out if out is not None else (None, None, None, -1)
    if m < 0:  # pragma: no cover - padding guarantees equal line sums
        raise ScheduleError(f"{name}: no perfect matching on the support of the padded matrix (bug)")
    if m < 0.75 * perms.shape[0]:
        perms = perms[:m].copy()
        served = served[:m].copy()
    else:
        perms = perms[:m]
        served = served[:m]
    coefs = coefs[:m]
    perms[perms == np.arange(n)[None, :]] = -1  # padding on the diagonal: port idle
    durations = coefs.astype(np.float64) / scale / rate
    return from_arrays(
        perms, durations, served, tf,
        reconfig_s=delta, name=name, line_rate=rate, traffic=t,
        meta={
            "padded_fraction": padded_fraction,
            "line_sum_bytes": float(coefs.sum()) / scale,
            "quantum_bytes": 1.0 / scale,
            **({"rule": rule} if not big_slices else {}),
            **({"thresholds_bytes": ths[:m].astype(np.float64) / scale} if big_slices else {}),
        },
    )


def bvn(traffic: np.ndarray, line_rate: float, reconfig_s: float, rule: str = "bottleneck") -> Schedule:
    """bvn[:RULE]: exact Birkhoff-von Neumann decomposition after padding; RULE bottleneck (default) | max | any (naive)."""
    if rule not in RULES:
        raise ConfigError(f"bvn: RULE = {rule!r}; expected one of {', '.join(RULES)}")
    return decompose_padded(
        traffic, line_rate, reconfig_s, name=f"bvn:{rule}",
        prefer_support=False, big_slices=False, rule=rule,
    )
