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
