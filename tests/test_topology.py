import importlib

import numpy as np
import pytest

from netsim.errors import ConfigError, TopologyError
from netsim.topology import Topology

NAMES = ["crossbar", "leaf_spine", "fat_tree", "rail_optimized", "ocs_direct", "hybrid"]


def _check_paths(ft, src, dst, pp, pl):
    for i in range(len(src)):
        links = pl[pp[i]:pp[i + 1]]
        assert ft.link_src[links[0]] == ft.gpu_nodes[src[i]]
        assert ft.link_dst[links[-1]] == ft.gpu_nodes[dst[i]]
        assert np.all(ft.link_dst[links[:-1]] == ft.link_src[links[1:]])
        assert len(set(ft.link_src[links])) == len(links)  # loop-free


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_routes_every_pair(name):
    mod = importlib.import_module(f"topologies.{name}")
    ft = mod.build().freeze()
    n = ft.n_gpus
    s, d = np.meshgrid(np.arange(n), np.arange(n))
    m = s != d
    src, dst = s[m], d[m]
    pp, pl, lat = ft.route(src, dst, seed=3)
    _check_paths(ft, src, dst, pp, pl)
    assert np.all(lat >= 0)
    # deterministic and independent of flow order
    perm = np.random.default_rng(0).permutation(len(src))
    pp2, pl2, _ = ft.route(src[perm], dst[perm], seed=3)
    for j, i in enumerate(perm[:50]):
        assert list(pl2[pp2[j]:pp2[j + 1]]) == list(pl[pp[i]:pp[i + 1]])


def test_ecmp_spreads_over_spines():
    from topologies import leaf_spine

    t = leaf_spine.build(gpus=64, servers_per_leaf=1, spines=4)
    ft = t.freeze()
    src = np.repeat(np.arange(8), 56)
    dst = np.tile(np.arange(8, 64), 8)
    pp, pl, _ = ft.route(src, dst)
    used = {t.node_name[v] for v in np.unique(ft.link_dst[pl])}
    assert {f"spine{i}" for i in range(4)} <= used


def test_leaf_spine_oversubscription_sets_uplinks():
    from topologies import leaf_spine

    t = leaf_spine.build(gpus=32, gpus_per_server=8, servers_per_leaf=2, spines=2,
                         nic_gbps=400, oversubscription=2.0)
    up = [bw for s, d, bw in zip(t.link_src, t.link_dst, t.link_bw)
          if t.node_name[s].startswith("leaf") and t.node_name[d].startswith("spine")]
    assert np.allclose(sum(up) / 2, 16 * 400e9 / 8 / 2)  # per leaf: downlink / oversubscription


def test_disconnected_topology_is_rejected():
    t = Topology("two-islands")
    a, b, c, d = (t.add_gpu() for _ in range(4))
    t.add_link(a, b, 1e9)
    t.add_link(c, d, 1e9)
    with pytest.raises(TopologyError, match="disconnected"):
        t.freeze()


@pytest.mark.parametrize("bw", [0.0, -1.0, float("nan")])
def test_non_positive_bandwidth_is_rejected(bw):
    t = Topology("bad")
    a, b = t.add_gpu(), t.add_gpu()
    with pytest.raises(TopologyError, match="bandwidth"):
        t.add_link(a, b, bw)


def test_dangling_node_is_rejected():
    t = Topology("dangle")
    a, b = t.add_gpu(), t.add_gpu()
    t.add_link(a, b, 1e9)
    t.add_nic("lonely")
    with pytest.raises(TopologyError, match="lonely"):
        t.freeze()


def test_bad_builder_parameters():
    from topologies import fat_tree, leaf_spine

    with pytest.raises(ConfigError, match="k=3"):
        fat_tree.build(k=3)
    with pytest.raises(ConfigError, match="gpus=10"):
        leaf_spine.build(gpus=10, gpus_per_server=8)


def test_ocs_direct_uses_circuits_only():
    from topologies import ocs_direct

    ft = ocs_direct.build(gpus=8, ports=2).freeze()
    assert np.all(ft.link_ocs >= 0)
    assert ft.n_links == 16
    pp, pl, _ = ft.route(np.array([0]), np.array([1]))
    assert pp[1] == 1  # a direct circuit (shift 1)


def test_partial_topology_routes_only_what_it_connects():
    from netsim.errors import TopologyError
    from netsim.topology import Topology

    t = Topology("two islands")
    a, b, c, d = (t.add_gpu() for _ in range(4))
    t.add_link(a, b, 1e9)
    t.add_link(c, d, 1e9)
    with pytest.raises(TopologyError, match="disconnected"):
        t.freeze()
    ft = t.freeze(connected=False)
    pp, pl, _ = ft.route([0, 2], [1, 3])
    assert list(pp) == [0, 1, 2]
    with pytest.raises(TopologyError, match="no route from GPU 0 to GPU 2"):
        ft.route([0], [2])
