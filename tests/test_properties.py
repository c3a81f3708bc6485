"""Property tests of three kernels against independent references (hypothesis).

* the numba binary heap (``netsim.fabric.heap``) against Python's ``heapq``;
* BFS hop distances and ECMP routes of ``netsim.topology`` against
  ``scipy.sparse.csgraph.shortest_path`` (unweighted);
* the max-min fair rates of the flow model (``netsim.fabric.flow.maxmin_rates``) against linear
  programs solved by ``scipy.optimize.linprog``: feasibility and max-min optimality.
"""
from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.sparse.csgraph import shortest_path

from netsim.fabric.flow import maxmin_rates
from netsim.fabric.heap import heap_pop, heap_push
from netsim.topology import GPU, Topology

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- heap ---------------------------------------------------------------------------------------

# few distinct keys and ties, so that equal keys and equal (key, tie) pairs are common
_keys = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 2.5, -1.0, np.inf]),
                  st.floats(-1e6, 1e6, allow_nan=False))
_op = st.one_of(st.tuples(st.just("push"), _keys, st.integers(0, 3)), st.just(("pop",)))


@FAST
@given(ops=st.lists(_op, max_size=60), key_only=st.booleans())
def test_heap_matches_heapq(ops, key_only):
    """Pops come out in (key, tie) order, as heapq's; each pop returns a live entry of that pair.

    The heap orders by (key, tie) only: among entries with equal (key, tie) the payload order is
    unspecified, so the payload is checked to be one of the live entries with the popped pair.
    """
    cap = len(ops) + 1
    hk = np.empty(cap, np.float64)
    hs = np.zeros(cap, np.int64)
    hv = np.empty(cap, np.int64)
    n = 0
    ref = []  # heapq of (key, tie, val)
    live = {}  # val -> (key, tie)
    for i, op in enumerate(ops):
        if op[0] == "push":
            key, tie = op[1], 0 if key_only else op[2]
            n = heap_push(hk, hs, hv, n, key, tie, i)
            heapq.heappush(ref, (key, tie, i))
            live[i] = (key, tie)
        elif ref:
            key, val, n = heap_pop(hk, hs, hv, n)
            rkey, rtie, _ = heapq.heappop(ref)
            assert key == rkey
            assert val in live and live[val] == (rkey, rtie)
            del live[val]
        assert n == len(ref)
    # drain what is left: still in heapq's order
    while ref:
        key, val, n = heap_pop(hk, hs, hv, n)
        rkey, rtie, _ = heapq.heappop(ref)
        assert key == rkey and live.pop(val) == (rkey, rtie)
    assert n == 0 and not live


# ---- routing ------------------------------------------------------------------------------------


@st.composite
def _topologies(draw):
    """A small random fabric that freezes (every GPU reaches every GPU).

    Relaying GPUs (``gpu_forwarding``): a random spanning tree over all nodes. Otherwise a random
    tree over the switches with every GPU on at least one switch. Then random extra links, some
    one-way and some parallel to existing ones.
    """
    fwd = draw(st.booleans())
    n_gpu = draw(st.integers(2, 5))
    n_sw = draw(st.integers(0 if fwd else 1, 4))
    t = Topology(name="random", gpu_forwarding=fwd)
    gpus = [t.add_gpu() for _ in range(n_gpu)]
    sws = [t.add_switch() for _ in range(n_sw)]
    bw = st.sampled_from([1e9, 2e9, 5e9])
    lat = st.sampled_from([0.0, 1e-7, 5e-7])
    if fwd:
        nodes = gpus + sws
        order = draw(st.permutations(nodes))
        for k in range(1, len(order)):
            parent = order[draw(st.integers(0, k - 1))]
            t.add_link(order[k], parent, draw(bw), draw(lat))
    else:
        for k in range(1, n_sw):
            t.add_link(sws[k], sws[draw(st.integers(0, k - 1))], draw(bw), draw(lat))
        for g in gpus:
            t.add_link(g, sws[draw(st.integers(0, n_sw - 1))], draw(bw), draw(lat))
    nodes = gpus + sws
    for _ in range(draw(st.integers(0, 6))):
        a, b = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes))
        if a != b:
            t.add_link(a, b, draw(bw), draw(lat), duplex=draw(st.booleans()))
    return t


def _reference_dist(t: Topology) -> np.ndarray:
    """``ref[d, v]``: shortest hop count from node v to GPU number d (inf: none), where only
    forwarding nodes (switches; GPUs too with ``gpu_forwarding``) relay: v and the destination
    are the only non-forwarding nodes a path may touch."""
    n = len(t.node_kind)
    adj = np.zeros((n, n))
    adj[np.asarray(t.link_src), np.asarray(t.link_dst)] = 1.0  # parallel links: one edge
    kind = np.asarray(t.node_kind)
    relays = np.ones(n, bool) if t.gpu_forwarding else kind != GPU
    ref = np.full((len(t.gpus), n), np.inf)
    for d, tnode in enumerate(t.gpus):
        for v in range(n):
            keep = relays.copy()
            keep[[v, tnode]] = True
            idx = np.flatnonzero(keep)
            sub = adj[np.ix_(idx, idx)]
            sp = shortest_path(sub, directed=True, unweighted=True,
                               indices=int(np.searchsorted(idx, v)))
            ref[d, v] = sp[np.searchsorted(idx, tnode)]
    return ref


