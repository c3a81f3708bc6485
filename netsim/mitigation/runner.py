"""Multi-iteration runs with mitigations: N successive iterations of one MoE layer.

Timeline. Routing iteration 0 is a *warm-up* (profiling) iteration that is observed, not
simulated: it is what ``relayout=static`` places from, what ``rank_mapping=ep_aware`` predicts
from, and the "previous iteration" of the first simulated one. Iterations 1..N are simulated, each
as a full layer (dispatch, compute, combine) on the flow model, one after another, with every
decision taken *before* the iteration from what was observed *before* it:

1. ``relayout=eplb:R``: before iterations 1, 1+R, 1+2R, ... an EPLB slot table is computed
   from the per-expert loads of the last R observed iterations (ranks aligned to the current
   table) and adopted only if moving pays (:func:`_relayout_pays`: the R iterations it will
   serve, the first carrying the migration, are predicted faster than R on the current table);
   otherwise every expert stays where it is and nothing is charged. Ranks that gain an expert
   fetch its weights during that iteration (flows that start at t=0; the GPU computes only once
   they have arrived); ``migration_bytes`` counts only those experts. ``relayouts`` counts the
   relayouts adopted. ``static``: one table from the warm-up, before the job (free).
2. ``sample_placement``: when the routing has sequence ids (``locality:...``, per-token traces
   with a ``sequence`` column: :meth:`IterRouting.sequences`), the samples are the sequences:
   :func:`netsim.mitigation.assign.sequence_placement` moves sequence fragments to the GPUs
   (and servers) holding their experts when the pairs kept off the network outweigh the moved
   hidden states, knowing each sequence's first half (``predictive``: a sequence's early
   tokens predict its later ones) or every token (``oracle``). Without sequence ids the
   samples are whole micro-batches, assigned from the previous iteration's routing
   (``predictive``) or the current one (``oracle``), which rarely pays: a micro-batch's
   routing is close to the average. Moved tokens are flows that a GPU waits for before its
   dispatch; ``samples_moved`` counts the moved sequence fragments (or micro-batches), 0 when
   the placement found nothing worth moving.
3. the iteration's routing (see :class:`IterRouting`) is drawn, the traffic built with the
   current layout, relabelled by the rank mapping, and simulated.

Fabrics. ``collective=hierarchical``, ``relayout=eplb:R`` and ``sample_placement`` move bytes as
extra flows (relay phase, weight migrations, micro-batch moves): they need ``fabric=flow`` and are
an error with another fabric, which would leave those bytes out. Plain iterations,
``relayout=static`` and ``rank_mapping`` change only the traffic matrix and also run on the
analytic and packet fabrics.

Routing per iteration (:class:`IterRouting`): iteration 0 gets exactly the classic run's counts
(``default_rng(SeedSequence(seed).spawn(2)[0])``). Sources that follow the stream convention of
``netsim.workload.synthetic`` (dirichlet, hot, layerskew, drift, locality, profile) get an rng in
that same state at every iteration, with ``iteration=t``: their layer structure (hot experts)
persists and ``drift`` drifts. ``uniform`` draws a new batch per iteration; ``zipf`` keeps its
ranks (from the same-state rng) and draws a new batch; per-token traces without an iteration
column take a new random window per iteration, traces with one follow it; ``counts:FILE`` is the
same every iteration.

Dispatchers, precisions and kernel models (:mod:`netsim.workload.moe`, ``docs/deepep.md``).
``dispatcher=rank|node`` and ``max_nodes`` draw per-token routing (the same draws as the counts,
:func:`netsim.prepare.route_layer`); ``rank`` changes the matrix, ``node`` needs a two-phase
collective and sends the exact per-server de-duplicated tokens over the network (replacing
``collective=hierarchical``'s estimate :func:`dedup_phase1`, which stays for
``dispatcher=pairs``). ``collective=deepep_normal`` is the hierarchical relay with
``dispatcher=node`` and :data:`DEEPEP_CHUNKS` pipelined chunks; ``collective=deepep_ll`` the
direct all-to-all of every (token, expert) message, each GPU paying :data:`LL_MESSAGE_S` per
message it issues before its flows start, its buffers sized for ``ll_max_tokens`` tokens a rank
(DeepEP's ``num_max_dispatch_tokens_per_rank``; 0: ``tokens_per_gpu``): a layer with more tokens
a GPU is refused, as DeepEP asserts, and ``ll_buffer_bytes`` is that buffer
(:func:`netsim.workload.moe.deepep_ll_buffer_bytes`). Both need the flow model, as does a
combine whose ``combine_dtype`` differs from ``dispatch_dtype``. Per-token dispatchers cannot be
combined with ``relayout`` or ``sample_placement`` (moved experts or micro-batches),
``dispatcher=node`` not with ``rank_mapping=ep_aware``. Rows add the per-phase bytes (``dispatch_bytes``,
``combine_bytes``, ``*_scaleout_bytes``, ``*_flow_bytes``) and tokens per destination GPU
(``recv_tokens_max``, ``recv_tokens_mean``); ``bytes_total`` is dispatch + combine bytes, and
with unequal precisions ``ideal_combine_s`` / ``serial_ideal_s`` use the combine's own bytes.

The row. Time and ratio metrics (``layer_s``, ``dispatch_s``, ``ratio_to_serial_ideal``, the diagnosis
columns...) are means over the N iterations; ``X_max`` (for X in ``layer_s, dispatch_s,
ratio_to_serial_ideal, dispatch_over_ideal, dispatch_over_balanced, rank_max_mean``) the maximum;
``bytes_total``, ``bytes_delivered``, ``flows``, ``events``, ``rate_recomputes``,
``migration_bytes``, ``sample_move_bytes``, ``samples_moved``, ``network_bytes`` and
``sim_wall_s`` are sums;
``total_layer_s`` is the sum of ``layer_s``. :func:`iterate` returns the per-iteration rows.
"""
from __future__ import annotations

