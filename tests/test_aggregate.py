"""The aggregated flow model (aggregate=server, netsim.aggregate) against the GPU-level one.

Blocks are exact: a block built on its own, routed with hash_offset, takes the cluster's ECMP
paths. Servers are approximate: the layer time within the documented 2 % of the GPU-level
flow model on small clusters (uniform and Zipf routing, 2- and 3-tier, rail-optimised and
top-of-rack), the dispatch never under its min-cut bound, and the refusals.
"""
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from netsim import run
from netsim.errors import ConfigError, NetsimError
from netsim.fabric.flow import _EPS_REL
from netsim.spec import RunSpec, check_aggregate
from topologies.cluster import aggregation_block, build

SMALL = dict(topology="cluster", servers=8, gpus_per_server=4, rails=4, servers_per_leaf=4,
             spines=4, workload="deepseek_v3", tokens_per_gpu=512, ep_size=16, seed=3)


def _spines(t, pp, pl, ft):
    """The spine (and core) switch names each path visits."""
    names = t.node_name
    out = []
    for i in range(len(pp) - 1):
        hops = [names[ft.link_dst[e]] for e in pl[pp[i]:pp[i + 1]]]
        out.append(tuple(re.sub(r"^p\d+", "p", h) for h in hops if "spine" in h or "core" in h))
    return out


@pytest.mark.parametrize("kw", [dict(servers=16, gpus_per_server=2, rails=2, servers_per_leaf=2,
                                     spines=4),
                                dict(servers=16, gpus_per_server=2, rails=2, servers_per_leaf=2,
                                     spines=3, tiers=3, units_per_pod=2, cores=2)])
def test_block_routes_are_the_cluster_routes(kw):
    """Every GPU pair of every block takes, on the block fabric with hash_offset, the spines and
    cores it takes in the whole cluster."""
    t_full = build(**kw)
    ft_full = t_full.freeze()
    blk = aggregation_block(8, **kw)
    assert blk["blocks"] * blk["block_gpus"] == ft_full.n_gpus
    t_blk = build(**blk["params"])
    ft_blk = t_blk.freeze()
    B = blk["block_gpus"]
    i, j = np.nonzero(~np.eye(B, dtype=bool))
    for b in range(blk["blocks"]):
        got = _spines(t_blk, *ft_blk.route(i, j, 7, hash_offset=b * B)[:2], ft_blk)
        want = _spines(t_full, *ft_full.route(i + b * B, j + b * B, 7)[:2], ft_full)
        assert got == want
        assert any(len(x) for x in got)  # the check sees spines


UNIFORM = [dict(), dict(servers_per_leaf=8, ep_size=32),
           dict(rails=1, oversubscription=2.0),
           dict(tiers=3, units_per_pod=1, cores=2, core_oversubscription=2.0, ep_size=32)]


def _bounded(r):
    """The min-cut bounds hold over the row: the dispatch no faster than the dispatch's, the
    layer no shorter than the combine's, up to the two link latencies a reduced path of a
    cross-rail pair inside a unit is short (``latency_us`` = 0.5 us)."""
    slack = 2 * 0.5e-6
    assert r["dispatch_s"] >= r["ideal_dispatch_s"] * (1 - 1e-9) - slack
    assert r["layer_s"] >= r["ideal_combine_s"] * (1 - 1e-9) - slack


def _pair(kw):
    p = dict(SMALL, **kw)
    agg, ref = run(p, aggregate="server"), run(p)
    assert agg["n_gpus"] == ref["n_gpus"] == 32
    assert agg["compute_s"] == pytest.approx(ref["compute_s"], rel=1e-12)
    for k in ("bytes_total", "max_gpu_recv_bytes", "flows", "imbalance", "dispatch_bytes"):
        assert agg[k] == pytest.approx(ref[k], rel=1e-12), k
    assert agg["bytes_delivered"] == pytest.approx(ref["bytes_total"], rel=1e-9)
    assert agg["ideal_dispatch_s"] == pytest.approx(ref["ideal_dispatch_s"], rel=1e-9)
    _bounded(agg)
    assert agg["aggregate_flows"] * 4 < ref["flows"]
    return agg["layer_s"] / ref["layer_s"] - 1, agg, ref


