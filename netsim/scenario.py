"""One run: topology + workload + routing + fabric model -> one row of metrics.

A run is described by a flat dict of parameters (a sweep point, or the CLI's options): the reserved
keys below, plus any parameter of the topology's ``build`` function and any :class:`MoELayer`
field. :func:`run` returns the row: the parameters as given plus the metrics in :data:`UNITS`.

Time metrics (seconds, from the start of the layer):

* ``dispatch_s``: when the last GPU has received all its dispatch data;
* ``compute_s``: the longest per-GPU expert compute time (sum of its batch times);
* ``combine_s``: from the last GPU finishing compute to the end of the layer (combine tail);
* ``layer_s``: when the last GPU has all its combined results back;
* ``ideal_s``: congestion-free reference: for dispatch and for combine, max over GPUs of
  (bytes sent / injection bandwidth, bytes received / ejection bandwidth) plus the longest path
  latency, with the longest compute in between; ``ratio_to_ideal = layer_s / ideal_s``.
  Overlap of one GPU's combine with another's compute can make the ratio fall below 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from netsim import __version__
from netsim.errors import ConfigError, TrafficError, UnknownNameError
from netsim.mitigation import MITIGATION_DEFAULTS
from netsim.plugins import describe, resolve

# packet-level fabric (netsim.fabric.packet), used when fabric="packet"
PACKET_DEFAULTS = {
    "mtu_bytes": 4096,
    "header_bytes": 0,
    "multipath": "ecmp",
    "buffer_kib": 0.0,
    "on_full": "pfc",
    "trace_links": "",
    "trace_bin_us": 10.0,
}

RESERVED = {
    "topology": "crossbar",
    "workload": "mixtral_8x7b",
    "routing": "uniform",
    "fabric": "flow",
    "gpu": "h100-roofline",
    "seed": 0,
    "tolerance": 1e-3,  # flow-model event merging (relative); 0 = exact
    "traffic": "",
    "scheduler": "",
    "ocs_mode": "all_stop",
    "overlap": True,
    "batch_overhead_us": -1.0,
    # issue 4 (netsim.mitigation): multi-iteration runs and routing-imbalance mitigations
    **MITIGATION_DEFAULTS,
    **PACKET_DEFAULTS,
}
FABRICS = ("flow", "analytic", "packet")

UNITS = {
    "layer_s": "s", "dispatch_s": "s", "compute_s": "s", "combine_s": "s", "ideal_s": "s",
    "ideal_dispatch_s": "s", "ideal_combine_s": "s", "ratio_to_ideal": "1",
    "bytes_total": "B", "bytes_delivered": "B", "max_gpu_recv_bytes": "B",
    "mean_gpu_recv_bytes": "B", "imbalance": "1 (max/mean tokens per expert)",
    "gini": "1 (Gini of per-expert tokens)", "flows": "count",
    "events": "count (flow-model completion events; 0 on the analytic and packet fabrics)",
    "rate_recomputes": "count (flow-model max-min computations; 0 on analytic and packet)",
    "sim_wall_s": "s (host wall clock)", "n_gpus": "count",
    # circuit-scheduled (OCS) runs; NaN otherwise
    "n_matchings": "count", "fallback_matchings": "count", "reconfig_total_s": "s",
    "bubble_fraction": "1 (circuit time carrying no data / circuit time)",
    "pad_fraction": "1 (BvN padding / padded volume)", "leftover_bytes": "B (before fallback)",
    "batches": "count", "mean_batch_tokens": "tokens", "min_batch_tokens": "tokens",
    "compute_overhead_s": "s (max over GPUs: batched - unbatched compute)",
    "lower_bound_s": "s (spectra makespan lower bound; NaN for other schedulers)",
    "eps_bytes": "B (over the electrical packet network: a schedule's leftover)",
    "nvlink_bytes": "B (inside servers on a circuit-scheduled hybrid fabric)",
}
# issue 4: imbalance diagnosis (every run) and mitigation / iteration columns
from netsim.workload.diagnosis import DIAGNOSIS_UNITS as _DIAG_UNITS  # noqa: E402
from netsim.mitigation import MITIGATION_UNITS as _MIT_UNITS  # noqa: E402

UNITS.update({
    "packets": "count", "packet_hops": "count", "max_queue_bytes": "B (peak over links)",
    "pause_s": "s (PFC pause summed over links)", "drops": "count",
    "packet_passes": "count (dispatch + combine passes to the compute-start fixed point)",
})
UNITS.update(_DIAG_UNITS)
UNITS.update(_MIT_UNITS)


@dataclass
class Setup:
    """A run's resolved inputs."""

    params: dict
    topo: object  # FrozenTopology
    layer: object | None  # MoELayer
    dispatch: np.ndarray
    compute_gpu_s: np.ndarray
    expert_tokens: np.ndarray
    counts: np.ndarray | None = None  # GPU x expert token counts
    tokens_to: np.ndarray | None = None  # T[j, i, s] (see MoELayer.tokens_to)
    batch_time: object = None  # (k x slots tokens, local=False) -> seconds per row


