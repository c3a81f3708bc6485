import numpy as np
import pytest

from netsim.errors import ConfigError, NetsimError, TopologyError, TrafficError, UnknownNameError
from netsim.scenario import run

SMALL = dict(topology="crossbar", gpus=8, workload="mixtral_8x7b", tokens_per_gpu=256)


def test_row_has_metrics_and_conserves_bytes():
    r = run(SMALL)
    for k in ("layer_s", "dispatch_s", "compute_s", "combine_s", "ideal_s", "ratio_to_ideal",
              "bytes_total", "max_gpu_recv_bytes", "mean_gpu_recv_bytes", "imbalance",
              "sim_wall_s", "events"):
        assert k in r
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"])
    assert r["layer_s"] >= r["dispatch_s"] + r["compute_s"] * 0.0 > 0
    # dispatch of 8 GPUs x 256 tokens x top-2 x 4096 x 2 bytes, minus what stays local
    assert r["bytes_total"] <= 2 * 8 * 256 * 2 * 4096 * 2


def test_same_seed_same_row_and_seed_matters():
    a = run(SMALL | {"routing": "zipf:1.2", "seed": 3})
    b = run(SMALL | {"routing": "zipf:1.2", "seed": 3})
    c = run(SMALL | {"routing": "zipf:1.2", "seed": 4})
    drop = {"sim_wall_s"}
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert a["layer_s"] != c["layer_s"]


def test_flow_on_uniform_crossbar_matches_analytic_dispatch():
    # every GPU sends the same bytes to every other: max-min fair meets the bound
    n = 8
    m = np.full((n, n), 1e6)
    np.fill_diagonal(m, 0)
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.npy")
        np.save(p, m)
        flow = run(topology="crossbar", gpus=n, traffic=p, fabric="flow")
        ana = run(topology="crossbar", gpus=n, traffic=p, fabric="analytic")
    assert flow["layer_s"] == pytest.approx(ana["layer_s"], rel=1e-9)
    assert flow["layer_s"] == pytest.approx(flow["ideal_s"], rel=1e-9)
    bw = 400e9 / 8
    assert flow["ideal_s"] == pytest.approx((n - 1) * 1e6 / bw + 2 * 0.5e-6, rel=1e-12)


def test_zipf_leaf_spine_is_slower_than_ideal_and_imbalanced():
    r = run(topology="leaf_spine", gpus=32, routing="zipf:1.2", workload="olmoe_1b_7b",
            tokens_per_gpu=256, seed=1)
    assert r["ratio_to_ideal"] >= 1.0 - 1e-9
    assert r["imbalance"] > 1.5


@pytest.mark.parametrize("params,exc,text", [
    (dict(topology="nope"), UnknownNameError, "nope"),
    (dict(workload="gpt5"), UnknownNameError, "gpt5"),
    (dict(routing="zapf:1"), UnknownNameError, "zapf"),
    (dict(routing="zipf:abc"), ConfigError, "abc"),
    (dict(fabric="quantum"), UnknownNameError, "quantum"),
    (dict(colour="red"), ConfigError, "colour"),
    (dict(gpus="many"), ConfigError, "many"),
    (dict(link_gbps=0), TopologyError, "bandwidth"),
    (dict(seed=-1), ConfigError, "seed"),
])
def test_bad_input_names_the_value(params, exc, text):
    with pytest.raises(exc, match=text):
        run(SMALL | params)


@pytest.mark.parametrize("matrix,text", [
    (np.full((8, 8), np.nan), "NaN"),
    (-np.ones((8, 8)), "negative"),
    (np.ones((4, 4)), "shape"),
])
def test_bad_traffic_matrix(tmp_path, matrix, text):
    p = tmp_path / "m.npy"
    np.save(p, matrix)
    with pytest.raises(TrafficError, match=text):
        run(topology="crossbar", gpus=8, traffic=str(p))


def test_errors_are_netsim_errors():
    assert issubclass(TrafficError, NetsimError) and issubclass(ConfigError, NetsimError)


def test_packet_parameters_need_the_packet_fabric():
    # a row must not carry a packet-model setting that the flow model ignored
    with pytest.raises(ConfigError, match="buffer_kib=64.0 is a packet-model parameter"):
        run(dict(topology="crossbar", gpus=4, tokens_per_gpu=64, buffer_kib=64.0))
    with pytest.raises(ConfigError, match="multipath='spray'.*fabric='analytic'"):
        run(dict(topology="crossbar", gpus=4, tokens_per_gpu=64, multipath="spray",
                 fabric="analytic"))
    row = run(dict(topology="crossbar", gpus=4, tokens_per_gpu=64, buffer_kib=64.0,
                   fabric="packet"))
    assert row["packets"] > 0


def test_circuit_settings_need_a_scheduler():
    for kw in (dict(overlap=False), dict(ocs_mode="not_all_stop")):
        with pytest.raises(ConfigError, match="is a circuit-model setting"):
            run(dict(topology="crossbar", gpus=4, tokens_per_gpu=64) | kw)
    with pytest.raises(ConfigError, match="reconfig_us=1.0 applies to circuit-scheduled"):
        run(dict(topology="ocs_direct", gpus=4, tokens_per_gpu=64, reconfig_us=1.0))
    assert run(dict(topology="ocs_direct", gpus=4, tokens_per_gpu=64, reconfig_us=1.0,
                    scheduler="greedy:1"))["reconfig_total_s"] > 0


@pytest.mark.parametrize("fabric", ["packet", "analytic"])
def test_tolerance_is_a_flow_model_setting(fabric):
    with pytest.raises(ConfigError, match=f"tolerance=0.0 is a flow-model setting.*'{fabric}'"):
        run(dict(topology="crossbar", gpus=4, tokens_per_gpu=64, fabric=fabric, tolerance=0.0))