@pytest.mark.parametrize("kw", UNIFORM)
def test_aggregated_layer_within_two_percent_uniform(kw):
    """Uniform routing: the GPU-level flow model's layer time within 2 % (rail-optimised and
    top-of-rack units, one or two units a block, 2 and 3 tiers), same bytes and compute, and
    the min-cut bounds hold."""
    err, _, _ = _pair(dict(kw, routing="uniform"))
    assert abs(err) < 0.02


def test_aggregated_layer_ecmp_collisions_slow():
    """Leaf-to-spine links of one NIC's capacity (heavy ECMP collisions): every flow of a
    reduced link goes at its hottest member's pace, so the layer comes out slow, by < 5 %."""
    err, _, _ = _pair(dict(routing="uniform", servers_per_leaf=8, ep_size=32, spines=8))
    assert 0.0 < err < 0.05


def test_aggregated_layer_zipf_misses_the_maxmin_tail():
    """Zipf on EP groups of 16: the GPU-level dispatch has a max-min tail (hot GPUs competing
    for the same senders' NICs) the server flows do not have: the aggregated dispatch runs at its
    min-cut bound, and the layer comes out fast by less than 10 %."""
    err, agg, ref = _pair(dict(routing="zipf:1.2"))
    assert agg["dispatch_s"] == pytest.approx(agg["ideal_dispatch_s"], rel=1e-3)
    assert ref["dispatch_s"] > agg["dispatch_s"]
    assert -0.10 < err < 0.0


def test_aggregated_rows_are_deterministic():
    a = run(SMALL, aggregate="server")
    b = run(SMALL, aggregate="server")
    walls = {k for k in a if k.endswith("wall_s")}
    assert {k: v for k, v in a.items() if k not in walls} == \
        {k: v for k, v in b.items() if k not in walls}


@pytest.mark.parametrize("kw, words", [
    (dict(topology="leaf_spine"), "aggregation_block"),
    (dict(fabric="packet"), "flow/analytic model"),
    (dict(iterations=2), "iterations"),
    (dict(dispatcher="rank"), "per-token"),
    (dict(servers=6, servers_per_leaf=3, ep_size=8), "straddle"),
    (dict(nvlink_gbps=0.0), "NVLink"),
    (dict(ep_size=12), "whole"),
])
def test_refusals(kw, words):
    p = dict(SMALL, aggregate="server")
    if kw.get("topology") == "leaf_spine":
        p = dict(topology="leaf_spine", gpus=16, aggregate="server")
    p.update(kw)
    with pytest.raises(NetsimError, match=words) as e:
        RunSpec.parse(p)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ConfigError)


@settings(max_examples=6, deadline=None)
@example(gps=4, spl=4, rails1=False, groups=2, zipf=False, seed=1)  # combine_s < its bound
@given(gps=st.sampled_from([2, 4]), spl=st.sampled_from([1, 2, 4]), rails1=st.booleans(),
       groups=st.sampled_from([1, 2]), zipf=st.booleans(), seed=st.integers(0, 3))
def test_aggregated_invariants(gps, spl, rails1, groups, zipf, seed):
    """Any small aggregated cluster layer: every byte delivered once, the min-cut bounds hold,
    the layer no shorter than its dispatch plus its combine tail, nor than the compute."""
    servers = 2 * spl * groups
    p = dict(topology="cluster", servers=servers, gpus_per_server=gps, rails=1 if rails1 else gps,
             servers_per_leaf=spl, spines=2, workload="deepseek_v3", tokens_per_gpu=64,
             ep_size=gps * 2 * spl, routing="zipf:1.2" if zipf else "uniform", seed=seed,
             aggregate="server")
    r = run(p)
    assert r["aggregate_blocks"] == groups
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-9)
    _bounded(r)
    assert r["layer_s"] >= r["dispatch_s"] + r["combine_s"] - 1e-12
    assert r["layer_s"] >= r["compute_s"]