def _coerce(name: str, value, default):
    """Convert ``value`` (often a CLI string) to the type of ``default``."""
    if default is None or value is None:
        return value
    typ = type(default)
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if typ is int:
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if typ is float:
            return float(value)
        return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"parameter {name}={value!r}: expected {typ.__name__} (like its default {default!r})"
        ) from None


def split_params(params: dict):
    """Split a flat parameter dict into (reserved, topology kwargs, workload kwargs, builders)."""
    reserved = dict(RESERVED)
    rest = {}
    for k, v in params.items():
        if k in RESERVED:
            reserved[k] = _coerce(k, v, RESERVED[k])
        else:
            rest[k] = v
    _, topo_fn = resolve("topologies", str(reserved["topology"]))
    topo_defaults = {n: d for n, d, _ in describe(topo_fn)}
    _, wl_fn = resolve("workloads", str(reserved["workload"]))
    from netsim.workload.moe import MoELayer

    wl_defaults = {f.name: f.default for f in fields(MoELayer)
                   if f.name not in ("name", "source")}
    topo_kw, wl_kw = {}, {}
    for k, v in rest.items():
        if k in topo_defaults:
            topo_kw[k] = _coerce(k, v, topo_defaults[k])
        elif k in wl_defaults:
            wl_kw[k] = _coerce(k, v, wl_defaults[k] if not isinstance(wl_defaults[k], type) else None)
        else:
            raise ConfigError(
                f"unknown parameter {k!r}; topology {reserved['topology']!r} takes"
                f" {sorted(topo_defaults)}, the workload takes {sorted(wl_defaults)},"
                f" and runs take {sorted(RESERVED)}")
    if reserved["fabric"] not in FABRICS:
        raise UnknownNameError(f"unknown fabric {reserved['fabric']!r}; expected one of {FABRICS}")
    _check_scoped(reserved, topo_kw, topo_defaults)
    if reserved["scheduler"] and reserved["scheduler"] != "ideal" and reserved["fabric"] != "flow":
        raise ConfigError(
            f"fabric={reserved['fabric']!r} with scheduler={reserved['scheduler']!r}: circuit-"
            "scheduled layers run on the flow model only (a circuit is a dedicated one-hop link);"
            " use fabric='flow' (the default), or scheduler='ideal' for the crossbar reference")
    if not (0.0 <= reserved["tolerance"] < 0.5):
        raise ConfigError(f"tolerance={reserved['tolerance']!r}; expected 0 <= tolerance < 0.5")
    return reserved, topo_kw, wl_kw, topo_fn, wl_fn


#: settings only some runs use: (keys, the runs that use them, what the keys are, the fix). Set
#: to a non-default value elsewhere they are an error, so that no row carries a setting its model
#: ignored. ``reconfig_us`` is a topology parameter; it stays allowed with scheduler=ideal, which
#: the studies sweep along the delay axis as the reference.
_SCOPED = (
    (tuple(PACKET_DEFAULTS), lambda r: r["fabric"] == "packet", "is a packet-model parameter",
     "add fabric='packet'"),
    (("tolerance",), lambda r: r["fabric"] == "flow", "is a flow-model setting",
     "use fabric='flow'"),
    (("ocs_mode", "overlap", "reconfig_us"), lambda r: bool(r["scheduler"]),
     "applies to circuit-scheduled runs only", "set scheduler (netsim list schedulers)"),
)


