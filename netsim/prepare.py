"""From a run specification to a prepared layer: topology, routing draw, traffic and compute.

:func:`context` builds what every iteration of a run shares (the frozen topology, the compute
model, the random streams); :func:`prepare` draws one layer from it. The multi-iteration runner
(:mod:`netsim.mitigation.runner`) uses :func:`context` and builds its own per-iteration traffic.
Random streams: ``SeedSequence(seed).spawn(2)`` gives the routing stream (first child) and the
ECMP hash seed (second child); nothing else draws random numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from netsim import progress
from netsim.circuit_fabric import CircuitFabric, ideal_topology
from netsim.errors import ConfigError
from netsim.layer import PreparedLayer
from netsim.spec import RunSpec
from netsim.traffic import load_traffic
from netsim.workload.calibration import RooflineCompute, get_compute_model

__all__ = ["Context", "context", "prepare", "make_batch_time", "route_layer"]


@dataclass
class Context:
    """What every layer of one run shares."""

    spec: RunSpec
    topo: Any  # FrozenTopology the layer runs on
    circuits: CircuitFabric | None
    batch_time: Callable | None
    ecmp_seed: int

    def routing_rng(self) -> np.random.Generator:
        """The routing stream (its first state: iteration 0 of the run)."""
        return np.random.default_rng(np.random.SeedSequence(self.spec.seed).spawn(2)[0])


def context(spec: RunSpec) -> Context:
    """Build the topology (the circuits' ideal reference for ``scheduler=ideal``), the circuit
    fabric it declares, the compute model and the ECMP seed."""
    progress.stage("topology")
    n = gpus_of_params(dict(spec.topology_params))
    if n is not None:  # before building: a builder of 10^9 GPUs would run out of memory itself
        _refuse_if_too_big(spec, n, n, spec.topology)
    topo = spec.build_topology(**spec.topo_kwargs)
    check_size(spec, topo)
    progress.stage(f"topology {topo.name!r}: {topo.n_gpus} GPUs, {len(topo.link_src)} links,"
                   " routing tables")
    ft = topo.freeze()
    circuits = None
    if spec.fabric == "circuit" or (spec.scheduler and ft.circuits is not None):
        circuits = CircuitFabric.of(ft)  # raises if the topology declares no circuits
        if spec.scheduler == "ideal":
            # the congestion-free reference: the circuits replaced by a non-blocking switch
            ft = ideal_topology(ft).freeze()
    ecmp_seed = int(np.random.SeedSequence(spec.seed).spawn(2)[1].generate_state(1)[0])
    bt = make_batch_time(spec) if spec.layer is not None else None
    return Context(spec, ft, circuits, bt, ecmp_seed)


def prepare(spec: RunSpec, ctx: Context | None = None) -> PreparedLayer:
    """One layer of ``spec`` (routing iteration 0), ready for an engine. A combine of other
    bytes a token than the dispatch (``combine_dtype`` != ``dispatch_dtype``) runs as the flow
    model's direct all-to-all with a :class:`netsim.devices.hierarchical.LayerHook` whose
    combine flows carry ``combine_scale`` times their dispatch bytes (``layer.hook``); the other
    fabrics return the dispatch's bytes and refuse it."""
    ctx = ctx or context(spec)
    ft, n = ctx.topo, ctx.topo.n_gpus
    if spec.traffic:
        disp = load_traffic(spec.traffic, n)
        return PreparedLayer(spec, ft, disp, np.zeros(n), np.zeros(0), circuits=ctx.circuits,
                             ecmp_seed=ctx.ecmp_seed)
    layer = spec.layer
    gps = max(1, int(getattr(ft, "gpus_per_server", 1)))
    progress.stage(f"routing: {n} GPUs x {layer.tokens_per_gpu} tokens, top-{layer.top_k}"
                   f" ({float(n) * layer.tokens_per_gpu * layer.top_k:.3g} expert draws,"
                   " one kernel call)")
    counts, rank_tok, _ = route_layer(layer, spec.routing_source, n, gps, ctx.routing_rng())
    if layer.dispatcher == "node":
        raise ConfigError("dispatcher='node' sends a token once per server through a relay GPU;"
                          " set collective=hierarchical or collective=deepep_normal (the two-phase"
                          " collectives), or use dispatcher='rank'")
    hook = None
    if layer.combine_scale != 1.0:  # the combine carries its own bytes: the flow model's GPUs
        if spec.fabric != "flow":
            raise ConfigError(
                f"dispatch_dtype={layer.dispatch_dtype or 'dtype_bytes'!r} and combine_dtype="
                f"{layer.combine_dtype or 'dtype_bytes'!r} give the phases different bytes per"
                f" token ({layer.dispatch_bytes_per_token} and {layer.combine_bytes_per_token}"
                f" B); fabric={spec.fabric!r} returns the dispatch's own bytes: use"
                " fabric='flow' or equal dtypes")
        from netsim.devices.hierarchical import LayerHook

        hook = LayerHook("direct", gps, combine_scale=layer.combine_scale)
    disp, batches = layer.traffic(counts, n)
    if layer.dispatcher != "pairs":
        disp = layer.dispatch_matrix(counts, rank_tok, n)
    comp = ctx.batch_time(batches, local=True)
    T = layer.tokens_to(counts, n) if spec.fabric == "circuit" else None
    return PreparedLayer(spec, ft, disp, comp, counts.sum(axis=0), counts=counts, tokens_to=T,
                         batch_time=ctx.batch_time, hook=hook, circuits=ctx.circuits,
                         ecmp_seed=ctx.ecmp_seed)


def route_layer(layer, source, n: int, gps: int, rng: np.random.Generator, draw=None):
    """One routing draw of ``layer`` on ``n`` GPUs: ``(counts[N, E], rank[N, N] | None,
    node[N, S] | None)``.

    ``dispatcher=pairs`` without ``max_nodes`` asks the source for counts only (so ``counts:``
    works and the rows are today's); otherwise per-token choices (node-limited when
    ``max_nodes`` > 0, the servers holding the experts as groups), their counts and the exact
    de-duplicated token counts (:meth:`netsim.workload.moe.MoELayer.dedup`). ``draw(kind,
    **kw)``, when given, replaces ``source.counts`` / ``source.choices`` (the runner's
    per-iteration streams)."""
    from netsim.workload.routing import counts_of

    shape = (n, layer.tokens_per_gpu, layer.experts, layer.top_k)
    if draw is None:
        def draw(kind, **kw):
            return getattr(source, kind)(*shape, rng, **kw)
    if not layer.per_token_routing:
        return draw("counts"), None, None
    groups = None
    if layer.max_nodes:
        groups = layer.expert_servers(n, gps)
        if groups is None:
            raise ConfigError(f"max_nodes={layer.max_nodes}: experts={layer.experts} are"
                              f" replicated over ep_size={layer.ep(n)} ranks, so a server"
                              f" limit is ambiguous; expected experts >= ep_size")
    if not hasattr(source, "choices"):
        raise ConfigError(f"routing {getattr(source, 'spec', source)!r} gives counts only;"
                          f" dispatcher={layer.dispatcher!r} / max_nodes={layer.max_nodes} need"
                          f" per-token routing")
    choices = draw("choices", groups=groups, max_groups=int(layer.max_nodes))
    counts = counts_of(choices, n, layer.tokens_per_gpu, layer.experts)
    rank, node = layer.dedup(choices, n, gps)
    return counts, rank, node


def available_memory_bytes() -> float:
    """Memory this machine can give a run now (``MemAvailable`` of /proc/meminfo; elsewhere the
    physical memory), bytes."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def estimate_bytes(spec: RunSpec, n_gpus: int, n_nodes: int) -> dict[str, float]:
    """A lower estimate of what a run of this shape allocates, by part (bytes): the hop-distance
    table the routing keeps (GPUs x nodes, int32), the GPU x GPU byte matrices the layer, the
    bound and the metrics hold (about twelve float64 copies: the matrix, its copies, each pair's
    route latency and the bound's per-cut-set temporaries, for both phases), and for
    the flow and packet models the per-flow state of both phases (about 100 bytes a flow), and
    with per-token routing (``dispatcher`` rank/node or ``max_nodes``) every token's experts
    (int32, the draw and its de-duplication's copy)."""
    n = float(n_gpus)
    out = {"hop-distance table": n * n_nodes * 4.0, "GPU x GPU matrices": n * n * 8.0 * 12}
    layer = spec.layer
    if layer is not None and not spec.traffic and layer.per_token_routing:
        out["per-token expert choices"] = n * layer.tokens_per_gpu * layer.top_k * 4.0 * 2
    if spec.fabric in ("flow", "packet"):
        out["per-flow state"] = n * n * 2 * 100.0
    return out


def gpus_of_params(params: dict) -> int | None:
    """The GPU count a topology's parameters give before it is built, by the shipped builders'
    conventions (``gpus``, or ``servers`` x ``gpus_per_server``); None when they say neither
    (such a topology is checked once built)."""
    try:
        if "gpus" in params:
            return int(params["gpus"])
        if "servers" in params and "gpus_per_server" in params:
            return int(params["servers"]) * int(params["gpus_per_server"])
    except (TypeError, ValueError):
        return None
    return None


def check_size(spec: RunSpec, topo) -> None:
    """Refuse a run whose estimated memory (:func:`estimate_bytes`) exceeds what the machine
    has available, before anything large is allocated (ConfigError naming both). The context
    runs it twice: from the parameters' GPU count before the topology is built (nodes counted
    as GPUs), and on the built topology."""
    _refuse_if_too_big(spec, topo.n_gpus, len(topo.node_kind), topo.name)


def _refuse_if_too_big(spec: RunSpec, n_gpus: int, n_nodes: int, name: str) -> None:
    parts = estimate_bytes(spec, n_gpus, n_nodes)
    need, free = sum(parts.values()), available_memory_bytes()
    if need > free:
        gib = 2.0 ** 30
        what = ", ".join(f"{k} {v / gib:.3g} GiB" for k, v in parts.items())
        raise ConfigError(f"a run of {n_gpus} GPUs on topology {name!r} needs at least"
                          f" {need / gib:.3g} GiB ({what}); this machine has {free / gib:.3g} GiB"
                          " available: use fewer GPUs or tokens_per_gpu")


def make_batch_time(spec: RunSpec):
    """``batch_time(tokens[k, slots], local=False) -> seconds[k]``: compute time of k batches.

    A batch runs each expert copy it has tokens for, one after another, each paying the compute
    model's time for its token count (fixed overhead included). ``local=True`` adds the shared
    experts on the GPU's own ``tokens_per_gpu`` tokens.
    """
    layer, c = spec.layer, spec.compute
    kw = {"overhead_s": c.batch_overhead_us * 1e-6} if c.batch_overhead_us >= 0 else {}
    cm = get_compute_model(c.gpu, **kw)
    shared = 0.0
    if layer.shared_experts:
        shared = layer.shared_experts * float(np.asarray(
            cm.time_s(np.array([float(layer.tokens_per_gpu)]), layer.hidden, layer.ffn_hidden))[0])
    roof = None
    if isinstance(cm, RooflineCompute):  # same formula as cm.time_s, without numpy per call
        h, f = float(layer.hidden), float(layer.ffn_hidden)
        roof = (cm.overhead_s, 6.0 * h * f / (cm.peak_flops * cm.efficiency),
                cm.dtype_bytes * 3.0 * h * f / cm.hbm_bandwidth,
                cm.dtype_bytes * 2.0 * h / cm.hbm_bandwidth)

    def batch_time(tokens, local: bool = False) -> np.ndarray:
        tok = np.atleast_2d(np.asarray(tokens, dtype=np.float64))
        if roof is not None and tok.shape[0] == 1:
            o, a, b, cc = roof
            t = sum(o + max(a * x, b + cc * x) for x in tok[0].tolist() if x > 0)
            return np.array([t + (shared if local else 0.0)])
        t = np.asarray(cm.time_s(tok.ravel(), layer.hidden, layer.ffn_hidden),
                       dtype=np.float64).reshape(tok.shape)
        t[tok <= 0] = 0.0
        return t.sum(axis=1) + (shared if local else 0.0)

    return batch_time