@pytest.mark.parametrize("fabric, agg", [("flow", "server"), ("analytic", "block")])
def test_a_block_too_large_for_memory_is_refused_before_it_is_built(fabric, agg):
    """One EP group over 16,384 GPUs is one block of 2.7e8 GPU pairs: refused, naming the
    GiB it needs, before any fabric is built."""
    with pytest.raises(ConfigError, match=f"aggregate={agg}: .*GiB"):
        run(topology="cluster", servers=2048, servers_per_leaf=32, tiers=3, units_per_pod=8,
            workload="deepseek_v3", fabric=fabric, aggregate=agg)


# ---- the analytic model by blocks (aggregate=block): exact -------------------------------------

def _same_analytic_row(p):
    """The analytic model's row by blocks equals the GPU-level analytic row on every column
    both have (to the bit), apart from the parameter itself and the wall clock."""
    blk, ref = run(p, fabric="analytic", aggregate="block"), run(p, fabric="analytic")
    shared = (set(blk) & set(ref)) - {"aggregate", "sim_wall_s"}
    assert {"layer_s", "dispatch_s", "combine_s", "ideal_dispatch_s", "ideal_combine_s",
            "bytes_delivered", "flows", "compute_s"} <= shared
    assert {k: blk[k] for k in shared} == {k: ref[k] for k in shared}
    assert blk["aggregate_blocks"] >= 1
    return blk, ref


@pytest.mark.parametrize("kw", UNIFORM + [dict(routing="zipf:1.2")])
def test_analytic_by_blocks_is_the_gpu_level_analytic_row(kw):
    """Blocks share no link, so each block's min-cut bounds on its own GPU-level fabric are the
    cluster's: the row is the GPU-level analytic row, column for column."""
    blk, _ = _same_analytic_row(dict(SMALL, **kw))
    assert blk["aggregate_flows"] == 0 and blk["events"] == 0


@settings(max_examples=5, deadline=None)
@given(gps=st.sampled_from([2, 4]), spl=st.sampled_from([1, 2, 4]), rails1=st.booleans(),
       groups=st.sampled_from([1, 2, 3]), zipf=st.booleans(), seed=st.integers(0, 3))
def test_analytic_by_blocks_equals_gpu_level_on_drawn_clusters(gps, spl, rails1, groups, zipf,
                                                               seed):
    servers = 2 * spl * groups
    _same_analytic_row(dict(topology="cluster", servers=servers, gpus_per_server=gps,
                            rails=1 if rails1 else gps, servers_per_leaf=spl, spines=2,
                            workload="deepseek_v3", tokens_per_gpu=64, ep_size=gps * 2 * spl,
                            routing="zipf:1.2" if zipf else "uniform", seed=seed))


@pytest.mark.parametrize("fabric, agg", [("analytic", "server"), ("packet", "block")])
def test_each_model_takes_only_its_own_aggregation(fabric, agg):
    with pytest.raises(ConfigError, match="aggregate") as e:
        RunSpec.parse(dict(SMALL, fabric=fabric, aggregate=agg))
    assert "\n" not in str(e.value)


# ---- the flow model by blocks (aggregate=block): GPU-level inside each block ------------------

_LAYER_COLUMNS = ("layer_s", "dispatch_s", "combine_s", "compute_s", "ideal_dispatch_s",
                  "ideal_combine_s", "serial_ideal_s", "bytes_delivered", "bytes_total",
                  "flows", "max_gpu_recv_bytes", "imbalance")


