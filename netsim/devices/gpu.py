"""A GPU running one MoE layer as a SimPy process: dispatch, expert compute, combine.

The GPU sends its tokens' hidden states to the GPUs holding their experts (dispatch), waits
until every token routed to *its* experts has arrived, computes its expert batches one after
another (each batch: fixed overhead + work, from the compute model), then sends the results back
(combine) and finishes when all of its own tokens' results have come home.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from netsim.devices.network import Network


@dataclass
class PhaseTimes:
    """Per-GPU phase end times (s since the layer started)."""

    dispatch_end: np.ndarray
    compute_end: np.ndarray
    combine_end: np.ndarray


def gpu_layer(env: simpy.Environment, g: int, net: Network, dispatch: np.ndarray,
              compute_s: float, times: PhaseTimes, combine: bool = True):
    """Process of GPU ``g``; ``dispatch[i, j]`` bytes from GPU i to j; groups: j (dispatch into
    j) and N + i (combine into i). ``combine=False`` stops after dispatch (raw traffic runs)."""
    n = dispatch.shape[0]
    row = dispatch[g]
    dst = np.flatnonzero(row)
    dst = dst[dst != g]
    net.send(np.full(len(dst), g), dst, row[dst], dst)
    yield net.arrival(g)
    times.dispatch_end[g] = env.now
    if not combine:
        return
    if compute_s > 0:
        yield env.timeout(compute_s)
    times.compute_end[g] = env.now
    col = dispatch[:, g]
    back = np.flatnonzero(col)
    back = back[back != g]
    net.send(np.full(len(back), g), back, col[back], n + back)
    yield net.arrival(n + g)
    times.combine_end[g] = env.now
