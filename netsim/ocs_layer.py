"""One MoE layer over an optical circuit switch driven by a circuit scheduler.

Used when a run sets ``scheduler`` (on the ``ocs_direct`` topology). What happens:

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

Multiple ports per GPU (``ports=k``) are k planes: the scheduler's schedule runs on every plane
with 1/k of the traffic each, except ``spectra:S`` which gives one schedule per plane (S = k).
The ``ideal`` scheduler means no circuits at all: the layer runs on a crossbar with each GPU's
bandwidth equal to its k ports.
"""
from __future__ import annotations

import numpy as np

from netsim.errors import ConfigError


def circuit_topology(n: int, rate_Bps: float, latency_s: float):
    """N GPUs with a directed circuit link i->j for every pair (capacity set by the OCS)."""
    from netsim.topology import Topology

    t = Topology("ocs_circuits", gpu_forwarding=False)
    g = [t.add_gpu(f"g{i}") for i in range(n)]
    ocs = t.add_ocs("ocs")
    link_of = np.full((n, n), -1, np.int64)
    for i in range(n):
        for j in range(n):
            if i != j:
                link_of[i, j] = t.add_link(g[i], g[j], rate_Bps, latency_s, duplex=False,
                                           tag="circuit", ocs=ocs)[0]
    return t.freeze(), link_of


