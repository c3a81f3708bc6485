"""One engine per fabric model, behind one interface.

Every engine is a module with ``simulate(layer: PreparedLayer) -> LayerResult``
(:mod:`netsim.layer`):

==========  ======================================================================================
engine      what it computes
==========  ======================================================================================
analytic    the congestion-free min-cut bound of each phase (closed form, no simulation)
flow        max-min fair flows (:mod:`netsim.fabric.flow`) driven by GPU processes (SimPy)
packet      packets through queues and links (:mod:`netsim.fabric.packet`), layer by passes
circuit     circuit schedules on an OCS (:mod:`netsim.devices.ocs`) over the flow model
==========  ======================================================================================

:func:`engine` imports only the chosen one, so a run loads only the kernels it uses.
"""
from __future__ import annotations

import importlib
from typing import Callable

__all__ = ["ENGINES", "engine"]

ENGINES = ("analytic", "flow", "packet", "circuit")


def engine(name: str) -> Callable:
    """The ``simulate`` function of engine ``name`` (one of :data:`ENGINES`)."""
    if name not in ENGINES:
        raise KeyError(name)
    return importlib.import_module(f"netsim.engines.{name}").simulate
