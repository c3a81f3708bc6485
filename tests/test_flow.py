"""Flow model against the exact cases of DESIGN.md ("Models that must agree")."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netsim.fabric.flow as flow_mod
from netsim.fabric.flow import FlowFabric
from netsim.topology import Topology, crossbar


def _line(bw, lat):
    t = Topology("line")
    a, b = t.add_gpu(), t.add_gpu()
    t.add_link(a, b, bw, lat)
    return t.freeze()


@pytest.mark.parametrize("nbytes,bw,lat", [(1.0, 1e9, 0.0), (1e6, 1e9, 1e-6), (12345.0, 3.2e10, 2.5e-6)])
def test_single_link_is_exact(nbytes, bw, lat):
    f = FlowFabric(_line(bw, lat))
    f.add_flows([0], [1], [nbytes])
    f.run_to_completion()
    assert f.delivered_at()[0] == pytest.approx(lat + nbytes / bw, rel=1e-12)


def test_two_flows_share_a_link_fairly():
    t = Topology("v")
    a, b, c = t.add_gpu(), t.add_gpu(), t.add_gpu()
    sw = t.add_switch()
    for g in (a, b, c):
        t.add_link(g, sw, 1e9)
    f = FlowFabric(t.freeze())
    f.add_flows([0, 1], [2, 2], [1e6, 3e6])
    f.run_to_completion()
    # both at 0.5 GB/s until the small one ends at 2 ms; then the big one alone at 1 GB/s
    assert f.finish[0] == pytest.approx(2e-3)
    assert f.finish[1] == pytest.approx(2e-3 + 2e6 / 1e9)


def test_crossbar_alltoall_respects_line_sum_bound():
    n, bw = 16, 1e9
    ft = crossbar(n, bw).freeze()
    rng = np.random.default_rng(1)
    m = rng.random((n, n)) * 1e6
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    f = FlowFabric(ft)
    f.add_flows(src, dst, m[src, dst])
    f.run_to_completion()
    t = f.delivered_at()
    sent_done = np.zeros(n)
    recv_done = np.zeros(n)
    np.maximum.at(sent_done, src, t)
    np.maximum.at(recv_done, dst, t)
    assert np.all(sent_done >= m.sum(1) / bw * (1 - 1e-12))
    assert np.all(recv_done >= m.sum(0) / bw * (1 - 1e-12))
    ideal = max(m.sum(0).max(), m.sum(1).max()) / bw
    assert t.max() >= ideal * (1 - 1e-12)


def test_uniform_crossbar_alltoall_meets_bound_exactly():
    n, bw, lat = 8, 5e10, 1e-6
    ft = crossbar(n, bw, lat).freeze()
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    f = FlowFabric(ft)
    f.add_flows(src, dst, np.full(len(src), 1e6))
    f.run_to_completion()
    assert f.delivered_at().max() == pytest.approx((n - 1) * 1e6 / bw + 2 * lat, rel=1e-12)


def test_tolerance_changes_little_and_saves_events():
    n = 12
    ft = crossbar(n, 1e9).freeze()
    rng = np.random.default_rng(7)
    m = rng.random((n, n)) * 1e6
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    exact = FlowFabric(ft)
    exact.add_flows(src, dst, m[src, dst])
    exact.run_to_completion()
    approx = FlowFabric(ft, tolerance=0.01)
    approx.add_flows(src, dst, m[src, dst])
    approx.run_to_completion()
    assert approx.events < exact.events
    a, e = approx.finish[: approx.n], exact.finish[: exact.n]
    assert np.abs(a - e).max() <= 0.02 * e.max()
    assert a.max() == pytest.approx(e.max(), rel=0.02)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 8),
    topo=st.sampled_from(["crossbar", "leaf_spine", "ocs_direct", "fat_tree"]),
    seed=st.integers(0, 10_000),
    density=st.floats(0.1, 1.0),
    tol=st.sampled_from([0.0, 1e-3]),
)
def test_bytes_are_conserved(n, topo, seed, density, tol):
    import importlib

    mod = importlib.import_module(f"topologies.{topo}")
    kw = {"crossbar": dict(gpus=n), "leaf_spine": dict(gpus=2 * n, gpus_per_server=2, servers_per_leaf=1),
          "ocs_direct": dict(gpus=max(n, 2), ports=2 if n > 2 else 1), "fat_tree": dict(k=4)}[topo]
    ft = mod.build(**kw).freeze()
    g = ft.n_gpus
    rng = np.random.default_rng(seed)
    m = rng.random((g, g)) * 1e5 * (rng.random((g, g)) < density)
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    f = FlowFabric(ft, tolerance=tol)
    # flows arrive in two waves to exercise arrivals mid-run
    half = len(src) // 2
    f.add_flows(src[:half], dst[:half], m[src[:half], dst[:half]])
    f.step()
    f.add_flows(src[half:], dst[half:], m[src[half:], dst[half:]])
    f.run_to_completion()
    assert f.n == len(src)
    assert not np.isnan(f.finish[: f.n]).any()
    assert np.allclose(f.rem[: f.n], 0.0)
    assert f.bytes[: f.n].sum() == pytest.approx(m.sum())
    assert np.all(f.finish[: f.n] >= f.start[: f.n])


@pytest.mark.parametrize("kw", [dict(servers=4, gpus_per_server=4, rails=4, servers_per_leaf=2),
                                dict(servers=4, gpus_per_server=2, rails=1, servers_per_leaf=1,
                                     oversubscription=2.0),
                                dict(servers=8, gpus_per_server=2, rails=2, servers_per_leaf=2,
                                     tiers=3, units_per_pod=2, spines=2, cores=2,
                                     core_oversubscription=4.0)])
def test_cluster_preset_capacities_and_alltoall(kw):
    """The cluster preset: GPU count, leaf uplink and core capacities from the
    oversubscriptions, and a uniform all-to-all that every GPU pair can route, no faster than
    its NIC line-sum bound nor than the bisection of the most oversubscribed tier allows."""
    from topologies.cluster import build

    t = build(nvlink_gbps=0.0, **kw)
    ft = t.freeze()
    s, g, r = kw["servers"], kw["gpus_per_server"], kw["rails"]
    assert ft.n_gpus == s * g
    nic = 400e9 / 8
    spl = kw["servers_per_leaf"]
    leaf_down = nic * spl * -(-g // r)
    over = kw.get("oversubscription", 1.0)
    spines = kw.get("spines", 8)
    assert np.isclose(ft.link_bw, leaf_down / over / spines).any()  # leaf -> spine
    n = ft.n_gpus
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    f = FlowFabric(ft, tolerance=1e-3)
    b = 1e6
    f.add_flows(src, dst, np.full(len(src), b))
    f.run_to_completion()
    assert (n - 1) * b / nic * (1 - 1e-9) <= f.delivered_at().max()
    if kw.get("tiers", 2) == 3:  # half the GPUs (one pod) send half their bytes across the core
        pods = -(-(s // spl) // kw["units_per_pod"])
        core_bw = leaf_down / over / spines * kw["units_per_pod"] * r / \
            kw["core_oversubscription"] / kw["cores"]
        cross = (n // pods) * (n - n // pods) * b
        assert f.delivered_at().max() >= cross / (core_bw * kw["cores"] * spines) * (1 - 1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(2, 12), st.booleans())
def test_appended_link_table_equals_a_rebuilt_one(seed, n_flows, n_links, wide):
    """Flows appended batch by batch to a kept link -> flow table (csr_append: lists grow,
    move to the free end, arrays double) give, link by link, the entries a table rebuilt from
    the whole active list holds, in the same order, with the same live counts (both table
    layouts: uint16 links and uint8 lengths, or int32 for both)."""
    from netsim.fabric.flow import _NARROW, _WIDE, csr_append, link_csr

    dt = _WIDE if wide else _NARROW

    rng = np.random.default_rng(seed)
    plen = rng.integers(1, 5, n_flows)
    path_links = np.concatenate([rng.choice(n_links, min(p, n_links), replace=False)
                                 for p in plen]).astype(np.int64)
    path_ptr = np.concatenate([[0], np.cumsum([min(p, n_links) for p in plen])]).astype(np.int64)
    active = np.arange(n_flows, dtype=np.int64)
    first = int(rng.integers(1, n_flows + 1))
    lptr, lend, lf, lpath, lplen, cnt = link_csr(active, first, path_ptr, path_links, n_links,
                                                 *dt)
    lcap, top = lptr[1:].copy(), np.array([lptr[-1]], np.int64)
    pos = first
    while pos < n_flows:
        k = int(rng.integers(1, n_flows - pos + 1))
        lf, lpath, lplen, ok = csr_append(active[pos:pos + k], path_ptr, path_links, lptr, lend,
                                          lcap, top, lf, lpath, lplen, cnt)
        if not ok:  # a longer path than the table's rows: the caller rebuilds
            return
        pos += k
    assert lpath.dtype == dt[0].dtype and lplen.dtype == dt[1].dtype
    r = link_csr(active, n_flows, path_ptr, path_links, n_links, *dt)
    for e in range(n_links):
        np.testing.assert_array_equal(lf[lptr[e]:lend[e]], r[2][r[0][e]:r[1][e]])
        for j, k in zip(range(lptr[e], lend[e]), range(r[0][e], r[1][e])):
            assert lplen[j] == r[4][k]
            np.testing.assert_array_equal(lpath[j, :lplen[j]], r[3][k, :r[4][k]])
    np.testing.assert_array_equal(cnt, r[5])


# few distinct keys, so that equal keys (whose pop order the heap's layout decides) are common
_hkeys = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 2.5, np.inf]), st.floats(0, 1e6))


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.one_of(st.tuples(st.just("push"), _hkeys), st.just(("pop",))),
                    max_size=80))
def test_key_only_heap_pops_what_the_tie_heap_pops(ops):
    """kheap_push / kheap_pop (the filling's link heap) return the same (key, payload) at every
    pop as heap_push / heap_pop with every tie 0: equal keys come out in the same order, which
    the rates' last bits depend on."""
    from netsim.fabric.heap import heap_pop, heap_push, kheap_pop, kheap_push

    cap = len(ops) + 1
    hk, hs, hv = np.empty(cap), np.zeros(cap, np.int64), np.empty(cap, np.int64)
    kk, kv = np.empty(cap), np.empty(cap, np.int64)
    n = m = 0
    for i, op in enumerate(ops):
        if op[0] == "push":
            n = heap_push(hk, hs, hv, n, op[1], 0, i)
            m = kheap_push(kk, kv, m, op[1], i)
        elif n:
            key, val, n = heap_pop(hk, hs, hv, n)
            assert (key, val) == kheap_pop(kk, kv, m)[:2]
            m -= 1
        assert n == m
        assert np.array_equal(hk[:n], kk[:m]) and np.array_equal(hv[:n], kv[:m])


def _control_plane_run(ft, m, later_arrivals):
    """All flows at time 0, then run_until group by group (one group per source GPU), as the
    SimPy control plane drives a dispatch-only layer."""
    src, dst = np.nonzero(m)
    f = FlowFabric(ft, tolerance=1e-3, later_arrivals=later_arrivals)
    f.add_flows(src, dst, m[src, dst], group=src)
    left = np.bincount(src, minlength=ft.n_gpus).astype(np.int64)
    done_at, hit = np.zeros(ft.n_gpus), np.zeros(ft.n_gpus, np.bool_)
    while f.n_act:
        f.run_until(np.inf, left, done_at, hit)
    return f


def test_dispatch_only_fabric_refills_incrementally_within_tolerance():
    """Declared without later arrivals, solver "auto" refills incrementally between group
    completions (fewer flows visited than the full solver, which a fabric that may see arrivals
    uses) and finishes every flow within the tolerance of it."""
    from topologies import leaf_spine

    ft = leaf_spine.build(gpus=32, gpus_per_server=4, servers_per_leaf=2).freeze()
    m = np.random.default_rng(3).integers(1, 64, (32, 32)).astype(np.float64) * 4096
    np.fill_diagonal(m, 0.0)
    inc, full = _control_plane_run(ft, m, False), _control_plane_run(ft, m, True)
    assert inc.refilled < full.refilled
    a, e = inc.finish[: inc.n], full.finish[: full.n]
    assert np.abs(a - e).max() <= 2e-3 * e.max()


def test_dispatch_only_layer_rows_match_the_full_solver(tmp_path):
    """netsim run --traffic (dispatch only) with solver auto: the full solver's dispatch time
    within the tolerance, every byte delivered."""
    from netsim.scenario import run

    m = np.random.default_rng(4).integers(1, 64, (32, 32)).astype(np.float64) * 4096
    np.fill_diagonal(m, 0.0)
    np.save(tmp_path / "m.npy", m)
    base = dict(traffic=str(tmp_path / "m.npy"), topology="leaf_spine", gpus=32,
                tolerance=1e-3)
    auto, full = run(base | dict(solver="auto")), run(base | dict(solver="full"))
    assert auto["bytes_delivered"] == full["bytes_delivered"] == m.sum()
    assert abs(auto["dispatch_s"] / full["dispatch_s"] - 1) <= 2e-3


def test_no_flows_after_time_zero_when_declared():
    fab = FlowFabric(crossbar(2, 1e9, 0.0).freeze(), tolerance=1e-3, later_arrivals=False)
    fab.add_flows(np.array([0]), np.array([1]), np.array([1e6]))
    fab.run_to_completion()
    with pytest.raises(RuntimeError, match="after time 0"):
        fab.add_flows(np.array([1]), np.array([0]), np.array([1e6]))


@pytest.mark.parametrize("tol", [0.0, 1e-3])
def test_narrow_and_wide_link_tables_give_the_same_bits(monkeypatch, tol):
    """The kept table's uint16/uint8 layout (links and path lengths) and the int32 one that
    fabrics with more than 65,536 links or paths longer than 255 get: same finish times to the
    bit, with the full and the incremental solver."""
    from topologies.fat_tree import build

    ft = build(k=4).freeze()
    m = np.random.default_rng(4).random((ft.n_gpus, ft.n_gpus)) * 1e6
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    out = []
    for layout in ("narrow", "wide"):
        if layout == "wide":
            monkeypatch.setattr(FlowFabric, "_table_dtypes", lambda self: flow_mod._WIDE)
        for solver in ("full", "incremental"):
            f = FlowFabric(ft, tolerance=tol, capacity=len(src) + 1, solver=solver)
            f.add_flows(src, dst, m[src, dst])
            f.run_to_completion()
            assert f._csr is None or f._csr[3].dtype == (np.uint16 if layout == "narrow"
                                                          else np.int32)
            out.append(f.finish[: f.n].copy())
    assert np.array_equal(out[0], out[2]) and np.array_equal(out[1], out[3])


def test_a_grown_path_table_equals_one_that_held_the_batch():
    """A first batch whose routes outgrow the fabric's path table (which then grows) and one
    that fits in it: the same stored paths (redundant links dropped: the fat tree's NIC hops)
    and finish times, later batches included."""
    from topologies.fat_tree import build

    ft = build(k=4).freeze()
    m = np.random.default_rng(7).random((ft.n_gpus, ft.n_gpus)) * 1e6
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    small = FlowFabric(ft, capacity=4)  # path table of 16 links: the batch outgrows it
    big = FlowFabric(ft, capacity=len(src) * 16)
    for f in (small, big):
        f.add_flows(src, dst, m[src, dst])
        f.add_flows(src[:5], dst[:5], m[src[:5], dst[:5]])  # a later batch grows the table
    n = small.n
    assert n == big.n == len(src) + 5
    assert np.array_equal(small.path_ptr[: n + 1], big.path_ptr[: n + 1])
    assert np.array_equal(small.path_links[: small.path_ptr[n]], big.path_links[: big.path_ptr[n]])
    _, routed, _ = ft.route(src, dst)
    assert small.path_ptr[len(src)] < len(routed)  # pruning did drop links
    for f in (small, big):
        f.run_to_completion()
    assert np.array_equal(small.finish[:n], big.finish[:n])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 40), st.integers(2, 10), st.integers(1, 6),
       st.booleans())
