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

from netsim.devices.network import GroupBlocks, Network


@dataclass
class PhaseTimes:
    """Per-GPU phase end times (s since the layer started)."""

    dispatch_end: np.ndarray
    compute_end: np.ndarray
    combine_end: np.ndarray


def direct_groups(n: int) -> GroupBlocks:
    """Completion groups of the direct all-to-all: dispatch into j, combine into i."""
    return GroupBlocks(dispatch=n, combine=n)


def start_direct_layer(env: simpy.Environment, net: Network, groups: GroupBlocks,
                       dispatch: np.ndarray, compute_s: np.ndarray, times: PhaseTimes,
                       combine: bool = True) -> None:
    """Declare every GPU's expected flows and start its :func:`gpu_layer` process."""
    n = dispatch.shape[0]
    off = dispatch.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    net.expect_many(groups.id("dispatch", dst))
    if combine:
        net.expect_many(groups.id("combine", src))
    for g in range(n):
        env.process(gpu_layer(env, g, net, groups, dispatch, float(compute_s[g]), times,
                              combine=combine))


def gpu_layer(env: simpy.Environment, g: int, net: Network, groups: GroupBlocks,
              dispatch: np.ndarray, compute_s: float, times: PhaseTimes, combine: bool = True):
    """Process of GPU ``g``; ``dispatch[i, j]`` bytes from GPU i to j (groups of
    :func:`direct_groups`). ``combine=False`` stops after dispatch (raw traffic runs)."""
    row = dispatch[g]
    dst = np.flatnonzero(row)
    dst = dst[dst != g]
    net.send(np.full(len(dst), g), dst, row[dst], groups.id("dispatch", dst))
    yield net.arrival(groups.id("dispatch", g))
    times.dispatch_end[g] = env.now
    if not combine:
        return
    if compute_s > 0:
        yield env.timeout(compute_s)
    times.compute_end[g] = env.now
    col = dispatch[:, g]
    back = np.flatnonzero(col)
    back = back[back != g]
    net.send(np.full(len(back), g), back, col[back], groups.id("combine", back))
    yield net.arrival(groups.id("combine", g))
    times.combine_end[g] = env.now
