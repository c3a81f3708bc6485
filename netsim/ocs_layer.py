"""One MoE layer over an optical circuit switch driven by a circuit scheduler.

Used when a run sets ``scheduler`` (on ``ocs_direct``, or ``hybrid`` with ``scale_out=ocs``). What
happens:

1. **Dispatch.** Every GPU pair's dispatch bytes form one flow on the direct circuit link i->j
   (one hop, no relaying). The scheduler (``netsim.schedule``) decomposes the dispatch matrix into
   matchings and durations; the OCS process (:mod:`netsim.devices.ocs`) executes them, with a
   reconfiguration before each matching (``ocs_mode`` all_stop or not_all_stop). If bytes remain
   (a scheduler whose fallback leaves them, e.g. ``static`` or ``greedy:K:...:leftover``), the
   scheduler is run again on what remains, until nothing does: extra rounds are counted in
   ``fallback_matchings``.
2. **Compute, with overlap** (``overlap=True``, default). At the end of each matching, every GPU
   that received data in it gets a *batch*: for each source, the tokens its bytes carried, split
   over the receiving GPU's experts in proportion to that source's routing. A GPU computes its
   batches in arrival order, each batch paying the compute model's time per expert it touches
   (fixed overhead + work): many small matchings mean many small, overhead-bound batches. Batches
   that arrive while the GPU is busy are merged into one when it becomes free (a runtime takes all
   the tokens it has), so the overhead bites only when compute keeps up with the circuits.
   Tokens a GPU routes to its own experts form a first batch at time 0.
   ``overlap=False``: a GPU waits for all its dispatch data, then computes once per expert.
3. **Combine.** A finished batch's results (the same bytes) go back to their source GPUs as
   new flows on the reverse circuits j->i. Rule: once the dispatch schedule has ended, the
   scheduler plans the whole combine matrix (with overlap, before all of it is computed); the
   OCS executes it; bytes not ready in time, and bytes of batches finishing later, are served by
   further rounds on what is ready (waiting for the next batch if nothing is). Without overlap
   the combine schedule starts only when every GPU has finished computing.

**Two-tier (``hybrid``) fabrics.** With ``topology=hybrid`` (``scale_out=ocs``) the circuits join
*servers*: the scheduler sees the server-to-server matrix (the diagonal blocks, traffic inside a
server, go over NVLink) and a server matching connects NIC r of server a to NIC r of server
sigma(a) for every rail r at once, so a server pair's circuit carries G x the port rate (G GPUs
per server). That is the balancing of the hierarchical BvN (Wu et al., arXiv:2602.22756) given to
every scheduler; ``hier_bvn[:G]`` itself is accepted there (G = gpus_per_server; its first plan
is made on the GPU matrix, later rounds are BvN between servers, which is the same thing).
Approximations: a server pair's circuit bytes form one flow whose progress is shared by its GPU
pairs in proportion to their bytes (the NICs interleave their peers' data evenly, over the rails
at once); the NVLink hops that spread them over the rails, the rail a byte takes and PCIe are
not modelled (NVLink is ~9x a NIC); circuit combine bytes are complete for a server when they
are for all its GPUs.

**Electrical fallback (``eps_gbps`` > 0 on ``hybrid`` or ``ocs_direct``).** Every NIC (GPU on
``ocs_direct``) also has a port of ``eps_gbps`` on an electrical packet switch. With a scheduler
that leaves bytes behind (``greedy:K:RULE:leftover``, ``static``), the first schedule's leftover
of each server pair (GPU pair) goes over the electrical network from time 0, in parallel with
the circuits (the c-Through / Helios division: circuits for the heavy pairs, packets for the
rest), as the same share of each of its GPU pairs' bytes; combine bytes are split by the
combine schedule's leftover the same way. Without an electrical network, leftover bytes are
served by further circuit rounds. NVLink and the electrical switch form a second flow fabric
beside the circuits (max-min over the GPU's NVLink port, the server's electrical ports at
G x ``eps_gbps``); its bytes reach the receiving GPU as one batch per kind (NVLink, electrical)
when all of them have arrived.

Multiple ports per GPU (``ports=k``) are k planes: the scheduler's schedule runs on every plane
with 1/k of the traffic each, except ``spectra:S`` which gives one schedule per plane (S = k).
The ``ideal`` scheduler means no circuits at all: the layer runs on a crossbar with each GPU's
bandwidth equal to its k ports.
"""
from __future__ import annotations

