"""How much of the bottleneck order a completion leaves untouched (docs/flow_model.md, "Not done").

Progressive filling freezes flows in order of rising rate. When flows finish, the filling can
only change from the level of the slowest of them on: every flow frozen before it keeps its
rate in exact arithmetic. So the share of the live flows at or above the lowest rate among an
event's completed flows bounds what any solver that refills "from the earliest touched level
on" must refill (ties included: flows at that rate frozen at an earlier step are counted).

This script runs ``benchmarks/bench_flow.py``'s leaf-spine cases with the full solver, event
by event, and prints per case the events and that share averaged over the events (weighted
by live flows: the share of the work a full refill does that such a solver would still do),
with the share of the work left to the full solver's refills for comparison (the
components it refills: 1.0 on these one-component fabrics).

    python benchmarks/level_suffix.py --exact 128,256 --dense 1024 --sizes 1024

Not a test; one run, figures depend only on the cases (no timing).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flow import dispatch_matrix, full_solver_events, leaf_spine  # noqa: E402

import netsim.fabric.flow as F  # noqa: E402


def suffix_share(n: int, routing: str, tolerance: float) -> dict:
    """Events, the live-weighted mean share of flows at or above the lowest completed flow's
    rate, the share the full solver refilled and the last send finish (s), on the ``n``-GPU
    leaf-spine of bench_flow with its ``routing`` matrix."""
    m = dispatch_matrix(n, routing)
    src, dst = np.nonzero(m)
    fab = F.FlowFabric(leaf_spine(n)().freeze(), tolerance=tolerance, capacity=len(src) + 1,
                       solver="full")
    fab.add_flows(src, dst, m[src, dst])
    seen = dict(above=0, live=0)

    def count(fab, nd):
        act = fab.active[: fab.n_act]
        seen["above"] += int((fab.rate[act] >= fab.rate[act[fab.n_act - nd:]].min()).sum())
        seen["live"] += fab.n_act

    events, refilled, _, _ = full_solver_events(fab, tolerance, count)
    live = seen["live"]
    return dict(events=events, live_per_event=live / events, suffix_share=seen["above"] / live,
                full_share=refilled / live, makespan_s=float(fab.finish[: fab.n].max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exact", default="128", help="GPU counts, uniform dispatch, tolerance 0")
    ap.add_argument("--dense", default="", help="GPU counts of the dense case, tolerance 1e-3")
    ap.add_argument("--sizes", default="", help="GPU counts, uniform dispatch, tolerance 1e-3")
    args = ap.parse_args()
    cases = [(f"exact{n}-uniform", n, "uniform", 0.0) for n in map(int, filter(None,
                                                                    args.exact.split(",")))]
    cases += [(f"dense{n}", n, "dense", 1e-3) for n in map(int, filter(None,
                                                                    args.dense.split(",")))]
    cases += [(f"moe{n}-uniform", n, "uniform", 1e-3) for n in map(int, filter(None,
                                                                    args.sizes.split(",")))]
    print(f"{'case':>18} {'events':>7} {'live/event':>11} {'suffix share':>13} "
          f"{'full share':>11}")
    for name, n, routing, tol in cases:
        r = suffix_share(n, routing, tol)
        print(f"{name:>18} {r['events']:7d} {r['live_per_event']:11.0f} "
              f"{r['suffix_share']:13.3f} {r['full_share']:11.3f}", flush=True)


if __name__ == "__main__":
    main()
