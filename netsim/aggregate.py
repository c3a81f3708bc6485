"""Cluster-scale MoE layers by aggregation (flow ``aggregate=server``: blocks, then servers;
flow and analytic ``aggregate=block``: blocks alone).

A 16,384-GPU cluster has 4.2 M GPU-pair flows per phase even when its GPUs form 64 EP groups of
256, and its GPU-level fabric alone takes about a minute to build and route. This module runs the
same layer (the same routing draw, compute model and ECMP hash) with two reductions:

**1. Blocks (exact).** The topology module names, through ``aggregation_block(ep_size,
**params)`` (``topologies/cluster.py``), the smallest *block* of its fabric that holds whole EP
groups and whose traffic uses no link of another block (a tree's subtree: whole units, or whole
pods). Tokens never leave their EP group, so blocks share no capacity and each block's layer is
simulated on its own, on one GPU-level block fabric built once (the builder with the block's
servers: the same links in the same order as inside the cluster). Routing on it with
``hash_offset`` = the block's first GPU gives every GPU pair the cluster's own ECMP path. The
cluster's layer is the slowest block's. Assumes: the builder's blocks are translates of one
another (checked by the hook), the switches have no capacity of their own (only links do: as in
every netsim fabric), and the flow model's per-event tolerance merges completions within a
block only (the GPU-level run also merges across blocks: a difference within ``tolerance``).

The flow model takes blocks alone with ``aggregate=block``: each block's GPU-level layer (every
GPU pair's flow, netsim's GPU processes, :func:`gpu_block`) on the block fabric, one block after
another. In exact mode its row equals the GPU-level flow row to round-off (a block's filling
alone may break a tie between two of its links in another order than the cluster's); with
``tolerance`` > 0 completions merge within a block only. It costs the blocks' GPU-level runs
(each block's events recompute only that block's rates), so it is the GPU-level reference at
sizes the cluster-wide GPU-level run does not reach, not a fast model.

The analytic model takes blocks alone (``fabric=analytic, aggregate=block``): each block's
min-cut bounds on its GPU-level block fabric (:func:`block_bounds`), the cluster's the largest
of its blocks', then the analytic engine's closed form (dispatch bound, slowest GPU's compute,
combine bound). No GPU x GPU table of the cluster is built: a 16,384-GPU layer needs one
block's. Its row equals the GPU-level analytic row on every column both have
(``tests/test_aggregate.py``); the imbalance diagnosis columns are not computed.

**2. Servers (approximate; the flow model's ``aggregate=server``).** Inside a block, the GPUs of
one server toward the GPUs of one destination server become one flow of their summed bytes on a
*reduced fabric*: every server is one endpoint; switches that connect the same sets of lower
nodes are one switch group (the rail leaves of a unit, the spines of a pod, the cores); the
parallel links between two groups are one link; every group has an up half and a down half
joined by a *turnaround* link, so a flow climbs to the lowest group holding both its servers,
turns there and descends (no ECMP choice is left); each server's intra-server (NVLink) bytes are
one flow on a link of its own. The dispatch and the combine run on two copies of the reduced
fabric that share nothing. A reduced link stands for *member* links of the GPU-level fabric: its
own (a server's NIC links and the PCIe links behind them; the leaf-to-spine links of a unit; a
server's NVLink ports) and, for a turnaround, the links of the detours the reduced fabric cuts
short (a cross-rail pair of one unit climbs to a spine: those spine links are members of the
unit's turnaround). Its capacity, per phase, is set so that it drains the bytes the server flows
put on it in the time its most loaded member needs for the bytes the GPU-pair flows (routed with
the cluster's ECMP hash) put on that member:

    C_reduced = B_reduced / max over members e of (L_e / C_e)

so the per-GPU imbalance behind a server's NICs, the ECMP collisions on spine links and the
cross-rail bytes inside a unit set the pace of the reduced link. What it assumes:

* every flow of a reduced link goes at the pace of its most loaded member (in the GPU-level
  model only the flows of that member are slow): with ECMP collisions on links of one NIC's
  capacity the aggregated layer comes out a few per cent slow;
* a server's GPUs get their dispatch when its last byte arrives, and its combine starts when its
  last GPU has computed (a GPU with more tokens both computes longer and sends more, so this
  keeps the busiest GPU's own timing);
* server-pair flows share links max-min fairly with equal weights, as if every server pair
  carried the same number of GPU-pair flows (true when every GPU pair has bytes); the
  GPU-level model's max-min *tail*, where hot destinations compete for the same senders' NICs
  and their NICs idle part of the time, is not reproduced: with Zipf routing on small EP groups
  the aggregated dispatch comes out fast (it runs at its min-cut bound);
* dispatch flows and combine flows never share a link (the two copies): a server still
  receiving its dispatch while others already send it results gets both at full pace;
* a reduced path's latency is its own links' (a cross-rail pair of one unit is 2 link
  latencies short); servers have NVLink domains (``nvlink_gbps`` > 0).

How close: ``benchmarks/bench_cluster.py`` prints the aggregated and GPU-level layer times side
by side at 1,024 and 2,048 GPUs; ``tests/test_aggregate.py`` checks blocks (exact) and servers on
small shapes; docs/cluster.md has both and the margins.

Row: ``n_gpus``, phase times, the congestion-free reference (per block, on its GPU-level fabric:
the min-cut bound, :mod:`netsim.reference`, the cluster's the largest of its blocks'), bytes, load
statistics, ``flows`` (the GPU-pair flows the layer has), ``events`` and ``rate_recomputes``
(summed over blocks), and ``aggregate_blocks``, ``aggregate_flows`` (server flows simulated:
combine flows extended count once), and the wall time of each phase (``build_wall_s``,
``draw_wall_s``, ``route_wall_s``, ``simulate_wall_s``). ``ideal_balanced_dispatch_s`` and the
imbalance diagnosis are not computed (they need the cluster's GPU x GPU matrix).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import simpy

from netsim.devices.network import GroupBlocks, Network
from netsim.engines.analytic import closed_form
from netsim.errors import ConfigError
from netsim.fabric.flow import FlowFabric
from netsim.prepare import available_memory_bytes, make_batch_time, route_layer
from netsim.reference import cut_bound_time
from netsim.simulate import phase_columns
from netsim.spec import check_aggregate
from netsim.topology import GPU, Topology
from netsim.workload.routing import gini

__all__ = ["Reduction", "reduce_block", "block_bounds", "bounds_block", "gpu_block",
           "simulate_block", "run_layer", "AGGREGATE_UNITS"]

#: the columns an aggregated row adds (units)
AGGREGATE_UNITS = {
    "aggregate_blocks": "count (independent blocks simulated one after another)",
    "aggregate_flows": "count (server flows simulated, both phases, all blocks)",
    "build_wall_s": "s (building and freezing the block and reduced fabrics, host wall clock)",
    "draw_wall_s": "s (routing draw, traffic matrices and compute times, host wall clock)",
    "route_wall_s": "s (GPU-pair ECMP paths, member loads and reduced capacities, wall clock)",
    "simulate_wall_s": "s (flow model on the reduced fabrics, host wall clock)",
}


# ---- the reduced fabric of one block ------------------------------------------------------------

@dataclass
class Reduction:
    """One block's GPU-level fabric and its server-level reduction.

    ``gpu_ft``: the block's GPU-level frozen fabric; ``red``: the reduced frozen fabric, two
    copies that share nothing (the dispatch's, then the combine's: GPUs and links of the second
    are the first's plus 3S and K); the GPUs of a copy are, in order, the S servers, then S
    NVLink sources, then S NVLink sinks; ``member[e]``: the dispatch copy's reduced link that
    GPU-level directed link ``e`` belongs to (-1: none; K links a copy);
    ``gps``: GPUs per server; ``red_pp``/``red_pl``: reduced paths of every ordered server pair
    ``(s, t)`` (row-major, s != t) then of each server's NVLink flow; ``on_path[p, k]``:
    reduced link k is on server pair p's path; ``sp_turn[p]``: the turnaround link it takes;
    ``nvlink[e]``: GPU-level link e is an NVLink port.
    """

    gpu_ft: object
    red: object
    member: np.ndarray
    gps: int
    red_pp: np.ndarray
    red_pl: np.ndarray
    on_path: np.ndarray
    sp_turn: np.ndarray
    nvlink: np.ndarray

    @property
    def servers(self) -> int:
        return self.gpu_ft.n_gpus // self.gps


def _labels(ft, gps: int) -> np.ndarray:
    """Super-node of every node: GPUs, and the nodes only one server's GPUs reach first, are
    their server (0..S-1); other nodes, by increasing distance from the GPUs, are labelled by
    the set of labels of their neighbours nearer the GPUs: switches connected to the same lower
    groups are one group (S, S+1, ...)."""
    n = len(ft.node_kind)
    ng = ft.n_gpus
    dist = np.asarray(ft.dist)
    d = np.where(dist >= 0, dist, np.iinfo(np.int32).max).min(axis=0)  # hops to nearest GPU
    lab = np.full(n, -1, np.int64)
    lab[ft.gpu_nodes] = np.arange(ng) // gps
    nbr = [set() for _ in range(n)]
    for a, b in zip(ft.link_src.tolist(), ft.link_dst.tolist()):
        nbr[a].add(b)
        nbr[b].add(a)
    groups: dict = {}
    nxt = ng // gps
    for v in np.argsort(d, kind="stable").tolist():
        if lab[v] >= 0:
            continue
        lower = frozenset(int(lab[u]) for u in nbr[v] if d[u] < d[v])
        if d[v] == 1 and len(lower) == 1 and all(ft.node_kind[u] != GPU or lab[u] in lower
                                                 for u in nbr[v]):
            lab[v] = next(iter(lower))  # a NIC or NVLink switch of one server
            continue
        key = lower
        if key not in groups:
            groups[key] = nxt
            nxt += 1
        lab[v] = groups[key]
    return lab


def reduce_block(gpu_ft) -> Reduction:
    """The server-level reduction of GPU-level block fabric ``gpu_ft`` (module doc)."""
    gps = max(1, int(gpu_ft.gpus_per_server))
    ng = gpu_ft.n_gpus
    S = ng // gps
    lab = _labels(gpu_ft, gps)
    src, dst = gpu_ft.link_src, gpu_ft.link_dst
    ls, ld = lab[src], lab[dst]
    # intra-server links: NVLink (on an intra-server pair's path) or a server's NIC side
    gs = np.arange(ng)
    pairs = [(i, j) for i in gs for j in gs if i != j and i // gps == j // gps]
    nvl = np.zeros(len(src), bool)
    if pairs:
        a = np.array(pairs)
        pp, pl, _ = gpu_ft.route(a[:, 0], a[:, 1])
        nvl[pl] = True
        if np.any(ls[pl] != ld[pl]):
            raise ConfigError("aggregate=server: intra-server pairs leave their server (no"
                              " NVLink domain)")
    # every switch group X has an up half and a down half joined by its turnaround link X^t:
    # a flow climbs, turns once at the lowest group holding both servers, and descends
    node_d = np.where(np.asarray(gpu_ft.dist) >= 0, np.asarray(gpu_ft.dist),
                      np.iinfo(np.int32).max).min(axis=0)
    t = Topology("reduced", gpu_forwarding=False)
    for s in range(3 * S):
        t.add_gpu(f"srv{s}" if s < S else f"nv{s}")
    n_lab = int(lab.max()) + 1
    up_node = {s: s for s in range(S)}
    down_node = {s: s for s in range(S)}
    key_of: dict = {}
    cap, lat = [], []

    def link(key, a, b, bw, la):
        if key not in key_of:
            key_of[key] = len(cap)
            cap.append(0.0)
            lat.append(0.0)
            t.add_link(a, b, 1.0, 0.0, duplex=False)
        k = key_of[key]
        cap[k] += bw
        lat[k] = max(lat[k], la)
        return k

    turn = np.full(n_lab, -1, np.int64)
    for g in range(S, n_lab):
        up_node[g] = t.add_switch(f"group{g}up")
        down_node[g] = t.add_switch(f"group{g}down")
        turn[g] = link(("t", g), up_node[g], down_node[g], 0.0, 0.0)
    member = np.full(len(src), -1, np.int64)
    up_of: dict = {}
    down_of: dict = {}
    bw, la = gpu_ft.link_bw, gpu_ft.link_lat
    for e in np.flatnonzero(ls != ld).tolist():  # links between groups
        a, b = int(ls[e]), int(ld[e])
        du, dv = node_d[src[e]], node_d[dst[e]]
        if du == dv:
            raise ConfigError("aggregate=server: a link between switches at the same distance"
                              " from the GPUs; the fabric is not a tree of tiers")
        ends = (up_node[a], up_node[b]) if dv > du else (down_node[a], down_node[b])
        member[e] = link(("x", a, b), *ends, float(bw[e]), float(la[e]))
        if a < S:
            up_of.setdefault(a, set()).add(member[e])
        if b < S:
            down_of.setdefault(b, set()).add(member[e])
    for s in range(S):
        if len(up_of.get(s, ())) > 1 or len(down_of.get(s, ())) > 1:
            raise ConfigError(f"aggregate=server: server {s} connects to several switch groups;"
                              " its NICs are not one bundle")
    for e in np.flatnonzero((ls == ld) & (ls < S)).tolist():  # inside a server
        s = int(ls[e])
        if nvl[e]:
            member[e] = link(("nv", s), S + s, 2 * S + s, float(bw[e]) / 2.0, 2.0 * float(la[e]))
        else:  # NIC side: towards the fabric joins the server's uplink, else its downlink
            toward_gpu = gpu_ft.node_kind[dst[e]] == GPU
            ks = down_of.get(s) if toward_gpu else up_of.get(s)
            if ks:
                member[e] = next(iter(ks))
    free = float(np.sum(bw)) * 4.0 + 1.0  # a turnaround without member links never binds
    for k in range(len(cap)):
        t.link_bw[k], t.link_lat[k] = (cap[k] if cap[k] > 0 else free), lat[k]
    # the combine's copy: the same nodes and links, sharing nothing with the dispatch's
    n0, k0 = len(t.node_kind), len(cap)
    for v in range(n0):
        t.add_node(t.node_kind[v], f"c{t.node_name[v]}")
    for k in range(k0):
        t.add_link(t.link_src[k] + n0, t.link_dst[k] + n0, t.link_bw[k], lat[k], duplex=False)
    t.gpus_per_server = 1
    red = t.freeze(connected=False)
    ss, tt = np.nonzero(~np.eye(S, dtype=bool))
    rs = np.concatenate([ss, S + np.arange(S)])
    rd = np.concatenate([tt, 2 * S + np.arange(S)])
    has_nv = np.array([("nv", s) in key_of for s in range(S)], bool)
    if not has_nv.all() and gps > 1:
        raise ConfigError("aggregate=server: a server without an NVLink domain")
    keep = np.concatenate([np.ones(len(ss), bool), has_nv])
    red_pp, red_pl, _ = red.route(rs[keep], rd[keep])
    # per server pair: its reduced links (a mask) and the turnaround it takes
    n_sp = len(ss)
    on_path = np.zeros((n_sp, k0), bool)
    rows = np.repeat(np.arange(n_sp), np.diff(red_pp[: n_sp + 1]))
    on_path[rows, red_pl[: red_pp[n_sp]]] = True
    is_turn = np.zeros(k0, bool)
    is_turn[turn[turn >= 0]] = True
    sp_turn = np.where(on_path & is_turn, np.arange(k0), -1).max(axis=1)
    return Reduction(gpu_ft, red, member, gps, red_pp, red_pl, on_path, sp_turn, nvl)


# ---- one block's layer ---------------------------------------------------------------------------

@dataclass
class BlockResult:
    """One block's answer (seconds; per GPU of the block)."""

    dispatch_end: np.ndarray
    compute_end: np.ndarray
    combine_end: np.ndarray
    ideal_dispatch_s: float
    ideal_combine_s: float
    events: int
    recomputes: int
    flows: int
    bytes_delivered: float
    route_s: float
    sim_s: float


def _routes(ft, B: int, offset: int, seed: int):
    """Every ordered GPU pair ``(i, j)`` of a ``B``-GPU block fabric ``ft`` routed with the
    cluster's ECMP hash (``hash_offset``: the block's first GPU): ``i, j``, the paths (CSR) and
    the ``B x B`` path latencies (s, ``inf`` on the diagonal)."""
    i, j = np.nonzero(~np.eye(B, dtype=bool))
    pp, pl, plat = ft.route(i, j, seed, hash_offset=offset)
    lat = np.full((B, B), np.inf)
    lat[i, j] = plat
    return i, j, pp, pl, lat


def block_bounds(ft, off: np.ndarray, lat: np.ndarray) -> tuple[float, float]:
    """``(ideal_dispatch_s, ideal_combine_s)`` of one block: the min-cut bounds
    (:func:`netsim.reference.cut_bound_time`) of its off-diagonal dispatch bytes ``off`` (B x B)
    and of their transpose (the combine) on its GPU-level fabric ``ft``, with the routed path
    latencies ``lat`` (s)."""
    return (cut_bound_time(off, ft, np.where(off > 0, lat, np.inf)),
            cut_bound_time(off.T, ft, np.where(off.T > 0, lat, np.inf)))


def _capacities(r: Reduction, D: np.ndarray, offset: int, seed: int):
    """Reduced link capacities for block matrix ``D`` (module doc): the dispatch copy's from
    the dispatch bytes, the combine copy's from the combine bytes; and the GPU pairs' path
    latencies (s, ``inf`` on the diagonal)."""
    ft = r.gpu_ft
    B = D.shape[0]
    S, gps = r.servers, r.gps
    D = D.copy()
    np.fill_diagonal(D, 0.0)
    i, j, pp, pl, lat = _routes(ft, B, offset, seed)
    hops = np.diff(pp)
    Ds = D.reshape(S, gps, S, gps).sum(axis=(1, 3))
    intra = np.diagonal(Ds).copy()
    ss, tt = np.nonzero(~np.eye(S, dtype=bool))
    k0 = r.red.n_links // 2
    # members: each GPU-level link's own reduced link; and a link on a GPU pair's path whose
    # reduced link is not on its server pair's path (a detour the reduced fabric cuts short,
    # e.g. a cross-rail pair of one unit climbing to a spine) belongs to the pair's turnaround
    srv = np.arange(B) // gps
    inter = srv[i] != srv[j]
    sp = np.where(inter, srv[i] * (S - 1) + srv[j] - (srv[j] > srv[i]), -1)
    sp_e = np.repeat(sp, hops)
    k_e = r.member[pl]
    det = (sp_e >= 0) & (k_e >= 0) & ~r.nvlink[pl]
    det[det] = ~r.on_path[sp_e[det], k_e[det]]
    m = r.member >= 0
    me = np.concatenate([np.flatnonzero(m), pl[det]])
    mk = np.concatenate([r.member[m], r.sp_turn[sp_e[det]]])
    code = np.unique(me * k0 + mk)
    me, mk = code // k0, code % k0
    cap = r.red.link_bw.copy()
    # pair (i -> j) carries dispatch D[i, j] and the combine of j's tokens on i's experts, D[j, i]
    for c, (w, wr) in enumerate(((D[i, j], np.concatenate([Ds[ss, tt], intra])),
                                 (D[j, i], np.concatenate([Ds[tt, ss], intra])))):
        L = np.bincount(pl, weights=np.repeat(w, hops), minlength=ft.n_links)
        wr = wr[: len(r.red_pp) - 1]
        Bk = np.bincount(r.red_pl, weights=np.repeat(wr, np.diff(r.red_pp)), minlength=k0)
        pace = np.zeros(k0)  # max over members of L_e / C_e: the slowest member's drain time
        np.maximum.at(pace, mk, L[me] / ft.link_bw[me])
        ok = (Bk > 0) & (pace > 0)
        part = cap[c * k0:(c + 1) * k0]
        part[ok] = Bk[ok] / pace[ok]
    return cap, lat


def simulate_block(r: Reduction, D: np.ndarray, comp: np.ndarray, offset: int, seed: int,
                   tolerance: float, solver: str) -> BlockResult:
    """One block's layer on its reduced fabric (module doc): every server pair's dispatch flow
    at t = 0, each GPU's compute from its server's dispatch end, each server's combine flows
    when its last GPU has computed. ``offset``: the block's first GPU in the cluster."""
    t0 = time.perf_counter()
    S, gps = r.servers, r.gps
    cap, lat = _capacities(r, D, offset, seed)
    off = D.copy()
    np.fill_diagonal(off, 0.0)
    ideal_d, ideal_c = block_bounds(r.gpu_ft, off, lat)
    t1 = time.perf_counter()
    red = replace(r.red, link_bw=cap, redundant=None)
    Ds = off.reshape(S, gps, S, gps).sum(axis=(1, 3))
    nv_disp = np.diagonal(Ds).copy()  # intra-server dispatch bytes (diagonal already out)
    # combine: server s sends server t the results of t's tokens on s's experts (Ds[t, s]),
    # and its own tokens' results over NVLink (the intra-server dispatch bytes)
    Cs = Ds.T.copy()
    np.fill_diagonal(Cs, nv_disp)
    env = simpy.Environment()
    n_disp = int(np.count_nonzero(Ds) - np.count_nonzero(np.diagonal(Ds))
                 + np.count_nonzero(nv_disp))
    fab = FlowFabric(red, tolerance=tolerance, seed=seed, capacity=max(16, 4 * n_disp + 16),
                     solver=solver)
    groups = GroupBlocks(dispatch=S, combine=S)
    net = Network(env, fab, groups.total)
    d_end = np.zeros(S)
    c_end = np.zeros(S)
    gpu_c = np.zeros(S * gps)
    flows = [0]

    # dispatch: every server pair's flow, and each server's NVLink flow, at t = 0
    ss, tt = np.nonzero(Ds * ~np.eye(S, dtype=bool) > 0)
    nv = np.flatnonzero(nv_disp > 0)
    net.expect_many(groups.id("dispatch", np.concatenate([tt, nv])))
    ct, cs_ = np.nonzero(Cs.T > 0)  # (receiver, sender) pairs of the combine
    net.expect_many(groups.id("combine", ct))
    net.send(np.concatenate([ss, S + nv]), np.concatenate([tt, 2 * S + nv]),
             np.concatenate([Ds[ss, tt], nv_disp[nv]]),
             groups.id("dispatch", np.concatenate([tt, nv])))
    flows[0] += len(ss) + len(nv)

    def server(s):
        yield net.arrival(groups.id("dispatch", s))
        d_end[s] = env.now
        gp = slice(s * gps, (s + 1) * gps)
        gpu_c[gp] = d_end[s] + comp[gp]
        wait = float(gpu_c[gp].max()) - env.now
        if wait > 0:
            yield env.timeout(wait)  # the server's last GPU has computed: its combine starts
        to = np.flatnonzero(Cs[s] > 0)
        if len(to):
            net.send(np.where(to == s, S + s, s) + 3 * S, np.where(to == s, 2 * S + s, to) + 3 * S,
                     Cs[s, to], groups.id("combine", to))
            flows[0] += len(to)

    def receiver(s):
        yield net.arrival(groups.id("combine", s))
        c_end[s] = env.now

    for s in range(S):
        env.process(server(s))
        env.process(receiver(s))
    env.run()
    if fab.n_act:
        raise RuntimeError("aggregated flow fabric ended with unfinished flows")
    t2 = time.perf_counter()
    srv = np.arange(S * gps) // gps
    delivered = float(fab.bytes[: fab.n].sum())
    return BlockResult(d_end[srv], gpu_c, c_end[srv], ideal_d, ideal_c, fab.events,
                       fab.recomputes, flows[0], delivered, t1 - t0, t2 - t1)


def gpu_block(spec, ft, D: np.ndarray, comp: np.ndarray, offset: int, seed: int) -> BlockResult:
    """One block under the flow model's ``aggregate=block``: its GPU-level layer (every GPU
    pair's flow, netsim's GPU processes: :func:`netsim.engines.flow.simulate`) on the block
    fabric ``ft``, routed with the cluster's ECMP hash (``offset``: the block's first GPU), and
    its min-cut bounds (:func:`block_bounds`). The same layer as the cluster's GPU-level run
    restricted to the block, which shares no link with the others; what differs is only that
    ``tolerance`` merges completion events within the block."""
    from netsim.engines.flow import simulate
    from netsim.layer import PreparedLayer

    t0 = time.perf_counter()
    off = D.copy()
    np.fill_diagonal(off, 0.0)
    lat = _routes(ft, off.shape[0], offset, seed)[4]
    ideal_d, ideal_c = block_bounds(ft, off, lat)
    t1 = time.perf_counter()
    res = simulate(PreparedLayer(spec, ft, D, comp, np.zeros(0), ecmp_seed=seed,
                                 hash_offset=offset))
    return BlockResult(res.dispatch_end, res.compute_end, np.array([res.layer_s]), ideal_d,
                       ideal_c, res.events, res.rate_recomputes, 2 * int(np.count_nonzero(off)),
                       res.bytes_delivered, t1 - t0, time.perf_counter() - t1)


def bounds_block(ft, off: np.ndarray, offset: int, seed: int) -> BlockResult:
    """One block under ``aggregate=block`` (the analytic model): its GPU pairs routed with the
    cluster's ECMP hash and its min-cut bounds (:func:`block_bounds`), no simulation; it
    delivers every byte by definition (dispatch and combine). The per-GPU ends are the
    cluster's closed form, set by :func:`run_layer` once every block's bounds are known."""
    t0 = time.perf_counter()
    lat = _routes(ft, off.shape[0], offset, seed)[4]
    ideal_d, ideal_c = block_bounds(ft, off, lat)
    none = np.zeros(0)
    return BlockResult(none, none, none, ideal_d, ideal_c, 0, 0, 0, 2.0 * float(off.sum()),
                       time.perf_counter() - t0, 0.0)


# ---- the run -----------------------------------------------------------------------------------

#: bytes a block needs per ordered GPU pair (its B x B matrices, routed paths and loads)
_BYTES_PER_PAIR = 400.0


def run_layer(spec) -> dict:
    """The metric columns of one aggregated layer of ``spec`` (module doc)."""
    t0 = time.perf_counter()
    blk = check_aggregate(spec)
    B = float(blk["block_gpus"])
    need = B * B * _BYTES_PER_PAIR
    if need > available_memory_bytes():
        gib = 2.0 ** 30
        raise ConfigError(f"aggregate={spec.model.aggregate}: blocks of {int(B)} GPUs (EP"
                          f" groups of ep_size={spec.layer.ep_size or int(B)}) need about"
                          f" {need / gib:.3g} GiB (the block's GPU pairs: matrices and paths);"
                          " this machine has"
                          f" {available_memory_bytes() / gib:.3g} GiB available: use smaller EP"
                          " groups")
    topo = spec.build_topology(**blk["params"])
    gpu_ft = topo.freeze()
    analytic = spec.fabric == "analytic"  # bounds only: no simulation
    servers = spec.model.aggregate == "server"  # else blocks at GPU level
    red = reduce_block(gpu_ft) if servers else None
    t1 = time.perf_counter()
    layer = spec.layer
    Bg, nb = int(blk["block_gpus"]), int(blk["blocks"])
    n = Bg * nb
    gps = max(1, int(gpu_ft.gpus_per_server))
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(2)[0])
    ecmp_seed = int(np.random.SeedSequence(spec.seed).spawn(2)[1].generate_state(1)[0])
    counts, _, _ = route_layer(layer, spec.routing_source, n, gps, rng)
    layer.ep(n)  # validates ep_size against the cluster
    batch_time = make_batch_time(spec)
    draw_s = time.perf_counter() - t1
    ends = []
    ideal_d = ideal_c = 0.0
    ev = rc = fl = 0
    delivered = route_s = sim_s = 0.0
    recv = np.zeros(n)
    comp_all = np.zeros(n)
    pcols: list[dict] = []
    pairs = 0
    per_tok = float(layer.dispatch_bytes_per_token)
    for b in range(nb):
        t2 = time.perf_counter()
        rows = slice(b * Bg, (b + 1) * Bg)
        D, batches = layer.traffic(counts[rows], Bg)
        comp = batch_time(batches, local=True)
        comp_all[rows] = comp
        off = D.copy()
        np.fill_diagonal(off, 0.0)
        recv[rows] = off.sum(axis=0)
        pairs += int(np.count_nonzero(off))
        pcols.append(phase_columns(None, {}, D, None, gps, per_tok, 1.0, None))
        draw_s += time.perf_counter() - t2
        if analytic:
            res = bounds_block(gpu_ft, off, b * Bg, ecmp_seed)
        elif not servers:
            res = gpu_block(spec, gpu_ft, D, comp, b * Bg, ecmp_seed)
        else:
            res = simulate_block(red, D, comp, b * Bg, ecmp_seed, spec.model.tolerance,
                                 spec.model.solver)
        ends.append(res)
        ideal_d, ideal_c = max(ideal_d, res.ideal_dispatch_s), max(ideal_c, res.ideal_combine_s)
        ev, rc, fl = ev + res.events, rc + res.recomputes, fl + res.flows
        delivered += res.bytes_delivered
        route_s += res.route_s
        sim_s += res.sim_s
    if analytic:  # the GPU-level analytic engine's closed form, with the cluster's bounds
        d_end, c_end, layer_s = closed_form(ideal_d, ideal_c, comp_all, combine=True)
    else:
        d_end = np.concatenate([r.dispatch_end for r in ends])
        c_end = np.concatenate([r.compute_end for r in ends])
        layer_s = float(max(r.combine_end.max() for r in ends))
    tok = counts.sum(axis=0)
    ideal = ideal_d + float(comp_all.max()) + ideal_c
    out = {
        "n_gpus": n, "layer_s": layer_s, "dispatch_s": float(d_end.max()),
        "compute_s": float(comp_all.max()),
        "combine_s": float(max(0.0, layer_s - c_end.max())),
        "serial_ideal_s": ideal, "ideal_dispatch_s": ideal_d, "ideal_combine_s": ideal_c,
        "ratio_to_serial_ideal": layer_s / ideal if ideal > 0 else 1.0,
        "bytes_delivered": delivered,
        "max_gpu_recv_bytes": float(recv.max()), "mean_gpu_recv_bytes": float(recv.mean()),
        "imbalance": float(tok.max() / tok.mean()) if tok.mean() > 0 else 1.0,
        "gini": gini(tok), "events": ev, "rate_recomputes": rc,
    }
    for k in ("dispatch_bytes", "combine_bytes", "dispatch_scaleout_bytes",
              "combine_scaleout_bytes", "dispatch_flow_bytes", "combine_flow_bytes",
              "bytes_total"):
        out[k] = float(sum(p[k] for p in pcols))
    out["recv_tokens_max"] = float(max(p["recv_tokens_max"] for p in pcols))
    out["recv_tokens_mean"] = float(np.mean([p["recv_tokens_mean"] for p in pcols]))
    out["flows"] = 2 * pairs
    out.update(aggregate_blocks=nb, aggregate_flows=fl, build_wall_s=t1 - t0, draw_wall_s=draw_s,
               route_wall_s=route_s, simulate_wall_s=sim_s)
    return out