import time

import numpy as np

from netsim.devices.hierarchical import LayerHook, hierarchical_phase1
from netsim.errors import ConfigError
from netsim.layer import PreparedLayer
from netsim.columns import MAX_KEYS
from netsim.mitigation.assign import (domain_levels, ep_aware_mapping, move_bytes, relabel,
                                      routed_load_bound_s,
                                      sample_assignment, sequence_placement)
from netsim.mitigation.placement import (LayerLayout, ReplicaLayout, align_table, eplb,
                                         expert_weight_bytes, layout_traffic, migration_bytes)
from netsim.prepare import context, route_layer
from netsim.reference import phase_bounds
from netsim.simulate import layer_metrics, phase_columns
from netsim.spec import RunSpec
from netsim.workload import routing as R
from netsim.workload.diagnosis import diagnose
from netsim.workload.moe import deepep_ll_buffer_bytes
from netsim.workload.profiles import Profile
from netsim.workload.synthetic import Dirichlet, Drift, Hot, LayerSkew, Locality

__all__ = ["IterRouting", "iterate", "run_iterations"]

SUM_KEYS = ("bytes_total", "bytes_delivered", "flows", "events", "rate_recomputes",
            "migration_bytes", "sample_move_bytes", "samples_moved", "network_bytes",
            "sim_wall_s")


