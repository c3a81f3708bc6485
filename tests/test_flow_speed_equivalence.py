"""The incremental flow solver (tolerance > 0) against the full recomputation it replaces.

Reference: :func:`netsim.fabric.flow.maxmin_rates` (progressive filling over every active flow,
the exact mode's solver, unchanged) and ``FlowFabric(solver="full")`` (every rate recomputed at
every event). Instances are drawn by hypothesis on small fat-trees, leaf-spines and crossbars.
"""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.fabric.flow import FlowFabric, maxmin_rates

_TOPOS = {
    "fat_tree": dict(k=4),
    "leaf_spine": dict(gpus=8, gpus_per_server=2, servers_per_leaf=1),
    "crossbar": dict(gpus=6),
    "rail_optimized": dict(servers=3, gpus_per_server=2, spines=2, oversubscription=2.0),
}


def _topo(name):
    mod = importlib.import_module(f"topologies.{name}")
    return mod.build(**_TOPOS[name]).freeze()


def _matrix(g, seed, density, equal):
    rng = np.random.default_rng(seed)
    m = (np.full((g, g), 2.0**18) if equal else rng.random((g, g)) * 1e6)
    m = m * (rng.random((g, g)) < density)
    np.fill_diagonal(m, 0)
    return m


@settings(max_examples=30, deadline=None)
@given(topo=st.sampled_from(sorted(_TOPOS)), seed=st.integers(0, 10_000),
       density=st.floats(0.2, 1.0), equal=st.booleans(),
       tol=st.sampled_from([1e-9, 1e-3, 1e-2]))
def test_incremental_rates_are_maxmin_at_every_event(topo, seed, density, equal, tol):
    """After every event the kept rates equal a full progressive filling of the live flows
    (to round-off: 1e-9 relative)."""
    ft = _topo(topo)
    m = _matrix(ft.n_gpus, seed, density, equal)
    src, dst = np.nonzero(m)
    if len(src) == 0:
        return
    f = FlowFabric(ft, tolerance=tol, capacity=len(src) + 1, solver="incremental")
    f.add_flows(src, dst, m[src, dst], group=np.arange(len(src)))  # one group per flow
    left = np.ones(len(src), np.int64)
    done_at, hit = np.zeros(len(src)), np.zeros(len(src), np.bool_)
    checked = 0
    while f.n_act:
        f.run_until(np.inf, left, done_at, hit)  # returns at the first completion
        hit[:] = False
        if not f.n_act:
            break
        live = f._inc["order"][: f.n_act].copy() if f._inc is not None else f.active[: f.n_act]
        ref = np.zeros(f.n)
        maxmin_rates(np.sort(live), len(live), f.path_ptr, f.path_links, f.cap.copy(), ref)
        np.testing.assert_allclose(f.rate[live], ref[live], rtol=1e-9, atol=0)
        checked += 1
    assert np.allclose(f.rem[: f.n], 0.0)
    assert not np.isnan(f.finish[: f.n]).any()


@settings(max_examples=30, deadline=None)
@given(topo=st.sampled_from(sorted(_TOPOS)), seed=st.integers(0, 10_000),
       density=st.floats(0.2, 1.0), equal=st.booleans(), tol=st.sampled_from([1e-3, 1e-2]),
       waves=st.integers(1, 3), cut=st.floats(0.2, 0.8))
def test_incremental_matches_full_solver(topo, seed, density, equal, tol, waves, cut):
    """Same events, flows and finish times as the full solver at the same tolerance, with
    arrivals mid-run, extended flows and a capacity change: finish times within 1e-9 of the
    makespan (the two differ only by round-off in the rates and remaining bytes)."""
    ft = _topo(topo)
    m = _matrix(ft.n_gpus, seed, density, equal)
    src, dst = np.nonzero(m)
    if len(src) < 2:
        return
    runs = []
    for solver in ("incremental", "full"):
        f = FlowFabric(ft, tolerance=tol, capacity=4, solver=solver)  # small: buffers grow
        parts = np.array_split(np.arange(len(src)), waves)
        ids0 = f.add_flows(src[parts[0]], dst[parts[0]], m[src[parts[0]], dst[parts[0]]])
        g = 1
        left, done_at, hit = np.full(g, 10**9, np.int64), np.zeros(g), np.zeros(g, np.bool_)
        t1 = f.next_event_time() * (1 + cut)
        f.run_until(t1, left, done_at, hit)
        live = ids0[np.isnan(f.finish[ids0])]
        if len(live):
            f.extend(live[:1], 1e5)
        links = np.unique(f.path_links[f.path_ptr[0]:f.path_ptr[1]])
        f.set_link_capacity(links[:1], f.cap[links[:1]] * 0.5)
        for p in parts[1:]:
            f.add_flows(src[p], dst[p], m[src[p], dst[p]])
            f.run_until(f.now + (f.next_event_time() - f.now) * 2.5, left, done_at, hit)
        f.run_to_completion()
        runs.append(f)
    a, b = runs
    assert a.n == b.n and a.events == b.events
    fa, fb = a.finish[: a.n], b.finish[: b.n]
    assert np.abs(fa - fb).max() <= 1e-9 * fb.max()
    assert a.bytes[: a.n].sum() == pytest.approx(b.bytes[: b.n].sum(), rel=1e-12)


