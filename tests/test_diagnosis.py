"""Imbalance diagnosis on hand-made cases (netsim.workload.diagnosis)."""
import os

import numpy as np
import pytest

from netsim.scenario import run
from netsim.workload.diagnosis import balanced_ideal_s, cv, dispatch_shares, load_stats, max_mean


def test_load_stats_balanced_and_concentrated():
    s = load_stats([5, 5, 5, 5], [3, 3, 3, 3], gpus_per_server=2)
    assert s["imbalance"] == 1.0 and s["expert_cv"] == 0.0 and s["gini"] == 0.0
    assert s["rank_max_mean"] == 1.0 and s["server_max_mean"] == 1.0
    s = load_stats([4, 0, 0, 0], [2, 2, 2, 6], gpus_per_server=2)
    assert s["imbalance"] == pytest.approx(4.0)
    assert s["gini"] == pytest.approx(0.75)
    assert s["expert_cv"] == pytest.approx(np.sqrt(3.0))
    assert s["rank_max_mean"] == pytest.approx(2.0)
    assert s["server_max_mean"] == pytest.approx(8 / 6)


def test_helpers_on_empty_and_zero():
    assert max_mean([]) == 1.0 and max_mean([0, 0]) == 1.0 and cv([0, 0]) == 0.0


def test_balanced_ideal_and_shares():
    D = np.zeros((4, 4))
    D[1:, 0] = 1e6  # three GPUs send 1 MB each to GPU 0
    bw = np.full(4, 1e6)
    assert balanced_ideal_s(D, bw, bw) == pytest.approx(0.75)
    assert balanced_ideal_s(D, bw, bw, 0.5) == pytest.approx(1.25)
    sh = dispatch_shares(4.0, 3.0, 0.75)
    assert sh["dispatch_load_share"] == pytest.approx(2.25 / 4)
    assert sh["dispatch_contention_share"] == pytest.approx(0.25)
    assert sh["dispatch_over_ideal"] == pytest.approx(4 / 3)
    assert sh["dispatch_over_balanced"] == pytest.approx(4 / 0.75)


def test_run_rows_carry_diagnosis(tmp_path):
    # all-to-one on a crossbar: the flow model meets the ideal, so it is all load imbalance
    n = 8
    m = np.zeros((n, n))
    m[1:, 0] = 1e6
    p = os.path.join(tmp_path, "t.npy")
    np.save(p, m)
    r = run(topology="crossbar", gpus=n, traffic=p)
    assert r["dispatch_contention_share"] == pytest.approx(0.0, abs=1e-9)
    bw = 400e9 / 8
    lat = 1e-6
    bal = 7e6 / n / bw + lat
    assert r["ideal_balanced_dispatch_s"] == pytest.approx(bal, rel=1e-9)
    assert r["dispatch_load_share"] == pytest.approx((r["ideal_dispatch_s"] - bal) / r["dispatch_s"])
    # MoE run: per-expert / per-rank statistics present and consistent
    r = run(topology="leaf_spine", gpus=16, workload="olmoe_1b_7b", tokens_per_gpu=128,
            routing="zipf:1.2", seed=1)
    for k in ("expert_cv", "rank_max_mean", "server_max_mean", "compute_max_mean",
              "dispatch_load_share", "dispatch_contention_share", "dispatch_over_ideal"):
        assert np.isfinite(r[k]), k
    # each GPU holds the same number of experts (64 / 16, no replicas), so a GPU's load is a sum
    # of that many experts' loads: max/mean per server <= per GPU <= per expert, and max >= mean
    assert 1.0 <= r["server_max_mean"] <= r["rank_max_mean"] * (1 + 1e-12)
    assert r["rank_max_mean"] <= r["imbalance"] * (1 + 1e-12)
    assert r["dispatch_over_ideal"] >= 1.0 - 1e-9
    total = r["dispatch_load_share"] + r["dispatch_contention_share"] + \
        r["ideal_balanced_dispatch_s"] / r["dispatch_s"]
    assert total == pytest.approx(1.0)


@pytest.mark.parametrize("topo", [dict(topology="crossbar", gpus=8),
                                  dict(topology="leaf_spine", gpus=16),
                                  dict(topology="rail_optimized", servers=2)])
def test_balanced_bound_is_the_fabrics_bound_of_even_traffic(topo):
    # B (the same bytes spread evenly) is bounded on the same fabric as I: on these symmetric
    # fabrics 0 < B <= I <= T, so the load share is >= 0 and B is not inflated by a first-hop
    # line sum (a rail server's NVLink + NIC)
    r = run(topo | dict(tokens_per_gpu=128, routing="zipf:1.2", seed=2))
    B, I, T = r["ideal_balanced_dispatch_s"], r["ideal_dispatch_s"], r["dispatch_s"]
    assert 0 < B <= I * (1 + 1e-12) and I <= T * (1 + 1e-9)
    assert r["dispatch_load_share"] >= -1e-12


# --- the routing study's findings, from rows ---------------------------------------------------