class IterRouting:
    """A routing source drawn per iteration (see the module docstring)."""

    def __init__(self, src, seed: int):
        self.src = src
        self.child = np.random.SeedSequence(seed).spawn(2)[0]

    def _fresh(self):
        return np.random.default_rng(self.child)

    def _batch(self, t: int):
        return np.random.default_rng(np.random.SeedSequence(
            self.child.entropy, spawn_key=tuple(self.child.spawn_key) + (1_000_003, int(t))))

    def counts(self, n, tpg, experts, top_k, t: int) -> np.ndarray:
        return self.draw("counts", n, tpg, experts, top_k, t)

    def draw(self, kind: str, n, tpg, experts, top_k, t: int, **kw) -> np.ndarray:
        """Iteration t's ``counts`` or per-token ``choices`` (``kind``; ``kw``: the node limit of
        ``choices``). Both make the same random draws, so the choices' counts are the counts."""
        src = self.src
        shape = (n, tpg, experts, top_k)
        if t == 0:
            return getattr(src, kind)(*shape, self._fresh(), **kw)
        if isinstance(src, R.Uniform):
            return getattr(src, kind)(*shape, self._batch(t), **kw)
        if isinstance(src, R.Zipf):
            ranks = self._fresh().permutation(experts) + 1
            p = ranks ** (-src.s)
            if kind == "counts":
                return R.popularity_counts(p, n, tpg, top_k, self._batch(t))
            return R.popularity_choices(p, n, tpg, top_k, self._batch(t), **kw)
        if isinstance(src, R.FixedCounts):
            return getattr(src, kind)(*shape, self._fresh(), **kw)
        if _stream_aware(src):
            return getattr(src, kind)(*shape, self._fresh(), 0, t, **kw)
        trace = getattr(src, "trace", None)
        if trace is not None and getattr(trace, "has_iteration", False):
            return getattr(src, kind)(*shape, self._fresh(), 0, t, **kw)
        return getattr(src, kind)(*shape, self._batch(t), 0, t, **kw)

    def sequences(self, n, tpg, experts, top_k, t: int) -> np.ndarray | None:
        """Sequence id of each of iteration t's ``n * tpg`` tokens (in the order of
        :meth:`draw`'s choices: token i on GPU ``i // tpg``), or None when the source has no
        sequences: ``locality:S:SEQLEN:P`` (token i in sequence ``i // SEQLEN``) and per-token
        traces with a ``sequence`` column (the window :meth:`draw` takes, read through the
        trace source's own window rule with the same random state)."""
        src = self.src
        if isinstance(src, Locality):
            return np.arange(n * tpg, dtype=np.int64) // int(src.seqlen)
        trace = getattr(src, "trace", None)
        if trace is None or trace.kind != "tokens" or trace.sequence is None:
            return None
        rng = self._fresh() if t == 0 or trace.has_iteration else self._batch(t)
        lid, data = src._select(0, t)
        iid = int(trace.iterations[t % len(trace.iterations)])
        rows = trace.rows(lid, iid)
        m = len(rows)
        idx = src._window(np.broadcast_to(np.arange(m)[:, None], (m, data.shape[1])),
                          n * tpg, top_k, rng)[:, 0]
        return np.asarray(trace.sequence, np.int64)[rows[idx]]


def _relayout_pays(predict, layout, table, new, pred, period: int, migrate):
    """The migration byte matrix of relayout ``table -> new`` if it pays, else None.

    Moving pays when, on the predicted routing ``pred`` (the mean of the iterations the new
    table was computed from), the ``period`` iterations the new layout will serve -- the first
    with the weight migration sent alongside its dispatch, the rest without -- take less
    predicted time (:func:`predict`, congestion-free bounds) than the same iterations on the
    current layout. A table holding the same experts per rank is no relayout. Approximation:
    the prediction assumes the next iterations route like the recent ones, and bounds, not
    simulated times, are compared."""
    held = lambda t: [frozenset(r[r >= 0].tolist()) for r in t]  # noqa: E731
    if new.shape == table.shape and held(new) == held(table):
        return None
    migr = migrate(table, new)
    E, n = layout.E if isinstance(layout, ReplicaLayout) else layout.layer.experts, layout.n
    cand = ReplicaLayout(new, E, n)
    keep = predict(layout, pred)
    move = predict(cand, pred, migr) + (period - 1) * predict(cand, pred)
    return migr if move < period * keep * (1.0 - 1e-9) else None


def _stream_aware(src) -> bool:
    return isinstance(src, (Dirichlet, Hot, LayerSkew, Drift, Locality, Profile))


def dedup_phase1(P1: np.ndarray, per_tok: float, tokens_per_gpu: int, top_k: int,
                 experts: int) -> np.ndarray:
    """Estimated de-duplicated bytes per (source GPU, server) of the hierarchical dispatch.

    With ``m`` token-expert pairs from a GPU of ``T`` tokens to server B, a share ``q = m / (T k)``
    of the GPU's pairs goes to B, as if B held ``E_B = q E`` of the ``E`` experts. A token's k
    choices are k *distinct* experts; if they were a uniform draw without replacement, the
    chance that none is on B is the hypergeometric ``prod_{i<k} (E - E_B - i) / (E - i)`` (0 once
    a factor is), so ``T (1 - that)`` distinct tokens go to B, clipped to ``[m / k, m]``. Exact
    for uniform routing in expectation; with one expert per server (E_B = 1) it gives m (a token's
    distinct experts never share a server: nothing to de-duplicate). An approximation under
    skewed or correlated routing (hot or co-located experts); ``dispatcher=node`` counts the
    distinct tokens exactly from per-token choices. (The independence estimate it replaces,
    ``1 - (1 - q)^k``, counted repeats where a token's choices are distinct: for Mixtral with one
    expert a server it dropped 1/16 of the bytes as duplicates that cannot exist.)"""
    m = P1 / per_tok
    T, k, E = float(tokens_per_gpu), int(top_k), float(experts)
    q = np.clip(m / (T * k), 0.0, 1.0)
    eb = q * E
    none = np.ones_like(q)
    for i in range(k):
        none *= np.clip((E - eb - i) / (E - i), 0.0, None)
    tok = T * (1.0 - none)
    tok = np.clip(tok, m / k, m)
    return tok * per_tok


