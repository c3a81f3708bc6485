"""Imbalance diagnosis of one MoE layer: how skewed the load is, and where the dispatch time goes.

Load statistics (token counts, one value per layer and iteration):

* ``imbalance`` (= per-expert max/mean), ``expert_cv`` (coefficient of variation, std/mean) and
  ``gini`` of the per-*expert* token counts (logical experts, summed over replicas and GPUs): a
  property of the routing alone, which no placement changes;
* ``rank_max_mean``: max/mean over GPUs (EP ranks) of the token-expert pairs each GPU computes
  (what expert placement, replication and relayout change);
* ``server_max_mean``: the same summed per server (``gpus_per_server`` of the topology);
* ``compute_max_mean``: max/mean of the per-GPU expert compute time.

Dispatch-time decomposition. With ``T`` the simulated dispatch time (``dispatch_s``), ``I`` the
congestion-free time of *this* traffic matrix (``ideal_dispatch_s``, the min-cut bound of
:mod:`netsim.reference`) and ``B`` the congestion-free time of *perfectly balanced* traffic of the
same bytes (``ideal_balanced_dispatch_s``: every ordered GPU pair carries the same share, bounded
the same way on the same fabric, :func:`netsim.reference.balanced_dispatch_bound`)::

    T = B + (I - B) + (T - I)

* ``dispatch_load_share = (I - B) / T``: the part of the dispatch that is pure load imbalance.
  The hottest GPU must receive (or send) more than its share through its own port even on an
  ideal non-blocking fabric, so no network fix (topology, routing, scheduling, collective)
  removes it; only moving load (placement, replication, relayout) does.
* ``dispatch_contention_share = (T - I) / T``: network contention over the ideal for that load
  (shared links, oversubscription, max-min unfairness): what a better fabric or collective can
  recover. It can be negative when a collective moves fewer bytes than the direct all-to-all
  (hierarchical with de-duplication), whose bound ``I`` is the direct one.
* the rest, ``B / T``, is the floor for these bytes on this fabric.

``dispatch_over_ideal = T / I`` and ``dispatch_over_balanced = T / B`` (how far from the bound).
"""
from __future__ import annotations

import numpy as np

from netsim.workload.routing import gini

__all__ = ["DIAGNOSIS_UNITS", "max_mean", "cv", "load_stats", "balanced_ideal_s",
           "dispatch_shares", "diagnose"]

DIAGNOSIS_UNITS = {
    "expert_cv": "1 (std/mean of per-expert tokens)",
    "rank_max_mean": "1 (max/mean tokens computed per GPU)",
    "server_max_mean": "1 (max/mean tokens computed per server)",
    "compute_max_mean": "1 (max/mean per-GPU expert compute time)",
    "ideal_balanced_dispatch_s": "s (ideal dispatch of the same bytes, perfectly balanced)",
    "dispatch_over_ideal": "1 (dispatch_s / ideal_dispatch_s)",
    "dispatch_over_balanced": "1 (dispatch_s / ideal_balanced_dispatch_s)",
    "dispatch_load_share": "1 ((ideal_dispatch_s - ideal_balanced_dispatch_s) / dispatch_s)",
    "dispatch_contention_share": "1 ((dispatch_s - ideal_dispatch_s) / dispatch_s)",
}


def max_mean(x) -> float:
    """max / mean of non-negative values (1.0 for empty or all-zero input)."""
    x = np.asarray(x, np.float64).ravel()
    if len(x) == 0 or x.sum() <= 0:
        return 1.0
    return float(x.max() / x.mean())


def cv(x) -> float:
    """Coefficient of variation std / mean (population std; 0.0 for empty or all-zero input)."""
    x = np.asarray(x, np.float64).ravel()
    if len(x) == 0 or x.sum() <= 0:
        return 0.0
    return float(x.std() / x.mean())


