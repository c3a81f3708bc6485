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

__all__ = ["layer_metrics", "phase_columns"]


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
        "serial_ideal_s": ideal,
        "ideal_dispatch_s": ideal_d,
        "ideal_combine_s": ideal_c,
        "ideal_balanced_dispatch_s": balanced_dispatch_bound(layer),
        "ratio_to_serial_ideal": float(layer_end / ideal) if ideal > 0 else 1.0,
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


def phase_columns(setup: PreparedLayer, m: dict, D: np.ndarray, P1, gps: int, per_tok: float,
                  scale: float, hook) -> dict:
    """Per-phase columns of one layer: dispatch and combine bytes (the combine is the dispatch
    times ``scale``, the ratio of the phases' bytes per token), the bytes that cross servers
    (``P1``: the two-phase collective's per-server messages; None: every pair across servers),
    tokens received per GPU (``per_tok`` dispatch bytes a token), the bytes the flows carried per
    phase (``hook``'s when a collective relayed them) and, when ``scale`` != 1, the combine's own
    congestion-free reference and the ``serial_ideal_s`` / ``ratio_to_serial_ideal`` built on it."""
    n = D.shape[0]
    off = np.asarray(D, np.float64).copy()
    np.fill_diagonal(off, 0.0)
    srv = np.arange(n) // gps
    d_bytes = float(off.sum())
    if P1 is not None:
        out_d = float(np.asarray(P1).sum())
    else:
        out_d = float(off[srv[:, None] != srv[None, :]].sum())
    recv = off.sum(axis=0) / per_tok
    out = {
        "dispatch_bytes": d_bytes, "combine_bytes": d_bytes * scale,
        "dispatch_scaleout_bytes": out_d, "combine_scaleout_bytes": out_d * scale,
        "recv_tokens_max": float(recv.max()), "recv_tokens_mean": float(recv.mean()),
        "bytes_total": d_bytes * (1.0 + scale),
    }
    if hook is not None:
        out["dispatch_flow_bytes"] = hook.phase_flow_bytes["dispatch"]
        out["combine_flow_bytes"] = hook.phase_flow_bytes["combine"]
    else:
        out["dispatch_flow_bytes"], out["combine_flow_bytes"] = d_bytes, d_bytes * scale
    if scale != 1.0:  # the combine's own congestion-free reference (its bytes, transposed)
        ref = PreparedLayer(setup.spec, setup.topo, D * scale, setup.compute_gpu_s,
                            setup.expert_tokens)
        ideal_c = phase_bounds(ref)[1]
        ideal = m["ideal_dispatch_s"] + m["compute_s"] + ideal_c
        out.update(ideal_combine_s=ideal_c, serial_ideal_s=ideal,
                   ratio_to_serial_ideal=m["layer_s"] / ideal if ideal > 0 else 1.0)
    return out