@pytest.mark.parametrize("topo", ["fat_tree", "leaf_spine"])
def test_tolerance_mode_stays_within_tolerance_of_exact(topo):
    """The incremental solver at tolerance 1e-3 against exact mode (tolerance 0, full solver):
    every finish time within a few tolerances of the makespan."""
    ft = _topo(topo)
    m = _matrix(ft.n_gpus, 3, 1.0, False)
    src, dst = np.nonzero(m)
    out = []
    for tol in (0.0, 1e-3):
        f = FlowFabric(ft, tolerance=tol, capacity=len(src) + 1, solver="incremental")
        f.add_flows(src, dst, m[src, dst])
        f.run_to_completion()
        out.append(f)
    e, a = out
    assert a.events < e.events
    fe, fa = e.finish[: e.n], a.finish[: a.n]
    assert np.abs(fa - fe).max() <= 5e-3 * fe.max()
    assert fa.max() == pytest.approx(fe.max(), rel=2e-3)


def test_exact_mode_does_not_use_the_incremental_solver():
    """tolerance 0 keeps the full recomputation (rates to the bit as before)."""
    ft = _topo("fat_tree")
    m = _matrix(ft.n_gpus, 5, 1.0, False)
    src, dst = np.nonzero(m)
    a = FlowFabric(ft, tolerance=0.0, solver="incremental")
    b = FlowFabric(ft, tolerance=0.0, solver="full")
    for f in (a, b):
        f.add_flows(src, dst, m[src, dst])
        f.run_to_completion()
    assert a._inc is None and a.refilled == b.refilled > 0
    assert np.array_equal(a.finish[: a.n], b.finish[: b.n])


def test_incremental_solver_refills_few_flows_on_a_fat_tree_alltoall():
    """Equal flows on a fat-tree: the fastest flows, frozen last, finish first, so refills
    touch a small part of the live flows (the lever behind the benchmark's fat-tree rows)."""
    from topologies.fat_tree import build

    ft = build(k=6).freeze()
    n = ft.n_gpus
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    runs = []
    for solver in ("incremental", "full"):
        f = FlowFabric(ft, tolerance=1e-3, solver=solver, capacity=len(src) + 1)
        f.add_flows(src, dst, np.full(len(src), 2.0**18))
        f.run_to_completion()
        runs.append(f)
    a, b = runs
    assert a.events == b.events
    assert np.abs(a.finish[: a.n] - b.finish[: b.n]).max() <= 1e-9 * b.finish[: b.n].max()
    assert a.refilled < 0.2 * b.refilled


def test_layer_with_the_incremental_solver_matches_the_full_one():
    """A whole MoE layer (GPU processes, dispatch and combine arriving over time) through the
    engine: the same events and layer time to 1e-9 with either solver; the default (auto) is
    the full solver under the engine's control plane, to the bit."""
    from netsim.scenario import run

    base = dict(topology="leaf_spine", gpus=16, workload="deepseek_v3", routing="zipf:1.2",
                seed=3)
    auto, full, inc = run(base), run(dict(base, solver="full")), run(dict(base, solver="incremental"))
    assert auto["solver"] == "auto" and inc["solver"] == "incremental"
    assert auto["layer_s"] == full["layer_s"] and auto["events"] == full["events"]
    assert inc["events"] == full["events"]
    assert inc["layer_s"] == pytest.approx(full["layer_s"], rel=1e-9)


# ---- exact mode against today's solver, operation for operation -------------------------------

def _reference_fill(live, paths, cap):
    """Progressive filling as exact mode did it before the kernels were tuned (commit 60852c8's
    ``maxmin_csr``), in Python: links filed in a heap at their share rem/count in link order, a
    popped link whose share grew by more than 1e-12 re-filed, else its unfrozen flows (ascending
    id: the kept table's order) frozen at its share, and every link of each frozen flow's path,
    the popped one included, charged in path order."""
    from netsim.fabric.heap import heap_pop, heap_push

    L = len(cap)
    rem = cap.copy()
    c = np.zeros(L, np.int64)
    on = [[] for _ in range(L)]
    for f in live:
        for e in paths[f]:
            c[e] += 1
            on[e].append(f)
    hk, hs, hv = np.empty(L + 1), np.zeros(L + 1, np.int64), np.empty(L + 1, np.int64)
    nh = 0
    for e in range(L):
        if c[e] > 0:
            nh = heap_push(hk, hs, hv, nh, rem[e] / c[e], 0, e)
    rate, frozen = {}, set()
    while nh > 0:
        key, e, nh = heap_pop(hk, hs, hv, nh)
        if c[e] == 0:
            continue
        share = rem[e] / c[e]
        if share > key * (1.0 + 1e-12) + 1e-300:
            nh = heap_push(hk, hs, hv, nh, share, 0, e)
            continue
        share = max(share, 0.0)
        for f in on[e]:
            if f not in frozen:
                frozen.add(f)
                rate[f] = share
                for e2 in paths[f]:
                    rem[e2] -= share
                    c[e2] -= 1
    return rate


