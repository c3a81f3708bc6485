"""The analytic engine: every phase takes its congestion-free min-cut bound.

Dispatch ends at ``ideal_dispatch_s`` for every GPU, each GPU computes for its own compute time,
and the combine takes ``ideal_combine_s`` after the last GPU's compute: a closed form
(:mod:`netsim.bounds`), no simulation; it delivers every byte by definition.
"""
from __future__ import annotations

import numpy as np

from netsim.layer import LayerResult, PreparedLayer
from netsim.reference import phase_bounds

__all__ = ["closed_form", "simulate"]


def closed_form(t_d: float, t_c: float, compute_gpu_s: np.ndarray, combine: bool):
    """The closed form from phase bounds (s): ``(dispatch_end, compute_end, layer_s)``.

    Every GPU has its dispatch at ``t_d``, computes for its own ``compute_gpu_s[g]``, and the
    combine takes ``t_c`` after the last GPU's compute (``layer_s`` = dispatch end without one).
    """
    d_end = np.full(len(compute_gpu_s), float(t_d))
    c_end = d_end + compute_gpu_s
    if combine:
        return d_end, c_end, float(c_end.max() + t_c)
    return d_end, d_end.copy(), float(t_d)


def simulate(layer: PreparedLayer) -> LayerResult:
    t_d, t_c = phase_bounds(layer)
    d_end, c_end, layer_s = closed_form(t_d, t_c, layer.compute_gpu_s, layer.combine)
    off = layer.dispatch.sum() - np.trace(layer.dispatch)
    return LayerResult(d_end, c_end, layer_s, float(2 * off if layer.combine else off))
