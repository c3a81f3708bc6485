"""OCS model and circuit-scheduled MoE layers (issue 3): exact cases of DESIGN.md."""
import numpy as np
import pytest
import simpy

from netsim.devices.network import Network
from netsim.devices.ocs import OCS
from netsim.errors import ConfigError
from netsim.fabric.flow import FlowFabric
from netsim.circuit_fabric import CircuitFabric, circuit_topology
from netsim.scenario import run
from netsim.schedule import get_scheduler

RATE = 50e9  # bytes/s


class _Fixed:
    def __init__(self, matchings, durations):
        self.matchings, self.durations_s = matchings, durations
        self.n_matchings = len(matchings)
        self.meta = {}


def _execute(matrix, spec, delta, mode="all_stop", lat=0.0):
    """Run a schedule of ``matrix`` on the OCS process; return (finish time of the last byte,
    schedule, fabric). ``spec`` is a scheduler name or a fixed (matchings, durations) pair."""
    n = matrix.shape[0]
    ft, link_of = circuit_topology(CircuitFabric(1, 1, RATE, delta, lat, n=n))
    env = simpy.Environment()
    fab = FlowFabric(ft, capacity=n * n)
    fab.cap[:] = 0.0
    net = Network(env, fab, n)
    ocs = OCS(env, net, link_of, RATE, delta, mode=mode)
    src, dst = np.nonzero(matrix)
    np.add.at(net.left, dst, 1)
    net.send(src, dst, matrix[src, dst], dst)
    sched = get_scheduler(spec)(matrix, RATE, delta) if isinstance(spec, str) else _Fixed(*spec)
    env.process(ocs.run(0, sched.matchings, sched.durations_s))
    env.run()
    return float(np.nanmax(fab.delivered_at())), sched, fab


def _doubly_stochastic(n, line, seed):
    rng = np.random.default_rng(seed)
    m = np.zeros((n, n))
    for _ in range(4):  # sum of random permutations, each with a random weight
        w = float(rng.integers(1, 1000)) * 4096
        m[np.arange(n), rng.permutation(n)] += w
    np.fill_diagonal(m, 0.0)
    return m


@pytest.mark.parametrize("delta", [0.0, 1e-6, 1e-4])
def test_bvn_all_stop_takes_line_sum_plus_reconfigurations(delta):
    n = 8
    perms = [(np.arange(n) + s) % n for s in (1, 3, 5)]
    weights = [4096.0 * 300, 4096.0 * 700, 4096.0 * 100]
    m = np.zeros((n, n))
    for p, w in zip(perms, weights):
        m[np.arange(n), p] += w
    L = m.sum(axis=1).max()
    t, sched, fab = _execute(m, "bvn", delta)
    assert sched.meta.get("padded_fraction", 0.0) == pytest.approx(0.0, abs=1e-12)
    assert t == pytest.approx(L / RATE + sched.n_matchings * delta, rel=1e-9)
    assert fab.bytes[: fab.n].sum() == pytest.approx(m.sum())


def test_schedule_time_is_sum_of_durations_plus_reconfigs():
    rng = np.random.default_rng(3)
    m = np.round(rng.random((6, 6)) * 100) * 4096
    np.fill_diagonal(m, 0)
    delta = 5e-6
    t, sched, _ = _execute(m, "greedy:3:max", delta)
    last = max(k for k, s in enumerate(sched.served_bytes) if s.sum() > 0)
    expect = sum(sched.durations_s[: last + 1]) + (last + 1) * delta
    assert t <= expect * (1 + 1e-9)
    assert t == pytest.approx(expect, rel=1e-6)


def test_a_permutation_takes_one_matching():
    n = 8
    m = np.zeros((n, n))
    m[np.arange(n), (np.arange(n) + 2) % n] = 1e6
    t, sched, _ = _execute(m, "bvn", 1e-5)
    assert sched.n_matchings == 1
    assert t == pytest.approx(1e6 / RATE + 1e-5, rel=1e-9)