def _reference_exact(ft, src, dst, nbytes):
    """Exact mode (tolerance 0) before the tuning: routes pruned of redundant links, then at
    every event a full filling and the earliest projected finishes completed (remaining bytes
    advanced by rate x dt, crumbs below 1e-3 B + 1e-6 x size finished). Returns finish times
    and the number of events."""
    pp, pl, _ = ft.route(src, dst, 0)
    red = ft.redundant
    paths = [[int(e) for e in pl[pp[i]:pp[i + 1]] if red is None or not red[e]]
             for i in range(len(src))]
    rem = nbytes.astype(float).copy()
    finish = np.full(len(src), np.nan)
    live, now, events = list(range(len(src))), 0.0, 0
    while live:
        r = _reference_fill(live, paths, ft.link_bw.astype(float))
        crumb = {f: rem[f] <= 1e-3 + 1e-6 * nbytes[f] for f in live}
        proj = {f: now if crumb[f] else (now + rem[f] / r[f] if r[f] > 0 else np.inf)
                for f in live}
        tmin = min(proj.values())
        done = [f for f in live if proj[f] <= tmin]
        dt = tmin - now
        for f in live:
            if f in done:
                finish[f], rem[f] = proj[f], 0.0
            else:
                rem[f] = max(rem[f] - r[f] * dt, 0.0)
        live = [f for f in live if f not in done]
        now, events = tmin, events + 1
    return finish, events


@settings(max_examples=25, deadline=None)
@given(topo=st.sampled_from(sorted(_TOPOS)), seed=st.integers(0, 10_000),
       density=st.floats(0.1, 0.6), equal=st.booleans(), solver=st.sampled_from(["auto", "full"]))
def test_exact_mode_equals_the_untuned_solver_to_the_bit(topo, seed, density, equal, solver):
    """Exact mode (tolerance 0) gives the same finish times, bit for bit, and the same events as
    the progressive filling and event loop it had before its kernels were tuned (fused path
    pruning, projected finishes computed once per event, list scans cut short, the frozen link
    not charged): none of these changes an operation on a value that is read again."""
    ft = _topo(topo)
    m = _matrix(ft.n_gpus, seed, density, equal)
    src, dst = np.nonzero(m)
    if len(src) == 0:
        return
    f = FlowFabric(ft, tolerance=0.0, capacity=len(src) + 1, solver=solver)
    f.add_flows(src, dst, m[src, dst])
    f.run_to_completion()
    ref, events = _reference_exact(ft, src, dst, m[src, dst])
    assert f.events == events
    assert np.array_equal(f.finish[: f.n], ref)


def test_auto_is_the_incremental_solver_run_to_completion():
    """``auto`` (the default) run to completion is the incremental solver: same events, rates
    and finish times to the bit; under run_until (a control plane) it is the full solver."""
    ft = _topo("fat_tree")
    m = _matrix(ft.n_gpus, 7, 1.0, True)
    src, dst = np.nonzero(m)
    out = {}
    for solver in ("auto", "incremental", "full"):
        f = FlowFabric(ft, tolerance=1e-3, capacity=len(src) + 1, solver=solver)
        f.add_flows(src, dst, m[src, dst])
        f.run_to_completion()
        out[solver] = f
    n = out["auto"].n
    assert np.array_equal(out["auto"].finish[:n], out["incremental"].finish[:n])
    assert out["auto"].refilled == out["incremental"].refilled < out["full"].refilled
    g = FlowFabric(ft, tolerance=1e-3, capacity=len(src) + 1)
    g.add_flows(src, dst, m[src, dst])
    left = np.full(1, 10**9, np.int64)
    g.run_until(np.inf, left, np.zeros(1), np.zeros(1, np.bool_))
    assert g._inc is None and np.array_equal(g.finish[:n], out["full"].finish[:n])