def _study(monkeypatch, trace=None, name="routing_study_findings"):
    import importlib.util
    from pathlib import Path

    if trace is None:
        monkeypatch.delenv("NETSIM_ROUTING_TRACE", raising=False)
    else:
        monkeypatch.setenv("NETSIM_ROUTING_TRACE", str(trace))
    path = Path(__file__).resolve().parents[1] / "experiments" / "routing_study.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _small_trace(tmp_path, m=100, layers=(0, 1)):
    from netsim.workload.traces import Trace, write_trace

    rng = np.random.default_rng(0)
    L = np.repeat(layers, m)
    ids = np.argsort(rng.random((len(L), 8)), axis=1)[:, :2]
    return write_trace(Trace(layer=L, token=np.tile(np.arange(m), len(layers)),
                             expert_ids=ids, sequence=np.tile(np.arange(m) // 25, len(layers))),
                       tmp_path / "t.parquet")


def test_study_points_measure_what_they_claim(tmp_path, monkeypatch):
    """EP degrees draw their own batches; the trace's batches fit one window; each trace layer
    runs in order and shuffled; the rails carry the network-side mitigations; part() sorts
    every point into the part that yielded it."""
    import pandas as pd

    rs = _study(monkeypatch, _small_trace(tmp_path))
    pts = pd.DataFrame(list(rs.points()))
    p = rs.part(pts)
    assert set(p) == {"ep_scan", "gini", "batch", "mitigation"}
    ep = pts[p == "ep_scan"]
    for _, g in ep.groupby(["workload", "routing"]):
        seeds = g.groupby("gpus")["seed"].apply(frozenset)
        assert len(set().union(*seeds)) == sum(map(len, seeds))  # no seed shared by two degrees
        assert (g["gpus"] * g["tokens_per_gpu"]).nunique() == 1  # one global batch
    tr = ep[ep["routing"].str.startswith("trace:")]
    assert (tr["gpus"] * tr["tokens_per_gpu"]).max() <= rs.TRACE_TOKENS == 100
    b = pts[p == "batch"]
    btr = b[b["routing"].str.startswith("trace:")]
    assert (btr["gpus"] * btr["tokens_per_gpu"]).max() <= 100
    for L in (0, 1):
        orders = {r.endswith(":shuffle") for r in btr["routing"] if rs.trace_layer(r) == L}
        assert orders == {True, False}
    assert b.groupby("routing")["seed"].nunique().min() == len(rs.BATCH_SEEDS)
    rail = pts[(p == "mitigation") & (pts["topology"] == "rail_optimized")]
    names = {rs.mitigation_name(r) for r in rail.to_dict("records")}
    assert names == {f"{m} (rail {rs.RAIL_GPUS})" for m in rs.RAIL_MITIGATIONS}


def _ep_rows(rs, change):
    rows = []
    for routing, ch in change.items():
        for ep in rs.EP_DEGREES:
            for s in range(3):
                imb = 2.0 * (1 + ch * (ep == max(rs.EP_DEGREES))) + 0.001 * s
                rows.append(dict(rs.EP_FABRIC, gpus=ep, tokens_per_gpu=4096 // ep,
                                 workload="deepseek_v2_lite", routing=routing, iterations=0,
                                 seed=rs.EP_SEED_STRIDE * ep + s, imbalance=imb,
                                 rank_max_mean=1.0 + ep / 32, dispatch_over_balanced=1 + ep / 16,
                                 status="ok"))
    return rows


def _batch_rows(rs, trend):
    rows = []
    for routing, tr in trend.items():
        for b in rs.BATCH_TOKENS:
            for s in range(6):
                noise = 0.02 * ((s * 7919 + b) % 5 - 2)
                up = tr * np.log2(b / 16) / 4
                rows.append(dict(rs.BATCH, tokens_per_gpu=b // rs.BATCH["gpus"],
                                 workload="deepseek_v2_lite", routing=routing, iterations=0,
                                 seed=s, dispatch_over_balanced=1.5 * (1 + up) + noise,
                                 status="ok"))
    return rows


@pytest.mark.parametrize("ep_change, trends, want", [
    ({"uniform": 0.0, "profile:deepseek_v2_lite:mock": 0.01}, {"mock": 0.3, "uniform": 0.0},
     ("reproduced", "reproduced")),
    ({"uniform": 0.0, "profile:deepseek_v2_lite:mock": 0.2}, {"mock": 0.3, "uniform": 0.3},
     ("partly", "not")),
    ({"uniform": 0.1, "profile:deepseek_v2_lite:mock": 0.2}, {"mock": 0.0, "uniform": 0.0},
     ("not", "not")),
])
def test_study_verdicts_follow_the_rows(monkeypatch, ep_change, trends, want):
    """findings(): the EP verdict from the per-expert change against the published 5 %, the
    batch verdict from the mock and real trends against their seed intervals (here the 'real'
    routing is a trace-labelled stand-in: a trace in order)."""
    import pandas as pd

    rs = _study(monkeypatch)
    rs.TRACE_MODEL = "T"
    routings = {"mock": "profile:deepseek_v2_lite:mock", "uniform": "trace:/x/t.parquet:0"}
    rows = _ep_rows(rs, ep_change) + _batch_rows(
        rs, {routings[k]: v for k, v in trends.items()})
    rows += _batch_rows(rs, {"uniform": 0.0})
    f = rs.findings(pd.DataFrame(rows)).set_index("finding")
    ep = f.loc[f.index.str.startswith("straggler")].iloc[0]
    bt = f.loc[f.index.str.startswith("batch")].iloc[0]
    assert (ep["verdict"], bt["verdict"]) == want
    assert "ep_scan:" in ep["rows"] and "batch:" in bt["rows"]
