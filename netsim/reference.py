"""The congestion-free reference of a prepared layer: ``ideal_dispatch_s`` and ``ideal_combine_s``.

For each phase: the line-sum bound (:func:`netsim.bounds.line_sum_time`) of its byte matrix at
every GPU's injection and ejection bandwidth on the topology, plus the longest routed path's
latency (one circuit hop on a circuit-scheduled run). On a circuit-scheduled two-tier fabric
(endpoints of several GPUs) the bound is the endpoints' circuits plus electrical ports, or NVLink
inside a server, whichever is longer (:meth:`netsim.circuit_fabric.CircuitFabric.ideal_bounds`).
The combine matrix is the transpose of the dispatch matrix; a raw ``traffic`` run has no combine.
"""
from __future__ import annotations

import numpy as np

from netsim.bounds import line_sum_time
from netsim.layer import PreparedLayer

__all__ = ["phase_bounds", "max_path_latency_s"]


def max_path_latency_s(layer: PreparedLayer) -> float:
    """The longest routed path's latency (s) over the layer's GPU pairs with bytes."""
    if layer.spec.fabric == "circuit":
        return float(layer.topo.link_lat.max())  # one circuit hop
    off = layer.dispatch.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    if not len(src):
        return 0.0
    _, _, lat = layer.topo.route(src, dst, layer.ecmp_seed)
    return float(lat.max()) if len(lat) else 0.0


def phase_bounds(layer: PreparedLayer) -> tuple[float, float]:
    """``(ideal_dispatch_s, ideal_combine_s)`` of the layer (combine 0.0 without one)."""
    D = layer.dispatch
    cf = layer.circuits
    if cf is not None and cf.group > 1:
        # servers' circuits (or their ideal switch) plus NVLink inside servers
        d, c = cf.ideal_bounds(D)
        return d, (c if layer.combine else 0.0)
    ft = layer.topo
    inj, ej = ft.gpu_injection_bw(), ft.gpu_ejection_bw()
    lat = max_path_latency_s(layer)
    d = line_sum_time(D, inj, ej) + lat
    c = line_sum_time(D.T, inj, ej) + lat if layer.combine else 0.0
    return d, c