def test_auto_leaves_the_incremental_solver_when_it_refills_most_flows():
    """A dense all-to-all of many sizes on a leaf-spine: the incremental solver's probe refills
    more than half the live flows per recomputation, so ``auto`` hands the run to the full
    solver; events and finish times stay the full solver's (to 1e-9 of the makespan)."""
    from topologies.leaf_spine import build

    ft = build(gpus=32, servers_per_leaf=2, spines=8).freeze()
    m = np.random.default_rng(1).poisson(32, (32, 32)) * 14336.0
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    out = {}
    for solver in ("auto", "full"):
        f = FlowFabric(ft, tolerance=1e-3, capacity=len(src) + 1, solver=solver)
        f.add_flows(src, dst, m[src, dst])
        f.run_to_completion()
        out[solver] = f
    a, b = out["auto"], out["full"]
    assert a._auto_full and a.events == b.events
    assert np.abs(a.finish[: a.n] - b.finish[: b.n]).max() <= 1e-9 * b.finish[: b.n].max()


def _cluster():
    mod = importlib.import_module("topologies.cluster")
    return mod.build(servers=4, gpus_per_server=4, rails=2, servers_per_leaf=2, spines=2,
                     units_per_pod=2).freeze()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.2, 1.0), equal=st.booleans(),
       tol=st.sampled_from([1e-3, 1e-2]), waves=st.integers(1, 3))
def test_full_solver_by_components_is_maxmin_at_every_event(seed, density, equal, tol, waves):
    """On a fabric whose flows form several components (a small rail-optimised cluster: NVLink
    flows beside each rail's network), the full solver in tolerance mode refills only the
    components a completion or an arrival touched; after every event, arrivals in waves, every
    live rate equals a progressive filling of all live flows (1e-9 relative), and no
    recomputation refills more flows than are live."""
    ft = _cluster()
    m = _matrix(ft.n_gpus, seed, density, equal)
    src, dst = np.nonzero(m)
    if len(src) < 2:
        return
    f = FlowFabric(ft, tolerance=tol, capacity=4, solver="full")
    n = len(src)
    left, done_at, hit = np.ones(n, np.int64), np.zeros(n), np.zeros(n, np.bool_)
    parts = np.array_split(np.arange(n), waves)
    live_sum = 0
    for i, p in enumerate(parts):
        f.add_flows(src[p], dst[p], m[src[p], dst[p]], group=p)
        while f.n_act:
            before = f.n_act
            f.run_until(np.inf, left, done_at, hit)  # returns at the first completion
            hit[:] = False
            live_sum += before
            live = f.active[: f.n_act]
            if not len(live):
                break
            ref = np.zeros(f.n)
            maxmin_rates(np.sort(live), len(live), f.path_ptr, f.path_links, f.cap.copy(), ref)
            # (the kept rates are recomputed lazily: force the recomputation first)
            f.next_event_time()
            np.testing.assert_allclose(f.rate[live], ref[live], rtol=1e-9, atol=0)
            if i + 1 < len(parts) and f.n_act < before // 2:
                break  # the next wave arrives with flows still live
    assert not np.isnan(f.finish[:n]).any()
    assert f.refilled <= live_sum  # (a call recomputes once, at its start, what is dirty)


def test_exact_mode_refills_every_component():
    """Exact mode refills the whole fabric at every event and arrival (the same heap as before
    components: the same bits): every live flow at every recomputation; tolerance mode only
    what an event touched: fewer, for the same makespan to round-off."""
    ft = _cluster()
    m = _matrix(ft.n_gpus, 3, 1.0, False)
    src, dst = np.nonzero(m)
    n = len(src)
    runs = {}
    half = n // 2
    for tol in (0.0, 1e-12):
        f = FlowFabric(ft, tolerance=tol, solver="full")
        f.add_flows(src[:half], dst[:half], m[src[:half], dst[:half]], group=np.arange(half))
        left, done_at, hit = np.ones(n, np.int64), np.zeros(n), np.zeros(n, np.bool_)
        live_sum = 0
        calls = 0
        while f.n_act:
            if calls == 5:  # the second half arrives (in exact mode: every component refilled)
                live_sum += f.n_act
                f.run_until(f.now, left, done_at, hit)  # a recomputation, no event: all clean
                f.add_flows(src[half:], dst[half:], m[src[half:], dst[half:]],
                            group=np.arange(half, n))
            live_sum += f.n_act  # one recomputation per call: at its start
            rc = f.recomputes
            f.run_until(np.inf, left, done_at, hit)  # returns at the first completion
            assert f.recomputes == rc + 1
            hit[:] = False
            calls += 1
        assert calls > 5
        runs[tol] = (f, live_sum)
    (ex, ex_live), (tl, tl_live) = runs[0.0], runs[1e-12]
    assert ex.refilled == ex_live
    assert tl.refilled < tl_live
    assert tl.finish[:n].max() == pytest.approx(ex.finish[:n].max(), rel=1e-9)
