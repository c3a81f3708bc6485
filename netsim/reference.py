"""The congestion-free reference of a prepared layer: ``ideal_dispatch_s`` and ``ideal_combine_s``.

For each phase: the *min-cut* bound of its byte matrix on the topology, each cut set's time plus
the shortest routed path latency among its pairs with bytes (a circuit-scheduled run: the line
sum per port plus one circuit hop).

The min-cut bound asks what each GPU could do **alone** on the fabric. GPU ``i`` sending bytes
``d[j]`` to the other GPUs ``j`` needs at least ``d(J) / lambda_i(J)`` seconds for every set ``J``
of destinations, where ``lambda_i(J)`` is the minimum cut (maximum flow) from ``i`` to ``J`` in
the topology's link graph (GPUs that do not forward relay nothing); receiving likewise. The
phase bound is the largest of these over GPUs, directions and sets. It is a lower bound on any
schedule of the matrix on the fabric (every byte crosses every cut between its source and its
destination), and it sees the GPU's *real* bottleneck: a leaf-spine GPU's 512 Gbit/s PCIe link in
front of its 400 Gbit/s NIC counts as 400 Gbit/s, and on NVLink servers bytes that leave the
server count against the NIC, not against NVLink + NIC.

Which sets ``J`` are tried (computed once per frozen topology, :func:`gpu_cuts`, and cached by
the topology's link arrays, so every run on the same fabric in one process reuses them): for
each GPU, every other GPU (``J`` = all, the GPU's min-cut injection / ejection capacity), and for
each hop distance ``h`` the GPUs at exactly ``h`` hops and those at ``h`` hops or more (same
server, same leaf, across the spine...). Each cut's capacity is a real cut's (the maximum flow's
residual cut, its links' bandwidth summed in float64), so every printed value is a valid lower
bound; it is the exact single-GPU bound whenever the binding destination set is one of these
distance classes (every shipped topology at full bisection under uniform traffic, ``tests/test_scenario.py``).
GPUs that a verified automorphism of the fabric maps onto each other share their capacities
when the max flows are exact (:func:`_gpu_orbit_reps`, :func:`_exact_flows`; the same values
to the bit): on a symmetric fabric one GPU's max flows stand for all (docs/cluster.md).

A circuit-scheduled run (the topology's OCS driven by a scheduler) is bounded per port instead:
its circuits are reconfigured, so the fixed matching's cuts do not apply; each GPU's ports count
at their line rate (``FrozenTopology.gpu_injection_bw``); on two-tier fabrics (endpoints of several
GPUs) the bound is the endpoints' circuits plus electrical ports, or NVLink inside a server,
whichever is longer (:meth:`netsim.circuit_fabric.CircuitFabric.ideal_bounds`). The combine matrix
is the transpose of the dispatch matrix; a raw ``traffic`` run has no combine.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from netsim.bounds import cut_sum_time, line_sum_time
from netsim.layer import PreparedLayer
from netsim.topology import group_by

__all__ = ["GpuCuts", "gpu_cuts", "cut_bound_time", "path_latency", "phase_bounds",
           "max_path_latency_s"]


@dataclass(frozen=True)
class GpuCuts:
    """The destination (source) sets tried for every GPU and their cut capacities.

    ``out_mask[f, i, j]``: GPU j is in GPU i's f-th destination set; ``out_cap[f, i]``: the
    capacity (bytes/s) of a cut separating i from that set (``inf`` for an empty set);
    ``in_mask`` / ``in_cap``: the same for the sets of sources sending to i. ``injection_Bps``
    / ``ejection_Bps``: each GPU's min-cut capacity to / from all other GPUs.
    """

    out_mask: np.ndarray
    out_cap: np.ndarray
    in_mask: np.ndarray
    in_cap: np.ndarray

    @property
    def injection_Bps(self) -> np.ndarray:
        return self.out_cap[0]

    @property
    def ejection_Bps(self) -> np.ndarray:
        return self.in_cap[0]


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 32


def _fingerprint(ft) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (ft.node_kind, ft.gpu_nodes, ft.link_src, ft.link_dst, ft.link_bw, ft.forwards):
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    h.update(_dist_digest(ft))
    return h.hexdigest()


def _dist_digest(ft) -> bytes:
    """The hop-distance table's part of the fingerprint (GPUs x nodes: the largest array, a
    GiB at 16,384 GPUs), hashed once per table object and kept on ``ft`` beside a weak
    reference to it (a new table, e.g. another freeze, is hashed anew). The table is derived
    from the links at freeze time and never written afterwards."""
    import weakref

    d = ft.dist
    memo = ft.__dict__.get("_dist_digest")
    if memo is not None and memo[0]() is d:
        return memo[1]
    a = np.ascontiguousarray(d)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(a.tobytes())
    ft.__dict__["_dist_digest"] = (weakref.ref(d), h.digest())
    return h.digest()


def gpu_cuts(ft) -> GpuCuts:
    """The cut sets and capacities of every GPU of frozen topology ``ft`` (module doc); cached
    by the topology's arrays (32 topologies, least recently used dropped)."""
    key = _fingerprint(ft)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    out = _compute_cuts(ft)
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _families(dist_row: np.ndarray, self_idx: int) -> list[np.ndarray]:
    """Sets of GPUs (boolean masks): all reachable others, then per hop distance h the GPUs at
    exactly h and at h or more hops; duplicates dropped."""
    ok = dist_row > 0
    ok[self_idx] = False
    fams = [ok.copy()]
    for h in np.unique(dist_row[ok]):
        fams.append(ok & (dist_row == h))
        fams.append(ok & (dist_row >= h))
    uniq, seen = [], set()
    for m in fams:
        k = m.tobytes()
        if k not in seen and m.any():
            seen.add(k)
            uniq.append(m)
    return uniq