def test_not_all_stop_keeps_unchanged_circuits_up():
    n = 4
    m1 = np.array([1, 2, 3, 0])
    m2 = np.array([1, 3, 0, 2])  # port 0 keeps its circuit 0->1
    d = 1e-4
    m = np.zeros((n, n))
    m[np.arange(n), m1] = RATE * d
    m[np.arange(n), m2] += RATE * d
    m[0, 1] = 2 * RATE * d  # 0->1 is served in both matchings
    delta = 5e-5
    t_all, _, f_all = _execute(m, ([m1, m2], [d, d]), delta, mode="all_stop")
    t_not, _, f_not = _execute(m, ([m1, m2], [d, d]), delta, mode="not_all_stop")
    assert t_all == pytest.approx(2 * d + 2 * delta)
    # 0->1 keeps sending through the second reconfiguration: it finishes delta early
    i01 = [k for k in range(f_not.n) if f_not.src[k] == 0 and f_not.dst[k] == 1][0]
    assert f_not.finish[i01] == pytest.approx(2 * d + delta)
    assert f_all.finish[i01] == pytest.approx(2 * d + 2 * delta)
    assert t_not == pytest.approx(t_all)  # the other pairs still wait for their new circuits


BASE = dict(topology="ocs_direct", gpus=8, workload="olmoe_1b_7b", tokens_per_gpu=256,
            routing="zipf:1.2", seed=2)


@pytest.mark.parametrize("spec", ["bvn", "greedy:2", "greedy:4:opt", "solstice", "rotor", "static",
                                  "eclipse"])
@pytest.mark.parametrize("overlap", [True, False])
def test_every_scheduler_delivers_every_byte(spec, overlap):
    r = run(BASE | {"scheduler": spec, "overlap": overlap})
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"], rel=1e-9)
    assert r["layer_s"] >= r["ideal_dispatch_s"] + r["ideal_combine_s"] - 1e-12
    assert r["batches"] >= 8
    assert 0.0 <= r["bubble_fraction"] < 1.0
    if not overlap:
        assert r["batches"] <= 16  # own tokens + one batch of arrivals per GPU


def test_greedy_k_bounds_its_own_matchings():
    r = run(BASE | {"scheduler": "greedy:3"})
    assert r["n_matchings"] <= 2 * 3  # dispatch and combine, before fallback


def test_more_ports_and_spectra():
    one = run(BASE | {"scheduler": "greedy:4", "ports": 1})
    two = run(BASE | {"scheduler": "greedy:4", "ports": 2})
    assert two["dispatch_s"] < one["dispatch_s"]
    sp = run(BASE | {"scheduler": "spectra:2", "ports": 2})
    assert sp["bytes_delivered"] == pytest.approx(sp["bytes_total"])
    assert sp["layer_s"] >= sp["lower_bound_s"] * 0.999
    with pytest.raises(ConfigError, match="1 port plane"):
        run(BASE | {"scheduler": "spectra:2"})
    # two parallel switches, one port on each: the same two planes
    sw = run(BASE | {"scheduler": "spectra:2", "ocs_count": 2})
    assert sw["layer_s"] == pytest.approx(sp["layer_s"], rel=1e-12)


def test_ideal_scheduler_is_the_crossbar():
    r = run(BASE | {"scheduler": "ideal"})
    x = run(BASE | {"topology": "crossbar", "link_gbps": 400.0, "latency_us": 0.25})
    assert r["layer_s"] == pytest.approx(x["layer_s"], rel=1e-9)


def test_many_small_matchings_cost_compute_overhead():
    b = run(BASE | {"scheduler": "bvn", "batch_overhead_us": 50.0})
    g = run(BASE | {"scheduler": "greedy:2", "batch_overhead_us": 50.0})
    assert b["batches"] > g["batches"]
    assert b["compute_overhead_s"] > g["compute_overhead_s"]


def test_scheduler_needs_an_ocs_topology():
    with pytest.raises(ConfigError, match="ocs_direct"):
        run(BASE | {"topology": "crossbar", "scheduler": "bvn"})
    with pytest.raises(ConfigError, match="ocs_mode"):
        run(BASE | {"scheduler": "bvn", "ocs_mode": "sometimes"})


