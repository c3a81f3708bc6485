"""The packet engine: the layer on the packet model (:mod:`netsim.fabric.packet`), by passes.

The kernel needs every flow's start time up front, so the layer is found by passes. Pass 1 runs
dispatch alone and gives each GPU's dispatch end, hence its compute end; the next pass runs
dispatch and combine together (combine flows start at their sender's compute end), so combine
packets can delay dispatch packets and move dispatch ends; compute ends are set from those and
the pass repeats until they no longer change (a fixed point: every GPU computes from the moment
its last dispatch byte arrives; usually 2 passes with combine), at most :data:`MAX_PASSES`.
``packet_passes`` in the row counts the combined passes; at the cap, the last pass's dispatch
ends may still differ from the compute starts it used. ``bytes_delivered`` sums the bytes of
the flows whose last packet the kernel delivered.
"""
from __future__ import annotations

import numpy as np

from netsim import progress
from netsim.errors import ConfigError
from netsim.fabric.packet import simulate_packets
from netsim.layer import LayerResult, PreparedLayer

__all__ = ["simulate", "MAX_PASSES"]

MAX_PASSES = 6  # dispatch + combine passes of a packet-model layer


def simulate(layer: PreparedLayer) -> LayerResult:
    spec = layer.spec.model  # netsim.spec.PacketSpec
    ft, n, comp = layer.topo, layer.n, layer.compute_gpu_s
    off = layer.dispatch.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    cfg = spec.config(layer.ecmp_seed)
    b = off[src, dst]
    progress.stage(f"packet engine: dispatch pass, {len(src)} flows, {b.sum():.3g} B"
                   " (one kernel call)")
    r = simulate_packets(ft, src, dst, b, np.zeros(len(src)), cfg)
    d_end = np.zeros(n)
    np.maximum.at(d_end, dst, r.finish_s)
    c_end = d_end + comp
    comb_end = d_end.copy()
    passes = 0
    sizes = b
    if layer.combine:
        k = len(src)
        scale = max(float(c_end.max()), 1e-30)
        sizes = np.concatenate([b, b])
        while True:
            progress.stage(f"packet engine: dispatch + combine pass {passes + 1} of at most"
                           f" {MAX_PASSES}, {2 * k} flows (one kernel call each)")
            r = simulate_packets(ft, np.concatenate([src, dst]), np.concatenate([dst, src]), sizes,
                                 np.concatenate([np.zeros(k), c_end[dst]]), cfg)
            passes += 1
            d_end = np.zeros(n)
            np.maximum.at(d_end, dst, r.finish_s[:k])
            comb_end = c_end.copy()
            np.maximum.at(comb_end, src, r.finish_s[k:])
            c_new = d_end + comp
            if np.abs(c_new - c_end).max() <= 1e-12 * scale or passes == MAX_PASSES:
                break
            c_end = c_new
    if spec.trace_links and r.link_series is not None:
        try:
            r.link_series.to_parquet(spec.trace_links)
        except OSError as exc:
            raise ConfigError(f"trace_links={spec.trace_links!r} is not writable: {exc}") from None
    end = comb_end if layer.combine else d_end
    delivered = float(sizes[np.isfinite(r.finish_s)].sum())
    extra = {"packets": int(r.packets), "packet_hops": int(r.packet_hops),
             "max_queue_bytes": float(r.max_queue_bytes.max()) if len(r.max_queue_bytes) else 0.0,
             "pause_s": float(r.pause_s), "drops": int(r.drops), "packet_passes": passes}
    return LayerResult(d_end, c_end, float(end.max()), delivered, 0, 0, extra)
