"""The grouped, interleaved router (``FrozenTopology.route``) picks exactly the paths of the plain
per-flow router it replaced (kept here as the reference): same links per hop, same latencies to
the bit, on every kind of fabric, seed and ``hash_offset``, in any flow order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from netsim.plugins import resolve
from netsim.topology import Topology, _mix


@njit(cache=True)
def _route_reference(src_gpu, dst_gpu, gpu_nodes, dist, out_ptr, out_link, link_dst, link_lat,
                     forwards, seed, hash_offset):
    """The per-flow router of netsim 0472d5b: flow by flow, hop by hop, scan the node's out-links
    for the equal-cost candidates and hash (src, dst, hop, seed) to pick one."""
    nf = len(src_gpu)
    path_ptr = np.zeros(nf + 1, np.int64)
    for i in range(nf):
        path_ptr[i + 1] = path_ptr[i] + dist[dst_gpu[i], gpu_nodes[src_gpu[i]]]
    path_links = np.empty(path_ptr[nf], np.int64)
    lat = np.zeros(nf, np.float64)
    cand = np.empty(64, np.int64)
    for i in range(nf):
        d = dst_gpu[i]
        t = gpu_nodes[d]
        v = gpu_nodes[src_gpu[i]]
        pos = path_ptr[i]
        hop = 0
        while v != t:
            dv = dist[d, v]
            nc = 0
            for k in range(out_ptr[v], out_ptr[v + 1]):
                e = out_link[k]
                w = link_dst[e]
                if dist[d, w] == dv - 1 and (w == t or forwards[w]):
                    if nc < 64:
                        cand[nc] = e
                        nc += 1
            h = _mix(np.uint64(src_gpu[i] + hash_offset) * np.uint64(0x9E3779B97F4A7C15)
                     ^ _mix(np.uint64(d + hash_offset) + np.uint64(hop) * np.uint64(0x100000001B3)
                            + np.uint64(seed) * np.uint64(0xD6E8FEB86659FD93)))
            e = cand[np.int64(h % np.uint64(nc))]
            path_links[pos] = e
            lat[i] += link_lat[e]
            pos += 1
            hop += 1
            v = link_dst[e]
    return path_ptr, path_links, lat


def reference(ft, src, dst, seed=0, hash_offset=0):
    src = np.ascontiguousarray(src, np.int64)
    dst = np.ascontiguousarray(dst, np.int64)
    return _route_reference(src, dst, ft.gpu_nodes, ft.dist, ft.out_ptr, ft.out_link, ft.link_dst,
                            ft.link_lat, ft.forwards, np.int64(seed), np.int64(hash_offset))


def same(a, b) -> bool:
    return all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


def _build(name, **params):
    return resolve("topologies", name)[1](**params)


# every builder, several shapes each (multi-tier, oversubscribed, NVLink relays, circuits)
FABRICS = [
    ("fat_tree", dict(k=4)),
    ("fat_tree", dict(k=6, latency_us=0.3)),
    ("leaf_spine", dict(gpus=32, servers_per_leaf=2, spines=4)),
    ("leaf_spine", dict(gpus=24, gpus_per_server=4, servers_per_leaf=3, spines=3,
                        nvlink_gbps=3600.0, oversubscription=2.0)),
    ("leaf_spine", dict(gpus=16, gpus_per_server=8, servers_per_leaf=1, spines=70)),  # > 64 ECMP
    ("rail_optimized", dict(servers=4, gpus_per_server=4, spines=2)),
    ("rail_optimized", dict(servers=3, gpus_per_server=8, spines=4, oversubscription=2.0)),
    ("cluster", dict(servers=8, gpus_per_server=4, rails=4, servers_per_leaf=2, spines=2)),
    ("cluster", dict(servers=16, gpus_per_server=2, rails=2, servers_per_leaf=2, tiers=3,
                     spines=2, units_per_pod=2, cores=2, core_oversubscription=2.0)),
    ("hybrid", dict(servers=4, gpus_per_server=4, scale_out="ocs", ports=2)),
    ("hybrid", dict(servers=5, gpus_per_server=2, scale_out="ocs", ports=1, eps_gbps=100.0)),
    ("hybrid", dict(servers=4, gpus_per_server=4, scale_out="leaf_spine", spines=2)),
    ("ocs_direct", dict(gpus=12, ports=2)),
    ("ocs_direct", dict(gpus=9, ports=1, ocs_count=2, eps_gbps=100.0)),
    ("crossbar", dict(gpus=8)),
]
_FROZEN: dict = {}


def frozen(i):
    if i not in _FROZEN:
        name, params = FABRICS[i]
        _FROZEN[i] = _build(name, **params).freeze()
    return _FROZEN[i]


@pytest.mark.parametrize("i", range(len(FABRICS)), ids=[f"{n}{i}" for i, (n, _) in
                                                        enumerate(FABRICS)])
def test_all_pairs_identical(i):
    ft = frozen(i)
    n = ft.n_gpus
    src, dst = np.nonzero(np.ones((n, n), bool))  # self pairs too: empty paths
    for seed, off in ((0, 0), (7, 0), (3, 1000)):
        new = ft.route(src, dst, seed, hash_offset=off)
        ref = reference(ft, src, dst, seed, off)
        assert same(new, ref)
        assert same([ft.route_latency(src, dst, seed, off)], [ref[2]])  # no paths kept


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(FABRICS) - 1), st.integers(0, 2**31), st.integers(0, 1 << 20),
       st.integers(0, 2**32 - 1), st.integers(0, 300))
def test_any_flow_order_identical(i, seed, off, draw, nf):
    """Random flows (repeats, self pairs, any order) on any fabric: the same paths."""
    ft = frozen(i)
    rng = np.random.default_rng(draw)
    src = rng.integers(0, ft.n_gpus, nf)
    dst = rng.integers(0, ft.n_gpus, nf)
    assert same(ft.route(src, dst, seed, hash_offset=off), reference(ft, src, dst, seed, off))


def _random_fabric(rng, n_gpus, n_sw, extra, gpu_forwarding):
    t = Topology("random", gpu_forwarding=gpu_forwarding)
    gpus = [t.add_gpu() for _ in range(n_gpus)]
    sws = [t.add_switch() for _ in range(n_sw)]
    for g in gpus:  # every GPU on one or two switches
        for s in rng.choice(n_sw, size=min(n_sw, int(rng.integers(1, 3))), replace=False):
            t.add_link(g, sws[s], float(rng.uniform(1e9, 5e10)), float(rng.uniform(0, 2e-6)))
    for a in range(1, n_sw):  # a spanning tree of switches, then extra links (parallel ones too)
        t.add_link(sws[a], sws[int(rng.integers(0, a))], 1e10, float(rng.uniform(0, 1e-6)))
    for _ in range(extra if n_sw > 1 else 0):
        a, b = rng.choice(n_sw, 2, replace=False)
        t.add_link(sws[a], sws[b], 1e10, float(rng.uniform(0, 1e-6)),
                       duplex=bool(rng.integers(0, 2)))
    if gpu_forwarding:
        for _ in range(extra // 2):
            a, b = rng.choice(n_gpus, 2, replace=False)
            t.add_link(gpus[a], gpus[b], 1e10, 1e-7)
    return t


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 24), st.integers(1, 12), st.integers(0, 40),
       st.booleans(), st.integers(0, 2**20), st.integers(0, 2**20))
def test_random_graphs_identical(draw, n_gpus, n_sw, extra, fwd, seed, off):
    """Random switched graphs (uneven degrees, parallel and one-way links, GPU relays)."""
    rng = np.random.default_rng(draw)
    ft = _random_fabric(rng, n_gpus, n_sw, extra, fwd).freeze()
    src, dst = np.nonzero(np.ones((n_gpus, n_gpus), bool))
    perm = rng.permutation(len(src))
    src, dst = src[perm], dst[perm]
    assert same(ft.route(src, dst, seed, hash_offset=off), reference(ft, src, dst, seed, off))


def test_partial_fabric_identical():
    """A fabric frozen with connected=False (islands): the pairs it connects route the same."""
    t = Topology("islands")
    gpus = [t.add_gpu() for _ in range(8)]
    for island in (gpus[:4], gpus[4:]):
        sw = [t.add_switch(), t.add_switch()]
        for g in island:
            for s in sw:
                t.add_link(g, s, 1e10, 1e-6)
    ft = t.freeze(connected=False)
    src, dst = np.nonzero(np.kron(np.eye(2, dtype=bool), np.ones((4, 4), bool)))
    for seed in (0, 5):
        assert same(ft.route(src, dst, seed), reference(ft, src, dst, seed))


def test_every_route_of_aggregated_runs_identical(monkeypatch):
    """Every route an aggregated cluster run asks for (block fabrics with hash_offset, the
    reduced server fabric frozen with connected=False and one-way copies) and the plain run's
    routes: each call checked against the reference."""
    from netsim import run
    from netsim.topology import FrozenTopology

    fast = FrozenTopology.route
    calls = []

    def checked(self, src, dst, seed=0, hash_offset=0):
        got = fast(self, src, dst, seed, hash_offset)
        assert same(got, reference(self, src, dst, seed, hash_offset))
        calls.append((self.partial, hash_offset, len(got[0]) - 1))
        return got

    monkeypatch.setattr(FrozenTopology, "route", checked)
    p = dict(topology="cluster", servers=8, gpus_per_server=4, rails=4, servers_per_leaf=4,
             spines=4, workload="deepseek_v3", tokens_per_gpu=256, ep_size=16, seed=3)
    run(p, aggregate="server")
    run(p)
    assert any(c[0] for c in calls) and any(c[1] for c in calls)  # partial, offset routed


def test_empty_and_single():
    ft = frozen(0)
    e = np.zeros(0, np.int64)
    assert same(ft.route(e, e), reference(ft, e, e))
    assert same(ft.route([3], [3]), reference(ft, [3], [3]))
    assert same(ft.route([0], [15], 9, 4), reference(ft, [0], [15], 9, 4))
