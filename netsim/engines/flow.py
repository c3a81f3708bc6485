"""The flow engine: GPU processes (SimPy) over the max-min fair flow model.

Every GPU runs :func:`netsim.devices.gpu.gpu_layer` (or the processes of a
:class:`netsim.devices.hierarchical.LayerHook` for two-phase collectives and mitigations that
move bytes); :class:`netsim.devices.network.Network` advances the numba kernel between the
control plane's events. ``bytes_delivered`` sums the bytes of the flows the kernel completed.
"""
from __future__ import annotations

import numpy as np
import simpy

from netsim import progress
from netsim.devices.gpu import PhaseTimes, direct_groups, start_direct_layer
from netsim.devices.network import Network
from netsim.fabric.flow import FlowFabric
from netsim.layer import LayerResult, PreparedLayer

__all__ = ["simulate"]


def _run(env: simpy.Environment, fab: FlowFabric, total_bytes: float, label: str) -> None:
    """``env.run()``; with a progress line active (:mod:`netsim.progress`), event by event,
    reporting between SimPy events (never inside the kernel; redrawn at most every
    ``min_interval_s`` of the line, the check costs a clock read an event): simulated time,
    the kernel's events and the bytes of the flows finished so far (a fraction of
    ``total_bytes`` when known; the same count as the row's ``bytes_delivered``)."""
    prog = progress.current()
    if prog is None:
        env.run()
        return
    prog.stage(label)

    def detail() -> str:
        n = fab.n
        got = float(fab.bytes[:n][np.isfinite(fab.finish[:n])].sum())
        share = f"{got / total_bytes:.1%} of bytes delivered" if total_bytes > 0 else \
            f"{got:.3g} B delivered"
        return f"simulated {fab.now * 1e6:.6g} us, {fab.events} events, {share}"

    step, tick = env.step, prog.tick
    try:
        while True:
            step()
            tick(detail)
    except simpy.core.EmptySchedule:
        pass


def simulate(layer: PreparedLayer) -> LayerResult:
    n, D, comp = layer.n, layer.dispatch, layer.compute_gpu_s
    n_flows = int(np.count_nonzero(D) - np.count_nonzero(np.diag(D)))
    env = simpy.Environment()
    hook = layer.hook
    # a dispatch-only direct layer adds every flow at time 0: solver "auto" may then refill
    # incrementally between the GPUs' completions (netsim.fabric.flow.FlowFabric)
    fab = FlowFabric(layer.topo, tolerance=layer.spec.model.tolerance, seed=layer.ecmp_seed,
                     capacity=max(16, 2 * n_flows), solver=layer.spec.model.solver,
                     later_arrivals=hook is not None or bool(layer.combine),
                     hash_offset=layer.hash_offset)
    groups = hook.groups(n) if hook is not None else direct_groups(n)
    net = Network(env, fab, groups.total)
    times = PhaseTimes(np.zeros(n), np.zeros(n), np.zeros(n))
    if hook is not None:
        hook.start(env, net, groups, D, comp, times, layer.combine)
    else:
        start_direct_layer(env, net, groups, D, comp, times, layer.combine)
    total = float(D.sum() - np.trace(D)) * (2 if layer.combine else 1) if hook is None else 0.0
    _run(env, fab, total, f"flow engine, {n_flows} flows a phase")
    done = np.isfinite(fab.finish[: fab.n])
    if not done.all() or fab.n_act:
        raise RuntimeError("flow fabric ended with unfinished flows")
    if hook is not None:
        hook.finish(fab)
    end = times.combine_end if layer.combine else times.dispatch_end
    return LayerResult(times.dispatch_end, times.compute_end, float(end.max()),
                       float(fab.bytes[: fab.n][done].sum()), fab.events, fab.recomputes)
