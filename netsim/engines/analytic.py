"""The analytic engine: every phase takes its congestion-free line-sum bound.

Dispatch ends at ``ideal_dispatch_s`` for every GPU, each GPU computes for its own compute time,
and the combine takes ``ideal_combine_s`` after the last GPU's compute: a closed form
(:mod:`netsim.bounds`), no simulation; it delivers every byte by definition.
"""
from __future__ import annotations

import numpy as np

from netsim.layer import LayerResult, PreparedLayer
from netsim.reference import phase_bounds

__all__ = ["simulate"]


def simulate(layer: PreparedLayer) -> LayerResult:
    t_d, t_c = phase_bounds(layer)
    n = layer.n
    d_end = np.full(n, t_d)
    c_end = d_end + layer.compute_gpu_s
    off = layer.dispatch.sum() - np.trace(layer.dispatch)
    if layer.combine:
        return LayerResult(d_end, c_end, float(c_end.max() + t_c), float(2 * off))
    return LayerResult(d_end, d_end.copy(), float(t_d), float(off))
