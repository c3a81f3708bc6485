"""Advancing by components, prototyped: the full solver's event loop as it is, and with each
component's flows advanced only when the component is refilled (docs/flow_model.md, "Not done").

Both loops run one dispatch to completion at ``tolerance`` (1e-3) on the same fabric, calling
the package's filling (:func:`netsim.fabric.flow.maxmin_csr`) once per event:

* ``all``: :func:`netsim.fabric.flow.advance` over every live flow at every event (what
  ``FlowFabric.run_until`` does);
* ``components``: the live flows kept per component in a segment in id order; each flow's
  remaining bytes as of its last rate change (``t_upd``) and its projected finish (``proj``),
  each component's earliest projection (``ctmin``). A recomputation fills the dirty
  components' rates into a second array; one pass over their segments brings each flow's
  bytes up to date at its old rate, takes the new one and projects its finish; an event scans
  the segments of the components whose earliest projection falls inside its merge cut.

Printed per case: events of each loop (they must be equal), seconds in the filling and in the
rest of the loop, their sum, the ratio of the sums (``all`` over ``components``, one run,
alternating with ``--repeat``) and the largest difference of a finish time, relative to the
makespan (round-off: ``components`` advances a flow's bytes in one step per rate change, not
one per event).

    python benchmarks/lazy_advance_probe.py --cluster 1024,4096 --dense 1024

Not part of the package: the ``components`` loop is a probe (no arrivals, horizons, extends
or capacity changes), kept so that its figures can be reproduced.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flow import dispatch_matrix, full_solver_events, leaf_spine, retire  # noqa: E402

import netsim.fabric.flow as F  # noqa: E402
from netsim.fabric.flow import _EPS_BYTES, _EPS_REL  # noqa: E402

_INF = np.inf


@njit(cache=True)
def dirty_roots(lcomp, cdirty, ccnt, out):
    """The dirty components holding live flows, in link order, into ``out``; their count."""
    n = 0
    for e in range(len(lcomp)):
        if lcomp[e] == e and cdirty[e] and ccnt[e] > 0:
            out[n] = e
            n += 1
    return n


@njit(cache=True)
def take_rates(roots, nr, cseg, clen, cpool, stamp, rem, rate, rnew, t_upd, nbytes, proj,
               ctmin, now):
    """After a filling into ``rnew``: per refilled component, each live flow's bytes brought to
    ``now`` at its old rate, its new rate taken, its finish projected (the segment compacted
    of finished flows on the way), and the component's earliest projection."""
    for i in range(nr):
        e = roots[i]
        tm = _INF
        s0 = cseg[e]
        w = s0
        for q in range(s0, s0 + clen[e]):
            f = cpool[q]
            if stamp[f] < 0:
                continue
            cpool[w] = f
            w += 1
            x = rem[f] - rate[f] * (now - t_upd[f])
            x = 0.0 if x < 0.0 else x
            rem[f] = x
            t_upd[f] = now
            r = rnew[f]
            rate[f] = r
            p = now + x / r if r > 0.0 else _INF
            if x <= _EPS_BYTES + _EPS_REL * nbytes[f]:
                p = now
            proj[f] = p
            if p < tm:
                tm = p
        clen[e] = w - s0
        ctmin[e] = tm


@njit(cache=True)
def next_completions(lcomp, ccnt, ctmin, cseg, clen, cpool, stamp, proj, rem, finish, now,
                     tolerance, done):
    """The next event: its time and the flows it completes (into ``done``; their finish set),
    from the components' earliest projections and the segments of those inside the cut."""
    tmin = _INF
    for e in range(len(lcomp)):
        if lcomp[e] == e and ccnt[e] > 0 and ctmin[e] < tmin:
            tmin = ctmin[e]
    if tmin == _INF:
        return now, 0
    cut = tmin + tolerance * tmin
    t_event = tmin
    nd = 0
    for e in range(len(lcomp)):
        if lcomp[e] == e and ccnt[e] > 0 and ctmin[e] <= cut:
            for q in range(cseg[e], cseg[e] + clen[e]):
                f = cpool[q]
                if stamp[f] >= 0 and proj[f] <= cut:
                    finish[f] = proj[f]
                    rem[f] = 0.0
                    done[nd] = f
                    nd += 1
                    if proj[f] > t_event:
                        t_event = proj[f]
    return t_event, nd


def loop_all(fab, tolerance: float) -> tuple[int, float, float]:
    """The full solver's loop (:func:`bench_flow.full_solver_events`): (events, filling s,
    rest s)."""
    events, _, t_fill, t_rest = full_solver_events(fab, tolerance)
    return events, t_fill, t_rest


