"""netsim: discrete-event simulation of MoE all-to-all traffic on GPU cluster fabrics.

Public entry points::

    from netsim import Topology, MoELayer, run
"""
from __future__ import annotations

from netsim.version import __version__  # noqa: E402

from netsim.errors import NetsimError  # noqa: E402

__all__ = ["__version__", "NetsimError", "Topology", "MoELayer", "run"]


def __getattr__(name: str):  # lazy: keep `import netsim` cheap (numba, simpy load on use)
    if name == "Topology":
        from netsim.topology import Topology

        return Topology
    if name == "MoELayer":
        from netsim.workload.moe import MoELayer

        return MoELayer
    if name == "run":
        from netsim.scenario import run

        return run
    raise AttributeError(f"module 'netsim' has no attribute {name!r}")