# From this many GPUs on, GPUs of one orbit share a cut (:func:`_gpu_orbit_reps`); below it,
# every GPU's max flows: the same values, and a small run does not compile the orbit search's
# kernels (seconds on a first run after install).
LARGE_GPUS = 256


def _compute_cuts(ft, large: bool | None = None) -> GpuCuts:
    """Every GPU's cut sets and capacities; ``large`` (default: ``n_gpus >= LARGE_GPUS``) turns
    on the orbit shortcut, which gives the same values to the bit (tests)."""
    ng = ft.n_gpus
    if large is None:
        large = ng >= LARGE_GPUS
    n_nodes = len(ft.node_kind)
    gpu_nodes = np.asarray(ft.gpu_nodes, np.int64)
    src_all, dst_all = np.asarray(ft.link_src, np.int64), np.asarray(ft.link_dst, np.int64)
    bw_all = np.asarray(ft.link_bw, np.float64)
    relays = np.asarray(ft.forwards, bool)
    big = float(bw_all.sum()) * 2.0 + 1.0  # "unlimited": more than any cut
    sink = n_nodes  # the super sink (out) / super source (in)
    dg = np.asarray(ft.dist)[:, gpu_nodes]  # [j, i]: hops from GPU i to GPU j
    # GPUs with provably equal cut capacities take their representative's (no max flow)
    rep = _gpu_orbit_reps(ft, dg) if large and _exact_flows(ft) else np.arange(ng)
    results = {}
    for direction in ("out", "in"):
        mask, nsets = _gpu_sets(np.ascontiguousarray(dg.T if direction == "out" else dg))
        capa = np.full((mask.shape[0], ng), np.inf)
        for i in range(ng):
            r, nf = int(rep[i]), int(nsets[i])
            if r < i and nsets[r] == nf:
                capa[:nf, i] = capa[:nf, r]
                continue
            node = int(gpu_nodes[i])
            # non-forwarding GPUs other than i carry none of i's flow through them
            if direction == "out":
                keep = relays[src_all] | (src_all == node)
                s, d = src_all[keep], dst_all[keep]
            else:
                keep = relays[dst_all] | (dst_all == node)
                # reversed graph: a flow from i to the sources over reversed links
                s, d = dst_all[keep], src_all[keep]
            bw = bw_all[keep]
            for f in range(nf):
                members = gpu_nodes[mask[f, i]]
                gs = np.concatenate([s, members])
                gd = np.concatenate([d, np.full(len(members), sink)])
                gc = np.concatenate([bw, np.full(len(members), big)])
                reach = _min_cut_side(n_nodes + 1, gs, gd, gc, node, sink)
                crossing = reach[s] & ~reach[d]
                c = float(bw[crossing].sum())
                capa[f, i] = c if c > 0 else np.inf
        results[direction] = (mask, capa)
    return GpuCuts(results["out"][0], results["out"][1], results["in"][0], results["in"][1])