def _check_scoped(reserved: dict, topo_kw: dict, topo_defaults: dict) -> None:
    """Raise ConfigError for a setting (see :data:`_SCOPED`) given to a run that ignores it."""
    for keys, used, what, fix in _SCOPED:
        if used(reserved):
            continue
        for k in keys:
            if k in RESERVED:
                value, default = reserved[k], RESERVED[k]
            elif k in topo_kw:
                value, default = topo_kw[k], topo_defaults[k]
            else:
                continue
            if value != default:
                raise ConfigError(
                    f"{k}={value!r} {what} (fabric={reserved['fabric']!r},"
                    f" scheduler={reserved['scheduler']!r}); {fix} or drop it")


def load_traffic(path: str, n_gpus: int) -> np.ndarray:
    """A GPU x GPU byte matrix from a .npy file, validated (finite, non-negative, N x N)."""
    p = Path(path)
    if not p.is_file():
        raise TrafficError(f"traffic file {path!r} does not exist")
    try:
        m = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise TrafficError(f"traffic file {path!r} cannot be read as .npy: {exc}") from None
    return validate_traffic(m, n_gpus, what=f"traffic matrix {path!r}")


def validate_traffic(m, n_gpus: int, what: str = "traffic matrix") -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (n_gpus, n_gpus):
        raise TrafficError(f"{what} has shape {m.shape}; expected ({n_gpus}, {n_gpus}) for {n_gpus} GPUs")
    if np.isnan(m).any():
        raise TrafficError(f"{what} contains NaN at {tuple(np.argwhere(np.isnan(m))[0])}")
    if not np.isfinite(m).all():
        raise TrafficError(f"{what} contains infinite entries")
    if (m < 0).any():
        i = tuple(np.argwhere(m < 0)[0])
        raise TrafficError(f"{what} has negative entry {m[i]!r} at {i}; expected bytes >= 0")
    return m


def prepare(params: dict) -> Setup:
    """Resolve parameters into topology, traffic and compute loads (no simulation yet)."""
    reserved, topo_kw, wl_kw, topo_fn, wl_fn = split_params(params)
    topo = topo_fn(**topo_kw)
    if reserved["scheduler"] == "ideal" and topo.name in ("ocs_direct", "hybrid"):
        # the congestion-free reference: the circuits replaced by a non-blocking switch
        from netsim.circuit_fabric import ideal_topology

        topo = ideal_topology(topo)
    ft = topo.freeze()
    n = ft.n_gpus
    seed = reserved["seed"]
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r}; expected a non-negative integer")
    ss = np.random.SeedSequence(seed)
    rng_routing, _ = (np.random.default_rng(s) for s in ss.spawn(2))
    if reserved["traffic"]:
        if wl_kw:
            raise ConfigError(f"--traffic bypasses the MoE model; drop workload parameters {sorted(wl_kw)}")
        disp = load_traffic(reserved["traffic"], n)
        return Setup(reserved | topo_kw, ft, None, disp, np.zeros(n), np.zeros(0))
    layer = wl_fn(**wl_kw)
    from netsim.workload.routing import parse_routing

    src = parse_routing(reserved["routing"])
    counts = src.counts(n, layer.tokens_per_gpu, layer.experts, layer.top_k, rng_routing)
    disp, batches = layer.traffic(counts, n)
    batch_time = make_batch_time(reserved, layer)
    comp = batch_time(batches, local=True)
    T = layer.tokens_to(counts, n) if reserved["scheduler"] else None
    return Setup(reserved | topo_kw | wl_kw, ft, layer, disp, comp, counts.sum(axis=0),
                 counts=counts, tokens_to=T, batch_time=batch_time)