#: priority classes (chunks) a ``deepep_normal`` phase-1 message is split into (see docs/deepep.md)
DEEPEP_CHUNKS = 4
#: ``deepep_normal``: fraction of the NVLink rate its SM-driven NVLink copies achieve, fitted
#: on DeepEP's two EP 8 cells by benchmarks/deepep_validation.py (see docs/deepep.md)
DEEPEP_NVLINK_EFFICIENCY = 0.858
#: ``deepep_ll``: GPU time to issue one (token, expert) message, fitted on DeepEP's two EP 8
#: low-latency cells by benchmarks/deepep_validation.py (see docs/deepep.md)
LL_MESSAGE_S = 3.14e-8


def ll_messages(D: np.ndarray, per_tok: float) -> tuple[np.ndarray, np.ndarray]:
    """Messages each GPU issues in a ``deepep_ll`` dispatch (its token-expert pairs sent to other
    GPUs) and combine (the results it returns): one per token copy."""
    off = np.asarray(D, np.float64).copy()
    np.fill_diagonal(off, 0.0)
    return off.sum(axis=1) / per_tok, off.sum(axis=0) / per_tok


def _check_dispatch(spec: RunSpec, relayout: str) -> None:
    """What the dispatchers, precisions and kernel models cannot be combined with."""
    layer, opt, coll = spec.layer, spec.mitigation, spec.mitigation.collective
    if layer.dispatcher == "node" and coll not in ("hierarchical", "deepep_normal"):
        raise ConfigError(f"dispatcher='node' with collective={coll!r}: a token goes once per"
                          " server through a relay GPU; expected collective=hierarchical or"
                          " deepep_normal")
    if coll == "deepep_normal" and layer.dispatcher != "node":
        raise ConfigError(f"collective='deepep_normal' de-duplicates per server as DeepEP's"
                          f" normal kernels do; dispatcher={layer.dispatcher!r}: set"
                          f" dispatcher=node")
    cap = opt.ll_max_tokens or layer.tokens_per_gpu
    if coll == "deepep_ll" and layer.tokens_per_gpu > cap:
        raise ConfigError(f"collective='deepep_ll': tokens_per_gpu={layer.tokens_per_gpu} >"
                          f" ll_max_tokens={cap} (DeepEP's num_max_dispatch_tokens_per_rank:"
                          f" its fixed buffers hold {cap} tokens a rank and it refuses more);"
                          f" expected tokens_per_gpu <= ll_max_tokens")
    if coll == "deepep_ll" and layer.dispatcher != "pairs":
        raise ConfigError(f"collective='deepep_ll' sends one message per (token, expert) as"
                          f" DeepEP's low-latency kernels do; dispatcher={layer.dispatcher!r}:"
                          f" use dispatcher=pairs")
    if (coll != "direct" or layer.combine_scale != 1.0) and spec.fabric != "flow":
        what = (f"collective={coll!r}" if coll != "direct" else
                f"dispatch_dtype={layer.dispatch_dtype!r} with combine_dtype="
                f"{layer.combine_dtype!r} (a combine of other bytes than the dispatch)")
        raise ConfigError(f"{what} needs the flow model's GPU processes; fabric="
                          f"{spec.fabric!r}: use fabric='flow'")
    if layer.per_token_routing and (relayout != "none" or opt.sample_placement != "none"):
        raise ConfigError(f"dispatcher={layer.dispatcher!r} / max_nodes={layer.max_nodes} with"
                          f" relayout={opt.relayout!r}, sample_placement="
                          f"{opt.sample_placement!r}: per-token routing under moved experts or"
                          f" micro-batches is not modelled; use dispatcher=pairs, max_nodes=0")
    if layer.dispatcher == "node" and opt.rank_mapping != "identity":
        raise ConfigError("dispatcher='node' relays through servers of the identity mapping;"
                          f" rank_mapping={opt.rank_mapping!r}: use rank_mapping=identity")
    if coll == "hierarchical:nodedup" and layer.dispatcher == "node":
        raise ConfigError("collective='hierarchical:nodedup' sends every copy; dispatcher='node'"
                          " de-duplicates: use collective=hierarchical")