def _gpu_sets(hops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every GPU's sets (:func:`_families`) as ``mask[f, i]`` (F x n x n, F the most a GPU
    has) and how many each GPU has; ``hops[i, j]``: hop count from GPU i to GPU j (the sources'
    direction: from j to i)."""
    ng = len(hops)
    fams = [_families(np.asarray(hops[i], np.int64), i) for i in range(ng)]
    mask = np.zeros((max((len(x) for x in fams), default=1), ng, ng), bool)
    for i, fi in enumerate(fams):
        for f, m in enumerate(fi):
            mask[f, i] = m
    return mask, np.array([len(x) for x in fams], np.int64)


def _min_cut_side(n, src, dst, cap, s, t):
    """Nodes on the source side of a minimum s-t cut (boolean mask over ``n`` nodes)."""
    return _dinic_min_cut(np.int64(n), np.ascontiguousarray(src, np.int64),
                          np.ascontiguousarray(dst, np.int64),
                          np.ascontiguousarray(cap, np.float64), np.int64(s), np.int64(t))


@njit(cache=True)
def _dinic_min_cut(n, src, dst, cap, s, t):
    """Dinic's maximum flow from ``s`` to ``t`` (float capacities); returns the source side of
    the minimum cut (nodes reachable from ``s`` in the residual graph)."""
    m = len(src)
    # residual arcs: 2k forward, 2k+1 backward
    head = np.empty(2 * m, np.int64)
    res = np.empty(2 * m, np.float64)
    deg = np.zeros(n + 1, np.int64)
    for k in range(m):
        head[2 * k] = dst[k]
        head[2 * k + 1] = src[k]
        res[2 * k] = cap[k]
        res[2 * k + 1] = 0.0
        deg[src[k] + 1] += 1
        deg[dst[k] + 1] += 1
    for v in range(n):
        deg[v + 1] += deg[v]
    adj = np.empty(2 * m, np.int64)
    fill = deg[:-1].copy()
    for k in range(m):
        adj[fill[src[k]]] = 2 * k
        fill[src[k]] += 1
        adj[fill[dst[k]]] = 2 * k + 1
        fill[dst[k]] += 1
    eps = 1e-12 * (cap.max() if m else 1.0)
    level = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    it = np.empty(n, np.int64)
    stack = np.empty(n + 1, np.int64)  # arcs of the current DFS path
    while True:
        level[:] = -1
        level[s] = 0
        qh, qt = 0, 1
        queue[0] = s
        while qh < qt:
            v = queue[qh]
            qh += 1
            for p in range(deg[v], deg[v + 1]):
                a = adj[p]
                w = head[a]
                if res[a] > eps and level[w] < 0:
                    level[w] = level[v] + 1
                    queue[qt] = w
                    qt += 1
        if level[t] < 0:
            break
        for v in range(n):
            it[v] = deg[v]
        # blocking flow: iterative DFS along level-increasing arcs
        depth = 0
        v = s
        while True:
            if v == t:
                f = np.inf
                for k in range(depth):
                    if res[stack[k]] < f:
                        f = res[stack[k]]
                for k in range(depth):
                    res[stack[k]] -= f
                    res[stack[k] ^ 1] += f
                depth = 0
                v = s
                continue
            advanced = False
            while it[v] < deg[v + 1]:
                a = adj[it[v]]
                w = head[a]
                if res[a] > eps and level[w] == level[v] + 1:
                    stack[depth] = a
                    depth += 1
                    v = w
                    advanced = True
                    break
                it[v] += 1
            if not advanced:
                if v == s:
                    break
                level[v] = -1  # dead end
                depth -= 1
                v = head[stack[depth] ^ 1]
                it[v] += 1
    reach = level >= 0
    return reach


def cut_bound_time(m: np.ndarray, ft, latency=None) -> float:
    """Seconds GPU x GPU byte matrix ``m`` needs at least on frozen topology ``ft`` (the
    min-cut bound of the module doc; the diagonal is left out). ``latency[i, j]``: the path
    latency (s) of pair (i, j), added per cut set as its smallest over the set's pairs with
    bytes (:func:`netsim.bounds.cut_sum_time`); None: no latency."""
    c = gpu_cuts(ft)
    return cut_sum_time(m, c.out_mask, c.out_cap, c.in_mask, c.in_cap, latency)


#: largest GPU count whose every-pair latency matrix (8 N^2 bytes: 128 MiB at 4,096) is kept on
#: the frozen topology between calls; above it each call routes only the pairs it needs
PAIR_LATENCY_MAX_GPUS = 4096


def _all_pairs_latency(ft, ecmp_seed: int) -> np.ndarray:
    """``L[i, j]``: the routed path latency (s) of every ordered GPU pair (diagonal ``inf``),
    routed once per frozen topology, ECMP seed and link latencies and kept on ``ft`` (a pair's
    path and its latency do not depend on which other pairs are routed with it, so the values
    are those of routing any subset). A layer asks for it three times (dispatch, combine and
    the balanced bound, each from the engine and from the row)."""
    key = (int(ecmp_seed), hashlib.blake2b(np.ascontiguousarray(ft.link_lat).tobytes(),
                                           digest_size=8).hexdigest())
    memo = ft.__dict__.setdefault("_pair_latency", {})
    if key not in memo:
        n = len(ft.gpu_nodes)
        src, dst = np.nonzero(~np.eye(n, dtype=bool))
        lat = np.full((n, n), np.inf)
        if len(src):
            lat[src, dst] = ft.route_latency(src, dst, ecmp_seed)
        memo.clear()  # one seed and latency set at a time
        memo[key] = lat
    return memo[key]


def path_latency(m: np.ndarray, ft, ecmp_seed: int = 0) -> np.ndarray:
    """``lat[i, j]``: the routed path latency (s) of every pair with bytes in ``m`` (others
    ``inf``)."""
    off = np.array(m, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    if off.shape[0] <= PAIR_LATENCY_MAX_GPUS and np.count_nonzero(off):
        return np.where(off > 0, _all_pairs_latency(ft, ecmp_seed), np.inf)
    lat = np.full(off.shape, np.inf)
    src, dst = np.nonzero(off)
    if len(src):
        lat[src, dst] = ft.route_latency(src, dst, ecmp_seed)
    return lat


def max_path_latency_s(layer: PreparedLayer) -> float:
    """The longest routed path's latency (s) over the layer's GPU pairs with bytes."""
    if layer.spec.fabric == "circuit":
        return float(layer.topo.link_lat.max())  # one circuit hop
    off = layer.dispatch.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    if not len(src):
        return 0.0
    lat = layer.topo.route_latency(src, dst, layer.ecmp_seed)
    return float(lat.max()) if len(lat) else 0.0


def phase_bounds(layer: PreparedLayer) -> tuple[float, float]:
    """``(ideal_dispatch_s, ideal_combine_s)`` of the layer (combine 0.0 without one)."""
    D = layer.dispatch
    cf = layer.circuits
    if cf is not None and cf.group > 1:
        # servers' circuits (or their ideal switch) plus NVLink inside servers
        d, c = cf.ideal_bounds(D)
        return d, (c if layer.combine else 0.0)
    ft = layer.topo
    if cf is not None:  # circuits reconfigure: each port at its line rate
        lat = max_path_latency_s(layer)
        inj, ej = ft.gpu_injection_bw(), ft.gpu_ejection_bw()
        d = line_sum_time(D, inj, ej) + lat
        c = line_sum_time(D.T, inj, ej) + lat if layer.combine else 0.0
        return d, c
    d = cut_bound_time(D, ft, path_latency(D, ft, layer.ecmp_seed))
    c = cut_bound_time(D.T, ft, path_latency(D.T, ft, layer.ecmp_seed)) if layer.combine else 0.0
    return d, c


def balanced_dispatch_bound(layer: PreparedLayer) -> float:
    """``ideal_balanced_dispatch_s``: the dispatch bound (:func:`phase_bounds`) of the same
    off-diagonal bytes spread perfectly evenly (every ordered GPU pair the same share), on the
    same fabric: what the dispatch would need with no load imbalance at all."""
    off = np.array(layer.dispatch, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    n, total = off.shape[0], float(off.sum())
    if n < 2 or total <= 0:
        return 0.0
    even = np.full((n, n), total / (n * (n - 1)))
    np.fill_diagonal(even, 0.0)
    return phase_bounds(replace(layer, dispatch=even))[0]


# ---- GPUs whose cut capacities are provably equal (symmetric fabrics) -----------------------


def _exact_flows(ft) -> bool:
    """Whether Dinic's maximum flows on this fabric are exact, so that every minimum cut it
    finds has the one exact min-cut value (the same float for every GPU whose problem is
    isomorphic). True when the link bandwidths are whole numbers of bytes/s and every GPU's
    links in and out sum below 2**53: a link's flow and residual are whole numbers at most its
    bandwidth, a cut's links sum to at most the GPU's own links' (all exact in float64; the
    members' ``big`` arcs never bind), and the bandwidths' greatest common divisor is above
    Dinic's saturation threshold ``1e-12 * big`` (no residual between 0 and it)."""
    bw = np.asarray(ft.link_bw, np.float64)
    if not len(bw) or not np.all(np.isfinite(bw)) or np.any(bw <= 0):
        return False
    if not np.all(bw == np.floor(bw)) or bw.max() >= 2.0 ** 53:
        return False
    gpu = np.zeros(len(ft.node_kind), bool)
    gpu[np.asarray(ft.gpu_nodes)] = True
    src, dst = np.asarray(ft.link_src), np.asarray(ft.link_dst)
    for side in (src, dst):
        per = np.zeros(len(gpu), dtype=object)
        for e in np.flatnonzero(gpu[side]).tolist():
            per[side[e]] += int(bw[e])
        if max(per.tolist()) >= 2 ** 53:
            return False
    g = 0
    for x in np.unique(bw).tolist():
        g = math.gcd(g, int(x))
    big = float(bw.sum()) * 2.0 + 1.0
    return g > 4e-12 * big  # a margin over the threshold