def load_stats(expert_tokens, gpu_tokens, gpus_per_server: int = 1) -> dict:
    """Per-expert, per-GPU and per-server load statistics (see the module docstring).

    ``expert_tokens[E]``: token-expert pairs per logical expert; ``gpu_tokens[N]``: pairs each
    GPU computes. A trailing partial server (N not a multiple of ``gpus_per_server``) counts as
    a server of its own.
    """
    e = np.asarray(expert_tokens, np.float64).ravel()
    g = np.asarray(gpu_tokens, np.float64).ravel()
    gps = max(1, int(gpus_per_server))
    n_srv = -(-len(g) // gps) if len(g) else 0
    srv = np.bincount(np.arange(len(g)) // gps, weights=g, minlength=n_srv) if len(g) else g
    return {
        "imbalance": max_mean(e) if len(e) else 1.0,
        "expert_cv": cv(e),
        "gini": gini(e) if len(e) else 0.0,
        "rank_max_mean": max_mean(g),
        "server_max_mean": max_mean(srv),
    }


def balanced_ideal_s(dispatch: np.ndarray, inj: np.ndarray, ej: np.ndarray,
                     latency_s: float = 0.0) -> float:
    """Congestion-free time of perfectly balanced traffic with the off-diagonal bytes of
    ``dispatch``: every GPU sends and receives ``total / N``; plus ``latency_s``."""
    d = np.asarray(dispatch, np.float64)
    n = d.shape[0]
    total = float(d.sum() - np.trace(d))
    if total <= 0 or n == 0:
        return 0.0
    share = total / n
    return float(max(share / np.min(inj), share / np.min(ej))) + float(latency_s)


def dispatch_shares(dispatch_s: float, ideal_s: float, balanced_s: float) -> dict:
    """The decomposition of the module docstring (NaN shares when dispatch_s is 0)."""
    T, I, B = float(dispatch_s), float(ideal_s), float(balanced_s)
    if T <= 0:
        nan = float("nan")
        return {"dispatch_over_ideal": nan, "dispatch_over_balanced": nan,
                "dispatch_load_share": nan, "dispatch_contention_share": nan}
    return {
        "dispatch_over_ideal": T / I if I > 0 else float("nan"),
        "dispatch_over_balanced": T / B if B > 0 else float("nan"),
        "dispatch_load_share": (I - B) / T,
        "dispatch_contention_share": (T - I) / T,
    }


def diagnose(setup, metrics: dict, gpu_tokens=None, expert_tokens=None) -> dict:
    """Diagnosis columns of one simulated layer.

    ``setup``: a :class:`netsim.layer.PreparedLayer` (topology, dispatch bytes, compute times);
    ``metrics``: what :func:`netsim.simulate.layer_metrics` returned (``dispatch_s``,
    ``ideal_dispatch_s``). ``gpu_tokens`` defaults to the dispatch matrix's column sums (local
    pairs included) divided by the bytes per token; ``expert_tokens`` to ``setup.expert_tokens``.
    """
    ft, D = setup.topo, np.asarray(setup.dispatch, np.float64)
    layer = setup.layer
    if gpu_tokens is None:
        per_tok = float(layer.hidden * layer.dtype_bytes) if layer is not None else 1.0
        gpu_tokens = D.sum(axis=0) / per_tok
    if expert_tokens is None:
        expert_tokens = setup.expert_tokens
    out = load_stats(expert_tokens if expert_tokens is not None else np.zeros(0), gpu_tokens,
                     getattr(ft, "gpus_per_server", 1))
    if layer is None:  # raw traffic: no experts
        out["imbalance"], out["expert_cv"], out["gini"] = float("nan"), float("nan"), float("nan")
    out["compute_max_mean"] = max_mean(setup.compute_gpu_s)
    ideal_d = float(metrics["ideal_dispatch_s"])
    bal = float(metrics["ideal_balanced_dispatch_s"])  # netsim.simulate.layer_metrics
    out["ideal_balanced_dispatch_s"] = bal
    out.update(dispatch_shares(metrics["dispatch_s"], ideal_d, bal))
    return out
