"""Packet-level fabric model: MTU packets, NIC serialisation, FIFO output queues, buffers, ECMP/spray.

Model (what it assumes; see docs/packet_model.md for the long form):

* A flow (source GPU, destination GPU, bytes, start time) is cut into ``ceil(bytes / mtu)``
  packets of ``mtu_bytes`` payload (the last one smaller); each packet occupies
  ``payload + header_bytes`` on the wire.
* **Source serialisation.** Every flow's first link (the link leaving the source GPU on its ECMP
  path, e.g. GPU->NIC) is a *serialiser*: it transmits the packets of all flows that start on it,
  one after another at its line rate, in ``nic_order``: ``round_robin`` (default; one packet per
  active flow in turn, as a NIC with one queue pair per peer; among flows that start together the
  order is by destination, starting at the GPU after the source, ``(dst - src - 1) mod n``, so a
  uniform all-to-all is a sequence of permutations) or ``sequential`` (one flow after the other,
  in that same order). A flow joins the rotation at its start time (at the end of the current
  round). The serialiser has no queue of its own: unsent data waits in host memory.
* **Links.** Every other directed link has a FIFO output queue at its head; a packet is
  store-and-forward: it enters the next queue once its last bit has crossed the link
  (transmission ``wire_bytes / bw`` plus the link's latency).
* **Multipath.** ``ecmp``: the whole flow follows :meth:`FrozenTopology.route` (per-flow hash,
  ``seed``). ``spray``: the first link is the flow's ECMP one; at every later hop each packet picks
  among the equal-cost next links (same candidates as ``route``) by a hash of (flow, link, packet's
  rank among the flow's packets crossing that link, seed): a deterministic pseudo-random
  per-packet choice.
* **Buffers.** ``buffer_kib=0``: unbounded, lossless; ``max_queue_bytes`` is each queue's peak
  backlog (bytes waiting plus the untransmitted part of the packet in service, sampled at
  arrivals, the arriving packet included). ``buffer_kib=B``: every non-serialiser queue holds at
  most B KiB of whole packets (a packet occupies its queue from admission until its last bit has
  left). ``on_full="pfc"``: lossless back-pressure; a link (or serialiser) may start sending a
  packet only once the next queue has room for it, and the room is reserved at that moment
  (ideal PFC headroom: no loss, no overshoot); while its head packet waits the link is paused
  (head-of-line blocking, as with PFC), and ``pause_s`` sums the paused time over links.
  ``on_full="drop"``: drop-tail at arrival; a dropped packet is sent again by its source
  ``rto_us`` after its last transmission (an idealised per-packet timer: only lost packets are
  resent, selectively, with priority over new data); every byte is delivered exactly once.
* **No congestion control**: sources send at line rate whatever happens downstream (no ECN, DCQCN,
  window or rate adaptation); PFC is the only feedback.
* A GPU that relays (direct-connect fabrics) serves relayed packets before its own new packets on
  the same out-link.

Engines (both in numba, arrays in, arrays out, no Python object per packet):

* ``lindley`` (used when buffers are unbounded and the link graph of the routes is acyclic, i.e.
  feed-forward: up-down routing on Clos/fat-tree/crossbar/NVLink domains). Links are processed
  in topological order of the DAG "link a feeds link b"; a link fed by one link only is computed
  inline while its feeder runs; a link fed by several orders their (already time-sorted)
  departure streams, window by window, with a counting sort on time buckets, and runs the Lindley
  recursion ``start = max(arrival, previous departure)``. Simultaneous arrivals at a queue are
  served in the order of their upstream links' ids (and, from one link, in their order).
  Packets move in batches of a few thousand through per-state next-hop tables. The roots
  (serialisers, merge links) run in waves, depth first; the roots of a wave are independent and
  run on up to ``threads`` Python threads (the kernel releases the GIL), each with private
  copies of the per-link state: same results as one thread, to the last bit. Arrival buffers
  live from the wave that writes them to the wave that reads them and reuse dead ones' space.
* ``events``: a discrete-event loop (binary heap of (time, event)) over packets with real FIFO
  queues, used with bounded buffers, on routes whose link graph has a cycle (GPU relays), or on
  request (``engine="events"``).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from netsim.errors import ConfigError, TrafficError
from netsim.fabric.heap import heap_pop, heap_push
from netsim.topology import _mix

# ----------------------------------------------------------------------------------------------
# public API


@dataclass
class PacketConfig:
    """Parameters of the packet model (units in the names; see the module docstring).

    ``mtu_bytes``: payload per packet; ``header_bytes``: per-packet overhead on the wire;
    ``multipath``: ``"ecmp"`` (per flow) or ``"spray"`` (per packet); ``buffer_kib``: queue size
    (0 = unbounded, lossless); ``on_full``: ``"pfc"`` (pause upstream) or ``"drop"`` (drop-tail and
    retransmit after ``rto_us``); ``nic_order``: ``"round_robin"`` or ``"sequential"``;
    ``seed``: ECMP/spray hash seed; ``trace_bin_s``: width of the per-link time series bins
    (0 = none); ``engine``: ``"auto"``, ``"lindley"`` or ``"events"``; ``threads``: threads of
    the Lindley engine (0 = the usable cores, at most 4, one below 2**17 packets; results do not
    depend on it).
    """

    mtu_bytes: int = 4096
    header_bytes: int = 0
    multipath: str = "ecmp"
    buffer_kib: float = 0.0
    on_full: str = "pfc"
    rto_us: float = 100.0
    nic_order: str = "round_robin"
    seed: int = 0
    trace_bin_s: float = 0.0
    engine: str = "auto"
    threads: int = 0

    def validate(self) -> None:
        def bad(name, value, expected):
            raise ConfigError(f"packet model: {name}={value!r}; expected {expected}")

        if not isinstance(self.mtu_bytes, (int, np.integer)) or self.mtu_bytes < 1:
            bad("mtu_bytes", self.mtu_bytes, "a positive integer")
        if not isinstance(self.header_bytes, (int, np.integer)) or self.header_bytes < 0:
            bad("header_bytes", self.header_bytes, "a non-negative integer")
        if self.multipath not in ("ecmp", "spray"):
            bad("multipath", self.multipath, "'ecmp' or 'spray'")
        if not np.isfinite(self.buffer_kib) or self.buffer_kib < 0:
            bad("buffer_kib", self.buffer_kib, "a number >= 0 (0 = unbounded)")
        if self.buffer_kib > 0 and self.buffer_kib * 1024 < self.mtu_bytes + self.header_bytes:
            bad("buffer_kib", self.buffer_kib,
                f"0 or at least one packet ({(self.mtu_bytes + self.header_bytes) / 1024} KiB)")
        if self.on_full not in ("pfc", "drop"):
            bad("on_full", self.on_full, "'pfc' or 'drop'")
        if not np.isfinite(self.rto_us) or self.rto_us < 0:
            bad("rto_us", self.rto_us, "a number >= 0")
        if self.nic_order not in ("round_robin", "sequential"):
            bad("nic_order", self.nic_order, "'round_robin' or 'sequential'")
        if not np.isfinite(self.trace_bin_s) or self.trace_bin_s < 0:
            bad("trace_bin_s", self.trace_bin_s, "a number >= 0 (0 = no time series)")
        if self.engine not in ("auto", "lindley", "events"):
            bad("engine", self.engine, "'auto', 'lindley' or 'events'")
        if not isinstance(self.threads, (int, np.integer)) or self.threads < 0:
            bad("threads", self.threads, "an integer >= 0 (0 = automatic)")


@dataclass
class PacketResult:
    """Outputs of :func:`simulate_packets` (SI units).

    ``finish_s[i]``: when flow ``i``'s last byte reaches its destination (its start time for an
    empty or self flow); ``packets``: packets generated (retransmissions not counted);
    ``packet_hops``: link transmissions (retransmissions and hops of dropped packets included);
    ``max_queue_bytes``: peak queue per directed link (see the module docstring); ``pause_s``:
    total PFC pause time summed over links; ``drops``/``retransmits``: drop mode counters;
    ``link_series``: DataFrame (link, time_bin, bytes, queue_bytes) or None; ``wall_s``: wall time
    of the call; ``engine``: which engine ran; ``delivered_packets``: packets delivered
    (== ``packets``: conservation).
    """

    finish_s: np.ndarray
    packets: int
    packet_hops: int
    max_queue_bytes: np.ndarray
    pause_s: float
    drops: int
    retransmits: int
    link_series: object | None
    wall_s: float
    engine: str = ""
    delivered_packets: int = 0

    @property
    def makespan_s(self) -> float:
        return float(np.max(self.finish_s)) if len(self.finish_s) else 0.0


def simulate_packets(topo, src, dst, nbytes, start_s, cfg: PacketConfig | None = None) -> PacketResult:
    """Simulate flows ``src[i] -> dst[i]`` (GPU numbers) of ``nbytes[i]`` bytes starting at
    ``start_s[i]`` seconds through ``topo`` (a :class:`FrozenTopology`) packet by packet."""
    t_wall = time.perf_counter()
    cfg = PacketConfig() if cfg is None else cfg
    cfg.validate()
    src = np.asarray(src, dtype=np.int64).ravel()
    dst = np.asarray(dst, dtype=np.int64).ravel()
    nbytes = np.asarray(nbytes, dtype=np.float64).ravel()
    start_s = np.broadcast_to(np.asarray(start_s, dtype=np.float64), src.shape).ravel().copy()
    n_all = len(src)
    if not (len(dst) == len(nbytes) == n_all):
        raise TrafficError(f"src, dst, nbytes have lengths {len(src)}, {len(dst)}, {len(nbytes)};"
                           " expected equal lengths")
    ng = topo.n_gpus
    for name, a in (("src", src), ("dst", dst)):
        if n_all and (a.min() < 0 or a.max() >= ng):
            raise TrafficError(f"{name} GPU {int(a[(a < 0) | (a >= ng)][0])} out of range 0..{ng - 1}")
    if n_all and (not np.all(np.isfinite(nbytes)) or nbytes.min() < 0):
        raise TrafficError("nbytes has NaN, infinite or negative entries; expected bytes >= 0")
    if n_all and (not np.all(np.isfinite(start_s)) or start_s.min() < 0):
        raise TrafficError("start_s has NaN, infinite or negative entries; expected seconds >= 0")

    finish_all = start_s.copy()
    keep = np.flatnonzero((nbytes > 0) & (src != dst))
    n_links = topo.n_links
    if len(keep) == 0:
        return PacketResult(finish_all, 0, 0, np.zeros(n_links), 0.0, 0, 0, None,
                            time.perf_counter() - t_wall, "none", 0)

    plan = _plan(topo, src[keep], dst[keep], nbytes[keep], start_s[keep], cfg)
    bounded = cfg.buffer_kib > 0
    if cfg.engine == "lindley":
        if bounded or not plan["feedforward"]:
            raise ConfigError("packet model: engine='lindley' needs unbounded buffers and acyclic"
                              " (feed-forward) routes; use engine='auto' or 'events'")
        engine = "lindley"
    elif cfg.engine == "events":
        engine = "events"
    else:
        engine = "lindley" if (not bounded and plan["feedforward"]) else "events"

    run = _run_lindley if engine == "lindley" else _run_events
    out = run(plan, cfg, None)
    series = None
    if cfg.trace_bin_s > 0:
        horizon = float(out["fin"].max())
        n_bins = int(np.floor(horizon / cfg.trace_bin_s)) + 1
        used = np.flatnonzero(plan["used"])
        if len(used) * n_bins > 50_000_000:
            raise ConfigError(f"packet model: trace_bin_s={cfg.trace_bin_s!r} gives {n_bins} bins x"
                              f" {len(used)} links; expected at most 5e7 cells (use wider bins)")
        out = run(plan, cfg, (n_bins, used))
        series = _series_frame(out["tr_bytes"], out["tr_queue"], used, cfg.trace_bin_s)

    finish_all[keep] = out["fin"]
    return PacketResult(
        finish_s=finish_all,
        packets=int(plan["npk"].sum()),
        packet_hops=int(out["hops"]),
        max_queue_bytes=out["peak_bytes"],
        pause_s=float(out["pause_s"]),
        drops=int(out["drops"]),
        retransmits=int(out["retransmits"]),
        link_series=series,
        wall_s=time.perf_counter() - t_wall,
        engine=engine,
        delivered_packets=int(out["delivered"]),
    )


def _series_frame(tr_bytes, tr_queue, used, bin_s):
    import pandas as pd

    rows, bins = np.nonzero((tr_bytes > 0) | (tr_queue > 0))
    return pd.DataFrame({
        "link": used[rows].astype(np.int64),
        "time_bin": bins.astype(np.int64),
        "t_s": bins * bin_s,
        "bytes": tr_bytes[rows, bins],
        "queue_bytes": tr_queue[rows, bins],
    })


# ----------------------------------------------------------------------------------------------
# planning (Python + small numba helpers): states, link DAG, serialisers, buffers


def _plan(topo, src, dst, nbytes, start, cfg):
    mtu = float(cfg.mtu_bytes)
    hdr = float(cfg.header_bytes)
    F = len(src)
    npk = np.maximum(np.ceil(nbytes / mtu), 1).astype(np.int64)
    last_wire = nbytes - (npk - 1) * mtu + hdr
    seed = int(cfg.seed)
    path_ptr, path_links, lat_path = topo.route(src, dst, seed)
    first_link = path_links[path_ptr[:-1]]
    L = topo.n_links

    if cfg.multipath == "ecmp":
        S = len(path_links)
        st_link = path_links.astype(np.int64)
        plen = np.diff(path_ptr)
        st_flow = np.repeat(np.arange(F, dtype=np.int64), plen)
        is_last = np.zeros(S, np.bool_)
        is_last[path_ptr[1:] - 1] = True
        ch_ptr = np.zeros(S + 1, np.int64)
        ch_ptr[1:] = np.cumsum(~is_last)
        ch = (np.flatnonzero(~is_last) + 1).astype(np.int64)
        first_state = path_ptr[:-1].astype(np.int64)
        slot_parent = np.flatnonzero(~is_last)
        slot_cnt = npk[st_flow[slot_parent]]
    else:
        st_link, st_flow, ch_ptr, ch, first_state = _spray_states(
            first_link.astype(np.int64), dst, topo.gpu_nodes, topo.dist, topo.out_ptr,
            topo.out_link, topo.link_dst, topo.forwards)
        S = len(st_link)
        slot_parent = np.repeat(np.arange(S, dtype=np.int64), np.diff(ch_ptr))
        slot_cnt = _spray_counts(ch_ptr, ch, first_state, npk, np.uint64(seed & 0xFFFFFFFFFFFFFFFF))

    # number the states link by link: the states a root touches are then a few contiguous
    # ranges (their next-hop entries stay in cache); st_hash keeps the old numbers for spraying
    st_link, st_flow, ch_ptr, ch, first_state, slot_parent, slot_cnt, st_hash = _renumber(
        st_link, st_flow, ch_ptr, ch, first_state, slot_cnt)
    # link DAG edges (u -> m) between consecutive links of a state path
    u = st_link[slot_parent]
    m = st_link[ch]
    key = m * L + u  # sorted by m then u
    uniq, ch_edge = np.unique(key, return_inverse=True)
    ch_edge = ch_edge.astype(np.int64).ravel()
    edge_m = uniq // L
    edge_u = uniq % L
    E = len(uniq)
    edge_cnt = np.bincount(ch_edge, weights=slot_cnt.astype(np.float64), minlength=E).astype(np.int64)

    used = np.zeros(L, np.bool_)
    used[st_link] = True
    is_ser = np.zeros(L, np.bool_)
    is_ser[first_link] = True
    in_deg = np.bincount(edge_m, minlength=L)

    # topological fronts (Kahn, a front at a time) of the used links
    deg = in_deg.copy()
    done = ~used
    fronts = []
    front = np.flatnonzero(used & (deg == 0))
    while len(front):
        fronts.append(front)
        done[front] = True
        sel = np.zeros(L, np.bool_)
        sel[front] = True
        deg -= np.bincount(edge_m[sel[edge_u]], minlength=L)
        front = np.flatnonzero(~done & (deg == 0))
    acyclic = sum(len(x) for x in fronts) == int(used.sum())
    feedforward = bool(acyclic and not np.any(is_ser & (in_deg > 0)))

    # roles: 1 serialiser, 2 inline (one feeder), 3 merge (several feeders)
    role = np.zeros(L, np.int64)
    role[used & (in_deg == 1)] = 2
    role[used & (in_deg >= 2)] = 3
    role[is_ser] = 1

    # serialisers: flows per first link in (start, rotated destination, index) order
    ng = topo.n_gpus
    rot = (dst - src - 1) % ng
    order = np.lexsort((np.arange(F), rot, start, first_link))
    ser_ptr = np.zeros(L + 1, np.int64)
    np.add.at(ser_ptr, first_link + 1, 1)
    ser_ptr = np.cumsum(ser_ptr)
    ser_flows = order.astype(np.int64)

    plan = dict(F=F, L=L, S=S, npk=npk, last_wire=last_wire, full_wire=mtu + hdr, start=start,
                st_link=st_link, st_flow=st_flow, ch_ptr=ch_ptr, ch=ch, ch_edge=ch_edge,
                first_state=first_state, first_link=first_link, role=role, used=used,
                ser_ptr=ser_ptr, ser_flows=ser_flows, feedforward=feedforward, seed=seed,
                st_hash=st_hash,
                spray=cfg.multipath == "spray", edge_m=edge_m, edge_u=edge_u, edge_cnt=edge_cnt,
                bw=topo.link_bw.astype(np.float64), lat=topo.link_lat.astype(np.float64))
    if feedforward:
        # buffers: edges into merge links, grouped by downstream link (runs)
        into_merge = role[edge_m] == 3
        run_ptr = np.zeros(L + 1, np.int64)
        np.add.at(run_ptr, edge_m[into_merge] + 1, 1)
        run_ptr = np.cumsum(run_ptr)
        run_edge = np.flatnonzero(into_merge).astype(np.int64)  # sorted by m (key order)
        # levels of roots (serialisers 0; merge link = 1 + max level of its feeders' roots) and
        # the root whose packets reach each link (an inline link has one feeder)
        lvl = np.zeros(L, np.int64)
        owner = np.arange(L, dtype=np.int64)
        first_feeder = np.zeros(L, np.int64)
        if E:
            first_feeder = edge_u[np.minimum(np.searchsorted(edge_m, np.arange(L)), E - 1)]
        for xs in fronts[1:]:  # feeders are in earlier fronts
            xi = xs[role[xs] == 2]
            lvl[xi] = lvl[first_feeder[xi]]
            owner[xi] = owner[first_feeder[xi]]
            sel = np.zeros(L, np.bool_)
            sel[xs[role[xs] == 3]] = True
            into = sel[edge_m]
            np.maximum.at(lvl, edge_m[into], lvl[edge_u[into]] + 1)
        threads = _threads(cfg, int(npk.sum()))
        roots, wave_ptr, edge_off, n_buf = _schedule(L, role, lvl, owner, edge_u, edge_m,
                                                      edge_cnt, into_merge,
                                                      _WAVE * threads if threads > 1 else 1)
        kmax = max(1, int(np.diff(run_ptr).max()))
        plan.update(edge_off=edge_off, run_ptr=run_ptr, run_edge=run_edge, roots=roots,
                    wave_ptr=wave_ptr, n_buf=n_buf, kmax=kmax, threads=threads)
    return plan


def _renumber(st_link, st_flow, ch_ptr, ch, first_state, slot_cnt):
    """Renumber the states in order of their link (stable). Returns the state arrays, the child
    slots' parents and counts in the new slot order, and each state's old number (``st_hash``,
    the key of the spray hash, so that per-packet choices do not depend on the numbering)."""
    key = st_link.astype(np.int16) if len(st_link) and st_link.max() < 2**15 else st_link
    perm = np.argsort(key, kind="stable")  # 16-bit keys: numpy's radix sort
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    nc = np.diff(ch_ptr)[perm]
    ptr = np.zeros(len(perm) + 1, np.int64)
    ptr[1:] = np.cumsum(nc)
    g = np.repeat(ch_ptr[:-1][perm] - ptr[:-1], nc) + np.arange(ptr[-1])  # old slot of new slot
    return (st_link[perm], st_flow[perm], ptr, inv[ch[g]], inv[first_state],
            np.repeat(np.arange(len(perm), dtype=np.int64), nc), slot_cnt[g], perm.astype(np.int64))


def _threads(cfg, packets):
    """Threads for the Lindley engine: ``cfg.threads``, or (0) the usable cores, at most 4, and
    one for small runs (the thread hand-offs would cost more than they save)."""
    if cfg.threads > 0:
        return int(cfg.threads)
    if packets < _PAR_MIN_PACKETS:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _schedule(L, role, lvl, owner, edge_u, edge_m, edge_cnt, into_merge, width):
    """Order of the roots (serialisers and merge links) in waves of at most ``width`` roots whose
    feeders all ran in earlier waves (the roots of one wave may run in parallel), and offsets of
    the arrival buffers (edges into merge links) in one flat buffer.

    The next wave takes the ready roots of the highest level first (depth first): a merge link
    runs as soon as its feeders have, so its input buffers die early. A buffer is live from the
    wave of the root that writes it (the root whose packets cross the edge's upstream link) to
    the wave of the merge link that reads it; buffers are placed first-fit in the space of dead
    ones. Returns ``roots``, ``wave_ptr``, ``edge_off``, buffer length."""
    import heapq

    E = len(edge_m)
    ie = np.flatnonzero(into_merge & (edge_cnt > 0))
    pairs = np.unique(edge_m[ie] * L + owner[edge_u[ie]])
    dep_m = pairs // L
    dep_r = pairs % L
    n_wait = np.bincount(dep_m, minlength=L).tolist()
    o = np.argsort(dep_r, kind="stable")
    dptr = np.concatenate(([0], np.cumsum(np.bincount(dep_r, minlength=L)))).tolist()
    dnext = dep_m[o].tolist()
    lv = lvl.tolist()
    is_root = (role == 1) | (role == 3)
    heap = [(-lv[r], r) for r in np.flatnonzero(is_root & (np.asarray(n_wait) == 0)).tolist()]
    heapq.heapify(heap)
    wave = np.full(L, -1, np.int64)
    order = []
    wave_ptr = [0]
    while heap:
        batch = [heapq.heappop(heap)[1] for _ in range(min(width, len(heap)))]
        w = len(wave_ptr) - 1
        for r in batch:
            wave[r] = w
            for m in dnext[dptr[r]:dptr[r + 1]]:
                n_wait[m] -= 1
                if n_wait[m] == 0:
                    heapq.heappush(heap, (-lv[m], m))
        order.extend(batch)
        wave_ptr.append(len(order))
    if len(order) != int(is_root.sum()):  # pragma: no cover - the DAG is acyclic here
        raise AssertionError("packet model: root schedule incomplete")
    # first-fit placement of the buffers over their live intervals of waves
    edge_off = np.full(E, -1, np.int64)
    start = wave[owner[edge_u[ie]]]
    o = np.lexsort((ie, start))
    ie = ie[o]
    stop = wave[edge_m[ie]]
    # a pad of 1-8 cache lines after each block: blocks of equal sizes (a multiple of 4 KiB in a
    # symmetric all-to-all) would otherwise start on the same cache sets, and the runs a root
    # writes or reads at once would evict each other from L1
    pad = 8 * (1 + (np.arange(len(ie)) * 5) % 8)
    off, top = _first_fit(start[o], stop, np.argsort(stop, kind="stable"), edge_cnt[ie] + pad,
                          len(wave_ptr) - 1)
    edge_off[ie] = off
    return np.asarray(order, np.int64), np.asarray(wave_ptr, np.int64), edge_off, int(top)


@njit(cache=True)
def _first_fit(start, stop, by_stop, size, n_waves):
    """Offsets for blocks of ``size`` live from wave ``start`` (non-decreasing) to ``stop``
    (``by_stop``: the blocks in order of ``stop``):
    first fit among the free ranges (kept sorted and coalesced) of the blocks dead before the
    wave, else at the top. Returns (offsets, top)."""
    n = len(size)
    off = np.empty(n, np.int64)
    fo = np.empty(n + 1, np.int64)
    fl = np.empty(n + 1, np.int64)
    nf = 0
    top = 0
    k = 0
    j = 0
    for w in range(n_waves):
        while j < n and stop[by_stop[j]] < w:
            a = by_stop[j]
            j += 1
            o = off[a]
            i = 0
            while i < nf and fo[i] < o:
                i += 1
            if i > 0 and fo[i - 1] + fl[i - 1] == o:
                i -= 1
                fl[i] += size[a]
            else:
                for q in range(nf, i, -1):
                    fo[q] = fo[q - 1]
                    fl[q] = fl[q - 1]
                fo[i] = o
                fl[i] = size[a]
                nf += 1
            if i + 1 < nf and fo[i] + fl[i] == fo[i + 1]:
                fl[i] += fl[i + 1]
                for q in range(i + 1, nf - 1):
                    fo[q] = fo[q + 1]
                    fl[q] = fl[q + 1]
                nf -= 1
        while k < n and start[k] == w:
            ln = size[k]
            i = 0
            while i < nf and fl[i] < ln:
                i += 1
            if i < nf:
                off[k] = fo[i]
                fo[i] += ln
                fl[i] -= ln
                if fl[i] == 0:
                    for q in range(i, nf - 1):
                        fo[q] = fo[q + 1]
                        fl[q] = fl[q + 1]
                    nf -= 1
            elif nf > 0 and fo[nf - 1] + fl[nf - 1] == top:
                nf -= 1
                off[k] = fo[nf]
                top = fo[nf] + ln
            else:
                off[k] = top
                top += ln
            k += 1
    return off, top


@njit(cache=True)
def _grow(a, n):
    b = np.empty(max(2 * len(a), n), a.dtype)
    b[: len(a)] = a
    return b


@njit(cache=True)
def _spray_states(first_link, dst_gpu, gpu_nodes, dist, out_ptr, out_link, link_dst, forwards):
    """Per flow, the links of all its shortest paths after its (fixed) first link, in BFS order.

    Returns st_link, st_flow, ch_ptr, ch (child states, CSR), first_state."""
    F = len(first_link)
    n_links = len(link_dst)
    cap = max(16, 8 * F)
    st_link = np.empty(cap, np.int64)
    st_flow = np.empty(cap, np.int64)
    ch_ptr = np.zeros(cap + 1, np.int64)
    ch = np.empty(cap, np.int64)
    nch = 0
    first_state = np.empty(F, np.int64)
    loc = np.full(n_links, -1, np.int64)
    S = 0
    for f in range(F):
        d = dst_gpu[f]
        t = gpu_nodes[d]
        base = S
        if S + 1 > len(st_link):
            st_link = _grow(st_link, S + 1)
            st_flow = _grow(st_flow, S + 1)
        st_link[S] = first_link[f]
        st_flow[S] = f
        loc[first_link[f]] = S
        first_state[f] = S
        S += 1
        s = base
        while s < S:
            if s + 2 > len(ch_ptr):
                ch_ptr = _grow(ch_ptr, s + 2)
            v = link_dst[st_link[s]]
            if v != t:
                dv = dist[d, v]
                for k in range(out_ptr[v], out_ptr[v + 1]):
                    e = out_link[k]
                    w = link_dst[e]
                    if dist[d, w] == dv - 1 and (w == t or forwards[w]):
                        c = loc[e]
                        if c < 0:
                            if S + 1 > len(st_link):
                                st_link = _grow(st_link, S + 1)
                                st_flow = _grow(st_flow, S + 1)
                            st_link[S] = e
                            st_flow[S] = f
                            loc[e] = S
                            c = S
                            S += 1
                        if nch + 1 > len(ch):
                            ch = _grow(ch, nch + 1)
                        ch[nch] = c
                        nch += 1
            ch_ptr[s + 1] = nch
            s += 1
        for x in range(base, S):
            loc[st_link[x]] = -1
    return st_link[:S].copy(), st_flow[:S].copy(), ch_ptr[: S + 1].copy(), ch[:nch].copy(), first_state


@njit(cache=True)
def _spray_pick(s, i, nc, seed):
    h = _mix(np.uint64(s) * np.uint64(0x9E3779B97F4A7C15)
             ^ _mix(np.uint64(i) + seed * np.uint64(0xD6E8FEB86659FD93)))
    return np.int64(h % np.uint64(nc))


@njit(cache=True)
def _spray_counts(ch_ptr, ch, first_state, npk, seed):
    """Packets per child slot under spraying (the choices depend only on the packet's rank)."""
    S = len(ch_ptr) - 1
    cnt = np.zeros(S, np.int64)
    for f in range(len(first_state)):
        cnt[first_state[f]] = npk[f]
    slot = np.zeros(len(ch), np.int64)
    for s in range(S):
        nc = ch_ptr[s + 1] - ch_ptr[s]
        if nc == 1:
            slot[ch_ptr[s]] += cnt[s]
            cnt[ch[ch_ptr[s]]] += cnt[s]
        elif nc > 1:
            for i in range(cnt[s]):
                k = ch_ptr[s] + _spray_pick(s, i, nc, seed)
                slot[k] += 1
                cnt[ch[k]] += 1
    return slot


# ----------------------------------------------------------------------------------------------
# engine 1: feed-forward Lindley recursion, link by link in topological order

_SPRAY = np.int32(-(2**31))  # nx_x: the state has several next links (spraying): pick per packet


def _next_tables(plan):
    """Per state ``s``: ``nx_c[s]`` the next state (``~flow`` when the packet is delivered after
    this link) and ``nx_x[s]`` where the packet goes: an inline link (``>= 0``), the buffer of
    edge ``~nx_x[s]`` (a merge link), or ``_SPRAY`` (several candidates: hash per packet)."""
    S, ch_ptr, ch, st_link, role = plan["S"], plan["ch_ptr"], plan["ch"], plan["st_link"], plan["role"]
    if max(S, plan["F"], plan["L"], len(plan["edge_m"])) >= 2**31 - 1:
        raise ConfigError("packet model: more than 2**31 states, flows, links or link pairs")
    nc = np.diff(ch_ptr)
    nx_c = np.zeros(S, np.int32)
    nx_x = np.zeros(S, np.int32)
    end = nc == 0
    nx_c[end] = ~plan["st_flow"][end]
    one = nc == 1
    k = ch_ptr[:-1][one]
    c = ch[k]
    m = st_link[c]
    nx_c[one] = c
    nx_x[one] = np.where(role[m] == 2, m, ~plan["ch_edge"][k])
    nx_x[nc > 1] = _SPRAY
    return nx_c, nx_x


@njit(cache=True)
def _spray_next(s, ch_ptr, ch, ch_edge, st_link, st_hash, role, ctr, seed):
    """Spraying: the next state of a packet leaving state ``s`` (per-packet hash) and where it
    goes (an inline link, or ``~edge`` of a merge link's buffer)."""
    k = ch_ptr[s] + _spray_pick(st_hash[s], ctr[s], ch_ptr[s + 1] - ch_ptr[s], seed)
    ctr[s] += 1
    c = ch[k]
    m = st_link[c]
    return np.int32(c), np.int32(m if role[m] == 2 else ~ch_edge[k])


@njit(cache=True)
def _trace_hop(row, t, d, w, q_bytes, bin_inv, tr_bytes, tr_queue):
    """Time series: ``w`` bytes leave link row ``row`` at ``d`` (s); its queue was ``q_bytes`` at
    ``t`` (s)."""
    tr_bytes[row, np.int64(d * bin_inv)] += w
    bq = np.int64(t * bin_inv)
    if q_bytes > tr_queue[row, bq]:
        tr_queue[row, bq] = q_bytes


@njit(cache=True, inline="always")
def _emit(n, ct, cc, nx_c, nx_x, ch_ptr, ch, ch_edge, st_link, st_flow, st_hash, role, ctr, seed,
          last_wire, full_wire, inv_bw, lat, wp, buf_t, buf_c, busy, peak, fin, tracing, bin_inv,
          tr_row, tr_bytes, tr_queue):
    """Packets ``i < n`` have left a link in state ``cc[i]`` (``~state`` for a flow's last packet)
    and are fully received at its far end at ``ct[i]``, in this order: walk each through the
    inline links that follow (Lindley on the spot) until it is delivered or written to the arrival
    buffer of a merge link. ``fin`` is per state (the last link's): a delivery writes only to
    the running root's entries. Returns (inline hops, deliveries)."""
    hops = 0
    dlv = 0
    for i in range(n):
        t = ct[i]
        code = cc[i]
        last = code < 0
        s = ~code if last else code
        w = full_wire
        if last:
            w = last_wire[st_flow[s]]
        while True:
            c = nx_c[s]
            if c < 0:
                if t > fin[s]:
                    fin[s] = t
                dlv += 1
                break
            x = nx_x[s]
            if x == _SPRAY:
                c, x = _spray_next(s, ch_ptr, ch, ch_edge, st_link, st_hash, role, ctr, seed)
            if x >= 0:
                b = busy[x]
                d = max(t, b) + w * inv_bw[x]
                busy[x] = d
                q = d - t
                if q > peak[x]:
                    peak[x] = q
                hops += 1
                if tracing:
                    _trace_hop(tr_row[x], t, d, w, q / inv_bw[x], bin_inv, tr_bytes, tr_queue)
                s = c
                t = d + lat[x]
            else:
                e = ~x
                pos = wp[e]
                wp[e] = pos + 1
                buf_t[pos] = t
                buf_c[pos] = ~c if last else c
                break
    return hops, dlv


@njit(cache=True)
def _merge_scratch(cap, kmax):
    """Scratch of :func:`_merge_window` for windows of up to ``cap`` arrivals from up to ``kmax``
    runs: ``ct, cc`` (the ordered window, also a batch for :func:`_emit`), ``bk, cnt, gt, gc``,
    and per run ``pos, end, take``."""
    return (np.empty(cap, np.float64), np.empty(cap, np.int32), np.empty(cap, np.int32),
            np.empty(2 * cap + 1, np.int64), np.empty(cap, np.float64), np.empty(cap, np.int32),
            np.empty(kmax, np.int64), np.empty(kmax, np.int64), np.empty(kmax, np.int64))


@njit(cache=True)
def _merge_window(k, W, pos, end, take, buf_t, buf_c, ct, cc, bk, cnt, gt, gc):
    """Next window of a merge: ``k`` time-sorted runs ``buf_t/buf_c[pos[j]:end[j]]``; takes
    from every run the arrivals before ``T`` (the earliest of the runs' ``W``-th next arrivals,
    so at most ``W`` per run), orders them into ``ct/cc`` (time, code) with a counting sort on
    time buckets and an insertion pass (stable: simultaneous arrivals in run order, then in
    their order within a run), advances ``pos`` and returns how many it took (> 0 while any
    run is not empty). ``take``, ``bk``, ``cnt``, ``gt``, ``gc``: scratch of ``k``, ``k * W``,
    ``2 * k * W + 1``, ``k * W`` and ``k * W`` entries."""
    T = np.inf
    for j in range(k):
        p = pos[j] + W
        if p < end[j] and buf_t[p] < T:
            T = buf_t[p]
    n = 0
    tlo = np.inf
    thi = -np.inf
    for j in range(k):
        p = pos[j]
        q = min(end[j], p + W)
        a = p  # binary search: the first arrival at or after T
        hi = q
        while a < hi:
            mid = (a + hi) >> 1
            if buf_t[mid] < T:
                a = mid + 1
            else:
                hi = mid
        take[j] = a - p
        n += a - p
        if a > p:
            if buf_t[p] < tlo:
                tlo = buf_t[p]
            if buf_t[a - 1] > thi:
                thi = buf_t[a - 1]
    if n == 0:
        # every run starts at >= T and one holds W + 1 arrivals at T: take the first
        # such run's arrivals at T (they precede all others at T)
        for j in range(k):
            p = pos[j]
            if p < end[j] and buf_t[p] == T:
                q = min(end[j], p + W)
                a = p
                while a < q and buf_t[a] == T:
                    ct[n] = T
                    cc[n] = buf_c[a]
                    n += 1
                    a += 1
                pos[j] = a
                break
    else:
        # gather the window (run after run), then a counting sort on 2n time buckets (monotone
        # in t) and an insertion pass (stable)
        nb = 2 * n
        span = thi - tlo
        inv = nb * (1.0 - 1e-9) / span if span > 0.0 else 0.0
        if not inv < 1e300:
            inv = 0.0
        o = 0
        for j in range(k):
            p = pos[j]
            for a in range(p, p + take[j]):
                gt[o] = buf_t[a]
                gc[o] = buf_c[a]
                o += 1
            pos[j] = p + take[j]
        for x in range(n):
            bk[x] = min(np.int64((gt[x] - tlo) * inv), nb - 1)
        for x in range(nb + 1):
            cnt[x] = 0
        for x in range(n):
            cnt[bk[x] + 1] += 1
        for x in range(nb):
            cnt[x + 1] += cnt[x]
        for x in range(n):
            bb = bk[x]
            y = cnt[bb]
            cnt[bb] = y + 1
            ct[y] = gt[x]
            cc[y] = gc[x]
        for x in range(1, n):
            tx = ct[x]
            if tx < ct[x - 1]:
                cx = cc[x]
                y = x - 1
                while y >= 0 and ct[y] > tx:
                    ct[y + 1] = ct[y]
                    cc[y + 1] = cc[y]
                    y -= 1
                ct[y + 1] = tx
                cc[y + 1] = cx
    return n


@njit(cache=True, inline="always")
def _ring_join(nxt, prv, cur, x):
    """Insert ``x`` into the circular list (``nxt``/``prv``) just before ``cur`` (``-1``: empty):
    it is served at the end of the current round. Returns the list's current element."""
    if cur < 0:
        nxt[x] = x
        prv[x] = x
        return x
    p = prv[cur]
    prv[x] = p
    nxt[x] = cur
    nxt[p] = x
    prv[cur] = x
    return cur


@njit(cache=True, inline="always")
def _ring_leave(nxt, prv, x, left):
    """Remove ``x`` from the circular list, ``left`` elements remaining after it; returns the
    element after ``x`` (or ``-1`` when none remain)."""
    if left == 0:
        return -1
    a = prv[x]
    b = nxt[x]
    nxt[a] = b
    prv[b] = a
    return b


@njit(cache=True)
def _serialise(lo, n, ser_flows, start, npk, first_state, last_wire, full_wire, ib, le,
               round_robin, ring, rs, tcur, ct, cc, chunk, tracing, row, bin_inv, tr_bytes):
    """Next (at most ``chunk``) packets of the serialiser whose flows are
    ``ser_flows[lo:lo + n]`` (in join order), into ``ct`` (time fully received at the far end,
    s) and ``cc`` (first state, ``~state`` for a flow's last packet); returns how many (0: all
    sent). Round robin: a ring of the active flows (``ring[0]`` next, ``ring[1]`` previous,
    ``ring[2]`` packets sent); a flow joins at its start time, before the ring's current flow (at
    the end of the current round), and leaves after its last packet. State between calls:
    ``rs`` = (current, active flows, next to join) and ``tcur[0]`` = the link's clock (s)."""
    nxt = ring[0]
    prv = ring[1]
    seq = ring[2]
    cur = rs[0]
    nact = rs[1]
    nxt_i = rs[2]
    t = tcur[0]
    m = 0
    while m < chunk:
        if nact == 0:
            if nxt_i >= n:
                break
            s0 = start[ser_flows[lo + nxt_i]]
            if s0 > t:
                t = s0
        while nxt_i < n and start[ser_flows[lo + nxt_i]] <= t:
            cur = _ring_join(nxt, prv, cur, nxt_i)
            nact += 1
            nxt_i += 1
        i = cur
        f = ser_flows[lo + i]
        last = seq[i] == npk[f] - 1
        w = last_wire[f] if last else full_wire
        t += w * ib
        if tracing:
            tr_bytes[row, np.int64(t * bin_inv)] += w
        seq[i] += 1
        st = np.int32(first_state[f])
        ct[m] = t + le
        cc[m] = ~st if last else st
        m += 1
        if last:
            nact -= 1
            cur = _ring_leave(nxt, prv, i, nact)
        elif round_robin:
            cur = nxt[i]
    rs[0] = cur
    rs[1] = nact
    rs[2] = nxt_i
    tcur[0] = t
    return m


@njit(cache=True, nogil=True)
def _lindley_kernel(roots, lo_r, hi_r, kmax, role, ser_ptr, ser_flows, run_ptr, run_edge,
                    edge_off, edge_cnt, nx_c, nx_x, st_link, st_flow, st_hash, ch_ptr, ch, ch_edge,
                    first_state, npk, start, last_wire, full_wire, inv_bw, lat, seed, round_robin,
                    buf_t, buf_c, wp, busy, peak, ctr, fin, chunk, tracing, bin_inv, tr_row,
                    tr_bytes, tr_queue):
    """Roots ``roots[lo_r:hi_r]`` (serialisers and merge links; ``kmax``: most feeders of a merge
    link), in an order where every root's feeders have run. Each produces its departures
    in time order, ``chunk`` packets at a time, into ``ct/cc``; :func:`_emit` then carries them on.
    Merge links order their feeders' sorted arrival runs window by window
    (:func:`_merge_window`, at most ``W`` arrivals per run and window) and run the Lindley
    recursion over each window."""
    W = max(8, chunk // kmax)
    ct, cc, bk, cnt, gt, gc, pos, end, take = _merge_scratch(max(chunk, W * kmax) + 1, kmax)
    hops = 0
    dlv = 0
    for r in range(lo_r, hi_r):
        e = roots[r]
        ib = inv_bw[e]
        le = lat[e]
        row = tr_row[e]
        if role[e] == 1:
            # ---- serialiser: round-robin (or sequential) over the flows that start on e
            lo = ser_ptr[e]
            n = ser_ptr[e + 1] - lo
            ring = np.empty((3, n), np.int64)
            ring[2] = 0
            rs = np.zeros(3, np.int64)
            rs[0] = -1
            tcur = np.full(1, start[ser_flows[lo]])
            while True:
                m = _serialise(lo, n, ser_flows, start, npk, first_state, last_wire, full_wire, ib,
                               le, round_robin, ring, rs, tcur, ct, cc, chunk, tracing, row,
                               bin_inv, tr_bytes)
                if m == 0:
                    break
                h, dl = _emit(m, ct, cc, nx_c, nx_x, ch_ptr, ch, ch_edge, st_link, st_flow,
                              st_hash, role, ctr, seed, last_wire, full_wire, inv_bw, lat, wp,
                              buf_t, buf_c, busy, peak, fin, tracing, bin_inv, tr_row, tr_bytes,
                              tr_queue)
                hops += h + m
                dlv += dl
            busy[e] = tcur[0]
        else:
            # ---- merge link: order its feeders' runs window by window, then Lindley
            r0 = run_ptr[e]
            k = run_ptr[e + 1] - r0
            left = 0
            for j in range(k):
                ed = run_edge[r0 + j]
                pos[j] = edge_off[ed]
                end[j] = edge_off[ed] + edge_cnt[ed]
                left += edge_cnt[ed]
            b = busy[e]
            pk = peak[e]
            while left > 0:
                n = _merge_window(k, W, pos, end, take, buf_t, buf_c, ct, cc, bk, cnt, gt, gc)
                left -= n
                # Lindley on e; ct becomes the arrival time at the far end
                for x in range(n):
                    t = ct[x]
                    code = cc[x]
                    w = full_wire
                    if code < 0:
                        w = last_wire[st_flow[~code]]
                    d = (t if t > b else b) + w * ib
                    b = d
                    q = d - t
                    pk = q if q > pk else pk
                    ct[x] = d + le
                    if tracing:
                        _trace_hop(row, t, d, w, q / ib, bin_inv, tr_bytes, tr_queue)
                h, dl = _emit(n, ct, cc, nx_c, nx_x, ch_ptr, ch, ch_edge, st_link, st_flow,
                              st_hash, role,
                              ctr, seed, last_wire, full_wire, inv_bw, lat, wp, buf_t, buf_c,
                              busy, peak, fin, tracing, bin_inv, tr_row, tr_bytes, tr_queue)
                hops += h + n
                dlv += dl
            busy[e] = b
            peak[e] = pk
    return hops, dlv


_CHUNK = 4096  # packets per batch (and about per merge window): the batch stays in L2
_WAVE = 2  # roots per wave and thread
_PAR_MIN_PACKETS = 1 << 17  # fewer packets: one thread


def _run_lindley(plan, cfg, trace):
    L, F = plan["L"], plan["F"]
    if "nx_c" not in plan:
        plan["nx_c"], plan["nx_x"] = _next_tables(plan)
    buf_t = np.empty(plan["n_buf"], np.float64)
    buf_c = np.empty(plan["n_buf"], np.int32)
    tracing, bin_inv, tr_row, tr_bytes, tr_queue = _trace_arrays(L, cfg, trace)
    inv_bw = 1.0 / plan["bw"]
    roots, wave_ptr, threads = plan["roots"], plan["wave_ptr"], plan["threads"]
    # per thread: write positions, link states, spray counters, per-state finish times. A link's
    # entries are written only while its root runs, so the copies merge exactly (maxima); private
    # copies keep the threads off each other's cache lines (neighbouring links)
    S = plan["S"]
    own = [(plan["edge_off"].copy(), np.full(L, -np.inf), np.zeros(L), np.zeros(S, np.int64),
            np.full(S, -np.inf)) for _ in range(threads)]
    args = [(plan["kmax"], plan["role"], plan["ser_ptr"], plan["ser_flows"], plan["run_ptr"],
             plan["run_edge"], plan["edge_off"], plan["edge_cnt"], plan["nx_c"], plan["nx_x"],
             plan["st_link"], plan["st_flow"], plan["st_hash"], plan["ch_ptr"], plan["ch"],
             plan["ch_edge"],
             plan["first_state"], plan["npk"], plan["start"], plan["last_wire"],
             plan["full_wire"], inv_bw, plan["lat"], np.uint64(plan["seed"] & 0xFFFFFFFFFFFFFFFF),
             cfg.nic_order == "round_robin", buf_t, buf_c) + o
            + (_CHUNK, tracing, bin_inv, tr_row, tr_bytes, tr_queue) for o in own]
    if threads == 1:
        hops, dlv = _lindley_kernel(roots, 0, len(roots), *args[0])
    else:
        hops, dlv = _run_waves(roots, wave_ptr, args)
    peak = np.maximum.reduce([o[2] for o in own])
    fin_s = np.maximum.reduce([o[4] for o in own])
    end = plan["nx_c"] < 0
    fin = np.full(F, -np.inf)
    np.maximum.at(fin, plan["st_flow"][end], fin_s[end])
    return dict(fin=fin, hops=int(hops), delivered=int(dlv), peak_bytes=peak * plan["bw"],
                pause_s=0.0, drops=0, retransmits=0, tr_bytes=tr_bytes, tr_queue=tr_queue)


def _run_waves(roots, wave_ptr, args):
    """Run the roots wave by wave on ``threads`` threads (the kernel releases the GIL): the roots
    of a wave write disjoint arrays (their own links, buffers and counters), so the results do not
    depend on which thread runs which root."""
    import itertools

    threads = len(args)
    n_w = len(wave_ptr) - 1
    nxt = [itertools.count(int(wave_ptr[w])) for w in range(n_w)]
    ends = wave_ptr[1:].tolist()
    barrier = threading.Barrier(threads)
    sums = [[0, 0] for _ in range(threads)]
    errors = []

    def work(k):
        try:
            for w in range(n_w):
                hi = ends[w]
                while True:
                    i = next(nxt[w])  # atomic under the GIL
                    if i >= hi:
                        break
                    h, d = _lindley_kernel(roots, i, i + 1, *args[k])
                    sums[k][0] += h
                    sums[k][1] += d
                barrier.wait()
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the caller
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, threads)]
    for t in pool:
        t.start()
    work(0)
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return sum(x[0] for x in sums), sum(x[1] for x in sums)


def _trace_arrays(L, cfg, trace):
    tr_row = np.full(L, -1, np.int64)
    if trace is None:
        return False, 0.0, tr_row, np.zeros((1, 1)), np.zeros((1, 1))
    n_bins, used = trace
    tr_row[used] = np.arange(len(used))
    # one spare bin: floating rounding of t / bin at the horizon
    return (True, 1.0 / cfg.trace_bin_s, tr_row, np.zeros((len(used), n_bins + 1)),
            np.zeros((len(used), n_bins + 1)))


# ----------------------------------------------------------------------------------------------
# engine 2: discrete-event loop with FIFO queues (bounded buffers, PFC, drops, cyclic routes)

_EV_START, _EV_ARRIVE, _EV_TXDONE, _EV_RTX = 0, 1, 2, 3


@njit(cache=True, inline="always")
def _queue_push(nxt, head, tail, q, x):
    """Append ``x`` to the singly linked FIFO ``q`` (``head``/``tail`` per queue, ``nxt`` per
    element, -1 = none)."""
    nxt[x] = -1
    if tail[q] < 0:
        head[q] = x
    else:
        nxt[tail[q]] = x
    tail[q] = x


@njit(cache=True, inline="always")
def _queue_pop(nxt, head, tail, q):
    """Drop the head of FIFO ``q`` (see :func:`_queue_push`)."""
    head[q] = nxt[head[q]]
    if head[q] < 0:
        tail[q] = -1


@njit(cache=True, inline="always")
def _mark_work(work, inwork, nw, q):
    """Put link ``q`` on the event loop's work list once; returns the list's new length."""
    if not inwork[q]:
        inwork[q] = True
        work[nw] = q
        nw += 1
    return nw


@njit(cache=True)
def _events_kernel(L, ser_ptr, ser_flows, st_link, st_flow, st_hash, ch_ptr, ch, first_state, npk,
                   start, last_wire, full_wire, bw, lat, seed, round_robin, bounded, pfc,
                   buf_bytes, rto,
                   tracing, bin_inv, tr_row, tr_bytes, tr_queue):
    F = len(npk)
    P = 0
    for f in range(F):
        P += npk[f]
    inv_bw = 1.0 / bw
    # packets (allocated as the serialisers generate them)
    pk_state = np.empty(P, np.int64)
    pk_nxt = np.empty(P, np.int64)
    pk_fifo = np.empty(P, np.int64)
    pk_last = np.empty(P, np.bool_)
    pk_sent = np.empty(P, np.float64)
    n_pk = 0
    # links
    fifo_h = np.full(L, -1, np.int64)
    fifo_t = np.full(L, -1, np.int64)
    fifo_b = np.zeros(L)
    tx_pkt = np.full(L, -1, np.int64)
    tx_kind = np.zeros(L, np.int64)
    tx_end = np.zeros(L)
    occ = np.zeros(L)
    peak = np.zeros(L)
    blocked = np.zeros(L, np.bool_)
    blk_since = np.zeros(L)
    wait_h = np.full(L, -1, np.int64)
    wait_t = np.full(L, -1, np.int64)
    wait_n = np.full(L, -1, np.int64)
    # serialisers
    ring_cur = np.full(L, -1, np.int64)
    ring_n = np.zeros(L, np.int64)
    rnx = np.empty(F, np.int64)
    rpv = np.empty(F, np.int64)
    seqf = np.zeros(F, np.int64)
    pend = np.full(L, -1, np.int64)
    rtx_h = np.full(L, -1, np.int64)
    rtx_t = np.full(L, -1, np.int64)
    ctr = np.zeros(len(st_link), np.int64)
    fin = np.full(F, -np.inf)
    dlv = np.zeros(F, np.int64)
    hops = 0
    drops = 0
    retx = 0
    pause = 0.0
    delivered = 0
    # event heap
    # pending events: one start per flow, at most one transmission end per link, and at most
    # one arrival or retransmission per packet: the heap never holds more than F + L + P
    cap = F + L + P + 1
    ht = np.empty(cap, np.float64)
    hs = np.empty(cap, np.int64)
    hv = np.empty(cap, np.int64)
    nh = 0
    sq = 0
    for e in range(L):
        for k in range(ser_ptr[e], ser_ptr[e + 1]):
            f = ser_flows[k]
            nh = heap_push(ht, hs, hv, nh, start[f], sq, f * 4 + _EV_START)
            sq += 1
    # worklist of links to (re)try, processed after each event
    work = np.empty(L + 1, np.int64)
    inwork = np.zeros(L, np.bool_)
    nw = 0
    while nh > 0:
        now, ev, nh = heap_pop(ht, hs, hv, nh)
        typ = ev & 3
        idx = ev >> 2
        if typ == _EV_START:
            f = idx
            q = st_link[first_state[f]]
            ring_cur[q] = _ring_join(rnx, rpv, ring_cur[q], f)
            ring_n[q] += 1
            nw = _mark_work(work, inwork, nw, q)
        elif typ == _EV_ARRIVE:
            p = idx
            s = pk_nxt[p]
            pk_state[p] = s
            pk_nxt[p] = -2
            q = st_link[s]
            w = last_wire[st_flow[s]] if pk_last[p] else full_wire
            admit = True
            if bounded and not pfc:
                if occ[q] + w > buf_bytes * (1.0 + 1e-12):
                    admit = False
                    drops += 1
                    tr = pk_sent[p] + rto
                    nh = heap_push(ht, hs, hv, nh, tr if tr > now else now, sq,
                                            p * 4 + _EV_RTX)
                    sq += 1
                else:
                    occ[q] += w
                    if occ[q] > peak[q]:
                        peak[q] = occ[q]
            if admit:
                _queue_push(pk_fifo, fifo_h, fifo_t, q, p)
                fifo_b[q] += w
                qb = fifo_b[q]
                if tx_pkt[q] >= 0 and tx_end[q] > now:
                    qb += (tx_end[q] - now) * bw[q]
                if not bounded:
                    if qb > peak[q]:
                        peak[q] = qb
                if tracing:
                    r = tr_row[q]
                    bq = np.int64(now * bin_inv)
                    v = occ[q] if bounded else qb
                    if v > tr_queue[r, bq]:
                        tr_queue[r, bq] = v
                nw = _mark_work(work, inwork, nw, q)
        elif typ == _EV_TXDONE:
            q = idx
            p = tx_pkt[q]
            tx_pkt[q] = -1
            s = pk_state[p]
            w = last_wire[st_flow[s]] if pk_last[p] else full_wire
            if tracing:
                tr_bytes[tr_row[q], np.int64(now * bin_inv)] += w
            if tx_kind[q] == 0 and bounded:
                occ[q] -= w
                if occ[q] < 0.0:
                    occ[q] = 0.0
                # wake the links paused on q (FIFO), they retry below
                x = wait_h[q]
                wait_h[q] = -1
                wait_t[q] = -1
                while x >= 0:
                    nx = wait_n[x]
                    blocked[x] = False
                    pause += now - blk_since[x]
                    nw = _mark_work(work, inwork, nw, x)
                    x = nx
            nxt = pk_nxt[p]
            if nxt >= 0:
                nh = heap_push(ht, hs, hv, nh, now + lat[q], sq, p * 4 + _EV_ARRIVE)
                sq += 1
            else:
                f = st_flow[s]
                ta = now + lat[q]
                if ta > fin[f]:
                    fin[f] = ta
                dlv[f] += 1
                delivered += 1
            nw = _mark_work(work, inwork, nw, q)
        else:  # _EV_RTX
            p = idx
            f = st_flow[pk_state[p]]
            s0 = first_state[f]
            pk_state[p] = s0
            pk_nxt[p] = -2
            q = st_link[s0]
            _queue_push(pk_fifo, rtx_h, rtx_t, q, p)
            retx += 1
            nw = _mark_work(work, inwork, nw, q)
        if typ == _EV_START and nh > 0 and ht[0] == now and (hv[0] & 3) == _EV_START:
            continue  # flows starting together all join their rotation before anyone sends
        # ---- try to start transmissions on the links touched by this event
        wi = 0
        while wi < nw:
            q = work[wi]
            wi += 1
            inwork[q] = False
            if tx_pkt[q] >= 0 or blocked[q]:
                continue
            kind = -1
            p = -1
            if fifo_h[q] >= 0:
                p = fifo_h[q]
                kind = 0
            elif pend[q] >= 0:
                p = pend[q]
                kind = 2
            elif rtx_h[q] >= 0:
                p = rtx_h[q]
                kind = 1
            elif ring_cur[q] >= 0:
                f = ring_cur[q]
                p = n_pk
                n_pk += 1
                pk_state[p] = first_state[f]
                pk_nxt[p] = -2
                pk_last[p] = seqf[f] == npk[f] - 1
                seqf[f] += 1
                if pk_last[p]:
                    ring_n[q] -= 1
                    ring_cur[q] = _ring_leave(rnx, rpv, f, ring_n[q])
                elif round_robin:
                    ring_cur[q] = rnx[f]
                pend[q] = p
                kind = 2
            else:
                continue
            s = pk_state[p]
            if pk_nxt[p] == -2:
                nc = ch_ptr[s + 1] - ch_ptr[s]
                if nc == 0:
                    pk_nxt[p] = -1
                else:
                    k = ch_ptr[s]
                    if nc > 1:
                        k += _spray_pick(st_hash[s], ctr[s], nc, seed)
                        ctr[s] += 1
                    pk_nxt[p] = ch[k]
            w = last_wire[st_flow[s]] if pk_last[p] else full_wire
            if bounded and pfc and pk_nxt[p] >= 0:
                n = st_link[pk_nxt[p]]
                if occ[n] + w > buf_bytes * (1.0 + 1e-12):
                    blocked[q] = True
                    blk_since[q] = now
                    _queue_push(wait_n, wait_h, wait_t, n, q)
                    continue
                occ[n] += w
                if occ[n] > peak[n]:
                    peak[n] = occ[n]
                if tracing:
                    r = tr_row[n]
                    bq = np.int64(now * bin_inv)
                    if occ[n] > tr_queue[r, bq]:
                        tr_queue[r, bq] = occ[n]
            if kind == 0:
                _queue_pop(pk_fifo, fifo_h, fifo_t, q)
                fifo_b[q] -= w
                if fifo_b[q] < 0.0:
                    fifo_b[q] = 0.0
            elif kind == 2:
                pend[q] = -1
                pk_sent[p] = now
            else:
                _queue_pop(pk_fifo, rtx_h, rtx_t, q)
                pk_sent[p] = now
            tx_pkt[q] = p
            tx_kind[q] = kind
            tx_end[q] = now + w * inv_bw[q]
            hops += 1
            nh = heap_push(ht, hs, hv, nh, tx_end[q], sq, q * 4 + _EV_TXDONE)
            sq += 1
        nw = 0
    once = True
    for f in range(F):
        if dlv[f] != npk[f]:
            once = False
    return fin, hops, delivered, drops, retx, pause, peak, once, n_pk


def _run_events(plan, cfg, trace):
    L = plan["L"]
    tracing, bin_inv, tr_row, tr_bytes, tr_queue = _trace_arrays(L, cfg, trace)
    bounded = cfg.buffer_kib > 0
    fin, hops, delivered, drops, retx, pause, peak, once, n_pk = _events_kernel(
        L, plan["ser_ptr"], plan["ser_flows"], plan["st_link"], plan["st_flow"], plan["st_hash"],
        plan["ch_ptr"],
        plan["ch"], plan["first_state"], plan["npk"], plan["start"], plan["last_wire"],
        plan["full_wire"], plan["bw"], plan["lat"], np.uint64(plan["seed"] & 0xFFFFFFFFFFFFFFFF),
        cfg.nic_order == "round_robin", bounded, cfg.on_full == "pfc",
        float(cfg.buffer_kib) * 1024.0, float(cfg.rto_us) * 1e-6,
        tracing, bin_inv, tr_row, tr_bytes, tr_queue)
    if not once:
        from netsim.errors import NetsimError

        raise NetsimError(
            f"packet model: {int(plan['npk'].sum()) - delivered} packet(s) never delivered"
            f" (buffer_kib={cfg.buffer_kib!r}, on_full={cfg.on_full!r}): the PFC pauses deadlock"
            " on a cyclic buffer dependency; use larger buffers, on_full='drop' or acyclic routes")
    return dict(fin=fin, hops=hops, delivered=delivered, peak_bytes=peak, pause_s=pause,
                drops=drops, retransmits=retx, tr_bytes=tr_bytes, tr_queue=tr_queue)
