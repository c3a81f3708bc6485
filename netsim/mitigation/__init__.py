"""Routing-imbalance mitigations and multi-iteration runs (issue 4).

Run parameters (reserved keys of :data:`netsim.scenario.RESERVED`):

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

__all__ = ["MITIGATION_DEFAULTS", "MITIGATION_UNITS", "wants_iterations", "run_iterations",
           "iterate"]

MITIGATION_DEFAULTS = {"iterations": 0, "sample_placement": "none", "relayout": "none",
                       "collective": "direct", "rank_mapping": "identity"}

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


def wants_iterations(params: dict) -> bool:
    """True when ``params`` asks for iterations or a mitigation (any non-default value)."""
    for k, d in MITIGATION_DEFAULTS.items():
        if k not in params:
            continue
        v = params[k]
        if k == "iterations":
            try:
                if float(v) != 0:
                    return True
            except (TypeError, ValueError):
                return True  # let the runner report the bad value
        elif str(v).strip().lower() != d:
            return True
    return False


def run_iterations(params: dict) -> dict:
    from netsim.mitigation.runner import run_iterations as _run

    return _run(params)


def iterate(params: dict):
    from netsim.mitigation.runner import iterate as _it

    return _it(params)
