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
   ``batching=per_matching``: no merging; every matching's batch is its own kernel launch and
   pays the fixed cost (the fragmentation a schedule of many matchings causes when the runtime
   does not coalesce).
   ``overlap=False``: a GPU waits for all its dispatch data, then computes once per expert.
3. **Combine.** A finished batch's results (the same bytes) go back to their source GPUs as
   new flows on the reverse circuits j->i. Rule: once the dispatch schedule has ended, the
   scheduler plans the whole combine matrix (with overlap, before all of it is computed); the
   OCS executes it; bytes not ready in time, and bytes of batches finishing later, are served by
   further rounds on what is ready (waiting for the next batch if nothing is). With overlap,
   combine bytes may ride any circuit to their destination, dispatch circuits still up included.
   ``overlap=False`` is a strict barrier: results are held until every GPU has computed and the
   dispatch schedule has ended (``combine_start_s``); then they are sent at once and the combine
   is the schedule of D^T, executed alone.

**Raw matrices (``--traffic M.npy``).** The matrix is the dispatch: one schedule of it, executed
as above, no compute, no combine (``batches`` 0). ``traffic_combine=True`` adds the combine, the
transpose, after a compute phase linear in the bytes a GPU received (``traffic_compute_us`` for
the GPU receiving the most; no fixed cost per batch), with the same overlap and barrier rules.

