"""Static: one maximum-weight matching held for the whole layer; everything else is left over.

The baseline of a circuit switch that is not reconfigured during the layer, as in the hybrid
circuit/packet designs c-Through (Wang et al., SIGCOMM 2010) and Helios (Farrington et al., SIGCOMM
2010): the circuits carry the heaviest pairs, the packet network the rest.

The matching is ``linear_sum_assignment`` on the traffic (maximum total bytes), held until its largest
pair drains (duration = that pair's bytes / line_rate); every pair on it drains completely. All other
bytes are ``leftover_bytes``. One reconfiguration is charged (setting up the matching).
"""
from __future__ import annotations

import numpy as np

from .base import Schedule
from .greedy import greedy

__all__ = ["static"]


def static(traffic: np.ndarray, line_rate: float, reconfig_s: float) -> Schedule:
    """static: one max-weight matching held for the whole layer; the rest is leftover."""
    return greedy(traffic, line_rate, reconfig_s, k=1, rule="max", fallback="leftover", name="static")
