"""The flow engine: GPU processes (SimPy) over the max-min fair flow model.

Every GPU runs :func:`netsim.devices.gpu.gpu_layer` (or the processes of a
:class:`netsim.devices.hierarchical.LayerHook` for two-phase collectives and mitigations that
move bytes); :class:`netsim.devices.network.Network` advances the numba kernel between the
control plane's events. ``bytes_delivered`` sums the bytes of the flows the kernel completed.
"""
from __future__ import annotations

import numpy as np
import simpy

from netsim.devices.gpu import PhaseTimes, direct_groups, start_direct_layer
from netsim.devices.network import Network
from netsim.fabric.flow import FlowFabric
from netsim.layer import LayerResult, PreparedLayer

__all__ = ["simulate"]


def simulate(layer: PreparedLayer) -> LayerResult:
    n, D, comp = layer.n, layer.dispatch, layer.compute_gpu_s
    n_flows = int(np.count_nonzero(D) - np.count_nonzero(np.diag(D)))
    env = simpy.Environment()
    fab = FlowFabric(layer.topo, tolerance=layer.spec.model.tolerance, seed=layer.ecmp_seed,
                     capacity=max(16, 2 * n_flows), solver=layer.spec.model.solver)
    hook = layer.hook
    groups = hook.groups(n) if hook is not None else direct_groups(n)
    net = Network(env, fab, groups.total)
    times = PhaseTimes(np.zeros(n), np.zeros(n), np.zeros(n))
    if hook is not None:
        hook.start(env, net, groups, D, comp, times, layer.combine)
    else:
        start_direct_layer(env, net, groups, D, comp, times, layer.combine)
    env.run()
    done = np.isfinite(fab.finish[: fab.n])
    if not done.all() or fab.n_act:
        raise RuntimeError("flow fabric ended with unfinished flows")
    if hook is not None:
        hook.finish(fab)
    end = times.combine_end if layer.combine else times.dispatch_end
    return LayerResult(times.dispatch_end, times.compute_end, float(end.max()),
                       float(fab.bytes[: fab.n][done].sum()), fab.events, fab.recomputes)