def loop_components(fab, tolerance: float) -> tuple[int, float, float]:
    """The loop advancing by components: (events, filling s, rest s)."""
    table = fab._table(1)
    nf, nl = len(fab.src), len(fab.cap)
    t_upd, proj, rnew = np.full(nf, fab.now), np.full(nf, _INF), np.zeros(nf)
    act = np.sort(fab.active[: fab.n_act])
    roots = fab._lcomp[fab.path_links[fab.path_ptr[act]]]
    cpool = act[np.argsort(roots, kind="stable")].astype(np.int64)
    ccnt = np.bincount(roots, minlength=nl).astype(np.int64)
    cseg = np.zeros(nl, np.int64)
    cseg[1:] = np.cumsum(ccnt)[:-1]
    clen = ccnt.copy()
    ctmin = np.full(nl, _INF)
    rbuf, done = np.empty(nl, np.int64), np.empty(nf, np.int64)
    ev, tf, tr = 0, 0.0, 0.0
    while fab.n_act:
        t0 = time.perf_counter()
        nr = dirty_roots(fab._lcomp, fab._cdirty, ccnt, rbuf)
        F.maxmin_csr(*table, fab.cap, rnew, fab._lcomp, fab._cdirty, fab._cmask, False)
        t1 = time.perf_counter()
        take_rates(rbuf, nr, cseg, clen, cpool, table[6], fab._rem, fab.rate, rnew, t_upd,
                   fab.bytes, proj, ctmin, fab.now)
        t, nd = next_completions(fab._lcomp, ccnt, ctmin, cseg, clen, cpool, table[6], proj,
                                 fab._rem, fab.finish, fab.now, tolerance, done)
        if nd <= 0:
            raise RuntimeError("stalled")
        for f in done[:nd]:
            ccnt[retire(fab, table, f)] -= 1
        fab.n_act -= nd
        fab.now = t
        ev += 1
        tf += t1 - t0
        tr += time.perf_counter() - t1
    return ev, tf, tr


def fabric(case: str, n: int, tolerance: float):
    """A FlowFabric with ``case``'s dispatch added at time 0: ``cluster`` (the scale table's
    layer at 512 tokens per GPU on its ``cluster`` fabric, as ``netsim run`` prepares it: the
    same routing draw, the run's ECMP seed) or ``dense`` (bench_flow's leaf-spine dense case)."""
    if case == "cluster":
        from scale_table import params

        from netsim.prepare import prepare
        from netsim.spec import RunSpec

        layer = prepare(RunSpec.parse(params("flow", n, 512)))
        topo, m, seed = layer.topo, layer.dispatch.copy(), layer.ecmp_seed
        np.fill_diagonal(m, 0.0)
    else:
        topo, m, seed = leaf_spine(n)().freeze(), dispatch_matrix(n, "dense"), 0
    src, dst = np.nonzero(m)
    fab = F.FlowFabric(topo, tolerance=tolerance, seed=seed, capacity=len(src) + 1,
                       solver="full")
    fab.add_flows(src, dst, m[src, dst])
    return fab


def compare(case: str, n: int, tolerance: float = 1e-3, repeat: int = 1) -> dict:
    """Both loops on one case, alternately ``repeat`` times (the fastest of each kept)."""
    best = {}
    fin = {}
    for _ in range(repeat):
        for name, loop in (("all", loop_all), ("components", loop_components)):
            fab = fabric(case, n, tolerance)
            ev, tf, tr = loop(fab, tolerance)
            fin[name] = fab.finish[: fab.n].copy()
            if name not in best or tf + tr < sum(best[name][1:]):
                best[name] = (ev, tf, tr)
    span = float(fin["all"].max())
    return dict(best=best, diff=float(np.abs(fin["all"] - fin["components"]).max()) / span,
                makespan_s=span)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster", default="1024", help="GPU counts of the cluster dispatch")
    ap.add_argument("--dense", default="", help="GPU counts of the dense leaf-spine case")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for case, n in (("cluster", 16), ("dense", 16)):  # compile / load the kernels first
        compare(case, n)
    cases = [("cluster", int(x)) for x in args.cluster.split(",") if x]
    cases += [("dense", int(x)) for x in args.dense.split(",") if x]
    print(f"{'case':>12} {'loop':>11} {'events':>7} {'fill_s':>7} {'rest_s':>7} {'sum_s':>7} "
          f"{'x':>6} {'max |dt|/makespan':>18}")
    for case, n in cases:
        r = compare(case, n, repeat=args.repeat)
        base = sum(r["best"]["all"][1:])
        for name in ("all", "components"):
            ev, tf, tr = r["best"][name]
            print(f"{case + str(n):>12} {name:>11} {ev:7d} {tf:7.3f} {tr:7.3f} {tf + tr:7.3f} "
                  f"{base / (tf + tr):6.2f} {r['diff'] if name != 'all' else 0.0:18.2e}",
                  flush=True)


if __name__ == "__main__":
    main()