**Columns.** ``bubble_fraction``: of the port time of held circuits (every port of every plane
for every matching's duration, reconfigurations excluded), the fraction that carried no byte,
whichever phase's bytes a circuit carried; the same definition as
:attr:`netsim.schedule.Schedule.bubble_fraction`, which a dispatch-only raw-matrix run
reproduces. ``idle_circuit_fraction``: the same over the established circuits only (an idle port
is not counted). ``overlap_bound_s``: a lower bound on the layer under any schedule
(:meth:`_OcsLayer.overlap_bound`).

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

import time
from functools import partial

import numpy as np
import simpy

from netsim.circuit_fabric import circuit_topology, make_planner, static_topology
from netsim.devices.network import GroupBlocks, Network
from netsim.devices.ocs import OCS, circuit_ids
from netsim.engines._circuit_kernels import hand_pieces
from netsim.errors import ConfigError
from netsim.fabric.flow import FlowFabric, unfinished
from netsim.layer import LayerResult, PreparedLayer


#: above this many GPUs the per-batch arithmetic reads numpy arrays, not nested lists (memory)
_LISTS_MAX_GPUS = 1024


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


def simulate(setup: PreparedLayer) -> LayerResult:
    """The circuit engine: run the prepared layer over its topology's scheduled OCS."""
    t0 = time.perf_counter()
    layer = _OcsLayer(setup)
    layer.run()
    row = layer.row(t0)
    return LayerResult(layer.d_end.copy(), layer.c_end.copy(), row["layer_s"],
                       row.pop("bytes_delivered"), row.pop("events"), row.pop("rate_recomputes"),
                       extra=row)


class _OcsLayer:
    """One MoE layer over a scheduled OCS (see the module docstring): the circuit fabric and the
    one beside it (NVLink, electrical), their SimPy networks, the OCS, the GPUs' state and the
    scheduler's plans. Build it, :meth:`run` it, then read :meth:`row`."""

    #: GPUs share the events of their wake-ups and batch ends (:meth:`_deliver`, :meth:`_sleep`);
    #: False: one event each, as a SimPy process per GPU had (the rows are the same; tested)
    share_events = True

    def __init__(self, setup: PreparedLayer) -> None:
        m = setup.spec.model  # netsim.spec.CircuitSpec
        raw = setup.layer is None  # a --traffic matrix: bytes, no MoE model
        if m.traffic_combine and not raw:
            raise ConfigError("traffic_combine=True applies to --traffic runs (an MoE layer always"
                              " has its combine); drop it or give --traffic M.npy")
        self.combine = not raw or bool(m.traffic_combine)
        self.per_matching = m.batching == "per_matching"
        self.spec_raw = raw
        cf = self.cf = setup.circuits
        n = self.n = cf.n  # GPUs
        self.G = cf.group  # GPUs per endpoint (server; 1 on ocs_direct)
        self.U, self.planes = cf.units, cf.planes  # endpoints, circuit planes (ports per GPU)
        self.lat = cf.latency_s  # s, one circuit hop
        mode = m.ocs_mode
        self.overlap = bool(m.overlap)
        self.spec = m.scheduler  # netsim.schedule.SchedulerSpec
        self.plan = make_planner(self.spec, cf)
        D = self.D = setup.dispatch.copy()  # D[i, j]: dispatch bytes from GPU i to GPU j
        np.fill_diagonal(D, 0.0)
        self.unit = np.arange(n) // self.G  # endpoint (server, or GPU) of each GPU
        self.eps = cf.eps_Bps > 0
        if raw:  # bytes are the "tokens" (one slot per GPU); linear compute, no fixed cost
            self.T = np.ascontiguousarray(D.T)[:, :, None]
            recv = float(D.sum(axis=0).max(initial=0.0))
            spb = m.traffic_compute_us * 1e-6 / recv if recv > 0 else 0.0

            def batch_time(tok, local: bool = False, _spb=spb) -> np.ndarray:
                return np.atleast_2d(np.asarray(tok, np.float64)).sum(axis=1) * _spb

            self.batch_time = batch_time
            self.token_bytes = 1.0
        else:
            self.T = setup.tokens_to  # T[j, i, s]: tokens from GPU i for GPU j's expert slot s
            self.batch_time = setup.batch_time  # (k x slots tokens, local=False) -> s per row
            self.token_bytes = float(setup.layer.hidden * setup.layer.dtype_bytes)

        self._plan_ahead()
        self._build_fabrics(mode, m.tolerance)
        src, dst, same = self._send_dispatch()
        self._hold_combine(src, dst, same)

        # per GPU: batches handed over and not yet taken, and whether it waits for one
        self.inbox: list[list] = [[] for _ in range(n)]
        self.waiting: list[bool] = [False] * n
        self.pieces_into = np.bincount(self.circ.dst, minlength=n)  # pieces each GPU receives
        if self.has_static:
            self.pieces_into += np.bincount(self.stat.dst, minlength=n)
        self._left = self.pieces_into.tolist()  # pieces each GPU has not yet seen complete
        self._cur: list = [None] * n  # the batch a GPU computes: (s, source(s), bytes)
        self._loop_done: list = [None] * n  # event a GPU's process sleeps on during its batches
        self._batch_consts = None  # what every batch's arithmetic reads (:meth:`_consts`)
        # batches' ends scheduled in the event being processed, by time (:meth:`_sleep`)
        self._ends: dict[float, list] = {}
        self._qlen = 0
        self.batches: list[tuple[int, float]] = []  # (gpu, tokens)
        self._as_lists = None  # (T[:, :, 0], D) as lists (:meth:`_lists`)
        self._bt_memo: dict = {}  # a batch's tokens (a float, or a tuple per slot) -> its time, s
        self.busy = [0.0] * n  # s computing (Python floats: the same sums as numpy's)
        self.unbatched = np.zeros(n)  # s to compute all its tokens as one batch
        self.d_end = np.zeros(n)  # s, all dispatch data arrived
        self.c_end = np.zeros(n)  # s, compute finished
        self.comb_end = np.zeros(n)  # s, all combine data back
        self.n_computed = 0
        self.all_computed = self.env.event()
        self.pending: list[tuple] = []  # without overlap: results held until the barrier
        self.combine_start = np.nan  # s, without overlap: when the combine schedule starts
        # combine flow per (sender, receiver, kind) still sending: a later batch's bytes join it
        # (the sender queues them behind; completion of the receiver's bytes is what counts)
        self.open_c = np.full((self.U, self.U), -1, np.int64)
        self.open_s = np.full((2, n, n), -1, np.int64)
        self.comb_circ: list[np.ndarray] = []  # combine flow ids: circuits, NVLink, electrical
        self.comb_nv: list[np.ndarray] = []
        self.comb_eps: list[np.ndarray] = []
        self.rounds: dict[str, list] = {"dispatch": [], "combine": []}  # schedules executed
        self.ocs.on_matching_end = self._hand_out

    # ---- set-up ---------------------------------------------------------------------------------
    def _plan_ahead(self) -> None:
        """Plans made before the layer starts (the combine matrix is D^T, known up front)."""
        Du = self.Du = self.cf.unit_matrix(self.D)
        self.plan_d = self.plan(Du, self.D)
        self.plan_c = self.plan(Du.T.copy(), self.D.T.copy())
        self.share_d = self._eps_share(self.plan_d, Du)
        self.share_c = self._eps_share(self.plan_c, Du.T)

    def _eps_share(self, pl, Mu: np.ndarray) -> np.ndarray:
        """Fraction of each endpoint pair's bytes ``Mu`` that goes electrical: the first
        schedule's leftover (none without an electrical network)."""
        U = self.U
        if not self.eps:
            return np.zeros((U, U))
        f = np.divide(pl[0].leftover, Mu, out=np.zeros((U, U)), where=Mu > 0)
        f = np.clip(f, 0.0, 1.0)
        f[f < 1e-9] = 0.0
        f[f > 1 - 1e-9] = 1.0
        return f

    def _build_fabrics(self, mode: str, tolerance: float) -> None:
        """Two fabrics: circuits between endpoints; NVLink + electrical beside them."""
        cf, n, U = self.cf, self.n, self.U
        env = self.env = simpy.Environment()
        ft, link_of = circuit_topology(cf)
        fab = self.fab = FlowFabric(ft, tolerance=tolerance, capacity=max(16, 4 * U * U))
        fab.cap[:] = 0.0
        fab.prime_routes(*np.nonzero(~np.eye(U, dtype=bool)))  # combine batches add few flows each
        self.groups = GroupBlocks(dispatch=U, combine=U)  # into endpoint b / back into a
        self.net = Network(env, fab, self.groups.total)
        self.ocs = OCS(env, self.net, link_of, cf.rate_Bps, cf.reconfig_s, planes=self.planes,
                       mode=mode)
        st = static_topology(cf)
        self.has_static = st is not None
        self.fab_s = self.net_s = None
        if st is not None:
            self.fab_s = FlowFabric(st, tolerance=tolerance, capacity=max(16, 2 * n * self.G))
            # into GPU j over NVLink / electrical; combine back into i
            self.groups_s = GroupBlocks(nvlink=n, eps=n, combine=n)
            self.net_s = Network(env, self.fab_s, self.groups_s.total)

    def _send_dispatch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start all dispatch flows at time 0 (an endpoint pair's circuit bytes as one flow) and
        index their pieces; return the GPU pairs (src, dst) and which are inside a server."""
        n, G, U, D, unit = self.n, self.G, self.U, self.D, self.unit
        net = self.net
        src, dst = np.nonzero(D)
        a_, b_ = unit[src], unit[dst]
        same = a_ == b_
        fe = self.share_d[a_, b_]
        bc = np.where(same, 0.0, D[src, dst] * (1.0 - fe))  # on circuits
        be = np.where(same, 0.0, D[src, dst] * fe)  # electrical
        bn = np.where(same, D[src, dst], 0.0)  # NVLink
        Bu = np.zeros((U, U))
        if G == 1:
            Bu[src, dst] = bc
        else:
            np.add.at(Bu, (a_, b_), bc)
        us_, ud_ = np.nonzero(Bu)
        gd = self.groups.id("dispatch", ud_)
        np.add.at(net.left, gd, 1)
        self.circ_ids = net.send(us_, ud_, Bu[us_, ud_], gd)
        fid_u = self.fid_u = np.full((U, U), -1, np.int64)  # circuit dispatch flow per pair
        fid_u[us_, ud_] = self.circ_ids
        on = bc > 0
        self.circ = _Pieces(self.fab, fid_u[a_[on], b_[on]], src[on], dst[on], bc[on],
                            whole=G == 1)
        self.nv_ids = self.eps_ids = np.empty(0, np.int64)
        self.stat = None
        if self.has_static:
            net_s, fab_s = self.net_s, self.fab_s
            gs = self.groups_s
            for b, block in ((bn, "nvlink"), (be, "eps")):
                np.add.at(net_s.left, gs.id(block, dst[b > 0]), 1)
            sel = bn > 0
            self.nv_ids = net_s.send(src[sel], dst[sel], bn[sel], gs.id("nvlink", dst[sel]))
            sel = be > 0
            self.eps_ids = net_s.send(src[sel], dst[sel], be[sel], gs.id("eps", dst[sel]))
            ids = np.concatenate([self.nv_ids, self.eps_ids])
            self.stat = _Pieces(fab_s, ids, fab_s.src[ids], fab_s.dst[ids], fab_s.bytes[ids],
                                whole=True)
        return src, dst, same

    def _hold_combine(self, src: np.ndarray, dst: np.ndarray, same: np.ndarray) -> None:
        """Combine holds: each receiver's group holds one count per GPU that will send it
        combine bytes, released when that GPU has finished computing."""
        n, U, unit = self.n, self.U, self.unit
        a_ = unit[src]
        hold_c = self.hold_c = np.zeros((U, n), bool)  # endpoint a gets circuit bytes from GPU j
        hold_s = self.hold_s = np.zeros((n, n), bool)  # GPU i gets NVLink / electrical from j
        if not self.combine:
            return
        fcomb = self.share_c[unit[dst], a_]  # combine j -> i rides circuit B -> A
        hold_c[a_[~same & (fcomb < 1.0)], dst[~same & (fcomb < 1.0)]] = True
        hold_s[src[same | (fcomb > 0.0)], dst[same | (fcomb > 0.0)]] = True
        np.add.at(self.net.left, self.groups.id("combine", np.arange(U)), hold_c.sum(axis=1))
        if self.has_static:
            np.add.at(self.net_s.left, self.groups_s.id("combine", np.arange(n)),
                      hold_s.sum(axis=1))

    # ---- handing dispatch data to the GPUs ------------------------------------------------------
    def _deliver(self, recv: list, bounds: list, n_done: list, src: list, got: list,
                 last: bool = False) -> None:
        """Put batches in the GPUs' inboxes: receiver ``recv[r]`` gets ``got[k]`` B from each
        ``src[k]``, k in ``bounds[r]:bounds[r + 1]``, and ``n_done[r]`` of its pieces completed
        (an inbox item: (src, got, start, end, completed)). The GPUs waiting for one take theirs
        in one event (:meth:`_woken`), in this order.

        One event, not one per GPU, changes nothing: the events a GPU's wake-up would be (each
        scheduled now, one after another, with nothing scheduled between them) are processed one
        after another, nothing between them, since what any of them schedules comes after all of
        them; :meth:`_woken` does what they would do, in their order. ``last``: this is the last
        thing the event being processed does; then, if no other event is due now, that one
        event would be processed next, at once, and :meth:`_woken` runs here instead."""
        inbox, waiting = self.inbox, self.waiting
        wake = []
        for j, a, b, k in zip(recv, bounds, bounds[1:], n_done):
            inbox[j].append((src, got, a, b, k))
            if waiting[j]:
                waiting[j] = False
                wake.append(j)
        if not wake:
            return
        if self.share_events:
            q = self.env._queue
            if last and (not q or q[0][0] > self.env._now):
                self._woken(wake)
            else:
                self.env.timeout(0.0).callbacks.append(partial(self._woken, wake))
        else:
            for j in wake:
                self.env.timeout(0.0).callbacks.append(lambda _e, g=[j]: self._woken(g))

    def _give(self, pc: _Pieces, flows: np.ndarray, delay: float) -> None:
        """Hand the receivers of the pieces of ``flows`` the bytes that arrived since their last
        batch, ``delay`` s from now (the arithmetic: :func:`hand_pieces`)."""
        fb = pc.fab
        recv, n_done, sptr, src, got = hand_pieces(
            flows, pc.ptr, pc.flow, pc.src, pc.dst, pc.nbytes, pc.handed, pc.full, fb.rem,
            fb.bytes, self.token_bytes, pc.whole)
        if not len(recv):
            return
        # lists: scalar reads
        out = (recv.tolist(), sptr.tolist(), n_done.tolist(), src.tolist(), got.tolist())
        if delay > 0:  # one event for all receivers
            self.env.timeout(delay).callbacks.append(lambda _e: self._deliver(*out, True))
        else:
            self._deliver(*out)

    def _hand_out(self, plane: int, perm: np.ndarray) -> None:
        """End of a matching: each receiver gets the bytes that arrived since its last batch."""
        if not (self.overlap and self.combine):
            return
        self.net.sync()
        self._give(self.circ, circuit_ids(perm, self.fid_u), self.lat)

    def _hand_rest(self, g: int, ids: np.ndarray):
        """Process: bytes beside the circuits (NVLink, electrical) of group ``g``, flows ``ids``:
        one batch when all have arrived."""
        yield self.net_s.arrival(g)
        self.net_s.sync()
        self._give(self.stat, ids, 0.0)

    def _arrived(self, j: int) -> simpy.Event:
        """Event: all of GPU j's dispatch data has arrived."""
        ev = [self.net.arrival(self.groups.id("dispatch", self.unit[j]))]
        if self.has_static:
            ev += [self.net_s.arrival(self.groups_s.id("nvlink", j)),
                   self.net_s.arrival(self.groups_s.id("eps", j))]
        return self.env.all_of(ev)

    def _watch_dispatch(self, j: int):
        """Process: record when GPU j's dispatch data has all arrived."""
        yield self._arrived(j)
        self.d_end[j] = self.env.now

    # ---- the GPUs -------------------------------------------------------------------------------
    def _gpu(self, j: int):
        """Process: GPU j computes its own tokens, then its dispatch data (batch by batch with
        overlap, at once without) sending results back, then waits for its combine data. A raw
        matrix without combine: only its dispatch data."""
        if not self.combine:
            yield self._arrived(j)
            self._computed(j)
            self.comb_end[j] = self.env.now
            return
        yield from self._own_batch(j)
        if self.overlap:
            if not self._advance(j, False):  # its batches end inside later events
                ev = self._loop_done[j] = self.env.event()
                yield ev
        else:
            yield from self._compute_all(j)
        self._computed(j)
        ev = [self.net.arrival(self.groups.id("combine", self.unit[j]))]
        if self.has_static:
            ev.append(self.net_s.arrival(self.groups_s.id("combine", j)))
        yield self.env.all_of(ev)
        self.comb_end[j] = self.env.now

    def _own_batch(self, j: int):
        """Batch 0: the tokens GPU j routes to its own experts (plus shared experts, inside
        batch_time); also notes the time all its tokens would take as one batch."""
        T, batch_time = self.T, self.batch_time
        own = T[j, j][None, :]
        t = float(batch_time(own, local=True)[0])
        self.unbatched[j] = float(batch_time(T[j].sum(axis=0)[None, :], local=True)[0])
        if own.sum() > 0 or t > 0:
            self.batches.append((j, float(own.sum())))
            yield self.env.timeout(t)
            self.busy[j] += t

    # ---- with overlap: a GPU's batches, event by event --------------------------------------
    # A GPU computes what it is handed, batch by batch, until all its pieces are complete; each
    # batch's results go back at once. An inbox item is (sources, bytes per source, pieces
    # completed), sources and bytes as lists. The loop is not a SimPy process of its own: it
    # advances in the events that end a GPU's wait (:meth:`_woken`) or its batch
    # (:meth:`_batches_end`), each a plain callback that serves every GPU it concerns in turn,
    # so a layer spends one event on the GPUs that one matching wakes and one on the GPUs whose
    # batches end at the same instant, instead of one SimPy process step each. The order of
    # everything (the fabric's updates, the batches, the events scheduled) is the one the
    # per-GPU events gave: see :meth:`_deliver` and :meth:`_sleep`.

    def _consts(self) -> tuple:
        """What every batch's arithmetic reads, made once: (one slot, the one-slot token table
        and the bytes as lists or None, one source's results in scalars)."""
        if self._batch_consts is None:
            T = self.T
            one_slot = T.shape[2] == 1
            # one slot: tokens from GPU i for GPU j's expert and the bytes, as Python floats (the
            # same IEEE products and quotients as numpy's, without its scalar overhead)
            T1, Dl = self._lists() if one_slot and self.n <= _LISTS_MAX_GPUS else (None, None)
            # one source's results on a circuit fabric of GPUs: one combine flow, in scalars
            scalar = self.G == 1 and not self.eps
            self._batch_consts = (one_slot, T1, Dl, scalar)
        return self._batch_consts

    def _advance(self, j: int, grouped: bool) -> bool:
        """GPU j's batch loop from where it stands (after a batch or a wait): take what its
        inbox holds and start the next batch, or wait for one; True when all its pieces are
        complete (the loop is over). ``grouped``: inside one of this layer's batch events
        (:meth:`_sleep`)."""
        inbox, left = self.inbox[j], self._left
        while left[j] > 0:
            if not inbox:
                self.waiting[j] = True
                return False
            if self.per_matching or len(inbox) == 1:  # each matching's batch its own launch
                src, got, a, b, k = inbox.pop(0)
                left[j] -= k
                if b - a == 1:
                    self._start_one(j, src[a], got[a], grouped)
                    return False
                srcs, nbytes = src[a:b], got[a:b]
            else:  # everything that arrived while busy: one batch
                items = inbox[:]
                inbox.clear()
                left[j] -= sum(it[4] for it in items)
                srcs = [s_ for it in items for s_ in it[0][it[2]:it[3]]]
                nbytes = [x for it in items for x in it[1][it[2]:it[3]]]
                if len(srcs) == 1:
                    self._start_one(j, srcs[0], nbytes[0], grouped)
                    return False
            if srcs:
                self._start_many(j, srcs, nbytes, grouped)
                return False
        return True

    def _batch_time(self, key, tv=None) -> float:
        """Compute time (s) of a batch of tokens ``key`` (a float, one slot; else a tuple per
        slot, ``tv`` the same as an array). batch_time is a pure function of the batch's tokens,
        and a layer's batches repeat few token vectors (whole tokens of few pair sizes): each is
        computed once (the same float, so the rows do not change)."""
        t = self._bt_memo.get(key)
        if t is None:
            t = self._bt_memo[key] = float(self.batch_time((key,) if tv is None else tv)[0])
        return t

    def _one_source_time(self, j: int, s0: int, x: float) -> tuple[float, float]:
        """Tokens and compute time (s) of GPU j's batch of ``x`` B from GPU ``s0``."""
        _one_slot, T1, Dl, _scalar = self._consts()
        if T1 is not None:
            tok = T1[j][s0] * (x / Dl[s0][j])
            t = self._bt_memo.get(tok)
            return tok, (self._batch_time(tok) if t is None else t)
        return self._vector_time(self.T[j, s0] * (x / self.D[s0, j]))

    def _vector_time(self, tv: np.ndarray) -> tuple[float, float]:
        """Tokens and compute time (s) of a batch of ``tv`` tokens per slot."""
        if self._consts()[0]:  # one slot
            tok = float(tv[0])
            return tok, self._batch_time(tok)
        return float(np.add.reduce(tv)), self._batch_time(tuple(tv.tolist()), tv)

    def _start_one(self, j: int, s0: int, x: float, grouped: bool) -> None:
        """GPU j starts computing a batch of ``x`` B from GPU ``s0``."""
        scalar = self._consts()[3]
        tok, t = self._one_source_time(j, s0, x)
        self.batches.append((j, tok))
        self._cur[j] = (t, s0, x) if scalar else (t, [s0], [x])
        self._sleep(j, t, grouped)

    def _start_many(self, j: int, srcs: list, nbytes: list, grouped: bool) -> None:
        """GPU j starts computing a batch of ``nbytes`` B from each of ``srcs`` (lists, two or
        more)."""
        srcs, nbytes = np.array(srcs, np.int64), np.array(nbytes)
        tok, t = self._vector_time((nbytes / self.D[srcs, j]) @ self.T[j, srcs])
        self.batches.append((j, tok))
        self._cur[j] = (t, srcs, nbytes)
        self._sleep(j, t, grouped)

    def _sleep(self, j: int, t: float, grouped: bool) -> None:
        """GPU j's batch ends ``t`` s from now: an event then (:meth:`_batches_end`), shared with
        the GPUs whose batches, started in the event being processed (``grouped``), end at the
        same instant with nothing else scheduled since the shared event.

        Sharing it changes nothing: events at one instant are processed in the order they were
        scheduled (SimPy's heap: time, priority, serial number), so the events these batches'
        ends would be are processed one after another with nothing between them (nothing else
        was scheduled between them; what any of them schedules comes after all of them, and no
        callback here schedules a more urgent event), and :meth:`_batches_end` serves the GPUs
        in the order they joined. Whether something else was scheduled since is read off the
        length of SimPy's queue, which inside one event's processing only grows."""
        env = self.env
        if grouped and self.share_events:
            q = env._queue
            if len(q) != self._qlen:  # something else was scheduled: no event can be shared
                self._ends.clear()
            end = env._now + t  # the time SimPy gives a timeout of t
            gpus = self._ends.get(end)
            if gpus is not None:
                gpus.append(j)
                return
            gpus = self._ends[end] = [j]
            env.timeout(t).callbacks.append(partial(self._batches_end, gpus))
            self._qlen = len(q)
            return
        gpus = [j]
        env.timeout(t).callbacks.append(partial(self._batches_end, gpus))

    def _open_step(self) -> None:
        """An event of this layer's GPU loop starts being processed: no batch end shared yet."""
        self._ends.clear()
        self._qlen = len(self.env._queue)

    def _woken(self, gpus: list, _e=None) -> None:
        """Event: GPUs ``gpus``, which waited, take what they were handed (in this order)."""
        self._serve(gpus, False)

    def _batches_end(self, gpus: list, _e=None) -> None:
        """Event: the batches of GPUs ``gpus`` end (in this order): each adds its time, sends
        its results back and goes on with its loop."""
        self._serve(gpus, True)

    def _serve(self, gpus: list, ended: bool) -> None:
        """GPUs ``gpus``, in this order: (``ended``) add the time of the batch that ends and
        send its results back, then go on with the loop (:meth:`_advance`).

        A one-source batch's results extend the sender's open combine flow through the
        network (:meth:`Network.extend`: bring the fabric up to now, extend, wake the network
        process) the first time in this event, and directly on the fabric after
        (:meth:`FlowFabric.extend`): the network is then up to now and its process woken
        already, so its wrapper would do nothing more (the instant does not change inside an
        event, and the network process does not run).

        The common next step, a one-source batch of the one inbox item (one slot, a circuit
        fabric of GPUs, shared events), is :meth:`_advance`'s step and :meth:`_start_one` inline
        (the same calls, in the same order), with what they read loaded once per event."""
        self._open_step()
        busy, cur, fab, net, open_c = self.busy, self._cur, self.fab, self.net, self.open_c
        inbox, left, waiting = self.inbox, self._left, self.waiting
        _one_slot, T1, Dl, scalar = self._consts()
        fast = T1 is not None and scalar and self.share_events
        per_matching = self.per_matching
        memo, add_batch, sleep = self._bt_memo, self.batches.append, self._sleep
        synced = False  # the circuit network brought up to now (and woken) in this event
        for j in gpus:
            if ended:
                t, srcs, nbytes = cur[j]
                busy[j] += t
                if type(srcs) is int:  # one source on a circuit fabric of GPUs: in scalars
                    f = int(open_c[j, srcs])
                    fin = fab.finish[f] if synced and f >= 0 else 0.0
                    if fin != fin:  # open (NaN: not finished): extend it
                        fab.extend(f, nbytes)
                    else:
                        self._combine_one(net, fab, open_c, j, srcs, nbytes, self.groups,
                                          self.comb_circ)
                        synced = synced or nbytes > 0  # (it extended or sent: both sync)
                else:
                    self._send_back(j, np.asarray(srcs, np.int64),
                                    np.asarray(nbytes, np.float64))
            box = inbox[j]
            if left[j] > 0:
                if not box:  # wait for more
                    waiting[j] = True
                    continue
                if fast and (per_matching or len(box) == 1):
                    src, got, a, b, k = box[0]
                    if b - a == 1:  # one source: _advance's step and _start_one, inline
                        del box[0]
                        left[j] -= k
                        s0, x = src[a], got[a]
                        tok = T1[j][s0] * (x / Dl[s0][j])  # _one_source_time's one-slot case
                        t = memo.get(tok)
                        if t is None:
                            t = self._batch_time(tok)
                        add_batch((j, tok))
                        cur[j] = (t, s0, x)
                        sleep(j, t, True)
                        continue
            if self._advance(j, True):
                self._loop_over(j)

    def _loop_over(self, j: int) -> None:
        """GPU j's batches are all computed: its process goes on at once (its event processed
        here, as SimPy would, so the process runs now, inside this event, as it did when the
        loop was part of it)."""
        ev = self._loop_done[j]
        self._loop_done[j] = None
        ev._ok, ev._value = True, None
        callbacks, ev.callbacks = ev.callbacks, None
        for cb in callbacks:
            cb(ev)

    def _lists(self) -> tuple[list, list]:
        """T[:, :, 0] and D as nested lists, made once for all GPUs."""
        if self._as_lists is None:
            self._as_lists = (self.T[:, :, 0].tolist(), self.D.tolist())
        return self._as_lists

    def _compute_all(self, j: int):
        """Without overlap: wait for all of GPU j's dispatch data, compute it as one batch and
        keep the results for the barrier (:meth:`_barrier`)."""
        yield self._arrived(j)
        D = self.D
        srcs = np.flatnonzero(D[:, j])
        if len(srcs):
            tok = self.T[j, srcs].sum(axis=0)
            t = float(self.batch_time(tok[None, :])[0])
            self.batches.append((j, float(tok.sum())))
            yield self.env.timeout(t)
            self.busy[j] += t
            self.pending.append((j, srcs, D[srcs, j]))

    def _computed(self, j: int) -> None:
        """GPU j has finished computing: release its combine holds (with overlap; without, the
        barrier releases them all)."""
        self.c_end[j] = self.env.now
        if self.overlap or not self.combine:
            self._release(j)
        self.n_computed += 1
        if self.n_computed == self.n:
            self.all_computed.succeed()

    def _release(self, j: int) -> None:
        """GPU j will send no more combine bytes: release its holds on the receivers' groups."""
        for a in np.flatnonzero(self.hold_c[:, j]):
            self.net.release(self.groups.id("combine", int(a)))
        for i in np.flatnonzero(self.hold_s[:, j]):
            self.net_s.release(self.groups_s.id("combine", int(i)))

    def _barrier(self) -> None:
        """Without overlap: every GPU has computed and the dispatch schedule has ended; send all
        the results at once (the combine schedule, planned next, is the schedule of D^T)."""
        self.combine_start = self.env.now
        for j, srcs, nbytes in self.pending:
            self._send_back(j, srcs, nbytes)
        self.pending = []
        for j in range(self.n):
            self._release(j)

    # ---- combine flows --------------------------------------------------------------------------
    def _send_back(self, j: int, srcs: np.ndarray, nbytes: np.ndarray) -> None:
        """Send a batch's results, ``nbytes`` B per source in ``srcs``, from GPU j back."""
        # combine bytes may ride any circuit to their destination, at lower priority than
        # dispatch bytes on the same circuit (so the dispatch schedule is served as planned)
        if len(srcs) == 1 and self.G == 1 and not self.eps:  # the common case, in scalars
            self._combine_one(self.net, self.fab, self.open_c, j, int(srcs[0]), float(nbytes[0]),
                              self.groups, self.comb_circ)
            return
        if len(srcs) > 1:  # a pair's pieces (handed twice, circuit and electrical): one sum
            srcs, inv = np.unique(srcs, return_inverse=True)
            nbytes = np.bincount(inv, weights=nbytes)
        U, unit, combine = self.U, self.unit, self._combine_flows
        if self.G == 1 and not self.eps:
            combine(self.net, self.fab, self.open_c, srcs * 0 + j, srcs, nbytes, self.groups,
                    self.comb_circ)
            return
        b = unit[j]
        a = unit[srcs]
        same = a == b
        fe = self.share_c[b, a]
        bc = np.where(same, 0.0, nbytes * (1.0 - fe))
        if bc.any():
            per = np.bincount(a, weights=bc, minlength=U)
            to = np.flatnonzero(per > 0)
            combine(self.net, self.fab, self.open_c, to * 0 + b, to, per[to], self.groups,
                    self.comb_circ)
        for kind, bytes_, lst in ((0, np.where(same, nbytes, 0.0), self.comb_nv),
                                  (1, np.where(same, 0.0, nbytes * fe), self.comb_eps)):
            sel = bytes_ > 0
            if sel.any():
                combine(self.net_s, self.fab_s, self.open_s[kind], srcs[sel] * 0 + j, srcs[sel],
                        bytes_[sel], self.groups_s, lst)

    @staticmethod
    def _combine_one(nw: Network, fb: FlowFabric, opened: np.ndarray, a: int, b: int, x: float,
                     groups: GroupBlocks, lst: list) -> None:
        """:meth:`_combine_flows` of one pair a -> b, ``x`` B, in scalars."""
        if not x > 0:
            return
        f = int(opened[a, b])
        if f >= 0 and fb.finish[f] != fb.finish[f]:  # still sending (finish is NaN)
            nw.extend(f, x)
            return
        g = groups.id("combine", b)
        nw.left[g] += 1
        ids = nw.send(np.array([a]), np.array([b]), np.array([x]), np.array([g]), priority=1)
        opened[a, b] = ids[0] if len(ids) else -1
        lst.append(ids)

    @staticmethod
    def _combine_flows(nw: Network, fb: FlowFabric, opened: np.ndarray, s_: np.ndarray,
                       d_: np.ndarray, nbytes: np.ndarray, groups: GroupBlocks, lst: list) -> None:
        """Send combine bytes s_ -> d_ (arrays) on network ``nw`` into its ``combine`` groups,
        extending the flows still open in ``opened``; new flows' ids are appended to ``lst``."""
        if len(d_) == 1:  # the common case (one source per batch): scalar work
            _OcsLayer._combine_one(nw, fb, opened, int(s_[0]), int(d_[0]), float(nbytes[0]),
                                   groups, lst)
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
                nw.left[groups.id("combine", int(d_[0]))] += 1
            else:
                nw.expect_many(groups.id("combine", d_), 1)
            ids = nw.send(s_, d_, nb, groups.id("combine", d_), priority=1)
            opened[s_, d_] = ids
            lst.append(ids)

    # ---- the scheduler's rounds -----------------------------------------------------------------
    def _controller(self):
        """Process: the dispatch rounds, then the combine rounds."""
        yield from self._dispatch_rounds()
        yield from self._combine_rounds()

    def _dispatch_rounds(self):
        """Execute the dispatch plan, then plan and execute what remains until nothing does."""
        R = self._remaining([self.circ_ids])
        pl = self.plan_d
        while R.sum() > 0:
            yield from self._execute(R, "dispatch", pl)
            pl = None
            R2 = self._remaining([self.circ_ids])
            if R2.sum() >= R.sum():
                raise RuntimeError(
                    f"scheduler {self.spec.canon!r} made no progress on the dispatch matrix")
            R = R2

    def _combine_rounds(self):
        """Execute combine schedules until every combine byte on the circuits is delivered."""
        # combine: with overlap, the first round is planned on the whole combine matrix as soon
        # as dispatch ends (batches computed by then go out at once); every later round waits
        # until all compute is done and serves what is left. Without overlap only the latter.
        if not self.combine:
            return
        if self.overlap and self.Du.sum() > 0:
            yield from self._execute(None, "combine", self.plan_c)
        if not self.overlap:
            if not self.all_computed.triggered:
                yield self.all_computed
            self._barrier()
        while True:
            if not self.all_computed.triggered:
                yield self.all_computed
            R = self._remaining(self.comb_circ)
            if R.sum() <= 0:
                return
            before = R.sum()
            yield from self._execute(R, "combine")
            if self._remaining(self.comb_circ).sum() >= before:
                raise RuntimeError(
                    f"scheduler {self.spec.canon!r} made no progress on the combine matrix")

    def _execute(self, Ru: np.ndarray | None, phase: str, pl=None):
        """Run schedule ``pl`` (default: the scheduler's plan of endpoint matrix ``Ru``, in B)
        on every plane; wait until all planes are done."""
        per = pl if pl is not None else self.plan(Ru)
        self.rounds[phase].append(per[0])
        env, ocs = self.env, self.ocs
        procs = [env.process(ocs.run(k, s.matchings, s.durations_s)) for k, s in enumerate(per)]
        yield env.all_of(procs)

    def _remaining(self, ids_list: list[np.ndarray]) -> np.ndarray:
        """Circuit bytes still to send per endpoint pair among the flows ``ids_list``."""
        self.net.sync()
        U, fab = self.U, self.fab
        R = np.zeros((U, U))
        if ids_list:
            ids = np.concatenate(ids_list)
            r = fab.rem[ids]
            live = unfinished(r, fab.bytes[ids])
            np.add.at(R, (fab.src[ids[live]], fab.dst[ids[live]]), r[live])
        return R

    # ---- running and results --------------------------------------------------------------------
    def run(self) -> None:
        """Start the processes and run the layer to its end."""
        env, n = self.env, self.n
        for j in range(n):
            env.process(self._gpu(j))
            env.process(self._watch_dispatch(j))
            if self.overlap and self.has_static and self.combine:
                for g, ids in ((self.groups_s.id("nvlink", j), self.nv_ids),
                               (self.groups_s.id("eps", j), self.eps_ids)):
                    mine = ids[self.fab_s.dst[ids] == j]
                    if len(mine):
                        env.process(self._hand_rest(g, mine))
        env.process(self._controller())
        env.run()
        for fb in (self.fab, self.fab_s) if self.has_static else (self.fab,):
            if fb.n_act or fb.n_parked or np.isnan(fb.finish[: fb.n]).any():
                raise RuntimeError("OCS layer ended with undelivered bytes")

    @staticmethod
    def _own_matchings(s) -> int:
        """Matchings of schedule ``s`` itself (without those its fallback added)."""
        return int(s.meta.get("own_matchings", s.n_matchings))

    def _side_bytes(self, ids: np.ndarray, extra: list[np.ndarray]) -> float:
        """Bytes of flows ``ids`` and ``extra`` on the fabric beside the circuits."""
        if not self.has_static:
            return 0.0
        return float(self.fab_s.bytes[np.concatenate([ids] + extra)].sum())

    def row(self, t0: float) -> dict:
        """The run's results (times in s, bytes in B); ``t0``: ``time.perf_counter()`` when the
        run started."""
        fab, fab_s, busy, planes = self.fab, self.fab_s, np.array(self.busy), self.planes
        rounds = self.rounds
        layer_end = float(self.comb_end.max())
        first = rounds["dispatch"][0] if rounds["dispatch"] else self.plan_d[0]
        own = self._own_matchings
        n_own = own(first) + (own(rounds["combine"][0]) if rounds["combine"] else 0)
        n_all = sum(s.n_matchings for ph in rounds.values() for s in ph)
        batches = self.batches
        btok = np.array([b[1] for b in batches if b[1] > 0]) if batches else np.zeros(1)
        stats = self.ocs.stats
        cap = stats.circuit_capacity_bytes
        on_circ = float(fab.bytes[: fab.n].sum())
        side = self.has_static
        scale = 1 if self.spec.name in ("spectra", "hier_bvn") else planes
        lb = first.meta.get("leftover_bytes_before_fallback")
        bound = self.overlap_bound()
        extra = {}
        if self.combine and self.spec_raw:  # a raw matrix with its combine: the generic columns
            d_i, c_i = self.cf.ideal_bounds(self.D)  # know no combine phase (netsim.layer)
            comp = float(self.unbatched.max())
            ideal = d_i + comp + c_i
            extra = {"compute_s": float(busy.max()), "ideal_combine_s": c_i, "serial_ideal_s": ideal,
                     "ratio_to_serial_ideal": layer_end / ideal if ideal > 0 else 1.0,
                     "bytes_total": 2.0 * float(self.D.sum()),
                     "flows": 2 * int(np.count_nonzero(self.D))}
        return {
            "layer_s": layer_end,
            "dispatch_s": float(self.d_end.max()),
            "compute_s": float(busy.max()),
            "combine_s": float(max(0.0, layer_end - self.c_end.max())),
            "bytes_delivered": on_circ + (float(fab_s.bytes[: fab_s.n].sum()) if side else 0.0),
            "events": int(fab.events + (fab_s.events if side else 0)),
            "rate_recomputes": int(fab.recomputes + (fab_s.recomputes if side else 0)),
            "n_matchings": n_own,
            "fallback_matchings": int(n_all - n_own),
            "reconfig_total_s": float(stats.reconfig_total_s / planes),
            "bubble_fraction": (float(1.0 - on_circ / stats.port_capacity_bytes)
                                if stats.port_capacity_bytes > 0 else 0.0),
            "idle_circuit_fraction": float(1.0 - on_circ / cap) if cap > 0 else 0.0,
            "pad_fraction": float(first.meta.get("padded_fraction", 0.0)),
            "leftover_bytes": float(lb * scale if lb is not None else first.leftover.sum()),
            "eps_bytes": self._side_bytes(self.eps_ids, self.comb_eps),
            "nvlink_bytes": self._side_bytes(self.nv_ids, self.comb_nv),
            "batches": int(len(batches)),
            "mean_batch_tokens": float(btok.mean()),
            "min_batch_tokens": float(btok.min()),
            "compute_overhead_s": float((busy - self.unbatched).max()),
            "lower_bound_s": float(first.meta.get("lower_bound_s", np.nan)),
            "overlap_bound_s": bound,
            "ratio_to_bound": layer_end / bound if bound > 0 else 1.0,
            "combine_start_s": float(self.combine_start),
            "sim_wall_s": time.perf_counter() - t0,
            **extra,
        }

    def overlap_bound(self) -> float:
        """A lower bound (s) on this layer under any schedule, overlap or not (docs/ocs_study.md).

        Per circuit endpoint a (a GPU; a server on ``hybrid``), its transmit side carries its
        dispatch out and its combine out (the results of what it received), its receive side its
        dispatch in and combine in: the same bytes B_a = out_a + in_a of the endpoint matrix
        (out_a alone without combine). Over its ``planes`` ports each distinct peer d_a needs a
        circuit set up at least once, and a port carries nothing while its circuit is set up
        (every matching starts with a reconfiguration, the first one too): the busiest plane takes
        >= (d_a * reconfig_s + B_a / rate) / planes, plus one hop's latency. With an electrical
        network beside the circuits bytes can bypass them: B_a / (planes * rate + G * eps) only.
        A GPU also computes all its tokens: >= its compute as one batch (the compute model is
        subadditive: a split batch is never faster, true of the roofline model). NVLink inside a
        server is not counted (the bound stays valid, only looser)."""
        cf, Du = self.cf, self.Du
        out_b, in_b = Du.sum(axis=1), Du.sum(axis=0)
        nz = Du > 0
        if self.combine:  # transmit and receive sides carry the same bytes, the same peers
            sides = [(out_b + in_b, (nz | nz.T).sum(axis=1))]
        else:
            sides = [(out_b, nz.sum(axis=1)), (in_b, nz.sum(axis=0))]
        port = np.zeros(1)
        for B, deg in sides:
            if self.eps:
                t = B / (cf.planes * cf.rate_Bps + self.G * cf.eps_Bps)
            else:
                t = (deg * cf.reconfig_s + B / cf.rate_Bps) / cf.planes
            port = np.maximum(port, np.where(B > 0, t + self.lat, 0.0))
        comp = self.unbatched if self.combine else np.zeros(1)
        return float(max(port.max(initial=0.0), comp.max(initial=0.0)))

