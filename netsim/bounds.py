"""Congestion-free line-sum bounds: the one home of "bytes over the busiest port".

A GPU cannot send faster than its injection bandwidth nor receive faster than its ejection
bandwidth, whatever the fabric does in between; so a byte matrix ``m[i, j]`` (bytes from i to j)
takes at least ``max_i(sum_j m[i, j] / inj_i, sum_j m[j, i] / ej_i)`` seconds. Every bound netsim
prints (the run's ``ideal_*`` columns, a schedule's ``ideal_time_s``, the circuit fabric's
endpoint bounds) is this expression on some matrix and some port bandwidths.
:func:`cut_sum_time` is its generalisation to cuts: a GPU cannot send to a *set* of GPUs faster
than the capacity of a cut between it and that set (``netsim.reference`` finds the cuts).
"""
from __future__ import annotations

import numpy as np

__all__ = ["line_sum_time", "cut_sum_time"]


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


def cut_sum_time(m: np.ndarray, out_mask: np.ndarray, out_cap: np.ndarray,
                 in_mask: np.ndarray, in_cap: np.ndarray, latency=None) -> float:
    """Seconds for byte matrix ``m`` (n x n, diagonal left out) given per-GPU cut sets.

    ``out_mask[f, i, j]``: GPU j is in the f-th set of destinations of GPU i, and ``out_cap[f, i]``
    (bytes/s) the capacity of a cut from i to that set; ``in_mask`` / ``in_cap`` the same for
    sets of sources into i. Returns ``max over f, i`` of the set's bytes over its cut capacity
    (``sum_j m[i, j] * out_mask[f, i, j] / out_cap[f, i]`` and the same on columns); 0.0 for a
    matrix without bytes. With the single set "all other GPUs" and the GPU's link bandwidth as
    its capacity this is :func:`line_sum_time`. ``latency[i, j]`` (s, optional): the path latency
    from i to j; each set's time then adds the smallest latency of its pairs with bytes (the last
    byte through the cut still has to travel to one of them).
    """
    m = np.asarray(m, dtype=np.float64)
    if m.size == 0:
        return 0.0
    m = m - np.diag(np.diag(m))
    if not m.any():
        return 0.0
    sent = np.einsum("fij,ij->fi", out_mask, m)  # bytes from i into its set f
    recv = np.einsum("fij,ji->fi", in_mask, m)  # bytes into i from its set f
    t_out, t_in = sent / out_cap, recv / in_cap
    if latency is not None:
        lat = np.where(m > 0, np.asarray(latency, dtype=np.float64), np.inf)
        lo = _row_min(out_mask, lat)  # [f, i]: over j
        li = _row_min(in_mask, np.ascontiguousarray(lat.T))  # [f, i]: over sources j
        t_out = np.where(sent > 0, t_out + lo, 0.0)
        t_in = np.where(recv > 0, t_in + li, 0.0)
    return float(max(t_out.max(), t_in.max()))


def _row_min(mask: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """``np.where(mask, lat[None], inf).min(axis=2)`` (per set f and GPU i the smallest
    ``lat[i, j]`` over the set's members j), one set at a time: an n x n temporary instead of
    F x n x n (a GiB at 4,096 GPUs); a minimum is exact, so the same values."""
    out = np.empty(mask.shape[:2])
    for f in range(mask.shape[0]):
        out[f] = np.where(mask[f], lat, np.inf).min(axis=1)
    return out
