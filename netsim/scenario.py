"""One run: parameters -> specification -> prepared layer -> engine -> one row.

:func:`run` parses the parameters once into a :class:`netsim.spec.RunSpec`, then either runs one
layer (:func:`netsim.prepare.prepare`, :func:`netsim.simulate.layer_metrics` and the imbalance
diagnosis) or, when the run iterates or mitigates, hands the specification to
:func:`netsim.mitigation.runner.run_iterations`. The row is the specification's parameter
columns (:meth:`RunSpec.columns`: every parameter that applies, at its effective value) plus the
metrics of :data:`netsim.columns.UNITS`.
"""
from __future__ import annotations

import time

from netsim.version import __version__
from netsim.columns import UNITS
from netsim.prepare import prepare
from netsim.simulate import layer_metrics, phase_columns
from netsim.spec import RunSpec, run_defaults
from netsim.workload.diagnosis import diagnose

__all__ = ["run", "run_spec", "UNITS", "RESERVED"]

#: run-level parameter -> default (readers of old datasets; the table is netsim.spec.RUN_PARAMETERS)
RESERVED = run_defaults()


def run(params: dict | None = None, **kw) -> dict:
    """Run one scenario; returns the row: the parameters plus the metrics (see :data:`UNITS`)."""
    return run_spec(RunSpec.parse(dict(params or {}) | kw))


def run_spec(spec: RunSpec) -> dict:
    """The row of a parsed run specification."""
    t0 = time.perf_counter()
    row = spec.columns()
    # what a routing source says about itself (e.g. a profile: where its target is from)
    row.update(getattr(spec.routing_source, "row_columns", dict)())
    if spec.mitigation.active:
        # imported here: a single-layer run loads neither SimPy nor the per-phase runner
        from netsim.mitigation.runner import run_iterations

        row.update(run_iterations(spec))
    elif getattr(spec.model, "aggregate", "none") != "none":
        from netsim.aggregate import run_layer

        row.update(run_layer(spec))
    else:
        layer = prepare(spec)
        m = layer_metrics(layer)
        if spec.layer is not None:  # per-phase bytes and tokens per destination
            gps = max(1, int(getattr(layer.topo, "gpus_per_server", 1)))
            m.update(phase_columns(layer, m, layer.dispatch, None, gps,
                                   float(spec.layer.dispatch_bytes_per_token),
                                   spec.layer.combine_scale, layer.hook))
        row.update(m)
        for k, v in diagnose(layer, m).items():
            row.setdefault(k, v)
    row["sim_wall_s"] = time.perf_counter() - t0
    row["netsim_version"] = __version__
    return row
