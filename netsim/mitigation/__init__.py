"""Routing-imbalance mitigations and multi-iteration runs.

Run parameters (fields of :class:`netsim.spec.MitigationSpec`):

=======================  =================================================================  ========
parameter                values                                                             default
=======================  =================================================================  ========
``iterations``           N >= 1: simulate routing iterations 1..N after a warm-up           0
                         iteration 0 (0: the classic single-layer run, routing iteration 0)
``sample_placement``     ``none`` | ``predictive`` (previous iteration's routing) |         none
                         ``oracle`` (current routing: the bound)
``relayout``             ``none`` | ``static[:SLOTS]`` (one EPLB placement from the warm-up   none
                         profile, free) | ``eplb:R[:SLOTS]`` (EPLB every R iterations from
                         the last R iterations' loads, weight migration charged as flows)
``collective``           ``direct`` | ``hierarchical`` (two-phase, DeepEP internode style,   direct
                         estimated per-server de-duplication) | ``hierarchical:nodedup``
``rank_mapping``         ``identity`` | ``ep_aware`` (logical GPUs relabelled onto leaves /    identity
                         servers for the warm-up traffic; the issue's ``topology=ep_aware``)
=======================  =================================================================  ========

Any non-default value runs :func:`netsim.mitigation.runner.run_iterations` (with
``iterations=0`` treated as 1). ``SLOTS`` is the expert slots per EP rank (default
``experts // ep + 1`` -- one redundant slot per rank -- or 1 when experts < ep).
See :mod:`netsim.mitigation.runner` for how iterations are aggregated into a row.
"""
from __future__ import annotations

__all__ = ["MAX_KEYS", "MITIGATION_UNITS"]

MAX_KEYS = ("layer_s", "dispatch_s", "ratio_to_ideal", "dispatch_over_ideal",
            "dispatch_over_balanced", "rank_max_mean")

MITIGATION_UNITS = {
    "iterations_run": "count (iterations simulated; metrics are means over them)",
    "total_layer_s": "s (sum of layer_s over iterations)",
    "relayouts": "count (expert relayouts performed)",
    "migration_bytes": "B (expert weights moved, all iterations)",
    "sample_move_bytes": "B (micro-batches moved by sample placement, all iterations)",
    "network_bytes": "B (bytes carried by all flows: relay hops, migrations, moves)",
    **{f"{k}_max": "max over iterations" for k in MAX_KEYS},
}