@pytest.mark.parametrize("fabric", ["packet", "analytic"])
def test_scheduled_runs_refuse_other_fabrics(fabric):
    # a circuit-scheduled layer runs on the flow model; a row must not claim another fabric
    with pytest.raises(ConfigError, match=f"fabric='{fabric}' with scheduler='bvn'"):
        run(BASE | {"scheduler": "bvn", "fabric": fabric})
    row = run(BASE | {"scheduler": "ideal", "fabric": fabric})  # the crossbar reference is fine
    assert row["layer_s"] > 0


def test_packet_fabric_agrees_with_flow_in_a_run():
    p = dict(topology="leaf_spine", gpus=16, workload="olmoe_1b_7b", tokens_per_gpu=512)
    f = run(p | {"fabric": "flow"})
    k = run(p | {"fabric": "packet"})
    assert k["layer_s"] == pytest.approx(f["layer_s"], rel=0.02)
    assert k["packets"] > 0 and k["max_queue_bytes"] >= 0


# ---- raw matrices, the overlapped-layer bound, the barrier, batching, bubbles (issue 14) --------

CIRCUIT_SPECS = ["bvn", "bvn:max", "bvn:any", "greedy:1", "greedy:4", "greedy:2:q50:leftover",
                 "solstice", "rotor", "static", "eclipse", "spectra"]


def _matrix(tmp_path, n=8, seed=1):
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 10**6, (n, n)).astype(float)
    m[rng.random((n, n)) < 0.3] = 0.0
    np.fill_diagonal(m, 0.0)
    path = tmp_path / "m.npy"
    np.save(path, m)
    return m, str(path)


@pytest.mark.parametrize("spec", CIRCUIT_SPECS)
def test_raw_traffic_runs_every_circuit_scheduler(tmp_path, spec):
    """--traffic M.npy: dispatch only; one schedule of M, executed as planned (the layer is the
    schedule's time plus one hop), its bubbles the schedule's own."""
    m, path = _matrix(tmp_path)
    r = run(topology="ocs_direct", gpus=8, traffic=path, scheduler=spec, reconfig_us=10.0,
            tolerance=0.0)
    assert r["bytes_delivered"] == pytest.approx(m.sum(), rel=1e-9)
    assert r["combine_s"] == 0.0 and r["batches"] == 0
    assert r["layer_s"] >= r["overlap_bound_s"] - 1e-15
    s = get_scheduler("spectra:1" if spec == "spectra" else spec)(m, RATE, 10e-6)  # 1 plane
    if s.leftover_bytes.sum() == 0:  # no fallback round
        assert r["layer_s"] == pytest.approx(s.total_time_s + 0.5e-6, rel=1e-9)
        assert r["bubble_fraction"] == pytest.approx(s.bubble_fraction, abs=1e-9)


@pytest.mark.parametrize("spec", ["bvn", "bvn:any", "greedy:4", "rotor"])
def test_raw_traffic_combine_without_overlap_is_the_schedule_of_the_transpose(tmp_path, spec):
    m, path = _matrix(tmp_path, seed=4)
    p = dict(topology="ocs_direct", gpus=8, traffic=path, scheduler=spec, reconfig_us=10.0,
             tolerance=0.0, traffic_combine=True, traffic_compute_us=30.0)
    r = run(p | {"overlap": False})
    assert r["bytes_delivered"] == pytest.approx(2 * m.sum(), rel=1e-9)
    assert r["bytes_total"] == pytest.approx(2 * m.sum())
    assert r["compute_s"] == pytest.approx(30e-6)
    assert r["combine_start_s"] >= r["layer_s"] - r["combine_s"] - 1e-15  # after every compute
    sT = get_scheduler(spec)(m.T.copy(), RATE, 10e-6)
    assert r["layer_s"] - r["combine_start_s"] == pytest.approx(sT.total_time_s + 0.5e-6, rel=1e-9)
    o = run(p)
    assert o["layer_s"] >= o["overlap_bound_s"] and r["layer_s"] >= r["overlap_bound_s"]
    with pytest.raises(ConfigError, match="traffic_combine"):
        run(BASE | {"scheduler": "bvn", "traffic_combine": True})


