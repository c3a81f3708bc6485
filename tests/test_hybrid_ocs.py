"""Circuit schedules on two-tier (hybrid) fabrics and the electrical fallback for leftover bytes."""
import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.devices.network import Network
from netsim.devices.ocs import OCS
from netsim.errors import ConfigError, NetsimError
from netsim.fabric.flow import FlowFabric
from netsim.circuit_fabric import CircuitFabric, circuit_topology, static_topology
from netsim.scenario import run
from netsim.schedule import get_scheduler

RATE, EPS, DELTA, LAT = 50e9, 12.5e9, 5e-6, 1e-7

HY = dict(topology="hybrid", servers=4, gpus_per_server=4, workload="olmoe_1b_7b",
          tokens_per_gpu=256, routing="zipf:1.2", seed=3, reconfig_us=10.0)


def test_leftover_rides_the_electrical_network_exactly():
    """greedy:1 keeps the heavier permutation on the circuits; the lighter one goes over the
    electrical switch from time 0: circuit pairs finish at delta + a / rate + lat, electrical
    pairs at b / eps + 2 lat (two hops, no contention)."""
    n, a, b = 4, 4e6, 1e6
    p1, p2 = (np.arange(n) + 1) % n, (np.arange(n) + 2) % n
    m = np.zeros((n, n))
    m[np.arange(n), p1] = a
    m[np.arange(n), p2] = b
    cf = CircuitFabric(1, 1, RATE, DELTA, LAT, eps_Bps=EPS, n=n)
    ft, link_of = circuit_topology(cf)
    st = static_topology(cf)
    s = get_scheduler("greedy:1:max:leftover")(m, RATE, DELTA)
    assert s.n_matchings == 1 and s.leftover_bytes.sum() == pytest.approx(n * b)
    env = simpy.Environment()
    fab, fab_s = FlowFabric(ft, capacity=64), FlowFabric(st, capacity=64)
    fab.cap[:] = 0.0
    net, net_s = Network(env, fab, 1), Network(env, fab_s, 1)
    ocs = OCS(env, net, link_of, RATE, DELTA)
    i = np.arange(n)
    net.left[0] = net_s.left[0] = n
    circ = net.send(i, p1, np.full(n, a), np.zeros(n, np.int64))
    el = net_s.send(i, p2, np.full(n, b), np.zeros(n, np.int64))
    env.process(ocs.run(0, s.matchings, s.durations_s))
    env.run()
    assert fab.delivered_at(circ) == pytest.approx(DELTA + a / RATE + LAT, rel=1e-12)
    assert fab_s.delivered_at(el) == pytest.approx(b / EPS + 2 * LAT, rel=1e-12)


def test_extending_a_flow_queues_bytes_behind_it():
    """A sender's next batch for the same receiver joins its unfinished flow: one flow per
    circuit, so the circuit never idles while a flow waits (exact: (x + y) / rate)."""
    cf = CircuitFabric(1, 1, RATE, 0.0, 0.0, n=2)
    ft, _ = circuit_topology(cf)
    env = simpy.Environment()
    fab = FlowFabric(ft, capacity=8, tolerance=1e-3)
    net = Network(env, fab, 1)
    net.left[0] = 1
    f = net.send([0], [1], [1e6], [0])

    def later():
        yield env.timeout(1e6 / RATE / 2)
        net.extend(f, [3e6])

    env.process(later())
    env.run()
    assert fab.finish[f[0]] == pytest.approx(4e6 / RATE, rel=1e-12)
    with pytest.raises(ValueError, match="finished"):
        fab.extend(f, [1.0])


@pytest.mark.parametrize("spec,extra", [("bvn", {}), ("greedy:2", {}), ("rotor", {}),
                                        ("greedy:2:max:leftover", {"eps_gbps": 100.0}),
                                        ("greedy:2:opt:leftover", {}),
                                        ("spectra:2", {"ports": 2})])
@pytest.mark.parametrize("overlap", [True, False])
def test_hybrid_delivers_every_byte(spec, extra, overlap):
    r = run(HY | extra | {"scheduler": spec, "overlap": overlap})
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-9)
    assert r["layer_s"] >= r["ideal_dispatch_s"] + r["ideal_combine_s"] - 1e-12
    assert r["nvlink_bytes"] > 0  # traffic inside servers stays on NVLink
    assert 0.0 <= r["bubble_fraction"] < 1.0
    if "eps_gbps" in extra:
        assert r["eps_bytes"] >= r["leftover_bytes"] > 0
    else:
        assert r["eps_bytes"] == 0.0


def test_leftover_goes_electrical_only_with_an_electrical_network():
    no = run(HY | {"scheduler": "greedy:1:max:leftover"})
    el = run(HY | {"scheduler": "greedy:1:max:leftover", "eps_gbps": 400.0})
    assert no["eps_bytes"] == 0.0 and no["fallback_matchings"] > 0  # more circuit rounds
    assert el["leftover_bytes"] == pytest.approx(no["leftover_bytes"])
    assert el["fallback_matchings"] <= 2  # at most crumbs of the exact run
    # the circuits carried exactly what the schedule kept: bytes_total - electrical - NVLink
    assert el["eps_bytes"] + el["nvlink_bytes"] < el["bytes_total"]