def make_batch_time(reserved: dict, layer):
    """``batch_time(tokens[k, slots], local=False) -> seconds[k]``: compute time of k batches.

    A batch runs each expert copy it has tokens for, one after another, each paying the compute
    model's time for its token count (fixed overhead included). ``local=True`` adds the shared
    experts on the GPU's own ``tokens_per_gpu`` tokens.
    """
    from netsim.workload.calibration import get_compute_model

    kw = {}
    if reserved["batch_overhead_us"] >= 0:
        if not reserved["gpu"].endswith("roofline"):
            raise ConfigError(
                f"batch_overhead_us applies to roofline compute models; gpu={reserved['gpu']!r}")
        kw["overhead_s"] = reserved["batch_overhead_us"] * 1e-6
    cm = get_compute_model(reserved["gpu"], **kw)
    shared = 0.0
    if layer.shared_experts:
        shared = layer.shared_experts * float(np.asarray(
            cm.time_s(np.array([float(layer.tokens_per_gpu)]), layer.hidden, layer.ffn_hidden))[0])

    from netsim.workload.calibration import RooflineCompute

    roof = None
    if isinstance(cm, RooflineCompute):  # same formula as cm.time_s, without numpy per call
        h, f = float(layer.hidden), float(layer.ffn_hidden)
        roof = (cm.overhead_s, 6.0 * h * f / (cm.peak_flops * cm.efficiency),
                cm.dtype_bytes * 3.0 * h * f / cm.hbm_bandwidth,
                cm.dtype_bytes * 2.0 * h / cm.hbm_bandwidth)

    def batch_time(tokens, local: bool = False) -> np.ndarray:
        tok = np.atleast_2d(np.asarray(tokens, dtype=np.float64))
        if roof is not None and tok.shape[0] == 1:
            o, a, b, c = roof
            t = sum(o + max(a * x, b + c * x) for x in tok[0].tolist() if x > 0)
            return np.array([t + (shared if local else 0.0)])
        t = np.asarray(cm.time_s(tok.ravel(), layer.hidden, layer.ffn_hidden),
                       dtype=np.float64).reshape(tok.shape)
        t[tok <= 0] = 0.0
        return t.sum(axis=1) + (shared if local else 0.0)

    return batch_time


def bound_s(m: np.ndarray, inj: np.ndarray, ej: np.ndarray) -> float:
    """Congestion-free time (s) of byte matrix ``m``: max over GPUs of sent/inj, received/ej."""
    off = m - np.diag(np.diag(m))
    if not off.any():
        return 0.0
    return float(max((off.sum(axis=1) / inj).max(), (off.sum(axis=0) / ej).max()))