def _gpu_orbit_reps(ft, dg: np.ndarray | None = None) -> np.ndarray:
    """``rep[i]``: the first GPU that a verified automorphism of the fabric (a permutation of the
    nodes keeping kinds, relaying and every link with its bandwidth) maps onto GPU ``i``
    (``rep[i] == i``: none found). Such GPUs have isomorphic min-cut problems, set by set (the
    map keeps hop distances, so it maps GPU i's sets onto the image's in the same order); their
    cut capacities are equal when the flows are exact (:func:`_exact_flows`).

    Candidates: for GPU b, an involution swapping b with a representative a, built by walking
    out from the pair (neighbours common to both stay, the others are paired in order of kind,
    bandwidth, degrees and id); it counts only after every moved node's in- and out-links are
    checked to map onto links of the same bandwidth (:func:`_swap`)."""
    ng = ft.n_gpus
    rep = np.arange(ng)
    if ng < 2:
        return rep
    n = len(ft.node_kind)
    src = np.asarray(ft.link_src, np.int64)
    dst = np.asarray(ft.link_dst, np.int64)
    bw = np.asarray(ft.link_bw, np.float64)
    # each node's out-links (the topology's own table) and in-links: far ends and bandwidths
    o_ptr, o_adj, o_bw = np.asarray(ft.out_ptr, np.int64), dst[ft.out_link], bw[ft.out_link]
    into, i_ptr = group_by(dst, n)
    i_adj, i_bw = src[into], bw[into]
    key = np.asarray(ft.node_kind, np.int64) * 2 + np.asarray(ft.forwards, np.int64)
    gpu_nodes = np.asarray(ft.gpu_nodes, np.int64)
    gpu_of = np.full(n, -1, np.int64)
    gpu_of[gpu_nodes] = np.arange(ng)
    # a GPU's signature: what any automorphism keeps (hop-count histograms both ways)
    dg = ft.dist[:, gpu_nodes] if dg is None else dg  # [j, i]: hops GPU i -> GPU j
    hmax = int(dg.max()) + 2
    sig = {}
    for i in range(ng):
        s = (np.bincount(dg[:, i] + 1, minlength=hmax).tobytes(),
             np.bincount(dg[i] + 1, minlength=hmax).tobytes())
        sig.setdefault(s, []).append(i)
    parent = np.arange(ng)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pi = np.arange(n, dtype=np.int64)
    for members in sig.values():
        reps: list[int] = []
        misses = 0
        for b in members:
            if find(b) != b or misses > 64:
                continue
            for a in reps[:3]:
                moved = _swap(gpu_nodes[a], gpu_nodes[b], o_ptr, o_adj, o_bw, i_ptr, i_adj, i_bw,
                              key, pi)
                if len(moved):
                    img = pi[moved]
                    pi[moved] = moved
                    g1, g2 = gpu_of[moved], gpu_of[img]
                    for x, y in zip(g1[g1 >= 0].tolist(), g2[g1 >= 0].tolist()):
                        rx, ry = find(x), find(y)
                        if rx != ry:
                            parent[max(rx, ry)] = min(rx, ry)
                    break
            if find(b) == b:
                reps.append(b)
                misses += 1
    for i in range(ng):
        rep[i] = find(i)
    return rep


