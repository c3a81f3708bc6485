"""Mitigations: token conservation, EPLB slot budget, hierarchical all-to-all bytes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from netsim.mitigation.assign import ep_aware_mapping, move_bytes, relabel, sample_assignment, \
    _max_cross
from netsim.mitigation.placement import LayerLayout, ReplicaLayout, align_table, eplb, \
    layout_traffic, migration_bytes
from netsim.plugins import resolve
from netsim.scenario import run
from netsim.workload.routing import parse_routing


def _layer(name="olmoe_1b_7b", **kw):
    return resolve("workloads", name)[1](**kw)


def _counts(n, layer, spec="zipf:1.2", seed=0):
    return parse_routing(spec).counts(n, layer.tokens_per_gpu, layer.experts, layer.top_k,
                                      np.random.default_rng(seed))


@pytest.mark.parametrize("name,n,ep", [("olmoe_1b_7b", 16, 0), ("mixtral_8x7b", 16, 0),
                                       ("olmoe_1b_7b", 32, 8)])
def test_layer_layout_is_moe_traffic(name, n, ep):
    layer = _layer(name, tokens_per_gpu=64, ep_size=ep)
    c = _counts(n, layer)
    d1, b1 = layer.traffic(c, n)
    d2, b2 = layout_traffic(LayerLayout(layer, n), c, layer.hidden * layer.dtype_bytes)
    assert np.allclose(d1, d2) and np.array_equal(np.sort(b1, axis=1), np.sort(b2, axis=1))


@pytest.mark.parametrize("E,ep,slots", [(64, 16, 5), (64, 8, 9), (8, 16, 1), (128, 32, 4),
                                        (6, 4, 2)])
def test_eplb_budget_and_token_conservation(E, ep, slots):
    rng = np.random.default_rng(E + ep)
    load = rng.pareto(1.0, E) * 100
    table = eplb(load, ep, slots)
    assert table.shape == (ep, slots)
    per_rank = (table >= 0).sum(axis=1)
    assert per_rank.max() <= slots  # the budget
    held = table[table >= 0]
    assert set(held.tolist()) == set(range(E))  # every expert somewhere
    for r in range(ep):  # no expert twice on one rank
        row = table[r][table[r] >= 0]
        assert len(np.unique(row)) == len(row)
    reps = np.bincount(held, minlength=E)
    assert reps[np.argmax(load)] == reps.max()
    # every token reaches exactly k replicas: per (source, expert) the replicas' tokens add up
    n, k, tpg = 2 * ep, min(4, E), 32
    p = np.ones(E)
    counts = parse_routing("uniform").counts(n, tpg, E, k, rng)
    lay = ReplicaLayout(table, E, n)
    src, dst, slot, tok = lay.assign(counts)
    P = len(lay.rep_expert)
    got = np.zeros((n, E), np.int64)
    np.add.at(got, (src, np.tile(lay.rep_expert, n)), tok)
    assert np.array_equal(got, counts)
    assert np.all(got.sum(axis=1) == tpg * k)
    assert np.all(tok >= 0) and np.all((dst // ep) == (src // ep))  # stays in its EP group
    # replicas of one expert share a source's tokens within one token of each other
    t = tok.reshape(n, P)
    for e in np.flatnonzero(lay.reps > 1):
        cols = t[:, lay.rep_expert == e]
        assert (cols.max(axis=1) - cols.min(axis=1)).max() <= 1
    D, batches = layout_traffic(lay, counts, 10.0)
    assert batches.sum() == counts.sum() and D.sum() == pytest.approx(counts.sum() * 10.0)
    del p


def test_align_and_migration_cost():
    load = np.arange(1, 17, dtype=float)
    a = eplb(load, 4, 5)
    b = eplb(load[::-1], 4, 5)
    b2 = align_table(a, b)
    assert sorted(map(tuple, np.sort(b, axis=1))) == sorted(map(tuple, np.sort(b2, axis=1)))
    assert not migration_bytes(a, a, 8, 2, 7.0).any()
    m = migration_bytes(a, b2, 8, 2, 7.0)
    new = sum(len(set(b2[r]) - set(a[r])) for r in range(4))
    assert m.sum() == pytest.approx(2 * new * 7.0)  # two EP groups of 4
    assert np.trace(m) == 0


def test_sample_placement_and_ep_aware_are_permutations():
    layer = _layer(tokens_per_gpu=64)
    n = 16
    c = _counts(n, layer, "locality:1.0:64:1.0")
    lay = LayerLayout(layer, n)
    perm = sample_assignment(c, lay, 4, 64)
    assert sorted(perm.tolist()) == list(range(n))
    mv = move_bytes(np.arange(n), perm, 5.0)
    assert mv.sum() == pytest.approx(5.0 * np.sum(perm != np.arange(n)))
    D, _ = layout_traffic(lay, c, 1.0)
    sigma = ep_aware_mapping(D, [8, 4])
    assert sorted(sigma.tolist()) == list(range(n))
    Dp = relabel(D, sigma)
    assert Dp.sum() == pytest.approx(D.sum())
    np.fill_diagonal(D, 0)
    inv = np.argsort(sigma)
    assert _max_cross(Dp - np.diag(np.diag(Dp)), np.arange(n) // 8) <= \
        _max_cross(D, np.arange(n) // 8) + 1e-6
    del inv


BASE = dict(topology="leaf_spine", gpus=16, gpus_per_server=4, servers_per_leaf=2,
            nvlink_gbps=3600.0, workload="olmoe_1b_7b", tokens_per_gpu=64, routing="zipf:1.0",
            iterations=1)


def test_hierarchical_delivers_the_same_bytes_as_direct():
    d = run(BASE)
    h = run(BASE | {"collective": "hierarchical:nodedup"})
    hd = run(BASE | {"collective": "hierarchical"})
    assert d["bytes_total"] == pytest.approx(h["bytes_total"])
    for r in (d, h, hd):
        assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-12)
    # the relay hop carries bytes twice; de-duplication sends fewer bytes over the network
    assert h["network_bytes"] > d["network_bytes"]
    assert hd["network_bytes"] < h["network_bytes"]
    assert hd["dispatch_s"] > 0 and h["layer_s"] > 0


def test_mitigated_runs_conserve_bytes_and_charge_costs():
    # cheap weights (ffn_hidden=64) so that the relayouts pay and happen
    r = run(BASE | {"iterations": 3, "relayout": "eplb:2", "sample_placement": "oracle",
                    "rank_mapping": "ep_aware", "collective": "hierarchical",
                    "ffn_hidden": 64, "routing": "drift:1.2:0.0"})
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-12)
    assert r["relayouts"] >= 1 and r["migration_bytes"] > 0
    assert r["network_bytes"] >= r["migration_bytes"] + r["sample_move_bytes"]


@pytest.mark.parametrize("fabric", ["packet", "analytic"])
def test_extra_flows_need_the_flow_fabric(fabric):
    # the two-phase relay, weight migrations and micro-batch moves are flows: another fabric
    # would leave them out, and the row would claim a mitigation it did not model
    from netsim.errors import ConfigError

    for kw, name in ((dict(collective="hierarchical"), "collective='hierarchical'"),
                     (dict(relayout="eplb:2"), "relayout='eplb:2'"),
                     (dict(sample_placement="oracle"), "sample_placement='oracle'")):
        with pytest.raises(ConfigError, match=f"{name} moves bytes.*fabric='{fabric}'"):
            run(BASE | kw | {"fabric": fabric, "iterations": 1})
    # a relabelling or a free static layout only changes the traffic matrix: fine anywhere
    row = run(BASE | {"fabric": fabric, "iterations": 1, "rank_mapping": "ep_aware",
                      "relayout": "static"})
    assert row["layer_s"] > 0 and row["migration_bytes"] == 0.0


def test_trace_links_is_for_single_layer_runs(tmp_path):
    from netsim.errors import ConfigError

    with pytest.raises(ConfigError, match="trace_links=.*each iteration would overwrite it"):
        run(dict(topology="crossbar", gpus=4, tokens_per_gpu=64, fabric="packet", iterations=2,
                 trace_links=str(tmp_path / "t.parquet")))
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize("routing", ["uniform", "zipf:1.0", "locality:1.0:16:0.8"])
def test_exact_node_dedup_between_one_copy_and_every_copy(routing):
    """dispatcher=node sends per (token, other server) exactly one copy: never more bytes over the
    network than every copy (hierarchical:nodedup), never fewer than a k-th of them; it delivers
    the rank matrix end to end, and the estimate of collective=hierarchical with pairs is an
    approximation of it (same order, not equal)."""
    kw = BASE | {"routing": routing, "iterations": 2}
    every = run(kw | {"collective": "hierarchical:nodedup"})
    exact = run(kw | {"collective": "hierarchical", "dispatcher": "node"})
    est = run(kw | {"collective": "hierarchical"})
    k = 8  # olmoe_1b_7b's top-k
    e, x = every["dispatch_scaleout_bytes"], exact["dispatch_scaleout_bytes"]
    assert e / k <= x < e
    assert exact["bytes_delivered"] == pytest.approx(exact["bytes_total"], rel=1e-12)
    assert exact["dispatch_bytes"] <= every["dispatch_bytes"]
    assert exact["recv_tokens_mean"] <= every["recv_tokens_mean"]
    assert 0.5 < est["dispatch_scaleout_bytes"] / x < 2.0
    assert exact["compute_s"] == every["compute_s"]


SEQ = dict(topology="leaf_spine", gpus=16, gpus_per_server=4, servers_per_leaf=2, spines=2,
           oversubscription=2.0, pcie_gbps=400.0, workload="olmoe_1b_7b", tokens_per_gpu=256,
           iterations=1)


def test_sequence_placement_moves_only_what_pays():
    from netsim.mitigation.assign import sequence_placement

    layer = _layer("olmoe_1b_7b", tokens_per_gpu=256)
    n, tpg = 16, 256
    lay = LayerLayout(layer, n)
    seq = np.arange(n * tpg) // 32
    home = np.arange(n * tpg) // tpg
    for spec, knows in (("locality:1.0:32:0.95", "all"), ("locality:1.0:32:0.95", "prefix")):
        ch = parse_routing(spec).choices(n, tpg, 64, 8, np.random.default_rng(1))
        gpu, moved = sequence_placement(ch, seq, lay, 4, tpg, knows=knows)
        assert moved > 0 and np.all(np.bincount(gpu, minlength=n) == tpg)
        # a moved fragment is a whole or partial sequence piece: fragments counted once
        assert moved >= len(np.unique(seq[gpu != home]))
    # no sequence locality, full knowledge: nothing to gain, nothing moves
    ch = parse_routing("uniform").choices(n, tpg, 64, 8, np.random.default_rng(1))
    gpu, moved = sequence_placement(ch, seq, lay, 4, tpg)
    assert moved == 0 and np.array_equal(gpu, home)


def test_sample_placement_acts_on_sequence_locality_and_is_charged():
    base = run(SEQ | {"routing": "locality:1.0:32:0.9"})
    orc = run(SEQ | {"routing": "locality:1.0:32:0.9", "sample_placement": "oracle"})
    assert orc["samples_moved"] > 0 and orc["sample_move_bytes"] > 0
    assert orc["sample_move_bytes"] % (2048 * 2) == 0  # whole tokens' hidden states
    assert orc["network_bytes"] >= orc["sample_move_bytes"] + orc["bytes_total"] - 1e-6
    assert orc["layer_s"] < base["layer_s"]  # moves charged, and still a gain here
    again = run(SEQ | {"routing": "locality:1.0:32:0.9", "sample_placement": "oracle"})
    assert {k: v for k, v in again.items() if k != "sim_wall_s"} == \
        {k: v for k, v in orc.items() if k != "sim_wall_s"}  # deterministic
    u = run(SEQ | {"routing": "uniform", "sample_placement": "oracle"})
    ub = run(SEQ | {"routing": "uniform"})
    assert u["samples_moved"] == 0 and u["sample_move_bytes"] == 0
    assert u["layer_s"] == ub["layer_s"]


def test_trace_sequences_follow_the_window(tmp_path):
    from netsim.mitigation.runner import IterRouting
    from netsim.workload.traces import Trace, clear_cache, write_trace

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, 60)
    seq = np.repeat(np.arange(60), lengths)
    ids = np.stack([(2 * seq) % 16, (2 * seq + 1) % 16], axis=1).astype(np.int32)
    tr = Trace(layer=np.zeros(len(seq), np.int64), token=np.arange(len(seq)), expert_ids=ids,
               sequence=seq)
    path = write_trace(tr, tmp_path / "t.npz")
    clear_cache()
    it = IterRouting(parse_routing(f"trace:{path}"), 5)
    for t in (0, 1, 2):
        s = it.sequences(4, 64, 16, 2, t)
        ch = it.draw("choices", 4, 64, 16, 2, t)
        assert np.array_equal(ch[:, 0], (2 * s) % 16)  # the same window, read twice
    assert IterRouting(parse_routing("zipf:1.0"), 0).sequences(4, 64, 16, 2, 1) is None


def test_recovered_shares_pair_rows_with_their_baseline():
    import pandas as pd

    from netsim.mitigation.shares import recovered_shares

    base = dict(routing="r", seed=0, iterations=2, gpus=8, dispatch_s=10.0, layer_s=30.0,
                ideal_balanced_dispatch_s=4.0, serial_ideal_s=25.0, ideal_dispatch_s=6.0,
                ideal_combine_s=6.0, dispatch_bytes=1.0, combine_bytes=1.0)
    rows = [base | {"relayout": "none"},
            base | {"relayout": "eplb:2", "dispatch_s": 7.0, "layer_s": 29.0},  # costs show
            base | {"relayout": "static", "dispatch_s": 4.0, "layer_s": 21.0},
            base | {"relayout": "static", "seed": 1},  # no baseline of seed 1
            base | {"relayout": "none", "sample_placement": "oracle", "layer_s": 31.0}]
    r = recovered_shares(pd.DataFrame(rows))
    # balanced layer reference: 25 - 6 - 6 + 4 * 2 = 21
    assert r["dispatch_recovered_share"].tolist()[:3] == [0.0, 0.5, 1.0]
    assert r["layer_recovered_share"].tolist()[:3] == [0.0, 1 / 9, 1.0]
    assert np.isnan(r["layer_recovered_share"][3]) and np.isnan(r["dispatch_recovered_share"][3])
    assert r["layer_recovered_share"][4] == pytest.approx(-1 / 9)  # slower than nothing
    assert (r["baseline_layer_s"][:3] == 30.0).all()


def test_recovered_shares_of_runs_charge_migrations():
    import pandas as pd

    from netsim.mitigation.shares import recovered_shares

    p = SEQ | {"routing": "profile:deepseek_v2_lite:mock", "ffn_hidden": 64, "iterations": 2}
    r = recovered_shares(pd.DataFrame([run(p), run(p | {"relayout": "eplb:1"})]))
    e = r.iloc[1]
    assert r.iloc[0]["layer_recovered_share"] == 0.0
    assert e["migration_bytes"] > 0
    # the same dispatch gain is worth less on the layer once the migration is paid
    assert e["layer_recovered_share"] < e["dispatch_recovered_share"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), seqlen=st.integers(1, 40), p=st.floats(0.0, 1.0),
       knows=st.sampled_from(["all", "prefix"]))
def test_sequence_placement_invariants(seed, seqlen, p, knows):
    from netsim.mitigation.assign import sequence_placement

    n, tpg = 8, 32
    layer = _layer("olmoe_1b_7b", tokens_per_gpu=tpg)
    lay = LayerLayout(layer, n)
    ch = parse_routing(f"locality:1.0:{seqlen}:{p}").choices(n, tpg, 64, 8,
                                                             np.random.default_rng(seed))
    seq = np.arange(n * tpg) // seqlen
    gpu, moved = sequence_placement(ch, seq, lay, 4, tpg, knows=knows)
    home = np.arange(n * tpg) // tpg
    assert np.all(np.bincount(gpu, minlength=n) == tpg)  # every GPU keeps its tokens
    assert (moved == 0) == np.array_equal(gpu, home)
    # each moved fragment is a (sequence, home GPU) piece with at least one token elsewhere
    frag = set(zip(seq[gpu != home].tolist(), home[gpu != home].tolist()))
    assert moved == len(frag)


# --- the routed link-load bound and EP-aware mapping on rails ---------------------------------

RAIL8 = dict(topology="rail_optimized", servers=4, gpus_per_server=4, spines=2,
             oversubscription=2.0, pcie_gbps=400.0)


@pytest.mark.parametrize("topo", [
    RAIL8,
    dict(topology="leaf_spine", gpus=16, gpus_per_server=4, servers_per_leaf=2, spines=2,
         oversubscription=2.0, pcie_gbps=400.0),
    dict(topology="fat_tree", k=4)])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), hot=st.floats(0.0, 4.0))
def test_routed_load_bound_is_below_the_simulated_dispatch(tmp_path_factory, topo, seed, hot):
    """Every pair's bytes on its ECMP path: no link carries more than its bandwidth, so the
    simulated dispatch of the same matrix (flow model, the same paths) is never faster."""
    from netsim.mitigation.assign import routed_load_bound_s
    from netsim.prepare import context
    from netsim.spec import RunSpec

    rng = np.random.default_rng(seed)
    ctx = context(RunSpec.parse(dict(topo)))
    ft = ctx.topo
    n = ft.n_gpus
    m = rng.exponential(1.0, (n, n)) * 1e6
    m[:, 0] *= 1 + hot  # a hot destination
    np.fill_diagonal(m, 0.0)
    f = tmp_path_factory.mktemp("tm") / "m.npy"
    np.save(f, m)
    row = run(dict(topo, traffic=str(f)))
    bound = routed_load_bound_s(ft, m, ctx.ecmp_seed)
    assert 0 < bound <= row["dispatch_s"] * (1 + 1e-9)


def test_ep_aware_keeps_the_rails_when_a_server_partition_would_leave_them():
    """Mixtral on rails: its replicas make the traffic cross servers on their own rail; a mapping
    balancing servers would move ranks onto the spines, raising the routed bound, which refuses
    it: ep_aware leaves the run as it was (it was 3x slower before)."""
    base = dict(RAIL8, workload="mixtral_8x7b", routing="uniform", tokens_per_gpu=128,
                iterations=1, tolerance=1e-3)
    a = run(base)
    b = run(base | {"rank_mapping": "ep_aware"})
    assert b["dispatch_s"] == pytest.approx(a["dispatch_s"], rel=1e-9)
    # where moving ranks pays on the fabric's paths, the mapping still acts
    leaf = dict(topology="leaf_spine", gpus=32, gpus_per_server=4, servers_per_leaf=2,
                spines=2, oversubscription=2.0, pcie_gbps=400.0, workload="mixtral_8x7b",
                routing="uniform", tokens_per_gpu=128, iterations=1, tolerance=1e-3)
    assert run(leaf | {"rank_mapping": "ep_aware"})["dispatch_s"] < run(leaf)["dispatch_s"]


@pytest.mark.parametrize("E, per_server, k", [(64, 8, 6), (8, 1, 2), (256, 32, 8), (128, 4, 8)])
def test_hierarchical_dedup_estimate_matches_a_brute_force_count_on_uniform_routing(
        E, per_server, k):
    """dedup_phase1 (collective=hierarchical with pairs): the distinct tokens per server of a
    uniform top-k draw (k distinct experts), counted token by token, within 2 %; with one
    expert a server it removes almost nothing (a token's distinct experts never share one; the
    draw's noise in each server's share of pairs is all it sees)."""
    from netsim.mitigation.runner import dedup_phase1

    rng = np.random.default_rng(0)
    T = 6000
    ch = np.argsort(rng.random((T, E)), axis=1)[:, :k]  # k distinct experts a token
    srv = ch // per_server
    S = E // per_server
    pairs = np.array([(srv == b).sum() for b in range(S)], float)
    distinct = np.array([(srv == b).any(axis=1).sum() for b in range(S)], float)
    est = dedup_phase1(pairs[None, :], 1.0, T, k, E)[0]
    np.testing.assert_allclose(est, distinct, rtol=0.02)
    if per_server == 1:
        assert np.all(est >= 0.995 * pairs)