@FAST
@given(t=_topologies(), seed=st.integers(0, 2**31 - 1))
def test_routes_are_shortest_valid_chains(t, seed):
    ft = t.freeze()
    ref = _reference_dist(t)
    dist = np.where(ft.dist < 0, np.inf, ft.dist.astype(np.float64))
    assert np.array_equal(dist, ref)
    g = ft.n_gpus
    src, dst = (a.ravel() for a in np.meshgrid(np.arange(g), np.arange(g), indexing="ij"))
    pp, pl, lat = ft.route(src, dst, seed)
    for i, (s, d) in enumerate(zip(src, dst)):
        path = pl[pp[i]:pp[i + 1]]
        a, b = ft.gpu_nodes[s], ft.gpu_nodes[d]
        assert len(path) == ref[d, a]  # hop count = shortest-path distance (0 for s == d)
        if s == d:
            continue
        assert ft.link_src[path[0]] == a and ft.link_dst[path[-1]] == b
        assert np.array_equal(ft.link_dst[path[:-1]], ft.link_src[path[1:]])  # a chain
        assert ft.forwards[ft.link_dst[path[:-1]]].all()  # only forwarding nodes relay
        assert lat[i] == pytest.approx(ft.link_lat[path].sum(), rel=1e-12, abs=0.0)
    # ECMP is a function of (src, dst, seed) only: routing one pair alone gives the same path
    k = len(src) // 2
    p1, l1, _ = ft.route(src[k:k + 1], dst[k:k + 1], seed)
    assert np.array_equal(l1, pl[pp[k]:pp[k + 1]])


# ---- max-min fair rates -------------------------------------------------------------------------


@st.composite
def _instances(draw):
    """Link capacities (some zero: a circuit down) and flows, each on a set of distinct links."""
    n_links = draw(st.integers(1, 6))
    cap = np.array([draw(st.one_of(st.just(0.0), st.floats(0.1, 10.0), st.sampled_from([1.0, 2.0])))
                    for _ in range(n_links)], np.float64)
    n_flows = draw(st.integers(1, 8))
    paths = [draw(st.lists(st.integers(0, n_links - 1), min_size=1, max_size=min(3, n_links),
                           unique=True)) for _ in range(n_flows)]
    return cap, paths


@FAST
@given(inst=_instances(), scale=st.sampled_from([1.0, 1e9]))
def test_maxmin_rates_feasible_and_maxmin_optimal(inst, scale):
    """Rates are feasible (no link over capacity, 1e-9 relative) and max-min fair: no flow's rate
    can grow while every flow of lower or equal rate keeps its own (an LP per flow)."""
    cap, paths = inst
    F, L = len(paths), len(cap)
    path_ptr = np.concatenate(([0], np.cumsum([len(p) for p in paths]))).astype(np.int64)
    path_links = np.concatenate([np.asarray(p, np.int64) for p in paths])
    rate = np.full(F, np.nan)
    maxmin_rates(np.arange(F, dtype=np.int64), F, path_ptr, path_links, cap * scale, rate)
    x = rate / scale
    assert np.all(np.isfinite(x)) and np.all(x >= 0.0)
    A = np.zeros((L, F))  # link x flow incidence
    for f, p in enumerate(paths):
        A[p, f] = 1.0
    load = A @ x
    assert np.all(load <= cap * (1.0 + 1e-9)), (load, cap)
    for f in range(F):
        # "lower or equal" up to round-off: equal shares computed on different links may
        # differ in the last bits (e.g. 5/6 vs (5 - 5 * (5/6)) / 1)
        held = [g for g in range(F) if g != f and x[g] <= x[f] * (1.0 + 1e-9)]
        bounds = [(0.0, None)] * F
        for g in held:  # keep at least its rate (less round-off, so the LP stays feasible)
            bounds[g] = (x[g] * (1.0 - 1e-9), None)
        c = np.zeros(F)
        c[f] = -1.0
        res = linprog(c, A_ub=A, b_ub=cap, bounds=bounds, method="highs")
        assert res.status == 0, res.message
        best = -res.fun
        assert best <= x[f] * (1.0 + 1e-6) + 1e-9, (f, best, x[f], x, cap, paths)


def test_maxmin_rates_textbook_case():
    """The classic example: flows 0 (links 0, 1), 1 (link 0), 2 (link 1); cap 1 and 2.
    Link 0 saturates first at 1/2 each; flow 2 then takes the 3/2 that is left on link 1."""
    path_ptr = np.array([0, 2, 3, 4], np.int64)
    path_links = np.array([0, 1, 0, 1], np.int64)
    rate = np.zeros(3)
    maxmin_rates(np.arange(3, dtype=np.int64), 3, path_ptr, path_links, np.array([1.0, 2.0]), rate)
    assert rate.tolist() == [0.5, 0.5, 1.5]