@pytest.mark.parametrize("delay_us", [0.01, 10.0, 1000.0])
@pytest.mark.parametrize("spec", ["bvn", "bvn:any", "greedy:4"])
def test_no_overlap_is_a_strict_barrier(spec, delay_us):
    """overlap=False: the combine starts after every GPU's compute and after the dispatch
    schedule, carries nothing before, and takes exactly the schedule of D^T (whatever the delay)."""
    from netsim.prepare import prepare
    from netsim.spec import RunSpec

    p = BASE | {"scheduler": spec, "overlap": False, "reconfig_us": delay_us, "tolerance": 0.0}
    r = run(p)
    d = prepare(RunSpec.parse(p)).dispatch.copy()
    np.fill_diagonal(d, 0.0)
    s = get_scheduler(spec)(d.T.copy(), RATE, delay_us * 1e-6)
    assert r["combine_start_s"] >= r["layer_s"] - r["combine_s"] - 1e-15
    assert r["combine_start_s"] >= r["dispatch_s"]
    assert r["layer_s"] - r["combine_start_s"] == pytest.approx(s.total_time_s + 0.5e-6, rel=1e-9)


def test_per_matching_batching_pays_the_fixed_cost_per_matching():
    p = BASE | {"scheduler": "bvn:any", "reconfig_us": 0.01, "batch_overhead_us": 40.0}
    merge, per = run(p), run(p | {"batching": "per_matching"})
    assert per["batches"] > merge["batches"]
    assert per["compute_overhead_s"] > merge["compute_overhead_s"]
    assert per["layer_s"] > merge["layer_s"]
    assert per["bytes_delivered"] == pytest.approx(per["bytes_total"], rel=1e-9)
    with pytest.raises(ConfigError, match="batching='each'"):
        run(p | {"batching": "each"})


def test_bubble_definitions():
    """bubble_fraction: all ports' held time carrying nothing; idle_circuit_fraction: established
    circuits' only (<= it)."""
    for spec in ["bvn", "greedy:4", "rotor"]:
        r = run(BASE | {"scheduler": spec})
        assert 0.0 <= r["idle_circuit_fraction"] <= r["bubble_fraction"] < 1.0


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(CIRCUIT_SPECS), delay=st.sampled_from([0.0, 0.01, 1.0, 10.0, 100.0]),
       overlap=st.booleans(), batching=st.sampled_from(["merge", "per_matching"]),
       mode=st.sampled_from(["all_stop", "not_all_stop"]), ports=st.sampled_from([1, 2]),
       routing=st.sampled_from(["uniform", "zipf:1.5"]), seed=st.integers(0, 50))
def test_property_every_circuit_run_is_above_the_overlap_bound(spec, delay, overlap, batching,
                                                               mode, ports, routing, seed):
    if spec == "spectra":
        spec = f"spectra:{ports}"
    r = run(BASE | {"scheduler": spec, "reconfig_us": delay, "overlap": overlap, "ports": ports,
                    "batching": batching, "ocs_mode": mode, "routing": routing, "seed": seed,
                    "tolerance": 0.0})
    assert r["layer_s"] >= r["overlap_bound_s"] * (1 - 1e-12)
    assert r["ratio_to_bound"] >= 1 - 1e-12


def test_ocs_numbers_script_prints_from_rows_and_refuses_a_broken_bound(tmp_path, monkeypatch):
    """docs/ocs_numbers.py: the README blocks come from the rows (--write then --check), a
    changed block is caught, and a row below its bound is refused."""
    import importlib.util
    import sys
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ocs_numbers", root / "docs" / "ocs_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # puts experiments/ on sys.path
    from ocs_scheduling import BASE as STUDY, grid_points

    pts = grid_points([8], [0.01, 100.0], ["uniform", "zipf:1.2"],
                      {"tokens_per_gpu": [128], "batch_overhead_us": [20.0]})
    df = pd.DataFrame([run(STUDY | {"workload": "olmoe_1b_7b"} | p | {"seed": s})
                       for p in pts for s in (0, 1)])
    blocks = mod.quick_blocks(df)
    assert "| uniform, `bvn:any` | merge |" in blocks["table"]
    assert "`ratio_to_bound` >= 1" in blocks["facts"]
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- ocs-numbers:quick-{k}:begin -->\nold\n"
                              f"<!-- ocs-numbers:quick-{k}:end -->\n" for k in blocks))
    monkeypatch.setattr(mod, "_read", lambda path: df)
    argv = ["ocs_numbers.py", "--quick", "x", "--hybrid", str(tmp_path / "none")]
    monkeypatch.setattr(sys, "argv", argv + ["--write", str(readme)])
    assert mod.main() == 0 and blocks["table"] in readme.read_text()
    monkeypatch.setattr(sys, "argv", argv + ["--check", str(readme)])
    assert mod.main() == 0
    readme.write_text(readme.read_text().replace("| uniform, `bvn` |", "| uniform, `bvn` | 0.5 |", 1))
    assert mod.main() == 1
    bad = df.copy()
    k = bad.index[bad["scheduler"] == "bvn"][0]
    bad.loc[k, "layer_s"] = 0.5 * bad.loc[k, "overlap_bound_s"]
    with pytest.raises(SystemExit, match="below overlap_bound_s"):
        mod.quick_blocks(bad)


