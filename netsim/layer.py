"""What an engine takes and gives: a prepared MoE layer and the layer's result.

:class:`PreparedLayer` is one layer ready to simulate (built by :mod:`netsim.prepare` from a
:class:`netsim.spec.RunSpec`): the frozen topology, the dispatch byte matrix, every GPU's
compute time and what the circuit engine needs beyond that. :class:`LayerResult` is what every
engine (:mod:`netsim.engines`) returns: per-GPU phase end times and the engine's own counters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["PreparedLayer", "LayerResult"]


@dataclass
class PreparedLayer:
    """One layer's resolved inputs (SI units: bytes, seconds).

    ``dispatch[i, j]``: bytes GPU i's tokens need delivered to GPU j (the combine returns the
    transpose); ``compute_gpu_s[g]``: GPU g's expert compute after its dispatch (shared experts
    included); ``expert_tokens[e]``: token-expert pairs per logical expert; ``counts[g, e]``:
    GPU x expert token counts; ``tokens_to[j, i, s]``: tokens GPU i sends to expert slot s of
    GPU j (circuit engine); ``batch_time(tokens[k, slots], local=False) -> s[k]``: compute time
    of k batches; ``hook``: a :class:`netsim.devices.hierarchical.LayerHook` for collectives and
    mitigations that move extra bytes (flow engine); ``circuits``: the topology's circuit fabric
    (:class:`netsim.circuit_fabric.CircuitFabric`) when it has one.
    """

    spec: Any  # netsim.spec.RunSpec
    topo: Any  # netsim.topology.FrozenTopology
    dispatch: np.ndarray
    compute_gpu_s: np.ndarray
    expert_tokens: np.ndarray
    counts: np.ndarray | None = None
    tokens_to: np.ndarray | None = None
    batch_time: Callable | None = None
    hook: Any = None
    circuits: Any = None
    ecmp_seed: int = 0
    #: the layer is one block of a larger fabric whose GPUs start here: ECMP hashes as there
    #: (:meth:`netsim.topology.FrozenTopology.route`; the flow engine, :mod:`netsim.aggregate`)
    hash_offset: int = 0

    @property
    def layer(self):
        """The :class:`netsim.workload.moe.MoELayer` (None for a raw traffic matrix)."""
        return self.spec.layer

    @property
    def combine(self) -> bool:
        return self.spec.layer is not None

    @property
    def n(self) -> int:
        return self.topo.n_gpus


@dataclass
class LayerResult:
    """An engine's answer for one layer (seconds from the layer's start, bytes).

    ``dispatch_end[g]``: when GPU g had all its dispatch bytes; ``compute_end[g]``: when it
    finished computing; ``layer_s``: when the last GPU had its combined results back (dispatch
    end without combine); ``bytes_delivered``: bytes the engine itself saw arrive (summed from
    its own completions); ``events``, ``rate_recomputes``: flow-model work; ``extra``: the
    engine's own metric columns (packet counters, circuit schedule figures...).
    """

    dispatch_end: np.ndarray
    compute_end: np.ndarray
    layer_s: float
    bytes_delivered: float
    events: int = 0
    rate_recomputes: int = 0
    extra: dict = field(default_factory=dict)
