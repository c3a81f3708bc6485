"""Birkhoff-von Neumann (BvN) decomposition after padding to equal line sums.

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
3. Repeatedly: a perfect matching on the support of what remains (augmenting paths by BFS, warm
   started from the previous matching minus the pairs that emptied: usually one or two augmentations
   per step, not a Hungarian solve), held for its smallest entry, which is subtracted. Each step empties
   at least one entry, so there are at most nnz - N + 1 <= N^2 - 2N + 2 matchings.

A matching's circuits carry real bytes first and padding after; ``served_bytes`` counts only real
bytes. A pair that carries only padding still has its circuit in ``perm`` (the OCS is configured with
the whole permutation) with 0 served bytes; a padding loop i -> i is shown as ``-1``.

Exact, apart from the quantisation of non-integer matrices (relative error ~2**-50 on durations).
The matching chosen at each step is any perfect matching, not one that minimises the number of
matchings (minimising it is NP-hard).
"""
from __future__ import annotations

import numpy as np

from netsim.errors import ScheduleError

from ._kernels import decompose_kernel, pad_kernel
from .base import Schedule, from_arrays, quantize, validate_link, validate_traffic

__all__ = ["bvn", "decompose_padded"]


def decompose_padded(
    traffic: np.ndarray,
    line_rate: float,
    reconfig_s: float,
    *,
    name: str,
    prefer_support: bool,
    big_slices: bool,
) -> Schedule:
    """Pad ``traffic`` to equal line sums and decompose it (shared by ``bvn`` and ``solstice``)."""
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
    perms, coefs, served, m, ths = decompose_kernel(m_pad, q.copy(), tf, float(scale), cap, big_slices)
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
            **({"thresholds_bytes": ths[:m].astype(np.float64) / scale} if big_slices else {}),
        },
    )


def bvn(traffic: np.ndarray, line_rate: float, reconfig_s: float) -> Schedule:
    """bvn: exact Birkhoff-von Neumann decomposition after padding to equal line sums."""
    return decompose_padded(
        traffic, line_rate, reconfig_s, name="bvn", prefer_support=False, big_slices=False
    )