def simulate(setup: Setup) -> dict:
    """Run the layer on the chosen fabric model; returns the metric columns."""
    import simpy

    from netsim.devices.gpu import PhaseTimes, gpu_layer
    from netsim.devices.network import Network
    from netsim.fabric.flow import FlowFabric

    t0 = time.perf_counter()
    ft, D = setup.topo, setup.dispatch
    n = ft.n_gpus
    p = setup.params
    combine = setup.layer is not None
    inj, ej = ft.gpu_injection_bw(), ft.gpu_ejection_bw()
    off = D.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    ecmp_seed = int(np.random.SeedSequence(p["seed"]).spawn(2)[1].generate_state(1)[0])
    _, _, lat = ft.route(src, dst, ecmp_seed)
    max_lat = float(lat.max()) if len(lat) else 0.0
    if p["scheduler"] and p["scheduler"] != "ideal":
        max_lat = float(ft.link_lat.max())  # one circuit hop
    ideal_d = bound_s(D, inj, ej) + max_lat
    ideal_c = bound_s(D.T, inj, ej) + max_lat if combine else 0.0
    if p["scheduler"] and ft.name in ("hybrid", "ideal_hybrid"):
        from netsim.circuit_fabric import CircuitFabric

        # servers' circuits (or their ideal switch) plus NVLink inside servers
        ideal_d, ideal_c = CircuitFabric.of(ft).ideal_bounds(D)
        ideal_c = ideal_c if combine else 0.0
    comp = setup.compute_gpu_s
    events = recomputes = 0
    ocs = {}
    if p["scheduler"] and p["scheduler"] != "ideal":
        from netsim.ocs_layer import simulate_ocs

        ocs = simulate_ocs(setup)
        d_end = np.full(n, ocs["dispatch_s"])
        layer_end = ocs["layer_s"]
        comb_end = np.full(n, layer_end)
        c_end = np.full(n, layer_end - ocs["combine_s"])
        delivered = ocs["bytes_delivered"]
        events, recomputes = ocs["events"], ocs["rate_recomputes"]
    elif p["fabric"] == "packet":
        pk = _simulate_packet_layer(setup, src, dst, off, comp, ecmp_seed)
        d_end, c_end, comb_end = pk.pop("d_end"), pk.pop("c_end"), pk.pop("comb_end")
        layer_end = float(comb_end.max()) if combine else float(d_end.max())
        delivered = off.sum() * (2 if combine else 1)
        ocs = pk
    elif p["fabric"] == "analytic":
        t_d = ideal_d
        d_end = np.full(n, t_d)
        c_end = d_end + comp
        layer_end = (c_end.max() + ideal_c) if combine else t_d
        delivered = off.sum() * (2 if combine else 1)
        comb_end = np.full(n, layer_end)
    else:
        env = simpy.Environment()
        fab = FlowFabric(ft, tolerance=p["tolerance"], seed=ecmp_seed,
                         capacity=max(16, 2 * len(src)))
        hook = getattr(setup, "hook", None)  # issue 4: netsim.devices.hierarchical.LayerHook
        net = Network(env, fab, hook.n_groups(n) if hook is not None else 2 * n)
        times = PhaseTimes(np.zeros(n), np.zeros(n), np.zeros(n))
        if hook is not None:  # two-phase all-to-all and/or pre-phase (migration) flows
            hook.start(env, net, D, comp, times, combine)
        else:
            np.add.at(net.left, dst, 1)
            if combine:
                np.add.at(net.left, n + src, 1)
            for g in range(n):
                env.process(gpu_layer(env, g, net, D, float(comp[g]), times, combine=combine))
        env.run()
        if hook is not None:
            hook.finish(fab)
        d_end, c_end, comb_end = times.dispatch_end, times.compute_end, times.combine_end
        if np.isnan(fab.finish[: fab.n]).any() or fab.n_act:
            raise RuntimeError("flow fabric ended with unfinished flows")
        layer_end = float(comb_end.max()) if combine else float(d_end.max())
        delivered = float(fab.bytes[: fab.n].sum())
        events, recomputes = fab.events, fab.recomputes
    tok = setup.expert_tokens
    recv = off.sum(axis=0)
    ideal = ideal_d + float(comp.max()) + ideal_c
    out = {
        "n_gpus": n,
        "layer_s": float(layer_end),
        "dispatch_s": float(d_end.max()),
        "compute_s": float(comp.max()),
        "combine_s": float(max(0.0, layer_end - c_end.max())) if combine else 0.0,
        "ideal_s": ideal,
        "ideal_dispatch_s": ideal_d,
        "ideal_combine_s": ideal_c,
        "ratio_to_ideal": float(layer_end / ideal) if ideal > 0 else 1.0,
        "bytes_total": float(off.sum() * (2 if combine else 1)),
        "bytes_delivered": float(delivered),
        "max_gpu_recv_bytes": float(recv.max()),
        "mean_gpu_recv_bytes": float(recv.mean()),
        "imbalance": float(tok.max() / tok.mean()) if len(tok) and tok.mean() > 0 else 1.0,
        "gini": _gini(tok),
        "flows": int(len(src) * (2 if combine else 1)),
        "events": int(events),
        "rate_recomputes": int(recomputes),
        "sim_wall_s": time.perf_counter() - t0,
    }
    if ocs:
        out.update({k: v for k, v in ocs.items() if k not in ("sim_wall_s",)})
        out["ratio_to_ideal"] = float(out["layer_s"] / ideal) if ideal > 0 else 1.0
    return out


