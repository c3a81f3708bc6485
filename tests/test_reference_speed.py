"""The reference bounds give the values of the plain computations they replaced, to the bit:
every GPU's cut sets and capacities (the per-set loop of netsim 0472d5b, kept here; the new one
shares proven-equal GPUs' capacities) and the per-set latency minimum of ``cut_sum_time``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.bounds import _row_min, cut_sum_time
from netsim.plugins import resolve
from netsim.reference import _compute_cuts, _families, _min_cut_side
from netsim.topology import Topology


def _cuts_reference(ft):
    """netsim 0472d5b's cut computation: per direction, GPU and set, in Python."""
    ng = ft.n_gpus
    n_nodes = len(ft.node_kind)
    gpu_nodes = np.asarray(ft.gpu_nodes, np.int64)
    src_all, dst_all = np.asarray(ft.link_src, np.int64), np.asarray(ft.link_dst, np.int64)
    bw_all = np.asarray(ft.link_bw, np.float64)
    relays = np.asarray(ft.forwards, bool)
    big = float(bw_all.sum()) * 2.0 + 1.0
    sink = n_nodes
    results = {}
    for direction in ("out", "in"):
        masks_of, caps_of = [], []
        for i in range(ng):
            node = int(gpu_nodes[i])
            if direction == "out":
                keep = relays[src_all] | (src_all == node)
                s, d = src_all[keep], dst_all[keep]
                dist_row = np.asarray(ft.dist[:, node], np.int64)
            else:
                keep = relays[dst_all] | (dst_all == node)
                s, d = dst_all[keep], src_all[keep]
                dist_row = np.asarray(ft.dist[i, gpu_nodes], np.int64)
            bw = bw_all[keep]
            ms, cs = [], []
            for m in _families(dist_row, i):
                members = gpu_nodes[m]
                gs = np.concatenate([s, members])
                gd = np.concatenate([d, np.full(len(members), sink)])
                gc = np.concatenate([bw, np.full(len(members), big)])
                reach = _min_cut_side(n_nodes + 1, gs, gd, gc, node, sink)
                crossing = reach[s] & ~reach[d]
                ms.append(m)
                cs.append(float(bw[crossing].sum()))
            masks_of.append(ms)
            caps_of.append(cs)
        F = max(len(x) for x in masks_of) if ng else 1
        mask = np.zeros((F, ng, ng), bool)
        capa = np.full((F, ng), np.inf)
        for i in range(ng):
            for f, (m, c) in enumerate(zip(masks_of[i], caps_of[i])):
                mask[f, i] = m
                capa[f, i] = c if c > 0 else np.inf
        results[direction] = (mask, capa)
    return results["out"] + results["in"]


def _same_cuts(ft) -> bool:
    """Both forms (the scale shortcuts on and off) equal the reference's cuts to the bit."""
    want = _cuts_reference(ft)
    for large in (True, False):
        c = _compute_cuts(ft, large=large)
        got = (c.out_mask, c.out_cap, c.in_mask, c.in_cap)
        if not all(x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
                   for x, y in zip(got, want)):
            return False
    return True


FABRICS = [
    ("cluster", dict(servers=8, gpus_per_server=4, rails=4, servers_per_leaf=2, spines=2)),
    ("cluster", dict(servers=12, gpus_per_server=2, rails=2, servers_per_leaf=2, tiers=3,
                     spines=3, units_per_pod=2, cores=2, oversubscription=1.7,
                     core_oversubscription=3.0)),
    ("cluster", dict(servers=5, gpus_per_server=4, rails=1, servers_per_leaf=2)),
    ("fat_tree", dict(k=4)),
    ("leaf_spine", dict(gpus=32, oversubscription=3.0)),
    ("rail_optimized", dict(servers=4, gpus_per_server=4, spines=2)),
    ("hybrid", dict(servers=4, gpus_per_server=4, scale_out="ocs", ports=2)),
    ("hybrid", dict(servers=4, gpus_per_server=2, scale_out="leaf_spine", spines=2)),
    ("ocs_direct", dict(gpus=8, ports=2)),
    ("crossbar", dict(gpus=1)),
]


@pytest.mark.parametrize("name,params", FABRICS, ids=[f"{n}{i}" for i, (n, _) in
                                                      enumerate(FABRICS)])
def test_cuts_identical(name, params):
    assert _same_cuts(resolve("topologies", name)[1](**params).freeze())


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 10), st.integers(1, 6), st.integers(0, 12),
       st.booleans())
def test_cuts_identical_random_graphs(draw, n_gpus, n_sw, extra, fwd):
    """Random fabrics: uneven, non-integer bandwidths, one-way links, relaying GPUs."""
    rng = np.random.default_rng(draw)
    t = Topology("random", gpu_forwarding=fwd)
    gpus = [t.add_gpu() for _ in range(n_gpus)]
    sws = [t.add_switch() for _ in range(n_sw)]
    for g in gpus:
        t.add_link(g, sws[int(rng.integers(0, n_sw))], float(rng.uniform(1e9, 5e10)))
    for a in range(1, n_sw):
        t.add_link(sws[a], sws[int(rng.integers(0, a))], float(rng.uniform(1e9, 5e10)))
    for _ in range(extra):
        a, b = rng.choice(n_gpus + n_sw, 2, replace=False)
        nodes = gpus + sws
        t.add_link(nodes[a], nodes[b], float(rng.uniform(1e9, 5e10)),
                   duplex=bool(rng.integers(0, 2)))
    assert _same_cuts(t.freeze())


