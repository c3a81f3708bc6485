"""Typed fabric graph, its validation, and routing to flat arrays.

A :class:`Topology` is built node by node (GPU, NIC, Switch, OCS) and link by link. A link has a
bandwidth (bytes/s) and a latency (s); a full-duplex link becomes two directed links, one per
direction, and every model works on directed links. Circuits of an optical circuit switch are
directed GPU-to-GPU links tagged with the OCS they pass through (``ocs`` column), so that a fixed
matching routes like any other link while the OCS keeps its list of ports.

:meth:`Topology.freeze` validates the graph and returns a :class:`FrozenTopology`: flat numpy arrays
(links, adjacency in CSR form) that the numba kernels consume. Routing is shortest path (hop count)
with deterministic ECMP: at every hop the next link is picked among the equal-cost candidates by a
hash of (source, destination, hop, seed), so the same flow always takes the same path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from netsim.errors import ConfigError, TopologyError

GPU, NIC, SWITCH, OCS = 0, 1, 2, 3
KIND_NAMES = ("gpu", "nic", "switch", "ocs")


@dataclass(frozen=True)
class Circuits:
    """What a topology's optical circuit switch offers a circuit scheduler.

    A builder that adds an OCS declares it with :meth:`Topology.declare_circuits`; the circuit
    engine (``netsim.engines.circuit``) reads only this, never the builder's parameters, so any
    topology with an OCS can be circuit scheduled.

    ``group``: GPUs per circuit endpoint (1: every GPU has its own ports; G: a server's G NICs
    switch together, one server matching for all rails); ``planes``: port planes (each holds its
    own matching); ``rate_Bps``: one endpoint-to-endpoint circuit of one plane, bytes/s;
    ``reconfig_s``: the OCS reconfiguration delay; ``latency_s``: one circuit hop;
    ``nvlink_Bps``: per GPU inside an endpoint (``group`` > 1); ``eps_Bps``: each GPU's (NIC's)
    port on an electrical packet switch beside the OCS (0: none).
    """

    group: int
    planes: int
    rate_Bps: float
    reconfig_s: float
    latency_s: float
    nvlink_Bps: float = 0.0
    eps_Bps: float = 0.0

    def __post_init__(self):
        if self.group < 1 or self.planes < 1:
            raise ConfigError(f"circuits: group={self.group}, planes={self.planes}; expected >= 1")
        if not (self.rate_Bps > 0 and np.isfinite(self.rate_Bps)):
            raise ConfigError(f"circuits: rate {self.rate_Bps!r} B/s; expected a positive number")
        if not (self.reconfig_s >= 0 and np.isfinite(self.reconfig_s)):
            raise ConfigError(f"reconfig_us={self.reconfig_s * 1e6!r}; expected a finite"
                              " number >= 0")


@dataclass
class Topology:
    """A fabric under construction: typed nodes and links with bandwidth and latency.

    ``gpu_forwarding``: whether a GPU may relay traffic of other GPUs (true for direct-connect
    optical fabrics, where multi-hop goes through GPUs; false for switched fabrics).
    ``params`` records the parameters the builder was called with (for rows and reports).
    """

    name: str = "topology"
    gpu_forwarding: bool = False
    params: dict = field(default_factory=dict)
    node_kind: list = field(default_factory=list)
    node_name: list = field(default_factory=list)
    gpus: list = field(default_factory=list)
    # directed links
    link_src: list = field(default_factory=list)
    link_dst: list = field(default_factory=list)
    link_bw: list = field(default_factory=list)
    link_lat: list = field(default_factory=list)
    link_ocs: list = field(default_factory=list)
    link_tag: list = field(default_factory=list)
    gpus_per_server: int = 1
    circuits: Circuits | None = None  # set by builders that add a schedulable OCS

    # ---- construction -------------------------------------------------------------------
    def add_node(self, kind: int, name: str | None = None) -> int:
        """Add a node of ``kind`` (GPU, NIC, SWITCH, OCS) and return its id."""
        nid = len(self.node_kind)
        self.node_kind.append(kind)
        self.node_name.append(name or f"{KIND_NAMES[kind]}{nid}")
        if kind == GPU:
            self.gpus.append(nid)
        return nid

    def add_gpu(self, name: str | None = None) -> int:
        return self.add_node(GPU, name)

    def add_nic(self, name: str | None = None) -> int:
        return self.add_node(NIC, name)

    def add_switch(self, name: str | None = None) -> int:
        return self.add_node(SWITCH, name)

    def add_ocs(self, name: str | None = None) -> int:
        return self.add_node(OCS, name)

    def declare_circuits(self, **kw) -> Circuits:
        """Declare what the OCS offers a circuit scheduler (fields of :class:`Circuits`)."""
        self.circuits = Circuits(**kw)
        return self.circuits

    def add_link(
        self,
        a: int,
        b: int,
        bandwidth_Bps: float,
        latency_s: float = 0.0,
        duplex: bool = True,
        tag: str = "",
        ocs: int = -1,
    ) -> list[int]:
        """Connect ``a`` and ``b``: ``bandwidth_Bps`` bytes/s each way, ``latency_s`` seconds.

        Returns the directed link ids (two when ``duplex``). A non-positive or non-finite
        bandwidth or a negative latency raises :class:`TopologyError` naming the link.
        """
        n = len(self.node_kind)
        for x in (a, b):
            if not (0 <= x < n):
                raise TopologyError(f"link endpoint {x} is not a node id (0..{n - 1})")
        if a == b:
            raise TopologyError(f"link from node {self.node_name[a]!r} to itself")
        if not np.isfinite(bandwidth_Bps) or bandwidth_Bps <= 0:
            raise TopologyError(
                f"link {self.node_name[a]}->{self.node_name[b]} has bandwidth"
                f" {float(bandwidth_Bps) * 8e-9:g} Gbit/s ({float(bandwidth_Bps)!r} B/s);"
                " expected a positive number"
            )
        if not np.isfinite(latency_s) or latency_s < 0:
            raise TopologyError(
                f"link {self.node_name[a]}->{self.node_name[b]} has latency {latency_s!r} s;"
                " expected a non-negative number"
            )
        ids = []
        pairs = [(a, b), (b, a)] if duplex else [(a, b)]
        for s, d in pairs:
            ids.append(len(self.link_src))
            self.link_src.append(s)
            self.link_dst.append(d)
            self.link_bw.append(float(bandwidth_Bps))
            self.link_lat.append(float(latency_s))
            self.link_ocs.append(ocs)
            self.link_tag.append(tag)
        return ids

    @property
    def n_gpus(self) -> int:
        return len(self.gpus)

    # ---- validation and freezing --------------------------------------------------------
    def validate(self, connected: bool = True) -> None:
        """Raise :class:`TopologyError` unless the fabric is usable.

        Checks: at least one GPU; every node has a link (an OCS: at least one circuit through
        it); with ``connected``, every GPU reaches every other GPU over directed links.
        """
        if not self.gpus:
            raise TopologyError(f"topology {self.name!r} has no GPU")
        n = len(self.node_kind)
        deg = np.zeros(n, dtype=np.int64)
        if self.link_src:
            np.add.at(deg, np.asarray(self.link_src), 1)
            np.add.at(deg, np.asarray(self.link_dst), 1)
            ocs_ids = np.asarray(self.link_ocs)
            ocs_ids = ocs_ids[ocs_ids >= 0]
            np.add.at(deg, ocs_ids, 1)
        dangling = np.flatnonzero(deg == 0)
        if len(dangling) and len(self.gpus) > 1:
            names = ", ".join(self.node_name[i] for i in dangling[:5])
            raise TopologyError(
                f"topology {self.name!r} has {len(dangling)} node(s) with no link (dangling): {names}"
            )
        if connected and len(self.gpus) > 1:
            # GPUs strongly connected <=> every GPU reaches GPU 0 and GPU 0 reaches every GPU:
            # two BFS passes (links as they are, then reversed) of the kernel freeze uses
            src = np.asarray(self.link_src, dtype=np.int64)
            dst = np.asarray(self.link_dst, dtype=np.int64)
            gpus = np.asarray(self.gpus, dtype=np.int64)
            relay = np.ones(n, dtype=np.bool_)
            to0 = _bfs_dist_to(gpus[:1], n, src, dst, relay)[0, gpus]
            from0 = _bfs_dist_to(gpus[:1], n, dst, src, relay)[0, gpus]
            apart = np.flatnonzero((to0 < 0) | (from0 < 0))
            if len(apart):
                bad = int(gpus[apart[0]])
                raise TopologyError(
                    f"topology {self.name!r} is disconnected: GPU {self.node_name[bad]!r} cannot reach"
                    f" and be reached by GPU {self.node_name[self.gpus[0]]!r}"
                )

    def freeze(self, connected: bool = True) -> "FrozenTopology":
        """Validate and convert to flat arrays (see :class:`FrozenTopology`).

        ``connected=False`` accepts GPU pairs without a route (a fabric that carries only some
        pairs, e.g. NVLink inside servers); routing such a pair raises :class:`TopologyError`.
        """
        self.validate(connected)
        n = len(self.node_kind)
        src = np.asarray(self.link_src, dtype=np.int64)
        dst = np.asarray(self.link_dst, dtype=np.int64)
        order = np.argsort(src, kind="stable")
        out_ptr = np.zeros(n + 1, dtype=np.int64)
        np.add.at(out_ptr, src + 1, 1)
        out_ptr = np.cumsum(out_ptr)
        kind = np.asarray(self.node_kind, dtype=np.int64)
        forwards = np.ones(n, dtype=np.bool_)
        if not self.gpu_forwarding:
            forwards[kind == GPU] = False
        gpu_nodes = np.asarray(self.gpus, dtype=np.int64)
        dist = _bfs_dist_to(gpu_nodes, n, src, dst, forwards)
        ft = FrozenTopology(
            name=self.name,
            node_kind=kind,
            gpu_nodes=gpu_nodes,
            link_src=src,
            link_dst=dst,
            link_bw=np.asarray(self.link_bw, dtype=np.float64),
            link_lat=np.asarray(self.link_lat, dtype=np.float64),
            link_ocs=np.asarray(self.link_ocs, dtype=np.int64),
            out_ptr=out_ptr,
            out_link=order.astype(np.int64),
            forwards=forwards,
            dist=dist,
            gpus_per_server=self.gpus_per_server,
            params=dict(self.params),
            redundant=_redundant_links(kind, src, dst, np.asarray(self.link_bw, dtype=np.float64)),
            partial=not connected,
            circuits=self.circuits,
        )
        unreachable = np.argwhere(dist[:, gpu_nodes] < 0)
        if connected and len(unreachable):
            d, s = unreachable[0]
            raise TopologyError(
                f"topology {self.name!r}: no route from GPU {s} to GPU {d}"
                + ("" if self.gpu_forwarding else " without relaying through another GPU")
            )
        return ft


@dataclass
class FrozenTopology:
    """Flat-array form of a validated topology (what the kernels see).

    ``dist[d, v]`` is the hop count from node ``v`` to GPU number ``d`` (-1: unreachable);
    links ``out_link[out_ptr[v]:out_ptr[v+1]]`` leave node ``v``. Bandwidths in bytes/s,
    latencies in seconds.
    """

    name: str
    node_kind: np.ndarray
    gpu_nodes: np.ndarray
    link_src: np.ndarray
    link_dst: np.ndarray
    link_bw: np.ndarray
    link_lat: np.ndarray
    link_ocs: np.ndarray
    out_ptr: np.ndarray
    out_link: np.ndarray
    forwards: np.ndarray
    dist: np.ndarray
    gpus_per_server: int = 1
    params: dict = field(default_factory=dict)
    redundant: np.ndarray | None = None
    partial: bool = False  # some GPU pairs have no route (frozen with connected=False)
    circuits: Circuits | None = None  # see Topology.declare_circuits

    @property
    def n_gpus(self) -> int:
        return len(self.gpu_nodes)

    @property
    def n_links(self) -> int:
        return len(self.link_src)

    def gpu_injection_bw(self) -> np.ndarray:
        """Total bandwidth (bytes/s) of the links leaving each GPU (its injection bandwidth)."""
        bw = np.zeros(len(self.node_kind))
        np.add.at(bw, self.link_src, self.link_bw)
        return bw[self.gpu_nodes]

    def gpu_ejection_bw(self) -> np.ndarray:
        """Total bandwidth (bytes/s) of the links entering each GPU (its ejection bandwidth)."""
        bw = np.zeros(len(self.node_kind))
        np.add.at(bw, self.link_dst, self.link_bw)
        return bw[self.gpu_nodes]

    def route(self, src_gpu: np.ndarray, dst_gpu: np.ndarray, seed: int = 0,
              hash_offset: int = 0):
        """Paths of flows ``src_gpu[i] -> dst_gpu[i]`` (GPU numbers) as CSR link arrays.

        Returns ``(path_ptr, path_links, path_latency_s)``; flow ``i`` crosses links
        ``path_links[path_ptr[i]:path_ptr[i+1]]`` in order. ECMP choice is a hash of
        (src, dst, hop, seed): deterministic and independent of flow order.
        ``hash_offset`` is added to both GPU numbers in the hash only: a fabric that is one
        block of a larger one (GPUs ``hash_offset + 0..n-1`` there, the same links in the same
        order) then picks the larger fabric's paths (:mod:`netsim.aggregate`).
        """
        src_gpu, dst_gpu, path_ptr = self._route_lengths(src_gpu, dst_gpu)
        # the outputs are numpy's (large ones get huge pages: faster to fill than numba's)
        path_links = np.empty(path_ptr[-1], np.int64)
        lat = np.zeros(len(src_gpu), np.float64)
        self._route_fill(src_gpu, dst_gpu, seed, hash_offset, path_ptr, path_links, lat)
        return path_ptr, path_links, lat

    def route_latency(self, src_gpu: np.ndarray, dst_gpu: np.ndarray, seed: int = 0,
                      hash_offset: int = 0) -> np.ndarray:
        """The path latency (s) of each flow, ``route(...)[2]`` to the bit, without storing the
        paths (what the reference bounds need of every GPU pair)."""
        src_gpu, dst_gpu, path_ptr = self._route_lengths(src_gpu, dst_gpu)
        lat = np.zeros(len(src_gpu), np.float64)
        self._route_fill(src_gpu, dst_gpu, seed, hash_offset, path_ptr, np.empty(0, np.int64),
                         lat)
        return lat

    def _route_lengths(self, src_gpu, dst_gpu):
        src_gpu = np.ascontiguousarray(src_gpu, dtype=np.int64)
        dst_gpu = np.ascontiguousarray(dst_gpu, dtype=np.int64)
        if self.partial:
            bad = np.flatnonzero(self.dist[dst_gpu, self.gpu_nodes[src_gpu]] < 0)
            if len(bad):
                raise TopologyError(f"topology {self.name!r}: no route from GPU "
                                    f"{src_gpu[bad[0]]} to GPU {dst_gpu[bad[0]]}")
        return src_gpu, dst_gpu, _route_lengths(src_gpu, dst_gpu, self.gpu_nodes, self.dist)

    def _route_fill(self, src_gpu, dst_gpu, seed, hash_offset, path_ptr, path_links, lat):
        _route_fill(src_gpu, dst_gpu, self.gpu_nodes, self.dist, self.out_ptr, self.out_link,
                    self.link_dst, self.link_lat, self.forwards, np.int64(seed),
                    np.int64(hash_offset), path_ptr, path_links, lat)


def _redundant_links(kind, src, dst, bw) -> np.ndarray:
    """Links whose capacity constraint is implied by another link's (exact pruning for rates).

    Link e = u->v is redundant if v is not a GPU and has exactly one out-link e' other than back
    to u with bw(e') <= bw(e): every loop-free path through e continues on e', so e's flows are
    a subset of e''s and e can never be tighter. Symmetrically if u is not a GPU and has exactly
    one in-link other than from v, of no more bandwidth. (E.g. the PCIe hop to a slower NIC.)
    Removing such constraints leaves the max-min allocation unchanged.
    """
    n = len(kind)
    m = len(src)
    red = np.zeros(m, np.bool_)
    out_deg = np.bincount(src, minlength=n)
    in_deg = np.bincount(dst, minlength=n)
    out_of = [[] for _ in range(n)]
    in_of = [[] for _ in range(n)]
    for e in range(m):
        out_of[src[e]].append(e)
        in_of[dst[e]].append(e)
    for e in range(m):
        u, v = src[e], dst[e]
        if kind[v] != GPU and out_deg[v] <= 2:
            others = [x for x in out_of[v] if dst[x] != u]
            if len(others) == 1 and bw[others[0]] <= bw[e] and not red[others[0]]:
                red[e] = True
                continue
        if kind[u] != GPU and in_deg[u] <= 2:
            others = [x for x in in_of[u] if src[x] != v]
            if len(others) == 1 and bw[others[0]] <= bw[e] and not red[others[0]]:
                red[e] = True
    return red


@njit(cache=True)
def group_by(keys, n):
    """Indices ``0..len(keys)-1`` grouped by key (counting sort, stable; keys in ``0..n-1``):
    those with key ``k`` are ``order[first[k]:first[k + 1]]``."""
    first = np.zeros(n + 1, np.int64)
    for i in range(len(keys)):
        first[keys[i] + 1] += 1
    for k in range(n):
        first[k + 1] += first[k]
    fill = first[:-1].copy()
    order = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        k = keys[i]
        order[fill[k]] = i
        fill[k] += 1
    return order, first


@njit(cache=True)
def _bfs_dist_to(gpu_nodes, n, link_src, link_dst, forwards):
    """Hop distance from every node to every GPU (reverse BFS); relays only via ``forwards``."""
    ng = len(gpu_nodes)
    # reverse adjacency: the sources of the links entering node v are
    # in_src[in_ptr[v]:in_ptr[v + 1]]
    order, in_ptr = group_by(link_dst, n)
    in_src = link_src[order]
    dist = np.full((ng, n), -1, np.int32)
    queue = np.empty(n, np.int64)
    for d in range(ng):
        t = gpu_nodes[d]
        dist[d, t] = 0
        head = 0
        tail = 0
        queue[tail] = t
        tail += 1
        while head < tail:
            v = queue[head]
            head += 1
            if v != t and not forwards[v]:
                continue  # v can be a source but relays nothing
            for k in range(in_ptr[v], in_ptr[v + 1]):
                u = in_src[k]
                if dist[d, u] < 0:
                    dist[d, u] = dist[d, v] + 1
                    queue[tail] = u
                    tail += 1
    return dist


@njit(cache=True)
def _mix(x):
    # splitmix64 finaliser: a good, deterministic integer hash
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


# hash constants of the ECMP choice (see _route_fill)
_H_SRC = np.uint64(0x9E3779B97F4A7C15)
_H_HOP = np.uint64(0x100000001B3)
_H_SEED = np.uint64(0xD6E8FEB86659FD93)
_MAX_CAND = 64  # equal-cost candidates considered per hop (the first ones in out-link order)


@njit(cache=True)
def _route_lengths(src_gpu, dst_gpu, gpu_nodes, dist):
    """``path_ptr`` of the flows ``src_gpu[i] -> dst_gpu[i]``: prefix sums of their hop counts."""
    nf = len(src_gpu)
    path_ptr = np.zeros(nf + 1, np.int64)
    for i in range(nf):
        path_ptr[i + 1] = path_ptr[i] + dist[dst_gpu[i], gpu_nodes[src_gpu[i]]]
    return path_ptr


@njit(cache=True)
def _candidates(v, d, t, dist, out_ptr, out_link, link_dst, forwards, cand, cand_to, n_cand):
    """The equal-cost candidates of node ``v`` towards GPU ``d`` (node ``t``) into
    ``cand``/``cand_to`` (link, the node it leads to) from ``out_ptr[v]`` on, their count into
    ``n_cand[v]``: the out-links of ``v`` to a node one hop closer that is ``t`` or forwards,
    in out-link order, the first ``_MAX_CAND`` of them."""
    slot = out_ptr[v]
    dv = dist[d, v]
    nc = 0
    for k in range(out_ptr[v], out_ptr[v + 1]):
        e = out_link[k]
        w = link_dst[e]
        if dist[d, w] == dv - 1 and (w == t or forwards[w]) and nc < _MAX_CAND:
            cand[slot + nc] = e
            cand_to[slot + nc] = w
            nc += 1
    n_cand[v] = nc


@njit(cache=True)
def _route_fill(src_gpu, dst_gpu, gpu_nodes, dist, out_ptr, out_link, link_dst, link_lat, forwards,
                seed, hash_offset, path_ptr, path_links, lat):
    """Shortest paths with deterministic ECMP into ``path_links``/``lat`` (slots ``path_ptr``
    from :func:`_route_lengths`; see :meth:`FrozenTopology.route`).

    At node ``v`` on the way to GPU ``d`` (node ``t``) the candidates are the links of ``v``, in
    out-link order, to a node one hop closer to ``t`` that is ``t`` or forwards (the first
    ``_MAX_CAND``); hop ``hop`` of flow ``s -> d`` takes candidate number
    ``mix(mix(d + o + hop * H_HOP + seed * H_SEED) ^ (s + o) * H_SRC) % count`` (``o``:
    ``hash_offset``; one candidate: no hash needed). A flow's path depends on its own (s, d)
    alone, so the flows are routed grouped by destination (each into its own slots): a
    destination's candidate lists are built once per node its flows visit, not once per flow
    and hop, and stay in cache with its ``dist`` row; the hash's destination half is computed
    once per hop number.
    A path's latency is summed hop by hop from the source, in the order of its links. An
    empty ``path_links`` keeps only the latencies.
    """
    nf = len(src_gpu)
    ng = len(gpu_nodes)
    n = len(out_ptr) - 1
    longest = 1
    for i in range(nf):
        longest = max(longest, path_ptr[i + 1] - path_ptr[i])
    store = len(path_links) > 0  # empty: latencies only (FrozenTopology.route_latency)
    order, first = group_by(dst_gpu, ng)  # flows by destination
    # the destination whose candidates node v holds (held[v]): n_cand[v] of them from
    # cand[out_ptr[v]] on, leading to cand_to[...] (only held is filled: a call for a few
    # flows costs O(nodes), not O(links))
    held = np.empty(n, np.int64)
    held[:] = -1
    n_cand = np.empty(n, np.int64)
    cand = np.empty(max(out_ptr[n], 1), np.int64)
    cand_to = np.empty(max(out_ptr[n], 1), np.int64)
    half = np.empty(longest, np.uint64)  # destination half of the hash, per hop
    for d in range(ng):
        if first[d] == first[d + 1]:
            continue
        t = gpu_nodes[d]
        for hop in range(longest):
            half[hop] = _mix(np.uint64(d + hash_offset) + np.uint64(hop) * _H_HOP
                             + np.uint64(seed) * _H_SEED)
        for j in range(first[d], first[d + 1]):
            i = order[j]
            sh = np.uint64(src_gpu[i] + hash_offset) * _H_SRC
            v = gpu_nodes[src_gpu[i]]
            pos = path_ptr[i]
            acc = 0.0
            for hop in range(path_ptr[i + 1] - pos):
                if held[v] != d:
                    _candidates(v, d, t, dist, out_ptr, out_link, link_dst, forwards, cand,
                                cand_to, n_cand)
                    held[v] = d
                nc = n_cand[v]
                k = out_ptr[v]
                if nc != 1:
                    k += np.int64(_mix(sh ^ half[hop]) % np.uint64(nc))
                e = cand[k]
                if store:
                    path_links[pos + hop] = e
                acc += link_lat[e]
                v = cand_to[k]
            lat[i] = acc


def add_servers(
    topo: Topology,
    servers: int,
    gpus_per_server: int,
    nvlink_Bps: float,
    nic_Bps: float | None,
    pcie_Bps: float,
    latency_s: float,
) -> tuple[list[list[int]], list[list[int]]]:
    """Add ``servers`` servers of ``gpus_per_server`` GPUs to ``topo``.

    Inside a server the GPUs share one NVLink switch (``nvlink_Bps`` per GPU and direction;
    0 means no NVLink domain). With ``nic_Bps`` each GPU gets its own NIC behind a PCIe link of
    ``pcie_Bps``; the NIC's uplink is added by the caller. Returns (gpus, nics) per server.
    """
    topo.gpus_per_server = gpus_per_server
    all_gpus, all_nics = [], []
    for s in range(servers):
        gpus = [topo.add_gpu(f"s{s}g{r}") for r in range(gpus_per_server)]
        if nvlink_Bps > 0 and gpus_per_server > 1:
            sw = topo.add_switch(f"s{s}nvsw")
            for g in gpus:
                topo.add_link(g, sw, nvlink_Bps, latency_s, tag="nvlink")
        nics = []
        if nic_Bps is not None:
            for r, g in enumerate(gpus):
                nic = topo.add_nic(f"s{s}nic{r}")
                topo.add_link(g, nic, pcie_Bps, 0.0, tag="pcie")
                nics.append(nic)
        all_gpus.append(gpus)
        all_nics.append(nics)
    return all_gpus, all_nics


def crossbar(gpus: int, bw_Bps: float, latency_s: float = 0.0, name: str = "crossbar",
             params: dict | None = None) -> Topology:
    """``gpus`` GPUs, each with one full-duplex link of ``bw_Bps`` bytes/s and ``latency_s``
    seconds to a single non-blocking switch (the ideal congestion-free reference)."""
    t = Topology(name, params=dict(params or {}))
    sw = t.add_switch("xbar")
    for i in range(int(gpus)):
        t.add_link(t.add_gpu(f"g{i}"), sw, bw_Bps, latency_s)
    return t


def shift_matching(n: int, shift: int) -> np.ndarray:
    """The permutation i -> (i + shift) mod n (a RotorNet-style cyclic matching)."""
    return (np.arange(n) + shift) % n