PACKET_MAX_PASSES = 6  # dispatch + combine passes of a packet-model layer (see below)


def _simulate_packet_layer(setup: Setup, src, dst, off, comp, seed) -> dict:
    """The layer on the packet model (:mod:`netsim.fabric.packet`).

    The kernel needs every flow's start time up front, so the layer is found by passes. Pass 1
    runs dispatch alone and gives each GPU's dispatch end, hence its compute end; the next pass
    runs dispatch and combine together (combine flows start at their sender's compute end), so
    combine packets can delay dispatch packets and move dispatch ends; compute ends are set from
    those and the pass repeats until they no longer change (a fixed point: every GPU computes
    from the moment its last dispatch byte arrives; usually 2 passes with combine), at most
    :data:`PACKET_MAX_PASSES`. ``packet_passes`` in the row counts the combined passes; at the
    cap, the last pass's dispatch ends may still differ from the compute starts it used.
    """
    from netsim.fabric.packet import PacketConfig, simulate_packets

    p = setup.params
    ft = setup.topo
    n = ft.n_gpus
    combine = setup.layer is not None
    cfg = PacketConfig(mtu_bytes=p["mtu_bytes"], header_bytes=p["header_bytes"],
                       multipath=p["multipath"], buffer_kib=p["buffer_kib"], on_full=p["on_full"],
                       seed=int(seed) % (2**31), trace_bin_s=p["trace_bin_us"] * 1e-6 if p["trace_links"] else 0.0)
    b = off[src, dst]
    r = simulate_packets(ft, src, dst, b, np.zeros(len(src)), cfg)
    d_end = np.zeros(n)
    np.maximum.at(d_end, dst, r.finish_s)
    c_end = d_end + comp
    comb_end = d_end.copy()
    passes = 0
    if combine:
        k = len(src)
        scale = max(float(c_end.max()), 1e-30)
        while True:
            r = simulate_packets(ft, np.concatenate([src, dst]), np.concatenate([dst, src]),
                                 np.concatenate([b, b]),
                                 np.concatenate([np.zeros(k), c_end[dst]]), cfg)
            passes += 1
            d_end = np.zeros(n)
            np.maximum.at(d_end, dst, r.finish_s[:k])
            comb_end = c_end.copy()
            np.maximum.at(comb_end, src, r.finish_s[k:])
            c_new = d_end + comp
            if np.abs(c_new - c_end).max() <= 1e-12 * scale or passes == PACKET_MAX_PASSES:
                break
            c_end = c_new
    if p["trace_links"] and r.link_series is not None:
        try:
            r.link_series.to_parquet(p["trace_links"])
        except OSError as exc:
            raise ConfigError(f"trace_links={p['trace_links']!r} is not writable: {exc}") from None
    return {"d_end": d_end, "c_end": c_end, "comb_end": comb_end, "packets": int(r.packets),
            "packet_hops": int(r.packet_hops), "max_queue_bytes": float(r.max_queue_bytes.max()),
            "pause_s": float(r.pause_s), "drops": int(r.drops), "events": 0, "rate_recomputes": 0,
            "packet_passes": passes}


def _gini(x):
    from netsim.workload.routing import gini

    return gini(x) if len(x) else 0.0


def run(params: dict | None = None, **kw) -> dict:
    """Run one scenario; returns the row: the parameters plus the metrics (see :data:`UNITS`)."""
    params = dict(params or {}) | kw
    t0 = time.perf_counter()
    from netsim.mitigation import run_iterations, wants_iterations  # issue 4

    if wants_iterations(params):  # iterations=N or a mitigation: netsim.mitigation.runner
        row = run_iterations(params)
        row["sim_wall_s"] = time.perf_counter() - t0
        row["netsim_version"] = __version__
        return row
    setup = prepare(params)
    row = dict(setup.params)
    row.update(simulate(setup))
    from netsim.workload.diagnosis import diagnose  # issue 4: diagnosis columns

    for k, v in diagnose(setup, row).items():
        row.setdefault(k, v)
    row["sim_wall_s"] = time.perf_counter() - t0
    row["netsim_version"] = __version__
    return row