def _hand_reference(flows, ptr, pflow, psrc, pdst, pnbytes, handed, full, rem, tot, token_bytes,
                    whole):
    """The hand-out rule of the circuit engine stated in numpy (as the engine computed it before
    the kernel): bytes arrived since the last batch, whole tokens unless the piece is complete."""
    flows = flows[(flows >= 0) & (flows < len(ptr) - 1)]
    k = np.array([x for f in flows for x in range(ptr[f], ptr[f + 1])], np.int64)
    k = k[~full[k]]
    if not len(k):
        return [], [], []
    f = pflow[k]
    r, t = rem[f], tot[f]
    done = ~(r > 1e-3 + 1e-6 * t)
    sent = t - r if whole else pnbytes[k] * ((t - r) / t)
    got = np.where(done, pnbytes[k], sent) - handed[k]
    got = np.where(done, got, np.floor(got / token_bytes) * token_bytes)
    send = got > 1e-3 + 1e-6 * pnbytes[k]
    handed[k] = np.where(done, pnbytes[k], handed[k] + np.where(send, got, 0.0))
    full[k[done]] = True
    idx = np.flatnonzero(send | done)
    order = idx[np.argsort(pdst[k][idx], kind="stable")]
    recv = sorted(set(pdst[k][idx].tolist()))
    per = [order[pdst[k][order] == j] for j in recv]
    return (recv, [int(done[o].sum()) for o in per],
            [(psrc[k][o[send[o]]].tolist(), got[o[send[o]]].tolist()) for o in per])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_flows=st.integers(1, 6), whole=st.booleans(),
       token_bytes=st.sampled_from([1.0, 4096.0, 6144.0]))
def test_hand_out_kernel_is_the_numpy_rule(data, n_flows, whole, token_bytes):
    """hand_pieces (the end-of-matching hand-out) gives exactly the numpy statement of the rule:
    the same receivers, pieces completed, sources and bytes, and the same state afterwards."""
    from netsim.engines._circuit_kernels import hand_pieces

    counts = data.draw(st.lists(st.integers(0, 3), min_size=n_flows, max_size=n_flows))
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    m = int(ptr[-1])
    pflow = np.repeat(np.arange(n_flows), counts).astype(np.int64)
    pdst = np.array(data.draw(st.lists(st.integers(0, 4), min_size=m, max_size=m)), np.int64)
    psrc = np.array(data.draw(st.lists(st.integers(0, 4), min_size=m, max_size=m)), np.int64)
    size = st.floats(1.0, 1e7, allow_nan=False)
    pnbytes = np.array(data.draw(st.lists(size, min_size=m, max_size=m)))
    tot = np.array([pnbytes[ptr[f]:ptr[f + 1]].sum() if counts[f] else 1.0
                    for f in range(n_flows)]) if whole else np.array(
        data.draw(st.lists(size, min_size=n_flows, max_size=n_flows)))
    frac = data.draw(st.lists(st.sampled_from([0.0, 1e-12, 0.3, 0.5, 0.999, 1.0]),
                              min_size=n_flows, max_size=n_flows))
    rem = tot * np.array(frac)
    handed = pnbytes * np.array(data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.4]),
                                                   min_size=m, max_size=m)))
    full = np.array(data.draw(st.lists(st.booleans(), min_size=m, max_size=m)), bool)
    flows = np.array(data.draw(st.lists(st.integers(-1, n_flows), max_size=8, unique=True)),
                     np.int64)
    h1, f1, h2, f2 = handed.copy(), full.copy(), handed.copy(), full.copy()
    recv, n_done, sptr, src, got = hand_pieces(flows, ptr, pflow, psrc, pdst, pnbytes, h1, f1,
                                               rem, tot, token_bytes, whole)
    e_recv, e_done, e_items = _hand_reference(flows, ptr, pflow, psrc, pdst, pnbytes, h2, f2,
                                              rem, tot, token_bytes, whole)
    assert recv.tolist() == e_recv and n_done.tolist() == e_done
    assert [(src[a:b].tolist(), got[a:b].tolist()) for a, b in zip(sptr[:-1], sptr[1:])] == e_items
    assert np.array_equal(h1, h2) and np.array_equal(f1, f2)


