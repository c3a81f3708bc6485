"""Congestion-free line-sum bounds: the one home of "bytes over the busiest port".

A GPU cannot send faster than its injection bandwidth nor receive faster than its ejection
bandwidth, whatever the fabric does in between; so a byte matrix ``m[i, j]`` (bytes from i to j)
takes at least ``max_i(sum_j m[i, j] / inj_i, sum_j m[j, i] / ej_i)`` seconds. Every bound netsim
prints (the run's ``ideal_*`` columns, a schedule's ``ideal_time_s``, the circuit fabric's
endpoint bounds) is this expression on some matrix and some port bandwidths.
"""
from __future__ import annotations

import numpy as np

__all__ = ["line_sum_time"]


def line_sum_time(m: np.ndarray, inj, ej=None, include_diagonal: bool = False) -> float:
    """Seconds for byte matrix ``m`` at port bandwidths ``inj`` (send) and ``ej`` (receive).

    ``inj``/``ej``: bytes/s, a scalar or one value per row/column (``ej`` defaults to ``inj``).
    The diagonal (bytes a GPU keeps) is left out unless ``include_diagonal``. 0.0 for a matrix
    without bytes.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.size == 0:
        return 0.0
    if not include_diagonal:
        m = m - np.diag(np.diag(m))
    if not m.any():
        return 0.0
    ej = inj if ej is None else ej
    return float(max((m.sum(axis=1) / np.asarray(inj, dtype=np.float64)).max(),
                     (m.sum(axis=0) / np.asarray(ej, dtype=np.float64)).max()))