def _symmetric_fabric(rng, servers, gps, leaves, spines, bw):
    """Servers of GPUs (NVLink switch, a NIC each) on leaves and spines, whole-number
    bandwidths (exact flows: GPUs of one orbit share capacities); ``rng`` breaks some symmetry
    (a faster NIC, a missing uplink, an extra link) or none."""
    t = Topology("sym")
    leaf = [t.add_switch() for _ in range(leaves)]
    sp = [t.add_switch() for _ in range(spines)]
    for s in range(servers):
        nv = t.add_switch()
        for g in range(gps):
            x = t.add_gpu()
            t.add_link(x, nv, 9 * bw)
            nic = t.add_nic()
            t.add_link(x, nic, 2 * bw)
            t.add_link(nic, leaf[(s * gps + g) % leaves], bw * (2 if rng.random() < 0.1 else 1))
    for a in leaf:
        for b in sp:
            if rng.random() > 0.1:
                t.add_link(a, b, bw * int(rng.integers(1, 4)))
    if rng.random() < 0.3:
        t.add_link(leaf[0], leaf[-1], bw) if leaves > 1 else None
    return t


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3))
def test_cuts_identical_symmetric_fabrics(draw, servers, gps, leaves, spines):
    """Symmetric and nearly symmetric fabrics (where the orbit shortcut applies, or must not)."""
    rng = np.random.default_rng(draw)
    t = _symmetric_fabric(rng, servers, gps, leaves, spines, 5e10)
    try:
        ft = t.freeze()
    except Exception:  # a draw without a path between some GPUs
        return
    assert _same_cuts(ft)


def test_orbits_found_and_exactness_guard():
    from netsim.reference import _exact_flows, _gpu_orbit_reps

    ft = resolve("topologies", "cluster")[1](servers=8, gpus_per_server=4, rails=4,
                                             servers_per_leaf=2, spines=2).freeze()
    assert _exact_flows(ft)
    assert len(set(_gpu_orbit_reps(ft).tolist())) == 1  # every GPU alike

    def pair(bw_a, bw_b):
        t = Topology("two")
        sw = t.add_switch()
        t.add_link(t.add_gpu(), sw, bw_a)
        t.add_link(t.add_gpu(), sw, bw_b)
        return t.freeze()

    assert _exact_flows(pair(5e10, 5e10))
    assert not _exact_flows(pair(5e10, 2.5e9 + 0.5))  # fractional bytes/s: no shortcut
    assert not _exact_flows(pair(2.0**53, 5e10))  # past exact float64 integers
    assert not _exact_flows(pair(1e16, 3.0))  # gcd 1 below Dinic's saturation threshold
    partial = resolve("topologies", "cluster")[1](servers=5, gpus_per_server=2, rails=2,
                                                  servers_per_leaf=2).freeze()
    reps = _gpu_orbit_reps(partial)  # the half-full leaf's server is not like the others
    assert len(set(reps.tolist())) > 1 and _same_cuts(partial)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 5))
def test_row_min_is_numpys(draw, n, f):
    rng = np.random.default_rng(draw)
    mask = rng.random((f, n, n)) < 0.4
    lat = np.where(rng.random((n, n)) < 0.2, np.inf, rng.random((n, n)))
    if n > 1 and draw % 3 == 0:
        lat[0, 1] = np.nan
    want = np.where(mask, lat[None], np.inf).min(axis=2)
    assert np.array_equal(_row_min(mask, lat), want, equal_nan=True)


def test_cut_sum_time_latency_unchanged():
    """The latency branch of cut_sum_time against its numpy form on a real fabric."""
    ft = resolve("topologies", "cluster")[1](servers=4, gpus_per_server=4, rails=4,
                                             servers_per_leaf=2).freeze()
    c = _compute_cuts(ft)
    rng = np.random.default_rng(5)
    m = rng.poisson(2, (16, 16)) * 1e6
    np.fill_diagonal(m, 0)
    lat = rng.random((16, 16)) * 1e-6
    sent = np.einsum("fij,ij->fi", c.out_mask, m)
    recv = np.einsum("fij,ji->fi", c.in_mask, m)
    la = np.where(m > 0, lat, np.inf)
    lo = np.where(c.out_mask, la[None], np.inf).min(axis=2)
    li = np.where(c.in_mask, la.T[None], np.inf).min(axis=2)
    t_out = np.where(sent > 0, sent / c.out_cap + lo, 0.0)
    t_in = np.where(recv > 0, recv / c.in_cap + li, 0.0)
    want = float(max(t_out.max(), t_in.max()))
    assert cut_sum_time(m, c.out_mask, c.out_cap, c.in_mask, c.in_cap, lat) == want