@njit(cache=True)
def _order(k1, k2, k3):
    """Indices sorting (k1, k2, k3) lexicographically (insertion sort: the lists are a node's
    links, short; a library sort costs seconds of compilation here)."""
    n = len(k1)
    o = np.arange(n)
    for x in range(1, n):
        y = o[x]
        z = x - 1
        while z >= 0:
            w = o[z]
            if (k1[w], k2[w], k3[w]) <= (k1[y], k2[y], k3[y]):
                break
            o[z + 1] = w
            z -= 1
        o[z + 1] = y
    return o


@njit(cache=True)
def _swap(a, b, o_ptr, o_adj, o_bw, i_ptr, i_adj, i_bw, key, pi):
    """Nodes an involution swapping nodes ``a`` and ``b`` moves, built outwards from the pair
    and verified to be an automorphism (``pi`` holds it on return, identity elsewhere; the
    caller restores it); an empty array if none was found. ``pi`` is the identity on entry."""
    n = len(key)
    moved = np.empty(n, np.int64)
    nm = 0
    fixed = np.zeros(n, np.bool_)  # decided: moved or kept
    ok = key[a] == key[b]
    if ok:
        pi[a], pi[b] = b, a
        fixed[a] = True
        fixed[b] = True
        moved[0], moved[1] = a, b
        nm = 2
    head = 0
    while ok and head < nm:
        u = moved[head]
        head += 1
        if u > pi[u]:
            continue  # the pair is walked from its smaller node
        v = pi[u]
        for side in range(2):
            ptr, adj, wb = (o_ptr, o_adj, o_bw) if side == 0 else (i_ptr, i_adj, i_bw)
            la, lb = adj[ptr[u]:ptr[u + 1]], adj[ptr[v]:ptr[v + 1]]
            wa, wbb = wb[ptr[u]:ptr[u + 1]], wb[ptr[v]:ptr[v + 1]]
            if len(la) != len(lb):
                ok = False
                break
            # neighbours on both sides (same bandwidth) stay where they are
            for x in range(len(la)):
                w = la[x]
                if fixed[w]:
                    continue
                for y in range(len(lb)):
                    if lb[y] == w and wbb[y] == wa[x]:
                        fixed[w] = True
                        break
            na_ = 0
            nb_ = 0
            for x in range(len(la)):
                na_ += not fixed[la[x]]
                nb_ += not fixed[lb[x]]
            if na_ != nb_:
                ok = False
                break
            if na_ == 0:
                continue
            ua = np.empty(na_, np.int64)
            ub = np.empty(na_, np.int64)
            wua = np.empty(na_, np.float64)
            wub = np.empty(na_, np.float64)
            p_ = 0
            q_ = 0
            for x in range(len(la)):
                if not fixed[la[x]]:
                    ua[p_], wua[p_] = la[x], wa[x]
                    p_ += 1
                if not fixed[lb[x]]:
                    ub[q_], wub[q_] = lb[x], wbb[x]
                    q_ += 1
            # pair the rest in order of (kind, bandwidth, out-degree, in-degree, id)
            ka = np.empty(len(ua), np.int64)
            kb = np.empty(len(ub), np.int64)
            for x in range(len(ua)):
                ka[x] = ((key[ua[x]] * (1 << 20) + (o_ptr[ua[x] + 1] - o_ptr[ua[x]])) * (1 << 20)
                         + (i_ptr[ua[x] + 1] - i_ptr[ua[x]]))
                kb[x] = ((key[ub[x]] * (1 << 20) + (o_ptr[ub[x] + 1] - o_ptr[ub[x]])) * (1 << 20)
                         + (i_ptr[ub[x] + 1] - i_ptr[ub[x]]))
            oa = _order(ka, wua, ua)
            ob = _order(kb, wub, ub)
            for x in range(len(ua)):
                p, q = ua[oa[x]], ub[ob[x]]
                if ka[oa[x]] != kb[ob[x]] or wua[oa[x]] != wub[ob[x]]:
                    ok = False
                    break
                if fixed[p] or fixed[q]:
                    if not (pi[p] == q and pi[q] == p):
                        ok = False
                        break
                    continue
                fixed[p] = True
                fixed[q] = True
                if p != q:
                    pi[p], pi[q] = q, p
                    moved[nm] = p
                    moved[nm + 1] = q
                    nm += 2
            if not ok:
                break
    # verify: every moved node's out- and in-links map onto its image's, bandwidths included
    for h in range(nm):
        if not ok:
            break
        u = moved[h]
        v = pi[u]
        if pi[v] != u or key[u] != key[v]:
            ok = False
            break
        for side in range(2):
            ptr, adj, wb = (o_ptr, o_adj, o_bw) if side == 0 else (i_ptr, i_adj, i_bw)
            la, lb = adj[ptr[u]:ptr[u + 1]], adj[ptr[v]:ptr[v + 1]]
            if len(la) != len(lb):
                ok = False
                break
            ma = np.empty(len(la), np.int64)
            for x in range(len(la)):
                ma[x] = pi[la[x]]
            wa, wbb = wb[ptr[u]:ptr[u + 1]], wb[ptr[v]:ptr[v + 1]]
            oa = _order(ma, wa, ma)
            ob = _order(lb, wbb, lb)
            for x in range(len(la)):
                if ma[oa[x]] != lb[ob[x]] or wa[oa[x]] != wbb[ob[x]]:
                    ok = False
                    break
            if not ok:
                break
    if not ok:
        for h in range(nm):
            pi[moved[h]] = moved[h]
        return moved[:0].copy()
    return moved[:nm].copy()