def _flow_blocks_against_gpu_level(p, tolerance):
    blk = run(p, tolerance=tolerance, aggregate="block")
    ref = run(p, tolerance=tolerance)
    assert blk["aggregate_blocks"] == check_aggregate(RunSpec.parse(p))["blocks"]
    assert blk["aggregate_flows"] == ref["flows"]  # GPU-pair flows: nothing merged
    return blk, ref


@pytest.mark.parametrize("kw", UNIFORM + [dict(routing="zipf:1.2"), dict(nvlink_gbps=0.0)])
def test_flow_by_blocks_is_the_gpu_level_flow_layer_in_exact_mode(kw):
    """Blocks share no link and each block's flows take the cluster's paths, so in exact mode
    (tolerance 0) the flow model by blocks solves the GPU-level max-min problem event by event:
    every layer column equals the GPU-level row's to round-off (the progressive filling of one
    block alone may break a tie between two of its links in another order than the whole
    cluster's does), the bounds and bytes to the bit."""
    blk, ref = _flow_blocks_against_gpu_level(dict(SMALL, **kw), 0.0)
    for k in _LAYER_COLUMNS:
        assert blk[k] == pytest.approx(ref[k], rel=1e-12, abs=0), k
    for k in ("ideal_dispatch_s", "ideal_combine_s", "bytes_delivered", "flows", "compute_s"):
        assert blk[k] == ref[k], k


@pytest.mark.parametrize("kw", UNIFORM[:2] + [dict(routing="zipf:1.2")])
def test_flow_by_blocks_within_tolerance_of_the_gpu_level_layer(kw):
    """At the default tolerance the two runs merge completion events differently (within a block
    only, or across the cluster), so their times differ by about what merging moves: within
    tolerance of each other here."""
    p = dict(SMALL, **kw)
    blk, ref = _flow_blocks_against_gpu_level(p, 1e-3)
    for k in ("layer_s", "dispatch_s"):
        assert blk[k] == pytest.approx(ref[k], rel=1e-3), k


@settings(max_examples=5, deadline=None)
@example(gps=4, spl=4, rails1=True, groups=2, zipf=True, seed=1)
@example(gps=4, spl=2, rails1=True, groups=2, zipf=False, seed=0)
@given(gps=st.sampled_from([2, 4]), spl=st.sampled_from([1, 2, 4]), rails1=st.booleans(),
       groups=st.sampled_from([1, 2, 3]), zipf=st.booleans(), seed=st.integers(0, 3))
def test_flow_by_blocks_equals_gpu_level_on_drawn_clusters(gps, spl, rails1, groups, zipf,
                                                           seed):
    p = dict(topology="cluster", servers=2 * spl * groups, gpus_per_server=gps,
             rails=1 if rails1 else gps, servers_per_leaf=spl, spines=2,
             workload="deepseek_v3", tokens_per_gpu=64, ep_size=gps * 2 * spl,
             routing="zipf:1.2" if zipf else "uniform", seed=seed)
    blk, ref = _flow_blocks_against_gpu_level(p, 0.0)
    # round-off, compounded: a tie broken in another order moves a rate by an ulp, and every
    # later event's times are computed from bytes left at that rate (the first @example, Zipf
    # routing, differs by 4e-12). And the fabric's crumb rule counts a flow with less than
    # _EPS_REL of its bytes left as finished: an ulp can move a flow across it, which moves
    # that completion by up to _EPS_REL of the flow's time (the second @example: 2e-9, and
    # 3e-16 with the rule off). A layer is a chain of two phases (dispatch, combine): allow
    # one such shift in each, 2 * _EPS_REL relative, still far below what a wrong block
    # (another path, a missing flow) would move
    assert blk["layer_s"] == pytest.approx(ref["layer_s"], rel=2 * _EPS_REL, abs=0)
    assert blk["dispatch_s"] == pytest.approx(ref["dispatch_s"], rel=2 * _EPS_REL, abs=0)