def simulate_ocs(setup) -> dict:
    """Run the layer of ``setup`` (see :mod:`netsim.scenario`) over a scheduled OCS."""
    import time

    import simpy

    from netsim.devices.network import Network
    from netsim.devices.ocs import OCS
    from netsim.fabric.flow import FlowFabric, unfinished
    from netsim.schedule import get_scheduler
    from netsim.units import gbps, us

    t0 = time.perf_counter()
    p = setup.params
    tp = setup.topo.params
    if setup.topo.name != "ocs_direct":
        raise ConfigError(
            f"scheduler={p['scheduler']!r} needs an OCS topology (ocs_direct); got {setup.topo.name!r}")
    if setup.layer is None:
        raise ConfigError("a circuit-scheduled run needs an MoE workload, not --traffic")
    n = setup.topo.n_gpus
    planes = int(tp.get("ports", 1))
    rate = gbps(tp.get("port_gbps", 400.0))
    delta = us(tp.get("reconfig_us", 10.0))
    lat = us(tp.get("latency_us", 0.0))
    mode = p["ocs_mode"]
    overlap = bool(p["overlap"])
    spec = p["scheduler"]
    sched_fn = get_scheduler(spec)
    is_spectra = spec.split(":")[0] == "spectra"
    if is_spectra:
        s = int(spec.split(":")[1]) if ":" in spec else 1
        if s != planes:
            raise ConfigError(f"scheduler={spec!r} schedules {s} switches; the topology has ports={planes}")
    D = setup.dispatch.copy()
    np.fill_diagonal(D, 0.0)
    T = setup.tokens_to  # T[j, i, s]: tokens from GPU i for GPU j's expert slot s
    batch_time = setup.batch_time

    ft, link_of = circuit_topology(n, rate, lat)
    env = simpy.Environment()
    fab = FlowFabric(ft, tolerance=p["tolerance"], capacity=max(16, 4 * n * n))
    fab.cap[:] = 0.0
    fab.prime_routes(*np.nonzero(~np.eye(n, dtype=bool)))  # combine batches add few flows each
    net = Network(env, fab, 2 * n)
    ocs = OCS(env, net, link_of, rate, delta, planes=planes, mode=mode)

    src, dst = np.nonzero(D)
    np.add.at(net.left, dst, 1)
    fid = np.full((n, n), -1, np.int64)
    fid[src, dst] = net.send(src, dst, D[src, dst], dst)
    handed = np.zeros((n, n))  # dispatch bytes already handed to the receiver as batches
    full = np.zeros((n, n), bool)  # pair fully handed
    token_bytes = float(setup.layer.hidden * setup.layer.dtype_bytes)
    # combine: each GPU i holds one "hold" per GPU j that computes for it (released when j is done)
    holds = (D > 0)  # holds[i, j]: j will send combine bytes to i
    np.add.at(net.left, n + np.arange(n), holds.sum(axis=1))

    stores = [simpy.Store(env) for _ in range(n)]
    comb_flows: list[np.ndarray] = []
    batches: list[tuple[int, float]] = []  # (gpu, tokens)
    busy = np.zeros(n)
    unbatched = np.zeros(n)
    d_end = np.zeros(n)
    c_end = np.zeros(n)
    comb_end = np.zeros(n)
    compute_done = [0]
    all_computed = env.event()

    def hand_out(plane, perm):
        """End of a matching: each receiver gets the bytes that arrived since its last batch."""
        if not overlap:
            return
        net.sync()
        i = np.flatnonzero(perm >= 0)
        j = perm[i]
        f = fid[i, j]
        ok = (f >= 0) & ~full[i, j]
        i, j, f = i[ok], j[ok], f[ok]
        done = ~unfinished(fab.rem[f], fab.bytes[f])
        got = np.where(done, fab.bytes[f], fab.bytes[f] - fab.rem[f]) - handed[i, j]
        # tokens are atomic: hand whole tokens, the rest when the pair's flow is complete
        got = np.where(done, got, np.floor(got / token_bytes) * token_bytes)
        send = got > 1e-3 + 1e-6 * fab.bytes[f]
        handed[i, j] = np.where(done, fab.bytes[f], handed[i, j] + np.where(send, got, 0.0))
        full[i[done], j[done]] = True
        for jj in np.unique(j[send | done]):
            sel = (j == jj) & send
            item = (i[sel], got[sel], int(((j == jj) & done).sum()))
            env.timeout(lat).callbacks.append(lambda _e, jj=jj, item=item: stores[jj].put(item))

    ocs.on_matching_end = hand_out

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
            pairs_left = int(np.count_nonzero(D[:, j]))
            while pairs_left > 0:
                items = [(yield stores[j].get())]
                while stores[j].items:  # everything that arrived while busy: one batch
                    items.append((yield stores[j].get()))
                pairs_left -= sum(it[2] for it in items)
                srcs = np.concatenate([it[0] for it in items])
                nbytes = np.concatenate([it[1] for it in items])
                if not len(srcs):
                    continue
                frac = nbytes / D[srcs, j]
                tok = frac @ T[j, srcs]
                t = float(batch_time(tok[None, :])[0])
                batches.append((j, float(tok.sum())))
                yield env.timeout(t)
                busy[j] += t
                send_back(j, srcs, nbytes)
        else:
            yield net.arrival(j)
            srcs = np.flatnonzero(D[:, j])
            if len(srcs):
                tok = T[j, srcs].sum(axis=0)
                t = float(batch_time(tok[None, :])[0])
                batches.append((j, float(tok.sum())))
                yield env.timeout(t)
                busy[j] += t
                send_back(j, srcs, D[srcs, j])
        c_end[j] = env.now
        for i in np.flatnonzero(holds[:, j]):
            net.release(n + i)
        compute_done[0] += 1
        if compute_done[0] == n:
            all_computed.succeed()
        yield net.arrival(n + j)
        comb_end[j] = env.now

    def send_back(j, srcs, nbytes):
        net.expect_many(n + srcs, 1)
        # combine bytes may ride any circuit to their destination, at lower priority than
        # dispatch bytes on the same circuit (so the dispatch schedule is served as planned)
        ids = net.send(np.full(len(srcs), j), srcs, nbytes, n + srcs, priority=1)
        comb_flows.append(ids)

    def watch_dispatch(j):
        yield net.arrival(j)
        d_end[j] = env.now

    rounds = {"dispatch": [], "combine": []}

    def execute(matrix, phase):
        if is_spectra:
            sched = sched_fn(matrix, rate, delta)
            per = sched.meta.get("per_switch") or [sched]
        else:
            sched = sched_fn(matrix / planes, rate, delta)
            per = [sched] * planes
        rounds[phase].append(sched)
        procs = [env.process(ocs.run(k, s.matchings, s.durations_s)) for k, s in enumerate(per)]
        yield env.all_of(procs)

    def remaining(ids_list):
        """Bytes still to send per GPU pair among the flows ``ids_list``."""
        net.sync()
        R = np.zeros((n, n))
        for ids in ids_list:
            r = fab.rem[ids]
            live = unfinished(r, fab.bytes[ids])
            np.add.at(R, (fab.src[ids[live]], fab.dst[ids[live]]), r[live])
        return R

    def controller():
        disp_ids = fid[fid >= 0]
        R = D.copy()
        while R.sum() > 0:
            yield from execute(R, "dispatch")
            R2 = remaining([disp_ids])
            if R2.sum() >= R.sum():
                raise RuntimeError(f"scheduler {spec!r} made no progress on the dispatch matrix")
            R = R2
        # combine: with overlap, the first round is planned on the whole combine matrix as soon
        # as dispatch ends (batches computed by then go out at once); every later round waits
        # until all compute is done and serves what is left. Without overlap only the latter.
        if overlap:
            yield from execute(D.T.copy(), "combine")
        while True:
            if not all_computed.triggered:
                yield all_computed
            R = remaining(comb_flows)
            if R.sum() <= 0:
                return
            before = R.sum()
            yield from execute(R, "combine")
            if remaining(comb_flows).sum() >= before:
                raise RuntimeError(f"scheduler {spec!r} made no progress on the combine matrix")

    for j in range(n):
        env.process(gpu(j))
        env.process(watch_dispatch(j))
    env.process(controller())
    env.run()
    if fab.n_act or fab.n_parked or np.isnan(fab.finish[: fab.n]).any():
        raise RuntimeError("OCS layer ended with undelivered bytes")

    layer_end = float(comb_end.max())
    first = rounds["dispatch"][0]
    own = lambda s: int(s.meta.get("own_matchings", s.n_matchings))  # noqa: E731
    n_own = own(first) + (own(rounds["combine"][0]) if rounds["combine"] else 0)
    n_all = sum(s.n_matchings for ph in rounds.values() for s in ph)
    btok = np.array([b[1] for b in batches if b[1] > 0]) if batches else np.zeros(1)
    cap = ocs.stats.circuit_capacity_bytes
    out = {
        "layer_s": layer_end,
        "dispatch_s": float(d_end.max()),
        "compute_s": float(busy.max()),
        "combine_s": float(max(0.0, layer_end - c_end.max())),
        "bytes_delivered": float(fab.bytes[: fab.n].sum()),
        "events": int(fab.events),
        "rate_recomputes": int(fab.recomputes),
        "n_matchings": n_own,
        "fallback_matchings": int(n_all - n_own),
        "reconfig_total_s": float(ocs.stats.reconfig_total_s / planes),
        "bubble_fraction": float(1.0 - fab.bytes[: fab.n].sum() / cap) if cap > 0 else 0.0,
        "pad_fraction": float(first.meta.get("padded_fraction", 0.0)),
        "leftover_bytes": float(first.meta.get("leftover_bytes_before_fallback",
                                               first.leftover_bytes.sum())),
        "batches": int(len(batches)),
        "mean_batch_tokens": float(btok.mean()),
        "min_batch_tokens": float(btok.min()),
        "compute_overhead_s": float((busy - unbatched).max()),
        "lower_bound_s": float(first.meta.get("lower_bound_s", np.nan)),
        "sim_wall_s": time.perf_counter() - t0,
    }
    return out
