"""One prepared layer through its engine, and the metric columns of the result.

:func:`layer_metrics` picks the engine of the run's fabric model (:mod:`netsim.engines`), runs it
and computes the columns of :data:`netsim.columns.UNITS` that every engine shares: phase times,
the congestion-free reference (:mod:`netsim.reference`), bytes, load statistics; the engine's own
columns (packet counters, circuit figures) are added as it returns them. :func:`diagnosis` adds
the imbalance diagnosis (:mod:`netsim.workload.diagnosis`).
"""
from __future__ import annotations

import time

import numpy as np

from netsim.engines import engine
from netsim.layer import PreparedLayer
from netsim.reference import balanced_dispatch_bound, phase_bounds
from netsim.workload.routing import gini

__all__ = ["layer_metrics"]


def layer_metrics(layer: PreparedLayer) -> dict:
    """Run ``layer`` on its engine; returns the metric columns (SI units)."""
    t0 = time.perf_counter()
    res = engine(layer.spec.fabric)(layer)
    n, D, comp = layer.n, layer.dispatch, layer.compute_gpu_s
    combine = layer.combine
    ideal_d, ideal_c = phase_bounds(layer)
    off = D.copy()
    np.fill_diagonal(off, 0.0)
    n_pairs = int(np.count_nonzero(off))
    tok = layer.expert_tokens
    recv = off.sum(axis=0)
    ideal = ideal_d + float(comp.max()) + ideal_c
    layer_end = res.layer_s
    out = {
        "n_gpus": n,
        "layer_s": float(layer_end),
        "dispatch_s": float(res.dispatch_end.max()),
        "compute_s": float(comp.max()),
        "combine_s": float(max(0.0, layer_end - res.compute_end.max())) if combine else 0.0,
        "ideal_s": ideal,
        "ideal_dispatch_s": ideal_d,
        "ideal_combine_s": ideal_c,
        "ideal_balanced_dispatch_s": balanced_dispatch_bound(layer),
        "ratio_to_ideal": float(layer_end / ideal) if ideal > 0 else 1.0,
        "bytes_total": float(off.sum() * (2 if combine else 1)),
        "bytes_delivered": float(res.bytes_delivered),
        "max_gpu_recv_bytes": float(recv.max()),
        "mean_gpu_recv_bytes": float(recv.mean()),
        "imbalance": float(tok.max() / tok.mean()) if len(tok) and tok.mean() > 0 else 1.0,
        "gini": gini(tok) if len(tok) else 0.0,
        "flows": n_pairs * (2 if combine else 1),
        "events": int(res.events),
        "rate_recomputes": int(res.rate_recomputes),
    }
    out.update(res.extra)
    out["sim_wall_s"] = time.perf_counter() - t0
    return out