def test_kept_table_recomputations_equal_fresh_fillings(seed, n_flows, n_links, rounds, parts):
    """Rates recomputed on one kept link -> flow table over several recomputations (int8
    stamps, each filling marking with a value its component's flows do not carry), flows
    retired and appended between them, against a filling on a table built afresh from the
    live flows each time. Every component refilled (``parts`` False, exact mode): equal to
    the bit. Only the components a retirement or an arrival touched (``parts``, tolerance
    mode): the others' rates kept, and every live rate equal to the fresh filling's to
    round-off (links tied at one share may pop in another order in a smaller heap)."""
    from netsim.fabric.flow import (_NARROW, _retire, csr_append, join_components, link_csr,
                                    maxmin_csr, maxmin_rates)

    rng = np.random.default_rng(seed)
    plen = np.minimum(rng.integers(1, 5, n_flows), n_links)
    path_links = np.concatenate([rng.choice(n_links, p, replace=False)
                                 for p in plen]).astype(np.int64)
    path_ptr = np.concatenate([[0], np.cumsum(plen)]).astype(np.int64)
    cap = rng.choice([1.0, 2.0, 3.0, 7.5], n_links)
    live = list(range(max(1, n_flows // 2)))
    pending = list(range(len(live), n_flows))
    active = np.array(live, np.int64)
    lptr, lend, lf, lpath, lplen, cnt = link_csr(active, len(active), path_ptr, path_links,
                                                 n_links, *_NARROW)
    lcap, top = lptr[1:].copy(), np.array([lptr[-1]], np.int64)
    stamp = np.full(n_flows, -1, np.int8)
    stamp[active] = 0
    parent, lcomp = np.arange(n_links), np.arange(n_links)
    cmask, cdirty = np.zeros(n_links, np.uint8), np.ones(n_links, np.bool_)
    join_components(active, path_ptr, path_links, parent, lcomp, cmask, cdirty)
    rate = np.full(n_flows, np.nan)
    for _ in range(rounds):
        if not parts:
            cdirty[:] = True
        before = rate.copy()
        clean = np.array([f for f in live if not cdirty[lcomp[path_links[path_ptr[f]]]]],
                         np.int64)
        got = maxmin_csr(lptr, lend, lf, lpath, lplen, cnt, stamp, cap, rate, lcomp, cdirty,
                         cmask, not parts)
        assert got >= 0 and not cdirty[lcomp].any()  # (a root names its component)
        ref = np.full(n_flows, np.nan)
        a = np.array(live, np.int64)
        maxmin_rates(a, len(a), path_ptr, path_links, cap, ref)
        if parts:
            assert np.array_equal(rate[clean], before[clean])
            np.testing.assert_allclose(rate[a], ref[a], rtol=1e-12)
        else:
            assert got == len(a)
            assert np.array_equal(rate[a], ref[a])
        # retire some live flows, append some new ones (stamp 0: live, not yet frozen)
        for f in [f for f in live if rng.random() < 0.3]:
            _retire(f, stamp, path_ptr, path_links, cnt)
            cdirty[lcomp[path_links[path_ptr[f]]]] = True
            live.remove(f)
        k = int(rng.integers(0, len(pending) + 1))
        new, pending = pending[:k], pending[k:]
        if new:
            ids = np.array(new, np.int64)
            lf, lpath, lplen, ok = csr_append(ids, path_ptr, path_links, lptr, lend, lcap, top,
                                              lf, lpath, lplen, cnt)
            stamp[ids] = 0
            live += new
            join_components(ids, path_ptr, path_links, parent, lcomp, cmask, cdirty)
            if not ok:  # a longer path than the table's rows: rebuilt, as FlowFabric does
                a = np.array(live, np.int64)
                lptr, lend, lf, lpath, lplen, cnt = link_csr(a, len(a), path_ptr, path_links,
                                                             n_links, *_NARROW)
                lcap, top = lptr[1:].copy(), np.array([lptr[-1]], np.int64)
                stamp[a] = 0
                cmask[:] = 0
                cdirty[:] = True
        if not live:
            return


def test_a_component_carrying_every_mark_is_cleared_and_refilled():
    """A filling whose components' flows carry all seven stamp marks between them clears every
    live flow's stamp first, then fills with the first mark: the same rates as a fresh filling,
    through the kernel itself, its event loop and the Python recomputation."""
    from netsim.fabric.flow import maxmin_csr, maxmin_rates

    ft = importlib.import_module("topologies.leaf_spine").build(
        gpus=8, gpus_per_server=2, servers_per_leaf=1).freeze()
    g = ft.n_gpus
    m = np.random.default_rng(5).random((g, g)) * 1e6
    np.fill_diagonal(m, 0)
    src, dst = np.nonzero(m)
    f = FlowFabric(ft, tolerance=1e-3, solver="full")
    f.add_flows(src, dst, m[src, dst])
    t = f._table(1)
    ref = np.zeros(f.n)
    maxmin_rates(np.arange(f.n), f.n, f.path_ptr, f.path_links, f.cap.copy(), ref)
    stamp = t[6].copy()
    stamp[: f.n] = 5  # every flow frozen last with mark 5 ...
    cmask = np.full_like(f._cmask, 0xFE)  # ... and marks 1..7 all present
    rate = np.full(f.n, -1.0)
    got = maxmin_csr(*t[:6], stamp, f.cap, rate, f._lcomp, f._cdirty.copy(), cmask, False)
    assert got == len(src) and np.array_equal(rate, ref)
    assert (stamp[: f.n] == 1).all() and (cmask[np.unique(f._lcomp)] == 1 << 1).all()
    f._cmask[:] = 0xFE  # through the kernel's event loop
    left, done_at, hit = np.full(1, 10**9, np.int64), np.zeros(1), np.zeros(1, np.bool_)
    f.run_until(1e-12, left, done_at, hit)  # the kernel's event loop: fills, no completion
    assert f.n_act == len(src) and f.recomputes == 1 and f.refilled == len(src)
    assert np.array_equal(f.rate[: f.n], ref)
    f._cmask[:] = 0xFE  # again, through the Python recomputation (next_event_time)
    f._touch_all()
    f.rate[: f.n] = -1.0
    f.next_event_time()
    assert f.recomputes == 2 and f.refilled == 2 * len(src)
    assert np.array_equal(f.rate[: f.n], ref)