def test_hier_bvn_on_hybrid_is_bvn_between_servers():
    h = run(HY | {"scheduler": "hier_bvn:4"})
    b = run(HY | {"scheduler": "bvn"})
    assert run(HY | {"scheduler": "hier_bvn"})["layer_s"] == h["layer_s"]  # G from the fabric
    assert h["n_matchings"] == b["n_matchings"]
    assert h["layer_s"] == pytest.approx(b["layer_s"], rel=1e-12)
    # at most (S^2 - 2S + 2) server matchings per phase, not (N^2 - 2N + 2)
    assert h["n_matchings"] <= 2 * (16 - 8 + 2)


def test_hybrid_rows_are_deterministic():
    a = run(HY | {"scheduler": "greedy:2:max:leftover", "eps_gbps": 100.0})
    b = run(HY | {"scheduler": "greedy:2:max:leftover", "eps_gbps": 100.0})
    skip = {"sim_wall_s", "wall_s"}
    assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def test_hybrid_ideal_bounds():
    cf = CircuitFabric(2, 1, RATE, DELTA, 0.0, nvlink_Bps=400e9, n=4)
    d = np.zeros((4, 4))
    d[0, 2] = d[1, 3] = 1e6  # server 0 -> server 1: 2 MB over 2 x RATE... as one circuit of RATE
    d[0, 1] = 8e6  # inside server 0: NVLink
    t_d, t_c = cf.ideal_bounds(d)
    assert t_d == pytest.approx(max(2e6 / RATE, 8e6 / 400e9))
    assert t_c == pytest.approx(t_d)
    r = run(HY | {"scheduler": "ideal"})
    g = run(HY | {"scheduler": "greedy:2"})
    assert r["serial_ideal_s"] == pytest.approx(g["serial_ideal_s"])  # the same reference for both


def test_hybrid_bad_inputs():
    with pytest.raises(ConfigError, match="hybrid"):
        run(dict(topology="ocs_direct", gpus=8, workload="olmoe_1b_7b", scheduler="hier_bvn:4"))
    with pytest.raises(ConfigError, match="G=2 but the fabric has 4 GPUs per server"):
        run(HY | {"scheduler": "hier_bvn:2"})
    with pytest.raises(ConfigError, match="topology 'hybrid' declares none"):
        run(HY | {"scheduler": "bvn", "scale_out": "leaf_spine"})
    with pytest.raises(NetsimError, match="disconnected"):  # no NVLink: GPUs of a server apart
        run(HY | {"scheduler": "bvn", "nvlink_gbps": 0.0})
    with pytest.raises(ConfigError, match="eps_gbps"):
        run(HY | {"scheduler": "bvn", "eps_gbps": -1.0})


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(servers=st.sampled_from([2, 4]), g=st.sampled_from([1, 2, 4]),
       spec=st.sampled_from(["bvn", "greedy:1", "greedy:2:max:leftover", "greedy:1:opt:leftover",
                             "rotor", "static", "solstice"]),
       eps=st.sampled_from([0.0, 100.0]), overlap=st.booleans(), seed=st.integers(0, 3),
       mode=st.sampled_from(["all_stop", "not_all_stop"]))
def test_hybrid_conserves_bytes(servers, g, spec, eps, overlap, seed, mode):
    """Every dispatch and combine byte arrives, whatever the schedule, fabric shape and mode;
    no layer beats its congestion-free dispatch and combine bounds together."""
    r = run(dict(topology="hybrid", servers=servers, gpus_per_server=g, workload="olmoe_1b_7b",
                 tokens_per_gpu=64, routing="zipf:1.5", seed=seed, scheduler=spec,
                 eps_gbps=eps, overlap=overlap, ocs_mode=mode, reconfig_us=5.0))
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-9)
    assert r["layer_s"] >= r["ideal_dispatch_s"] + r["ideal_combine_s"] - 1e-12
    assert r["eps_bytes"] <= r["bytes_total"] * (1 + 1e-9)
    if eps == 0.0:
        assert r["eps_bytes"] == 0.0


@pytest.mark.parametrize("eps", [0.0, 100.0])
@pytest.mark.parametrize("spec", ["bvn", "bvn:any", "hier_bvn", "greedy:2:max:leftover", "rotor"])
@pytest.mark.parametrize("overlap", [True, False])
def test_hybrid_runs_are_above_the_overlap_bound(spec, eps, overlap):
    """The overlapped-layer bound holds on two tiers too (servers as endpoints, the electrical
    network as a bypass of the circuits), and the strict barrier holds there."""
    r = run(HY | {"scheduler": spec, "eps_gbps": eps, "overlap": overlap, "tolerance": 0.0})
    assert r["layer_s"] >= r["overlap_bound_s"] * (1 - 1e-12)
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-9)
    if not overlap:
        assert r["combine_start_s"] >= r["layer_s"] - r["combine_s"] - 1e-15
