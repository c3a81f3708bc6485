"""Ideal: the congestion-free crossbar, no circuits.

The bound every all-to-all schedule is measured against: on a non-blocking crossbar where each GPU is
limited only by its own injection and ejection bandwidth, the optimal all-to-all takes
max(max row sum, max column sum) / line_rate (a consequence of the Birkhoff-von Neumann theorem with
free reconfiguration; see e.g. Chang, Chen, Huang, INFOCOM 2000).

Two things carry this name, and they differ: this *schedule* is the line-sum bound of one matrix;
a *run* with ``scheduler=ideal`` simulates the layer on the non-blocking switch with the flow
model's max-min sharing (the **max-min crossbar**: above the line-sum bound when flows contend,
and its compute does not overlap the communication), which is neither this bound nor a bound on
an overlapped circuit layer (``overlap_bound_s`` is; docs/ocs_study.md).

Returns a Schedule with no matchings, ``meta["crossbar"] = True`` and ``meta["ideal_s"]``, which is
what ``total_time_s`` reports. The crossbar carries every byte, so ``leftover_bytes`` is 0 (there are
no circuit ``served_bytes`` to add up: conservation is by construction).
"""
from __future__ import annotations

import numpy as np

from .base import Schedule, from_arrays, validate_link, validate_traffic

__all__ = ["ideal"]


def ideal(traffic: np.ndarray, line_rate: float, reconfig_s: float) -> Schedule:
    """ideal: no circuits; as a schedule the line-sum bound (max line sum / line_rate), as a run the max-min crossbar."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    n = t.shape[0]
    return from_arrays(
        np.empty((0, n), np.int64), np.empty(0), np.empty((0, n)), np.zeros((n, n)),
        reconfig_s=delta, name="ideal", line_rate=rate, traffic=t,
        meta={"crossbar": True, "total_bytes": float(t.sum())},
    )
