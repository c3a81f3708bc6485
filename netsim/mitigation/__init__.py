"""Routing-imbalance mitigations and multi-iteration runs.

Run parameters (fields of :class:`netsim.spec.MitigationSpec`):

=======================  =================================================================  ========
parameter                values                                                             default
=======================  =================================================================  ========
``iterations``           N >= 1: simulate routing iterations 1..N after a warm-up           0
                         iteration 0 (0: the classic single-layer run, routing iteration 0)
``sample_placement``     ``none`` | ``predictive`` | ``oracle``: sequences moved to their     none
                         experts when the routing has sequence ids (knowing each sequence's
                         first half / every token), else whole micro-batches (previous /
                         current iteration's routing); only when predicted to pay
``relayout``             ``none`` | ``static[:SLOTS]`` (one EPLB placement from the warm-up   none
                         profile, free) | ``eplb:R[:SLOTS]`` (EPLB every R iterations from
                         the last R iterations' loads, adopted only when it is predicted to
                         pay; weight migration charged as flows)
``collective``           ``direct`` | ``hierarchical`` (two-phase, DeepEP internode style,   direct
                         estimated per-server de-duplication) | ``hierarchical:nodedup``
``rank_mapping``         ``identity`` | ``ep_aware`` (logical GPUs relabelled onto leaves /    identity
                         servers for the warm-up traffic; the issue's ``topology=ep_aware``)
=======================  =================================================================  ========

Any non-default value runs :func:`netsim.mitigation.runner.run_iterations` (with
``iterations=0`` treated as 1). ``SLOTS`` is the expert slots per EP rank (default
``experts // ep + 1`` -- one redundant slot per rank -- or 1 when experts < ep).
See :mod:`netsim.mitigation.runner` for how iterations are aggregated into a row, and
:func:`netsim.mitigation.shares.recovered_shares` for the share of the gap a mitigation recovers
(dispatch only, and the whole layer with the mitigation's own cost), computed over a frame of
rows against the same point without mitigation.
"""
from __future__ import annotations

__all__: list[str] = []  # the columns of mitigated rows: netsim.columns (MITIGATION_UNITS, MAX_KEYS)