import numpy as np

from netsim.circuit_fabric import CircuitFabric, circuit_topology, make_planner, static_topology
from netsim.errors import ConfigError


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(lo[k], hi[k])`` over k."""
    lens = hi - lo
    if not len(lens):
        return np.empty(0, np.int64)
    start = np.repeat(lo - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return start + np.arange(int(lens.sum()))


class _Pieces:
    """Dispatch bytes as the receiving GPUs see them: piece k is GPU pair (src[k], dst[k])'s
    ``nbytes[k]`` inside flow ``flow[k]`` of one fabric (the whole flow, or a GPU pair's share of
    a server pair's circuit flow, which progresses in proportion). ``ptr``: pieces of flow f are
    ``ptr[f]:ptr[f + 1]``."""

    def __init__(self, fab, flow, src, dst, nbytes, whole: bool):
        order = np.argsort(flow, kind="stable")
        self.fab, self.whole = fab, whole
        self.flow, self.src, self.dst = flow[order], src[order], dst[order]
        self.nbytes = nbytes[order]
        self.ptr = np.searchsorted(self.flow, np.arange(fab.n + 1))
        self.handed = np.zeros(len(flow))  # bytes already handed over as batches
        self.full = np.zeros(len(flow), bool)  # piece completely handed

    def of(self, flows: np.ndarray) -> np.ndarray:
        flows = flows[(flows >= 0) & (flows < len(self.ptr) - 1)]
        return _ranges(self.ptr[flows], self.ptr[flows + 1])


def simulate_ocs(setup) -> dict:
    """Run the layer of ``setup`` (see :mod:`netsim.scenario`) over a scheduled OCS."""
    import time

    import simpy

    from netsim.devices.network import Network
    from netsim.devices.ocs import OCS
    from netsim.fabric.flow import FlowFabric, unfinished

    t0 = time.perf_counter()
    p = setup.params
    if setup.layer is None:
        raise ConfigError("a circuit-scheduled run needs an MoE workload, not --traffic")
    cf = CircuitFabric.of(setup.topo)
    n, G, U, planes = cf.n, cf.group, cf.units, cf.planes
    lat = cf.latency_s
    mode = p["ocs_mode"]
    overlap = bool(p["overlap"])
    spec = p["scheduler"]
    plan = make_planner(spec, cf)
    D = setup.dispatch.copy()
    np.fill_diagonal(D, 0.0)
    T = setup.tokens_to  # T[j, i, s]: tokens from GPU i for GPU j's expert slot s
    batch_time = setup.batch_time
    unit = np.arange(n) // G
    eps = cf.eps_Bps > 0

    # plans made before the layer starts (the combine matrix is D^T, known up front)
    Du = cf.unit_matrix(D)
    plan_d = plan(Du, D)
    plan_c = plan(Du.T.copy(), D.T.copy())

    def eps_share(pl, Mu):
        if not eps:
            return np.zeros((U, U))
        f = np.divide(pl[0].leftover, Mu, out=np.zeros((U, U)), where=Mu > 0)
        f = np.clip(f, 0.0, 1.0)
        f[f < 1e-9] = 0.0
        f[f > 1 - 1e-9] = 1.0
        return f

    share_d, share_c = eps_share(plan_d, Du), eps_share(plan_c, Du.T)

    # ---- two fabrics: circuits between endpoints; NVLink + electrical beside them
    env = simpy.Environment()
    ft, link_of = circuit_topology(cf)
    fab = FlowFabric(ft, tolerance=p["tolerance"], capacity=max(16, 4 * U * U))
    fab.cap[:] = 0.0
    fab.prime_routes(*np.nonzero(~np.eye(U, dtype=bool)))  # combine batches add few flows each
    net = Network(env, fab, 2 * U)  # groups: b dispatch into endpoint b, U + a combine into a
    ocs = OCS(env, net, link_of, cf.rate_Bps, cf.reconfig_s, planes=planes, mode=mode)
    st = static_topology(cf)
    fab_s = FlowFabric(st, tolerance=p["tolerance"], capacity=max(16, 2 * n * G)) if st else None
    # groups: j NVLink dispatch into j, n + j electrical dispatch into j, 2n + i combine into i
    net_s = Network(env, fab_s, 3 * n) if st else None

    src, dst = np.nonzero(D)
    a_, b_ = unit[src], unit[dst]
    same = a_ == b_
    fe = share_d[a_, b_]
    bc = np.where(same, 0.0, D[src, dst] * (1.0 - fe))  # on circuits
    be = np.where(same, 0.0, D[src, dst] * fe)  # electrical
    bn = np.where(same, D[src, dst], 0.0)  # NVLink
    if G == 1:
        Bu = np.zeros((U, U))
        Bu[src, dst] = bc
    else:
        Bu = np.zeros((U, U))
        np.add.at(Bu, (a_, b_), bc)
    us_, ud_ = np.nonzero(Bu)
    np.add.at(net.left, ud_, 1)
    circ_ids = net.send(us_, ud_, Bu[us_, ud_], ud_)
    fid_u = np.full((U, U), -1, np.int64)
    fid_u[us_, ud_] = circ_ids
    on = bc > 0
    circ = _Pieces(fab, fid_u[a_[on], b_[on]], src[on], dst[on], bc[on], whole=G == 1)
    nv_ids = eps_ids = np.empty(0, np.int64)
    if st is not None:
        for b, off in ((bn, 0), (be, n)):
            np.add.at(net_s.left, off + dst[b > 0], 1)
        sel = bn > 0
        nv_ids = net_s.send(src[sel], dst[sel], bn[sel], dst[sel])
        sel = be > 0
        eps_ids = net_s.send(src[sel], dst[sel], be[sel], n + dst[sel])
        ids = np.concatenate([nv_ids, eps_ids])
        stat = _Pieces(fab_s, ids, fab_s.src[ids], fab_s.dst[ids], fab_s.bytes[ids], whole=True)
    token_bytes = float(setup.layer.hidden * setup.layer.dtype_bytes)
    # combine holds: each receiver's group holds one count per GPU that will send it combine
    # bytes, released when that GPU has finished computing
    hold_c = np.zeros((U, n), bool)  # endpoint a will get circuit combine bytes from GPU j
    hold_s = np.zeros((n, n), bool)  # GPU i will get NVLink / electrical combine bytes from j
    fcomb = share_c[unit[dst], unit[src]]  # combine j -> i rides circuit B -> A
    hold_c[a_[~same & (fcomb < 1.0)], dst[~same & (fcomb < 1.0)]] = True
    hold_s[src[same | (fcomb > 0.0)], dst[same | (fcomb > 0.0)]] = True
    np.add.at(net.left, U + np.arange(U), hold_c.sum(axis=1))
    if st is not None:
        np.add.at(net_s.left, 2 * n + np.arange(n), hold_s.sum(axis=1))

    # per GPU: batches handed over and not yet taken, and the event a waiting GPU sleeps on
    inbox: list[list] = [[] for _ in range(n)]
    waiting: list = [None] * n
    pieces_into = np.bincount(circ.dst, minlength=n)
    if st is not None:
        pieces_into += np.bincount(stat.dst, minlength=n)

    def deliver(jj, item):
        inbox[jj].append(item)
        ev = waiting[jj]
        if ev is not None:
            waiting[jj] = None
            ev.succeed()

    comb_circ: list[np.ndarray] = []
    comb_nv: list[np.ndarray] = []
    comb_eps: list[np.ndarray] = []
    batches: list[tuple[int, float]] = []  # (gpu, tokens)
    busy = np.zeros(n)
    unbatched = np.zeros(n)
    d_end = np.zeros(n)
    c_end = np.zeros(n)
    comb_end = np.zeros(n)
    compute_done = [0]
    all_computed = env.event()

    def give(pc: _Pieces, k, delay):
        """Hand the receivers of pieces ``k`` the bytes that arrived since their last batch."""
        k = k[~pc.full[k]]
        if not len(k):
            return
        fb = pc.fab
        f = pc.flow[k]
        i, j = pc.src[k], pc.dst[k]
        rem, tot = fb.rem[f], fb.bytes[f]
        done = ~unfinished(rem, tot)
        sent = tot - rem if pc.whole else pc.nbytes[k] * ((tot - rem) / tot)
        got = np.where(done, pc.nbytes[k], sent) - pc.handed[k]
        # tokens are atomic: hand whole tokens, the rest when the piece is complete
        got = np.where(done, got, np.floor(got / token_bytes) * token_bytes)
        send = got > 1e-3 + 1e-6 * pc.nbytes[k]
        pc.handed[k] = np.where(done, pc.nbytes[k], pc.handed[k] + np.where(send, got, 0.0))
        pc.full[k[done]] = True
        idx = np.flatnonzero(send | done)
        if not len(idx):
            return
        order = idx[np.argsort(j[idx], kind="stable")]  # by receiver, pieces in their order
        js = j[order]
        cut = (np.flatnonzero(np.diff(js)) + 1).tolist()
        starts = [0] + cut
        n_done = np.add.reduceat(done[order].astype(np.int64), starts).tolist()
        items = []
        for a, b, nd in zip(starts, cut + [len(js)], n_done):
            sl = order[a:b]
            ss = sl[send[sl]]
            items.append((int(js[a]), (i[ss], got[ss], nd)))
        if delay > 0:  # one event for all receivers
            env.timeout(delay).callbacks.append(lambda _e: [deliver(*x) for x in items])
        else:
            for x in items:
                deliver(*x)

    def hand_out(plane, perm):
        """End of a matching: each receiver gets the bytes that arrived since its last batch."""
        if not overlap:
            return
        net.sync()
        a = np.flatnonzero(perm >= 0)
        give(circ, circ.of(fid_u[a, perm[a]]), lat)

    ocs.on_matching_end = hand_out

    def hand_rest(g, ids):
        """Bytes beside the circuits (NVLink, electrical): one batch when all have arrived."""
        yield net_s.arrival(g)
        net_s.sync()
        give(stat, stat.of(ids), 0.0)

    def arrived(j):
        ev = [net.arrival(unit[j])]
        if st is not None:
            ev += [net_s.arrival(j), net_s.arrival(n + j)]
        return env.all_of(ev)

    def gpu(j):
        # batch 0: own tokens (plus shared experts, inside batch_time)
        own = T[j, j][None, :]
        t = float(batch_time(own, local=True)[0])
        unbatched[j] = float(batch_time(T[j].sum(axis=0)[None, :], local=True)[0])
        if own.sum() > 0 or t > 0:
            batches.append((j, float(own.sum())))
            yield env.timeout(t)
            busy[j] += t
        if overlap:
            pieces_left = int(pieces_into[j])
            while pieces_left > 0:
                if not inbox[j]:
                    waiting[j] = env.event()
                    yield waiting[j]
                items, inbox[j] = inbox[j], []  # everything that arrived while busy: one batch
                if len(items) == 1:
                    srcs, nbytes, k = items[0]
                    pieces_left -= k
                else:
                    pieces_left -= sum(it[2] for it in items)
                    srcs = np.concatenate([it[0] for it in items])
                    nbytes = np.concatenate([it[1] for it in items])
                if not len(srcs):
                    continue
                if len(srcs) == 1:
                    s0 = int(srcs[0])
                    tok = T[j, s0] * (float(nbytes[0]) / D[s0, j])
                else:
                    tok = (nbytes / D[srcs, j]) @ T[j, srcs]
                t = float(batch_time(tok[None, :])[0])
                batches.append((j, float(np.add.reduce(tok))))
                yield env.timeout(t)
                busy[j] += t
                send_back(j, srcs, nbytes)
        else:
            yield arrived(j)
            srcs = np.flatnonzero(D[:, j])
            if len(srcs):
                tok = T[j, srcs].sum(axis=0)
                t = float(batch_time(tok[None, :])[0])
                batches.append((j, float(tok.sum())))
                yield env.timeout(t)
                busy[j] += t
                send_back(j, srcs, D[srcs, j])
        c_end[j] = env.now
        for a in np.flatnonzero(hold_c[:, j]):
            net.release(U + a)
        for i in np.flatnonzero(hold_s[:, j]):
            net_s.release(2 * n + i)
        compute_done[0] += 1
        if compute_done[0] == n:
            all_computed.succeed()
        ev = [net.arrival(U + unit[j])]
        if st is not None:
            ev.append(net_s.arrival(2 * n + j))
        yield env.all_of(ev)
        comb_end[j] = env.now

    # combine flow per (sender, receiver, kind) still sending: a later batch's bytes join it
    # (the sender queues them behind; completion of the receiver's bytes is what counts)
    open_c = np.full((U, U), -1, np.int64)
    open_s = np.full((2, n, n), -1, np.int64)

    def combine_flows(nw, fb, opened, s_, d_, nbytes, group_off, lst):
        """Send combine bytes s_ -> d_ (arrays), extending flows that are still open."""
        if len(d_) == 1:  # the common case (one source per batch): scalar work
            if not nbytes[0] > 0:
                return
            a, b = int(s_[0]), int(d_[0])
            f = int(opened[a, b])
            if f >= 0 and np.isnan(fb.finish[f]):
                nw.extend(f, float(nbytes[0]))
                return
            nw.left[group_off + b] += 1
            ids = nw.send(s_, d_, nbytes, group_off + d_, priority=1)
            opened[a, b] = ids[0] if len(ids) else -1
            lst.append(ids)
            return
        f = opened[s_, d_]
        ext = f >= 0
        if ext.any():
            ext[ext] = np.isnan(fb.finish[f[ext]])
        if ext.any():
            nw.extend(f[ext], nbytes[ext])
        new = ~ext
        if new.any():
            s_, d_, nb = s_[new], d_[new], nbytes[new]
            if len(d_) == 1:
                nw.left[group_off + int(d_[0])] += 1
            else:
                nw.expect_many(group_off + d_, 1)
            ids = nw.send(s_, d_, nb, group_off + d_, priority=1)
            opened[s_, d_] = ids
            lst.append(ids)

    def send_back(j, srcs, nbytes):
        # combine bytes may ride any circuit to their destination, at lower priority than
        # dispatch bytes on the same circuit (so the dispatch schedule is served as planned)
        if len(srcs) > 1:  # a pair's pieces (handed twice, circuit and electrical): one sum
            srcs, inv = np.unique(srcs, return_inverse=True)
            nbytes = np.bincount(inv, weights=nbytes)
        if G == 1 and not eps:
            combine_flows(net, fab, open_c, srcs * 0 + j, srcs, nbytes, U, comb_circ)
            return
        b = unit[j]
        a = unit[srcs]
        same = a == b
        fe = share_c[b, a]
        bc = np.where(same, 0.0, nbytes * (1.0 - fe))
        if bc.any():
            per = np.bincount(a, weights=bc, minlength=U)
            to = np.flatnonzero(per > 0)
            combine_flows(net, fab, open_c, to * 0 + b, to, per[to], U, comb_circ)
        for kind, bytes_, lst in ((0, np.where(same, nbytes, 0.0), comb_nv),
                                  (1, np.where(same, 0.0, nbytes * fe), comb_eps)):
            sel = bytes_ > 0
            if sel.any():
                combine_flows(net_s, fab_s, open_s[kind], srcs[sel] * 0 + j, srcs[sel],
                              bytes_[sel], 2 * n, lst)

    def watch_dispatch(j):
        yield arrived(j)
        d_end[j] = env.now

    rounds = {"dispatch": [], "combine": []}

    def execute(Ru, phase, pl=None):
        per = pl if pl is not None else plan(Ru)
        rounds[phase].append(per[0])
        procs = [env.process(ocs.run(k, s.matchings, s.durations_s)) for k, s in enumerate(per)]
        yield env.all_of(procs)

    def remaining(ids_list):
        """Circuit bytes still to send per endpoint pair among the flows ``ids_list``."""
        net.sync()
        R = np.zeros((U, U))
        if ids_list:
            ids = np.concatenate(ids_list)
            r = fab.rem[ids]
            live = unfinished(r, fab.bytes[ids])
            np.add.at(R, (fab.src[ids[live]], fab.dst[ids[live]]), r[live])
        return R

    def controller():
        R = remaining([circ_ids])
        pl = plan_d
        while R.sum() > 0:
            yield from execute(R, "dispatch", pl)
            pl = None
            R2 = remaining([circ_ids])
            if R2.sum() >= R.sum():
                raise RuntimeError(f"scheduler {spec!r} made no progress on the dispatch matrix")
            R = R2
        # combine: with overlap, the first round is planned on the whole combine matrix as soon
        # as dispatch ends (batches computed by then go out at once); every later round waits
        # until all compute is done and serves what is left. Without overlap only the latter.
        if overlap and Du.sum() > 0:
            yield from execute(None, "combine", plan_c)
        while True:
            if not all_computed.triggered:
                yield all_computed
            R = remaining(comb_circ)
            if R.sum() <= 0:
                return
            before = R.sum()
            yield from execute(R, "combine")
            if remaining(comb_circ).sum() >= before:
                raise RuntimeError(f"scheduler {spec!r} made no progress on the combine matrix")

    for j in range(n):
        env.process(gpu(j))
        env.process(watch_dispatch(j))
        if overlap and st is not None:
            for g, ids in ((j, nv_ids), (n + j, eps_ids)):
                mine = ids[fab_s.dst[ids] == j]
                if len(mine):
                    env.process(hand_rest(g, mine))
    env.process(controller())
    env.run()
    for fb in (fab, fab_s) if st is not None else (fab,):
        if fb.n_act or fb.n_parked or np.isnan(fb.finish[: fb.n]).any():
            raise RuntimeError("OCS layer ended with undelivered bytes")

    layer_end = float(comb_end.max())
    first = rounds["dispatch"][0] if rounds["dispatch"] else plan_d[0]
    own = lambda s: int(s.meta.get("own_matchings", s.n_matchings))  # noqa: E731
    n_own = own(first) + (own(rounds["combine"][0]) if rounds["combine"] else 0)
    n_all = sum(s.n_matchings for ph in rounds.values() for s in ph)
    btok = np.array([b[1] for b in batches if b[1] > 0]) if batches else np.zeros(1)
    cap = ocs.stats.circuit_capacity_bytes
    on_circ = float(fab.bytes[: fab.n].sum())
    side = lambda ids, extra: float(fab_s.bytes[np.concatenate([ids] + extra)].sum()) if st else 0.0  # noqa: E731
    scale = 1 if spec.split(":")[0] in ("spectra", "hier_bvn") else planes
    lb = first.meta.get("leftover_bytes_before_fallback")
    out = {
        "layer_s": layer_end,
        "dispatch_s": float(d_end.max()),
        "compute_s": float(busy.max()),
        "combine_s": float(max(0.0, layer_end - c_end.max())),
        "bytes_delivered": on_circ + (float(fab_s.bytes[: fab_s.n].sum()) if st else 0.0),
        "events": int(fab.events + (fab_s.events if st else 0)),
        "rate_recomputes": int(fab.recomputes + (fab_s.recomputes if st else 0)),
        "n_matchings": n_own,
        "fallback_matchings": int(n_all - n_own),
        "reconfig_total_s": float(ocs.stats.reconfig_total_s / planes),
        "bubble_fraction": float(1.0 - on_circ / cap) if cap > 0 else 0.0,
        "pad_fraction": float(first.meta.get("padded_fraction", 0.0)),
        "leftover_bytes": float(lb * scale if lb is not None else first.leftover.sum()),
        "eps_bytes": side(eps_ids, comb_eps),
        "nvlink_bytes": side(nv_ids, comb_nv),
        "batches": int(len(batches)),
        "mean_batch_tokens": float(btok.mean()),
        "min_batch_tokens": float(btok.min()),
        "compute_overhead_s": float((busy - unbatched).max()),
        "lower_bound_s": float(first.meta.get("lower_bound_s", np.nan)),
        "sim_wall_s": time.perf_counter() - t0,
    }
    return out