def collective_hook(spec: RunSpec, D: np.ndarray, node_tok, gps: int, moves=None, migr=None,
                    nvlink_efficiency: float | None = None, message_s: float | None = None):
    """``(phase1 bytes[N, S] | None, LayerHook | None)`` of one layer: the two-phase relay's
    network messages (exact per-server de-duplication for ``dispatcher=node``, the estimate of
    :func:`dedup_phase1` for ``collective=hierarchical`` with pairs, every copy otherwise) and the
    GPU processes the collective, precisions and mitigations need (None: the plain all-to-all).
    ``nvlink_efficiency`` overrides ``deepep_normal``'s :data:`DEEPEP_NVLINK_EFFICIENCY`,
    ``message_s`` ``deepep_ll``'s :data:`LL_MESSAGE_S` (the validation benchmark fits them)."""
    layer, coll = spec.layer, spec.mitigation.collective
    n = D.shape[0]
    per_tok = float(layer.dispatch_bytes_per_token)
    scale = layer.combine_scale
    hier = coll.startswith("hierarchical") or coll == "deepep_normal"
    P1 = None
    if hier:
        P1 = hierarchical_phase1(D, gps)
        if layer.dispatcher == "node":
            P1 = node_tok * per_tok
            P1[np.arange(n), np.arange(n) // gps] = 0.0  # own server: direct NVLink
        elif spec.mitigation.dedup and layer.dispatcher == "pairs":
            P1 = dedup_phase1(P1, per_tok, layer.tokens_per_gpu, layer.top_k, layer.experts)
    if not (hier or migr is not None or moves is not None or coll != "direct" or scale != 1.0):
        return P1, None
    kw = {}
    if coll == "deepep_normal":
        kw = dict(chunks=DEEPEP_CHUNKS, nvlink_efficiency=DEEPEP_NVLINK_EFFICIENCY
                  if nvlink_efficiency is None else nvlink_efficiency)
    elif coll == "deepep_ll":
        msgs = ll_messages(D, per_tok)
        m = LL_MESSAGE_S if message_s is None else float(message_s)
        kw = dict(dispatch_delay=msgs[0] * m, combine_delay=msgs[1] * m)
    return P1, LayerHook("hierarchical" if hier else "direct", gps, phase1=P1, pre=moves,
                         weights=migr, combine_scale=scale, **kw)


def iterate(spec: RunSpec):
    """Simulate the iterations of ``spec``; returns the per-iteration metric dicts."""
    if not isinstance(spec, RunSpec):
        spec = RunSpec.parse(spec)
    opt = spec.mitigation
    relayout, period, slots_opt = opt.relayout_parts
    ctx = context(spec)
    ft = ctx.topo
    n = ft.n_gpus
    layer = spec.layer
    E, k, tpg = layer.experts, layer.top_k, layer.tokens_per_gpu
    ep = layer.ep(n)
    gps = max(1, int(getattr(ft, "gpus_per_server", 1)))
    coll = opt.collective
    hier = coll.startswith("hierarchical") or coll == "deepep_normal"
    if hier and n % gps:
        raise ConfigError(f"collective={coll} needs whole servers: gpus={n},"
                          f" gpus_per_server={gps}")
    _check_dispatch(spec, relayout)
    per_tok = float(layer.dispatch_bytes_per_token)
    scale = layer.combine_scale
    batch_time = ctx.batch_time
    routing = IterRouting(spec.routing_source, spec.seed)
    iterations = max(1, opt.iterations)

    def routed(t):
        return route_layer(layer, spec.routing_source, n, gps, None,
                           draw=lambda kind, **kw: routing.draw(kind, n, tpg, E, k, t, **kw))

    layout = LayerLayout(layer, n)
    table = layout.slot_table()
    slots = slots_opt if slots_opt is not None else (E // ep + 1 if E >= ep else 1)
    if relayout != "none" and ep * slots < E:
        raise ConfigError(f"relayout={opt.relayout!r}: {ep} ranks x {slots} slots <"
                          f" experts={E}; expected SLOTS >= {-(-E // ep)}")
    wbytes = expert_weight_bytes(layer)
    history = [routed(0)[0]]
    if relayout == "static":
        table = eplb(history[0].sum(axis=0), ep, slots)
        layout = ReplicaLayout(table, E, n)
    sigma = np.arange(n)
    if opt.rank_mapping == "ep_aware":
        D0, _ = layout_traffic(layout, history[0], per_tok)
        sigma = ep_aware_mapping(D0, domain_levels(ft, n))
        if (sigma != np.arange(n)).any() and (
                routed_load_bound_s(ft, relabel(D0, sigma), ctx.ecmp_seed)
                > routed_load_bound_s(ft, D0, ctx.ecmp_seed) * (1 + 1e-9)):
            sigma = np.arange(n)  # higher on the fabric's own paths: keep the identity
    perm_prev = np.arange(n)

    def predict(lay, pred_counts, extra=None) -> float:
        """Congestion-free layer time (s) of ``pred_counts`` under layout ``lay``: the fabric's
        ideal dispatch (with ``extra`` bytes, e.g. weight migrations, sent alongside), the
        longest compute and the ideal combine (:func:`netsim.reference.phase_bounds`)."""
        Dp, bp = layout_traffic(lay, pred_counts, per_tok)
        cp = batch_time(bp, local=True)
        Dp, cp = relabel(Dp, sigma), relabel(cp, sigma)
        xs = relabel(extra, sigma) if extra is not None else 0.0
        d = phase_bounds(PreparedLayer(spec, ft, Dp + xs, cp, pred_counts.sum(axis=0),
                                       circuits=ctx.circuits, ecmp_seed=ctx.ecmp_seed))[0]
        c = phase_bounds(PreparedLayer(spec, ft, Dp * scale, cp, pred_counts.sum(axis=0),
                                       circuits=ctx.circuits, ecmp_seed=ctx.ecmp_seed))[1]
        return float(d + cp.max() + c)

    def placement_pays(pred_new, pred_stay, mv) -> bool:
        """Moving samples pays on the fabric's bounds: the moves (before the dispatch) plus the
        layer on the predicted pairs of the new placement beat the layer without moves."""
        M = relabel(mv * per_tok, sigma)
        t_mv = phase_bounds(PreparedLayer(spec, ft, M, np.zeros(n), np.zeros(E),
                                          circuits=ctx.circuits, ecmp_seed=ctx.ecmp_seed))[0]
        new_s = predict(layout, np.rint(pred_new).astype(np.int64))
        return t_mv + new_s < predict(layout, np.rint(pred_stay).astype(np.int64))

    rows = []
    for t in range(1, iterations + 1):
        counts, rank_tok, node_tok = routed(t)
        migr = None
        relaid = False
        if relayout == "eplb" and (t - 1) % period == 0:
            recent = history[-period:]
            load = np.sum([c.sum(axis=0) for c in recent], axis=0)
            new = align_table(table, eplb(load, ep, slots))
            pred = np.rint(np.mean(recent, axis=0)).astype(np.int64)
            cand = _relayout_pays(predict, layout, table, new, pred, period,
                                  lambda a, b: migration_bytes(a, b, n, gps, wbytes))
            if cand is not None:
                migr = cand
                table, layout, relaid = new, ReplicaLayout(new, E, n), True
        moves = None
        moved = 0
        seqs = (routing.sequences(n, tpg, E, k, t) if opt.sample_placement != "none"
                else None)
        if seqs is not None:  # samples with sequence ids: place sequences by their experts
            ch = routing.draw("choices", n, tpg, E, k, t)
            gpu, moved = sequence_placement(
                ch, seqs, layout, gps, tpg,
                knows="prefix" if opt.sample_placement == "predictive" else "all",
                combine_scale=scale, accept=placement_pays)
            home = np.arange(n * tpg) // tpg
            placed = np.bincount(np.repeat(gpu, k) * E + ch.ravel().astype(np.int64),
                                 minlength=n * E).reshape(n, E)
            if moved:
                moves = np.bincount(home * n + gpu, minlength=n * n).reshape(n, n) * per_tok
                np.fill_diagonal(moves, 0.0)
        elif opt.sample_placement != "none":
            pred = history[-1] if opt.sample_placement == "predictive" else counts
            perm = sample_assignment(pred, layout, gps, tpg, prev=perm_prev)
            moved = int(np.count_nonzero(perm != perm_prev))
            if moved:
                moves = move_bytes(perm_prev, perm, tpg * per_tok)
            placed = np.empty_like(counts)
            placed[perm] = counts
            perm_prev = perm
        else:
            placed = counts
        D, batches = layout_traffic(layout, placed, per_tok)
        if layer.dispatcher != "pairs":
            D = layer.dispatch_matrix(counts, rank_tok, n)
        comp = batch_time(batches, local=True)
        gpu_tok = batches.sum(axis=1).astype(np.float64)
        if opt.rank_mapping != "identity":
            D, comp, gpu_tok = relabel(D, sigma), relabel(comp, sigma), relabel(gpu_tok, sigma)
            migr = relabel(migr, sigma) if migr is not None else None
            moves = relabel(moves, sigma) if moves is not None else None
        if migr is not None and not (migr.sum() - np.trace(migr)) > 0:
            migr = None
        P1, hook = collective_hook(spec, D, node_tok, gps, moves=moves, migr=migr)
        setup = PreparedLayer(spec, ft, D, comp, counts.sum(axis=0), batch_time=batch_time,
                              hook=hook, circuits=ctx.circuits, ecmp_seed=ctx.ecmp_seed)
        t0 = time.perf_counter()
        m = layer_metrics(setup)
        m["sim_wall_s"] = time.perf_counter() - t0
        if hook is not None:
            m["bytes_delivered"] = hook.e2e_bytes
            m["network_bytes"] = hook.network_bytes
            m["flows"] = int(getattr(hook, "flows", m["flows"]))
        else:
            m["network_bytes"] = m["bytes_delivered"]
        m.update(phase_columns(setup, m, D, P1, gps, per_tok, scale, hook))
        if coll == "deepep_ll":  # DeepEP's buffer for ll_max_tokens tokens a rank
            m["ll_buffer_bytes"] = float(deepep_ll_buffer_bytes(
                opt.ll_max_tokens or tpg, layer.hidden, E))
        m["migration_bytes"] = float(migr.sum() - np.trace(migr)) if migr is not None else 0.0
        m["sample_move_bytes"] = (float(moves.sum() - np.trace(moves)) if moves is not None
                                  else 0.0)
        if opt.sample_placement != "none":
            m["samples_moved"] = moved
        m["relayout_done"] = relaid
        diag = diagnose(setup, m, gpu_tokens=gpu_tok, expert_tokens=counts.sum(axis=0))
        for key, v in diag.items():
            m.setdefault(key, v)
        m["iteration"] = t
        rows.append(m)
        history.append(counts)
        if len(history) > max(2, period):
            history.pop(0)
    return rows


def aggregate(rows: list[dict]) -> dict:
    """One row's metrics from per-iteration metrics (see the module docstring)."""
    out = {"n_gpus": rows[0]["n_gpus"]}
    keys = [k for k in rows[0] if k not in ("n_gpus", "iteration", "relayout_done")]
    for key in keys:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = float(vals.sum()) if key in SUM_KEYS else float(vals.mean())
    for key in ("flows", "events", "rate_recomputes", "samples_moved"):
        if key in out:
            out[key] = int(out[key])
    for key in MAX_KEYS:
        if key in rows[0]:
            out[f"{key}_max"] = float(max(r[key] for r in rows))
    out["iterations_run"] = len(rows)
    out["total_layer_s"] = float(sum(r["layer_s"] for r in rows))
    out["relayouts"] = int(sum(bool(r["relayout_done"]) for r in rows))
    return out


def run_iterations(spec: RunSpec) -> dict:
    """The aggregated metrics of a multi-iteration / mitigated run (module docstring)."""
    return aggregate(iterate(spec))