def _engine_trace(setup, share: bool) -> dict:
    """A layer's row, its batches in order and every change to its circuit fabric's flows
    (time, call, arguments) in order, and the fabric's final bytes."""
    import time

    import netsim.engines.circuit as engine

    layer = engine._OcsLayer(setup)
    layer.share_events = share  # read only while the layer runs
    trace = []
    fab = layer.fab
    for name in ("extend", "add_flows", "set_link_capacity"):
        def call(*args, _f=getattr(fab, name), _n=name, **kw):
            trace.append((layer.env.now, fab.now, _n, repr(args), repr(kw)))
            return _f(*args, **kw)
        setattr(fab, name, call)
    layer.run()
    row = layer.row(time.perf_counter())
    row.pop("sim_wall_s")
    return {"row": row, "batches": layer.batches, "trace": trace,
            "d": layer.d_end.tolist(), "c": layer.c_end.tolist(),
            "bytes": fab.bytes[:fab.n].tolist(), "rem": fab._rem[:fab.n].tolist()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(["bvn", "bvn:any", "greedy:2", "rotor", "solstice"]),
       delay=st.sampled_from([0.0, 0.01, 10.0]), batching=st.sampled_from(["merge", "per_matching"]),
       mode=st.sampled_from(["all_stop", "not_all_stop"]), ports=st.sampled_from([1, 2]),
       gpus=st.sampled_from([8, 16]), hybrid=st.booleans(), seed=st.integers(0, 20))
def test_shared_gpu_events_give_the_rows_of_one_event_per_gpu(spec, delay, batching, mode, ports,
                                                               gpus, hybrid, seed):
    """GPUs that one delivery wakes, and batches that end at one instant, share one event
    (netsim/engines/circuit.py _deliver, _sleep): every column, every batch and every change to
    the circuit fabric's flows, in order, are what one event per GPU gives (the order of a SimPy
    process per GPU), to the bit."""
    from netsim.prepare import prepare
    from netsim.spec import RunSpec

    p = BASE | {"scheduler": spec, "reconfig_us": delay, "batching": batching, "ocs_mode": mode,
                "routing": "zipf:1.2", "seed": seed, "gpus": gpus, "ports": ports}
    if hybrid:
        p |= {"topology": "hybrid", "servers": gpus // 4, "gpus_per_server": 4,
              "scale_out": "ocs", "eps_gbps": 100.0 * (seed % 2)}
        p.pop("gpus")
        p.pop("ports")
    setup = prepare(RunSpec.parse(p))
    assert _engine_trace(setup, True) == _engine_trace(setup, False)


def test_circuit_ids_and_recount_are_the_numpy_expressions():
    from netsim.devices.ocs import circuit_ids, recount

    rng = np.random.default_rng(5)
    table = rng.integers(0, 1000, (9, 9))
    for _ in range(20):
        perm = rng.permutation(9)
        perm[rng.random(9) < 0.3] = -1
        a = np.flatnonzero(perm >= 0)
        assert circuit_ids(perm, table).tolist() == table[a, perm[a]].tolist()
        links = rng.choice(50, 7, replace=False)
        count = rng.integers(0, 3, 50)
        ref = count.copy()
        ref[links] += 1
        got = recount(links, count, 1, 3.7e10)
        assert np.array_equal(count, ref) and np.array_equal(got, ref[links] * 3.7e10)
