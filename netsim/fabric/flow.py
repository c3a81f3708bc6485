"""Flow-level fabric model: max-min fair rates by progressive filling, event to event.

Model (what it assumes):

* A flow is (source GPU, destination GPU, bytes, start time) on a fixed path of directed links
  (ECMP-hashed shortest path from :meth:`FrozenTopology.route`).
* Between two events, every active flow sends at a constant rate; rates are the max-min fair
  allocation over link capacities (progressive filling: raise all unfrozen flows together, freeze
  the flows of the link that saturates first, repeat). This is the fluid limit of ideal per-flow
  fair queueing with no congestion-control dynamics, no packet loss and no head-of-line blocking.
* Events are flow arrivals and flow completions (and, through :meth:`FlowFabric.set_link_capacity`,
  capacity changes such as circuit reconfigurations). Rates are recomputed at every event: in
  exact mode every active flow's, in tolerance mode those of the components of the flow -> link
  graph (flows linked through shared links) that the event touched; the others' max-min rates
  cannot have changed (:func:`join_components`).
* A flow's bytes are delivered ``path latency`` after its last byte is sent (latency is added once
  per path, not per byte: a pipe, not store-and-forward).

Approximation knob: ``tolerance`` (relative, default 0 = exact). Completions whose projected times
lie within ``tolerance * t`` of the earliest one are processed as one event at the latest of them;
each such flow keeps its own exact projected finish time and all its bytes (conservation holds),
but its bandwidth is released up to ``tolerance * t`` late. Other flows' times then move by about
that relative amount per merged event (usually later; max-min fairness is not monotone, so a few
may finish slightly earlier). It cuts the number of rate recomputations when many flows finish at
nearly the same time (e.g. the binomial spread of uniform routing).
Solvers (``solver``): ``full`` recomputes every rate at every event (progressive filling over a
link -> flow table kept between events). ``incremental`` (``tolerance > 0``, one priority class,
multi-link paths): after completions only the flows from the earliest bottleneck level among
them on are refilled (:func:`inc_run_until`); its rates equal a full progressive filling to
round-off (residual capacities are kept by adding old rates back and subtracting new ones).
``auto`` (the default): inside :meth:`FlowFabric.run_to_completion`, where no arrival can
restart it, ``incremental`` in windows of ``AUTO_PROBE`` events while each refills at most
``AUTO_SHARE`` of the live flows per recomputation, ``full`` after the first that refills more;
``full`` under a control plane
(:meth:`FlowFabric.run_until` between its events). Exact mode (``tolerance = 0``) always uses ``full``: its rates and times are the
same to the bit as before the kernels were tuned (docs/flow_model.md).
Max-min fairness is not makespan-optimal: on a crossbar the flow model can be slower than the
congestion-free bound ``max(max row sum, max column sum) / bandwidth`` (reported as ``serial_ideal_s``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from netsim.fabric.heap import kheap_pop, kheap_push
from netsim.fabric.parking import grown, park, set_capacity, unpark

_INF = np.inf
SOLVERS = ("auto", "full", "incremental")
# auto run to completion: the incremental solver in windows of AUTO_PROBE events while each
# refills at most AUTO_SHARE of the live flows per recomputation, then the full solver (a
# refilled flow costs it about twice what the full recomputation does: docs/flow_model.md)
AUTO_PROBE = 32
AUTO_SHARE = 0.5
# a flow with less than a milli-byte plus a millionth of its size left is finished: float
# round-off between a schedule's durations and the bytes they carry must not leave crumbs
_EPS_BYTES = 1e-3
_EPS_REL = 1e-6


def unfinished(rem: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """Mask of flows with more than round-off left (the rule the kernels use)."""
    return rem > _EPS_BYTES + _EPS_REL * nbytes


@njit(cache=True)
def maxmin_rates(active, n_act, path_ptr, path_links, cap, rate):
    """Max-min fair rates (bytes/s) of flows ``active[:n_act]`` over link capacities ``cap``.

    Progressive filling (:func:`maxmin_csr`) on a link -> flow table built for these flows.
    Writes ``rate[f]`` for every active flow ``f``. Cost O(F P log L) for F flows of P links.
    """
    lptr, lend, lf, lpath, lplen, cnt = link_csr(active, n_act, path_ptr, path_links, len(cap),
                                                 np.empty(0, np.int32), np.empty(0, np.int32))
    stamp = np.empty(len(path_ptr) - 1, np.int8)
    for f in range(len(stamp)):
        stamp[f] = -1
    for a in range(n_act):
        stamp[active[a]] = 0
    n_links = len(cap)
    maxmin_csr(lptr, lend, lf, lpath, lplen, cnt, stamp, cap, rate, np.zeros(n_links, np.int64),
               np.ones(n_links, np.bool_), np.zeros(n_links, np.uint8), True)
    for a in range(n_act):
        # a flow with an empty path was never frozen: unconstrained (should not happen)
        if stamp[active[a]] != 1:  # (the first mark)
            rate[active[a]] = _INF


@njit(cache=True)
def single_link_rates(active, n_act, path_ptr, path_links, cap, rate):
    """Max-min rates when every flow crosses exactly one link (circuit fabrics): cap / flows."""
    cnt = np.zeros(len(cap), np.int64)
    for a in range(n_act):
        cnt[path_links[path_ptr[active[a]]]] += 1
    for a in range(n_act):
        e = path_links[path_ptr[active[a]]]
        rate[active[a]] = cap[e] / cnt[e]


@njit(cache=True)
def link_csr(active, n_act, path_ptr, path_links, n_links, link_t, len_t):
    """The link -> flow table of the active flows, kept across rate recomputations (a completion
    only marks its flow dead): per link, entries ``lptr[e]:lend[e]``, each a flow id ``lf[k]``
    with the *other* links of its path inline (``lpath[k, :lplen[k]]``: the path in order
    without e itself, whose residual a freeze never reads again), so that freezing a link's
    flows reads memory in order and charges each other link without a test. Entries per link
    follow ``active``'s order. Also ``cnt[e]``: live flows on e.
    Flow ids are int32 here; links and path lengths have the dtypes of the empty arrays
    ``link_t`` and ``len_t`` (:meth:`FlowFabric._table_dtypes`: uint16 and uint8 when they
    fit, so that a scan streams 13 bytes per entry instead of 24)."""
    cnt = np.zeros(n_links, np.int64)
    pmax = 1
    for a in range(n_act):
        f = active[a]
        pl = path_ptr[f + 1] - path_ptr[f]
        if pl > pmax:
            pmax = pl
        for k in range(path_ptr[f], path_ptr[f + 1]):
            cnt[path_links[k]] += 1
    lptr = np.zeros(n_links + 1, np.int64)
    for e in range(n_links):
        lptr[e + 1] = lptr[e] + cnt[e]
    lend = np.empty(n_links, np.int64)
    for e in range(n_links):
        lend[e] = lptr[e]
    m = lptr[n_links]
    lf = np.empty(m, np.int32)
    lpath = np.empty((m, max(pmax - 1, 1)), link_t.dtype)  # a row: a path less one link
    lplen = np.empty(m, len_t.dtype)
    for a in range(n_act):
        _file_flow(active[a], path_ptr, path_links, lend, lf, lpath, lplen)
    return lptr, lend, lf, lpath, lplen, cnt


@njit(cache=True, inline="always")
def _file_flow(f, path_ptr, path_links, lend, lf, lpath, lplen):
    """Write flow ``f`` (its id and its path's other links inline) at the end of each of its
    links' lists."""
    p0 = path_ptr[f]
    pl = path_ptr[f + 1] - p0
    for k in range(p0, p0 + pl):
        e = path_links[k]
        j = lend[e]
        lf[j] = f
        w = 0
        for q in range(pl):
            x = path_links[p0 + q]
            if x != e:
                lpath[j, w] = x
                w += 1
        lplen[j] = w  # pl - 1: a shortest path crosses a link once
        lend[e] = j + 1


@njit(cache=True)
def csr_append(ids, path_ptr, path_links, lptr, lend, lcap, top, lf, lpath, lplen, cnt):
    """Append flows ``ids`` (in order) to the end of their links' lists in a kept table and count
    them live. Link e's list may grow up to ``lcap[e]``; a list without room moves, in order, to
    the free end of the arrays (``top[0]``: first free entry) with room for twice its length, and
    the arrays are reallocated (doubled) when the free end is too short, so a run that adds
    flows arrival by arrival pays O(entries) per doubling instead of a rebuild per arrival.
    Survivors keep their order and new flows follow, so every list is what :func:`link_csr`
    would build from the active list (which keeps its survivors' order and appends new flows):
    the same rates to the bit. Returns ``(lf, lpath, lplen, ok)``; ``ok`` False (nothing
    written) when a path is longer than the table's rows."""
    n_links = len(cnt)
    pmax = lpath.shape[1]
    need = np.zeros(n_links, np.int64)
    for f in ids:
        p0, p1 = path_ptr[f], path_ptr[f + 1]
        if p1 - p0 - 1 > pmax:  # (a row holds a path less one link)
            return lf, lpath, lplen, False
        for k in range(p0, p1):
            need[path_links[k]] += 1
    extra = 0
    for e in range(n_links):
        if need[e] and lend[e] + need[e] > lcap[e]:
            extra += 2 * (lend[e] - lptr[e] + need[e]) + 4
    if top[0] + extra > len(lf):
        size = max(2 * len(lf), top[0] + extra)
        lf2 = np.empty(size, np.int32)
        lpath2 = np.empty((size, pmax), lpath.dtype)
        lplen2 = np.empty(size, lplen.dtype)
        for k in range(top[0]):
            lf2[k] = lf[k]
            lplen2[k] = lplen[k]
            for q in range(pmax):
                lpath2[k, q] = lpath[k, q]
        lf, lpath, lplen = lf2, lpath2, lplen2
    for e in range(n_links):
        if need[e] and lend[e] + need[e] > lcap[e]:
            used = lend[e] - lptr[e]
            w = top[0]
            for k in range(lptr[e], lend[e]):
                lf[w] = lf[k]
                lplen[w] = lplen[k]
                for q in range(lplen[k]):
                    lpath[w, q] = lpath[k, q]
                w += 1
            lptr[e] = top[0]
            lend[e] = top[0] + used
            lcap[e] = top[0] + 2 * (used + need[e]) + 4
            top[0] = lcap[e]
    for f in ids:
        _file_flow(f, path_ptr, path_links, lend, lf, lpath, lplen)
        for k in range(path_ptr[f], path_ptr[f + 1]):
            cnt[path_links[k]] += 1
    return lf, lpath, lplen, True


@njit(cache=True, inline="always")
def _compact_list(e, lptr, lend, lf, lpath, lplen, stamp, live):
    """Drop dead flows' entries (``stamp < 0``) from link e's list in place, its live ones kept
    in order, when they are more than a quarter of its ``live`` entries: done as a list is
    about to be scanned, so lists never scanned again cost nothing. (A scan stops at the
    list's last unfrozen flow, but reads every dead entry before it; in exact mode, where an
    event retires a flow or two, a list left half dead made the late events cost twice as
    much per live flow as the first ones.)"""
    if 4 * (lend[e] - lptr[e]) <= 5 * live:
        return
    w = lptr[e]
    for k in range(lptr[e], lend[e]):
        if stamp[lf[k]] >= 0:
            if w != k:
                lf[w] = lf[k]
                lplen[w] = lplen[k]
                for q in range(lplen[k]):
                    lpath[w, q] = lpath[k, q]
            w += 1
    lend[e] = w


@njit(cache=True, inline="always")
def _find(parent, e):
    """Root of link e's component (union-find, paths halved on the way)."""
    while parent[e] != e:
        parent[e] = parent[parent[e]]
        e = parent[e]
    return e


@njit(cache=True)
def join_components(ids, path_ptr, path_links, parent, lcomp, cmask, cdirty):
    """Join the links of the paths of flows ``ids`` into components (union-find over links,
    ``parent``; a component is named by its smallest link id, so the same flows give the same
    names on any executor), then ``lcomp[e]``: the component of every link. A merged component
    carries the union of its parts' stamp marks (``cmask``) and is dirty if one of them was;
    the new flows' components are dirty. Components only grow: flows that finish do not split
    one (a component holding two that no longer share a link is refilled as one: still exact
    max-min, only more work)."""
    for f in ids:
        p0, p1 = path_ptr[f], path_ptr[f + 1]
        a = _find(parent, path_links[p0])
        for k in range(p0 + 1, p1):
            b = _find(parent, path_links[k])
            if a == b:
                continue
            if b < a:
                a, b = b, a
            parent[b] = a
            cmask[a] |= cmask[b]
            cdirty[a] = cdirty[a] or cdirty[b]
    for e in range(len(parent)):
        lcomp[e] = _find(parent, e)
    for f in ids:
        cdirty[lcomp[path_links[path_ptr[f]]]] = True


@njit(cache=True)
def maxmin_csr(lptr, lend, lf, lpath, lplen, cnt, stamp, cap, rate, lcomp, cdirty, cmask,
               whole):
    """:func:`maxmin_rates` on the kept link -> flow table (same progressive filling, same order
    of operations, hence the same rates to the bit), over the links of the dirty components
    only (``cdirty[lcomp[e]]``), or with ``whole`` (exact mode) of every component: the whole
    fabric, its links filed in the heap in the same order as before components. A component
    shares no link with another, so the others' rates are its max-min rates still.
    ``stamp[f]`` (int8): -1 for a dead flow, else the mark (1..7) of
    the filling that froze it last or 0 (added since): one byte per flow, so a million flows'
    stamps stay in a core's L2 cache, read once per table entry. A filling freezes every live
    flow of the components it fills, so it marks them with one value that none of their flows
    carries (``cmask[c]``: the marks present in component c, bit per mark; the lowest free one,
    so a few values go round; when they carry all seven between them, every live flow's stamp
    is cleared to 0 first). Returns the flows frozen."""
    n_links = len(cap)
    if whole:
        for e in range(n_links):
            cdirty[e] = True
    used = 0
    for e in range(n_links):
        if lcomp[e] == e and cdirty[e]:
            used |= cmask[e]
    mark = np.int8(1)
    while mark <= 7 and (used >> mark) & 1:
        mark += 1
    if mark > 7:  # (components filled apart, then merged): no mark left, unmark every flow
        for f in range(len(stamp)):
            if stamp[f] > 0:
                stamp[f] = 0
        for e in range(n_links):
            cmask[e] = 0
        mark = np.int8(1)
    rem = np.empty(n_links, np.float64)  # (filled by loops: no array-copy code to compile)
    c = np.empty(n_links, np.int64)
    for e in range(n_links):
        rem[e] = cap[e]
        c[e] = cnt[e]
    hk = np.empty(n_links + 1, np.float64)  # a stale pop re-files one: never more than L
    hv = np.empty(n_links + 1, np.int64)
    nh = np.int64(0)  # not a literal: a literal 0 types the heap calls a second time
    for e in range(n_links):
        if c[e] > 0 and cdirty[lcomp[e]]:
            nh = kheap_push(hk, hv, nh, rem[e] / c[e], e)
    frozen = np.zeros(1, np.int64)
    while nh > 0:
        key, e, nh = kheap_pop(hk, hv, nh)
        if c[e] == 0:
            continue
        share = rem[e] / c[e]
        if share > key * (1.0 + 1e-12) + 1e-300:  # stale entry: re-file at its current share
            nh = kheap_push(hk, hv, nh, share, e)
            continue
        if share < 0.0:
            share = 0.0
        # freeze e's c[e] unfrozen flows; e itself is then done (its residual is never read
        # again), so only the other links of their paths are charged
        todo = c[e]
        frozen[0] += todo  # (in memory: a register less in the scan below)
        c[e] = 0
        _compact_list(e, lptr, lend, lf, lpath, lplen, stamp, cnt[e])
        for k in range(lptr[e], lend[e]):
            f = lf[k]
            sf = stamp[f]
            if sf >= 0 and sf != mark:
                stamp[f] = mark
                rate[f] = share
                for j in range(lplen[k]):  # the path's other links
                    e2 = lpath[k, j]
                    rem[e2] -= share
                    c[e2] -= 1
                todo -= 1
                if todo == 0:
                    break
    for e in range(n_links):
        if lcomp[e] == e and cdirty[e]:
            cmask[e] = np.uint8(1 << mark)
            cdirty[e] = False
    return frozen[0]


@njit(cache=True)
def _next_time(active, n_act, rem, nbytes, rate, now):
    """Earliest projected completion time of the active flows (inf if none can finish)."""
    tmin = _INF
    for a in range(n_act):
        f = active[a]
        if rem[f] <= _EPS_BYTES + _EPS_REL * nbytes[f]:
            return now
        if rate[f] > 0.0:
            t = now + rem[f] / rate[f]
            if t < tmin:
                tmin = t
    return tmin


@njit(cache=True)
def _subtract_usage(flows, path_ptr, path_links, rate, cap):
    """cap[link] -= rates of ``flows`` crossing it (floored at 0): the residual capacity."""
    for f in flows:
        for k in range(path_ptr[f], path_ptr[f + 1]):
            e = path_links[k]
            cap[e] -= rate[f]
            if cap[e] < 0.0:
                cap[e] = 0.0


@njit(cache=True)
def advance(active, n_act, rem, nbytes, rate, finish, now, horizon, tolerance, tbuf):
    """Advance active flows from ``now`` to the next completion event (or ``horizon``).

    The next event is the earliest projected finish ``tmin``; every flow finishing by
    ``tmin + tolerance * tmin`` completes in it. Returns ``(t_event, n_done)``; completed
    flows are moved to ``active[n_act - n_done : n_act]`` with ``finish`` set to their own
    projected finish time and ``rem`` to 0. If no flow finishes by ``horizon``, advances to
    ``horizon`` and returns ``(horizon, 0)``. ``tbuf`` (at least ``n_act`` floats) holds each
    active flow's projected finish, computed once (one division per flow and event).
    """
    tmin = _INF
    for a in range(n_act):
        f = active[a]
        r = rate[f]
        x = rem[f]
        # the division whatever the branch (a select, not a jump: the same value is kept)
        t = now + x / r if r > 0.0 else _INF
        if x <= _EPS_BYTES + _EPS_REL * nbytes[f]:
            t = now  # round-off crumbs: finished now
        tbuf[a] = t
        if t < tmin:
            tmin = t
    if tmin == _INF or tmin > horizon + 1e-12 * abs(horizon):
        dt = horizon - now
        if dt > 0.0 and dt < _INF:
            for a in range(n_act):
                f = active[a]
                rem[f] -= rate[f] * dt
                if rem[f] < 0.0:
                    rem[f] = 0.0
        return horizon, 0
    cut = tmin + tolerance * tmin
    if cut > horizon:
        cut = horizon if horizon > tmin else tmin
    t_event = tmin
    n_done = 0
    first = n_act  # the first finished flow's place
    for a in range(n_act):
        t = tbuf[a]
        if t <= cut:
            if n_done == 0:
                first = a
            n_done += 1
            if t > t_event:
                t_event = t
    dt = t_event - now
    for a in range(first):  # in front of the first finished flow: nothing moves
        f = active[a]
        x = rem[f] - rate[f] * dt
        rem[f] = 0.0 if x < 0.0 else x
    # stable partition in place from there: unfinished flows keep their order in front,
    # finished ones (few: held aside) follow in theirs
    gone = np.empty(n_done, np.int64)
    g = 0
    w = first
    for a in range(first, n_act):
        f = active[a]
        t = tbuf[a]
        if t <= cut:
            finish[f] = t
            rem[f] = 0.0
            gone[g] = f
            g += 1
        else:
            x = rem[f] - rate[f] * dt
            rem[f] = 0.0 if x < 0.0 else x
            active[w] = f
            w += 1
    for k in range(n_done):
        active[w + k] = gone[k]
    return t_event, n_done


@njit(cache=True)
def _rates(active, n_act, prio, path_ptr, path_links, cap, rate, single, n_classes):
    """Rates of the active flows: max-min within each strict-priority class, classes in order,
    each class sharing what the classes before it leave on every link."""
    if n_classes <= 1:
        if single:
            single_link_rates(active, n_act, path_ptr, path_links, cap, rate)
        else:
            maxmin_rates(active, n_act, path_ptr, path_links, cap, rate)
        return
    res = cap.copy()
    sub = np.empty(n_act, np.int64)
    for c in range(n_classes):
        m = np.int64(0)  # not a literal: a literal 0 types the calls below a second time
        for a in range(n_act):
            if prio[active[a]] == c:
                sub[m] = active[a]
                m += 1
        if m == 0:
            continue
        if single:
            single_link_rates(sub, m, path_ptr, path_links, res, rate)
        else:
            maxmin_rates(sub, m, path_ptr, path_links, res, rate)
        _subtract_usage(sub[:m], path_ptr, path_links, rate, res)


@njit(cache=True, inline="always")
def _count_completion(f, group, left, finish, lat, done_at, hit) -> bool:
    """Flow ``f`` has finished: count it off its group, whose last byte arrives at
    ``finish + lat`` at the latest; True (and ``hit`` set) when the group is complete."""
    g = group[f]
    left[g] -= 1
    d = finish[f] + lat[f]
    if d > done_at[g]:
        done_at[g] = d
    if left[g] == 0:
        hit[g] = True
        return True
    return False


@njit(cache=True, inline="always")
def _retire(f, stamp, path_ptr, path_links, cnt):
    """Take finished flow ``f`` off the link-to-flow table (its entries become dead)."""
    stamp[f] = -1
    for j in range(path_ptr[f], path_ptr[f + 1]):
        cnt[path_links[j]] -= 1


@njit(cache=True, inline="always")
def _next_completions(active, n_act, rem, nbytes, rate, finish, lat, group, left, done_at, hit,
                      now, horizon, tolerance, tbuf):
    """Advance to the next completion event (or to ``horizon``) and count the flows it completed
    (the last ``nd`` of ``active``) off their groups. Returns (now, nd, whether a group
    completed); ``nd`` is -1 when nothing can progress until something external changes, 0 at
    the horizon."""
    t, nd = advance(active, n_act, rem, nbytes, rate, finish, now, horizon, tolerance, tbuf)
    if t == _INF:
        return now, -1, False
    fired = False
    for k in range(n_act - nd, n_act):
        if _count_completion(active[k], group, left, finish, lat, done_at, hit):
            fired = True
    return t, nd, fired


@njit(cache=True)
def run_until(active, n_act, rem, nbytes, rate, finish, lat, group, left, done_at, hit,
              path_ptr, path_links, cap, now, horizon, tolerance, dirty,
              lptr, lend, lf, lpath, lplen, cnt, stamp, lcomp, cdirty, cmask):
    """Advance event by event (completions, rate recomputations) until ``horizon`` or until some
    group's last flow completes (``hit[g]`` set), the rates from the kept link -> flow table
    (:func:`link_csr`; completions update ``cnt``/``stamp``, and the table is compacted list by
    list as they are scanned: :func:`_compact_list`). With ``tolerance > 0`` a recomputation
    refills only the components (``lcomp``, :func:`join_components`) that a completion or an
    arrival touched (``cdirty``); in exact mode every one, so that the heap files the same links
    in the same order as a filling of the whole fabric (the same bits as before components).
    Returns (now, n_act, events, recomputes, fired, dirty, flows whose rates were
    recomputed)."""
    events = 0
    recomputes = 0
    work = 0
    fired = False
    tbuf = np.empty(n_act, np.float64)
    while n_act > 0:
        if dirty:
            work += maxmin_csr(lptr, lend, lf, lpath, lplen, cnt, stamp, cap, rate, lcomp,
                               cdirty, cmask, tolerance == 0.0)
            recomputes += 1
            dirty = False
        now, nd, fired = _next_completions(active, n_act, rem, nbytes, rate, finish, lat, group,
                                           left, done_at, hit, now, horizon, tolerance, tbuf)
        if nd <= 0:
            break  # stalled until something external changes (-1), or at the horizon (0)
        events += 1
        for k in range(n_act - nd, n_act):
            f = active[k]
            _retire(f, stamp, path_ptr, path_links, cnt)
            cdirty[lcomp[path_links[path_ptr[f]]]] = True
        n_act -= nd
        dirty = True
        if fired:
            break
    return now, n_act, events, recomputes, fired, dirty, work


@njit(cache=True)
def run_until_rates(active, n_act, rem, nbytes, rate, finish, lat, group, left, done_at, hit,
                    prio, path_ptr, path_links, cap, now, horizon, tolerance, single, n_classes,
                    dirty):
    """:func:`run_until` without a kept table (one-hop fabrics, priority classes): every
    recomputation by :func:`_rates`. A kernel of its own, so that a run compiles only the rate
    code its fabric uses. Returns (now, n_act, events, recomputes, fired, dirty, flows whose
    rates were recomputed)."""
    events = 0
    recomputes = 0
    work = 0
    fired = False
    tbuf = np.empty(n_act, np.float64)
    while n_act > 0:
        if dirty:
            work += n_act
            _rates(active, n_act, prio, path_ptr, path_links, cap, rate, single, n_classes)
            recomputes += 1
            dirty = False
        now, nd, fired = _next_completions(active, n_act, rem, nbytes, rate, finish, lat, group,
                                           left, done_at, hit, now, horizon, tolerance, tbuf)
        if nd <= 0:
            break
        events += 1
        n_act -= nd
        dirty = True
        if fired:
            break
    return now, n_act, events, recomputes, fired, dirty, work


# ---- incremental solver (tolerance > 0) ---------------------------------------------------------
# Progressive filling freezes links in order of rising fair share; a flow's *level* is the step
# at which it froze. Removing flows frozen at step j or later leaves steps 0..j-1 unchanged (every
# link not yet frozen only gains share), so after completions only the suffix of the bottleneck
# order from the earliest level among them is refilled, on the capacities the prefix leaves.
# Kept between events: the link -> flow table of :func:`link_csr`, flows in level order
# (``order``; ``step_ptr[i]`` where step i's flows start), each flow's level, rate, remaining
# bytes at its own last update time ``t_upd`` and projected finish ``proj``, the earliest
# projection of every level (``lmin``) and the residual capacity ``res`` after the whole filling.


@njit(cache=True)
def _inc_fill(touched, nt, order, w, step, step_ptr, lev, rate, res, c, lptr, lend, lf, lpath,
              lplen, cnt, stamp, pend, lhk, lhv):
    """Progressive filling of the flows stamped ``pend`` on residual capacities ``res``, with
    per-link counts ``c`` of those flows and ``touched[:nt]`` the links they cross (in a fixed
    order); frozen flows are stamped ``pend + 1`` and appended to ``order`` from ``w``, steps
    from ``step``. Same filling and stale-share rule as :func:`maxmin_csr`. Returns (w, step)."""
    fin = pend + 1
    nh = np.int64(0)
    for i in range(nt):
        x = touched[i]
        if c[x] > 0:
            nh = kheap_push(lhk, lhv, nh, res[x] / c[x], x)
    while nh > 0:
        key, x, nh = kheap_pop(lhk, lhv, nh)
        if c[x] == 0:
            continue
        share = res[x] / c[x]
        if share > key * (1.0 + 1e-12) + 1e-300:
            nh = kheap_push(lhk, lhv, nh, share, x)
            continue
        if share < 0.0:
            share = 0.0
        step_ptr[step] = w
        todo = c[x]  # pending flows on x: stop scanning its list once all are frozen
        _compact_list(x, lptr, lend, lf, lpath, lplen, stamp, cnt[x])
        for k in range(lptr[x], lend[x]):
            f = lf[k]
            if stamp[f] == pend:
                stamp[f] = fin
                rate[f] = share
                lev[f] = step
                order[w] = f
                w += 1
                res[x] -= share  # x itself (the inline path holds the other links)
                c[x] -= 1
                for j in range(lplen[k]):
                    y = lpath[k, j]
                    res[y] -= share
                    c[y] -= 1
                todo -= 1
                if todo == 0:
                    break
        step += 1
    step_ptr[step] = w
    return w, step


@njit(cache=True)
def _inc_project(order, p0, w, rem, nbytes, rate, proj, lev, lmin, s0, s1, now):
    """Projected finishes of flows ``order[p0:w]`` (rates just set) and the earliest of each of
    their levels ``s0..s1-1``."""
    for i in range(s0, s1):
        lmin[i] = _INF
    for q in range(p0, w):
        f = order[q]
        if rem[f] <= _EPS_BYTES + _EPS_REL * nbytes[f]:
            t = now
        elif rate[f] > 0.0:
            t = now + rem[f] / rate[f]
        else:
            t = _INF
        proj[f] = t
        if t < lmin[lev[f]]:
            lmin[lev[f]] = t


@njit(cache=True, inline="always")
def _live_flow(q, order, n_ord, lev):
    """The q-th flow to visit among the live ones (``lev >= 0``, all in ``order[:n_ord]``): in
    id order (memory in order) when they are a good part of the id range, else through
    ``order`` (a fabric whose id range is mostly finished flows); visit ``q`` in
    ``range(_n_visit(n_ord, lev))``; -1: not live."""
    f = order[q] if 4 * n_ord < len(lev) else q
    return f if lev[f] >= 0 else -1


@njit(cache=True, inline="always")
def _n_visit(n_ord, lev):
    return n_ord if 4 * n_ord < len(lev) else len(lev)


@njit(cache=True)
def _inc_project_all(order, n_ord, rem, nbytes, rate, proj, lev, lmin, n_steps, now):
    """:func:`_inc_project` of every live flow (``lev >= 0``; see :func:`_live_flow`)."""
    for i in range(n_steps):
        lmin[i] = _INF
    for q in range(_n_visit(n_ord, lev)):
        f = _live_flow(q, order, n_ord, lev)
        if f < 0:
            continue
        li = lev[f]
        if li < 0:
            continue
        if rem[f] <= _EPS_BYTES + _EPS_REL * nbytes[f]:
            t = now
        elif rate[f] > 0.0:
            t = now + rem[f] / rate[f]
        else:
            t = _INF
        proj[f] = t
        if t < lmin[li]:
            lmin[li] = t


@njit(cache=True)
def inc_run_until(active, n_act, rem, nbytes, rate, finish, lat, group, left, done_at, hit,
                  path_ptr, path_links, cap, now, horizon, tolerance, full,
                  lptr, lend, lf, lpath, lplen, cnt, stamp, epoch, refill_frac,
                  order, n_ord, step_ptr, n_steps, lev, t_upd, proj, lmin, res, c, lpos,
                  touched, lhk, lhv, Dbuf, max_events):
    """:func:`run_until` with the incremental solver. ``full``: fill all flows ``active[:n_act]``
    (all at ``now``, in the table ``lptr..lplen`` built from them) first. Stops after
    ``max_events`` events. Returns (now, n_ord,
    n_steps, epoch, events, recomputes, refilled, fired)."""
    events = 0
    recomputes = 0
    refilled = 0
    fired = False
    L = len(cap)
    if full:
        epoch += 2
        nt = 0
        for x in range(L):
            res[x] = cap[x]
            c[x] = 0
        for a in range(n_act):
            f = active[a]
            stamp[f] = epoch
            t_upd[f] = now
        for x in range(L):
            c[x] = cnt[x]
            if c[x] > 0:
                touched[nt] = x
                nt += 1
        n_ord, n_steps = _inc_fill(touched, nt, order, 0, 0, step_ptr, lev, rate, res, c, lptr,
                                   lend, lf, lpath, lplen, cnt, stamp, epoch, lhk, lhv)
        _inc_project_all(order, n_ord, rem, nbytes, rate, proj, lev, lmin, n_steps, now)
        recomputes += 1
        refilled += n_act
    while n_ord > 0:
        tmin = _INF
        for i in range(n_steps):
            if lmin[i] < tmin:
                tmin = lmin[i]
        if tmin == _INF:
            break  # nothing can progress until something external changes
        if tmin > horizon + 1e-12 * abs(horizon):
            if horizon < _INF:
                now = horizon
            break
        cut = tmin + tolerance * tmin
        if cut > horizon:
            cut = horizon if horizon > tmin else tmin
        nd = 0
        jmin = -1
        t_event = tmin
        for i in range(n_steps):
            if lmin[i] <= cut:
                if jmin < 0:
                    jmin = i
                for q in range(step_ptr[i], step_ptr[i + 1]):
                    f = order[q]
                    t = proj[f]
                    if t <= cut:
                        Dbuf[nd] = f
                        nd += 1
                        lev[f] = -1
                        if t > t_event:
                            t_event = t
        now = t_event
        events += 1
        for a in range(nd):
            f = Dbuf[a]
            finish[f] = proj[f]
            rem[f] = 0.0
            if _count_completion(f, group, left, finish, lat, done_at, hit):
                fired = True
            _retire(f, stamp, path_ptr, path_links, cnt)
        # refill the bottleneck order from the earliest level among the completed flows; when
        # that is most of it, everything (cheaper per flow: no residual to rebuild)
        epoch += 2
        p0 = step_ptr[jmin]
        nt = 0
        if (n_ord - p0) > refill_frac * n_ord:
            jmin = 0
            p0 = 0
            for x in range(L):
                res[x] = cap[x]
                c[x] = cnt[x]
                if c[x] > 0:
                    touched[nt] = x
                    nt += 1
            for q in range(_n_visit(n_ord, lev)):
                f = _live_flow(q, order, n_ord, lev)
                if f >= 0:
                    rem[f] -= rate[f] * (now - t_upd[f])
                    if rem[f] < 0.0:
                        rem[f] = 0.0
                    t_upd[f] = now
                    stamp[f] = epoch
        else:
            for q in range(p0, n_ord):
                f = order[q]
                r = rate[f]
                live = lev[f] >= 0
                if live:
                    rem[f] -= r * (now - t_upd[f])
                    if rem[f] < 0.0:
                        rem[f] = 0.0
                    t_upd[f] = now
                    stamp[f] = epoch
                for k in range(path_ptr[f], path_ptr[f + 1]):
                    x = path_links[k]
                    res[x] += r
                    if live:
                        c[x] += 1
                        if lpos[x] != epoch:
                            lpos[x] = epoch
                            touched[nt] = x
                            nt += 1
        n_ord, n_steps = _inc_fill(touched, nt, order, p0, jmin, step_ptr, lev, rate, res, c,
                                   lptr, lend, lf, lpath, lplen, cnt, stamp, epoch, lhk, lhv)
        if p0 == 0:
            _inc_project_all(order, n_ord, rem, nbytes, rate, proj, lev, lmin, n_steps, now)
        else:
            _inc_project(order, p0, n_ord, rem, nbytes, rate, proj, lev, lmin, jmin, n_steps,
                         now)
        recomputes += 1
        refilled += n_ord - p0
        if fired or events >= max_events:
            break
    return now, n_ord, n_steps, epoch, events, recomputes, refilled, fired


@njit(cache=True)
def inc_materialize(order, n_ord, rem, rate, t_upd, now):
    """Bring the remaining bytes of the live flows to ``now`` (projections unchanged)."""
    for q in range(n_ord):
        f = order[q]
        dt = now - t_upd[f]
        if dt != 0.0:
            rem[f] -= rate[f] * dt
            if rem[f] < 0.0:
                rem[f] = 0.0
            t_upd[f] = now


@njit(cache=True)
def _store_paths(pp, pl, red, path_ptr, path_links, n):
    """Append routed paths (``pp``/``pl`` from :meth:`FrozenTopology.route`) after flow ``n``
    of the fabric's path table, leaving out links marked ``red`` (redundant constraints; an
    empty ``red`` keeps every link). Returns whether every path, before pruning, is one link."""
    w = path_ptr[n]
    prune = len(red) > 0
    one_hop = True
    for i in range(len(pp) - 1):
        if pp[i + 1] - pp[i] != 1:
            one_hop = False
        for k in range(pp[i], pp[i + 1]):
            e = pl[k]
            if prune and red[e]:
                continue
            path_links[w] = e
            w += 1
        path_ptr[n + i + 1] = w
    return one_hop


_NO_RED = np.zeros(0, np.bool_)
_NARROW = (np.empty(0, np.uint16), np.empty(0, np.uint8))  # table dtypes: links, path lengths
_WIDE = (np.empty(0, np.int32), np.empty(0, np.int32))


class FlowFabric:
    """Event-driven flow-level fabric over a frozen topology (no SimPy inside).

    Usage: :meth:`add_flows` at the current time, then :meth:`step` repeatedly; each step
    advances to the next completion event (or a horizon) and returns the flows it completed.
    All per-flow work happens in the numba kernels above; Python touches only arrays.
    """

    def __init__(self, topo, tolerance: float = 0.0, seed: int = 0, capacity: int = 1024,
                 solver: str = "auto", later_arrivals: bool = True, hash_offset: int = 0):
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r}; expected one of {', '.join(SOLVERS)}")
        self.topo = topo
        self.tolerance = float(tolerance)
        # "incremental": the incremental solver when tolerance > 0 (multi-link paths, one
        # class); "full": every rate recomputed at every event (exact mode's solver, always);
        # "auto": in run_to_completion (no arrival can interrupt it) the incremental solver
        # while windows of its events show it refilling few flows, then the full one; the
        # full one under a control plane (run_until between its events), where arrivals
        # restart the incremental solver often (measured: docs/flow_model.md)
        self.solver = solver
        # False: every flow is added at time 0 (a dispatch-only layer), so between control-plane
        # events "auto" may use the incremental solver as run_to_completion does (no arrival
        # will restart it); add_flows after time 0 is then an error
        self.later_arrivals = bool(later_arrivals)
        self._whole = False  # inside run_to_completion
        self._auto_full = False
        self.seed = int(seed)
        # the fabric is one block of a larger one whose GPUs start at hash_offset: ECMP picks
        # that fabric's paths (FrozenTopology.route, netsim.aggregate)
        self.hash_offset = int(hash_offset)
        self.cap = topo.link_bw.astype(np.float64).copy()
        self.now = 0.0
        self.n = 0
        self.events = 0
        self.recomputes = 0
        self._alloc(capacity, capacity * 4)
        self.n_act = 0
        self.active = np.empty(capacity, np.int64)
        self._dirty = False
        self._single = True  # every path one link long (direct circuits): cheap rates
        self._classes = False  # some flow has priority > 0
        # flows waiting outside the kernel for their circuit to come up, per link
        # (netsim.fabric.parking): lists' heads and tails per link, next and serial per flow
        nl = len(self.cap)
        self._pk_head = np.full(nl, -1, np.int64)
        self._pk_tail = np.full(nl, -1, np.int64)
        self._pk_next = np.full(capacity, -1, np.int64)
        self._pk_seq = np.full(capacity, -1, np.int64)
        self._pk_mark = np.zeros(nl, np.bool_)
        self._pk_count = 0  # serial number of the next parking
        self._n_pk = 0
        self._hop = None  # one-hop fabrics: link of each GPU pair (-1: not routed yet), latency
        self._hop_lat = None
        self._csr = None  # kept link -> flow table (multi-link paths, one class); None: rebuild
        self._csr_cap = None  # the kept table's per-link room ends and its used length
        # components of the flow -> link graph (join_components): per link its union-find
        # parent and component, per component the stamp marks its flows carry and whether a
        # completion, an arrival or a change touched it since its last filling
        self._parent = np.arange(nl, dtype=np.int64)
        self._lcomp = np.arange(nl, dtype=np.int64)
        self._cmask = np.zeros(nl, np.uint8)
        self._cdirty = np.ones(nl, np.bool_)
        self._inc = None  # incremental solver's state (tolerance > 0); None: not built
        self.refilled = 0  # flows whose rates were recomputed, summed over recomputations
        # the incremental solver refills everything when more than this share of the live
        # flows lies after the earliest completed level (measured: see benchmarks/bench_flow.py)
        self.refill_frac = 0.5

    def _alloc(self, nf, nl):
        self.src = np.empty(nf, np.int64)
        self.dst = np.empty(nf, np.int64)
        self.bytes = np.empty(nf, np.float64)
        self._rem = np.empty(nf, np.float64)
        self.rate = np.zeros(nf, np.float64)
        self.start = np.empty(nf, np.float64)
        self.finish = np.full(nf, np.nan)
        self.lat = np.empty(nf, np.float64)
        self.group = np.empty(nf, np.int64)
        self.prio = np.zeros(nf, np.int64)
        self.path_ptr = np.zeros(nf + 1, np.int64)
        self.path_links = np.empty(nl, np.int64)

    def _grow(self, need_f, need_l):
        nf = len(self.src)
        nl = len(self.path_links)
        if need_f <= nf and need_l <= nl:
            return
        new_l = max(need_l, 2 * nl)
        self._flush()
        if need_f <= nf:  # only the path table is short (long paths): it alone grows
            links = np.empty(new_l, np.int64)
            m = self.path_ptr[self.n]
            links[:m] = self.path_links[:m]
            self.path_links = links
            return
        new_f = max(need_f, 2 * nf)
        old = {k: getattr(self, k) for k in
               ("src", "dst", "bytes", "_rem", "rate", "start", "finish", "lat", "group", "prio",
                "path_ptr", "path_links")}
        self._alloc(new_f, new_l)
        n = self.n
        for k in ("src", "dst", "bytes", "_rem", "rate", "start", "finish", "lat", "group",
                  "prio"):
            getattr(self, k)[:n] = old[k][:n]
        self.path_ptr[: n + 1] = old["path_ptr"][: n + 1]
        m = old["path_ptr"][n]
        self.path_links[:m] = old["path_links"][:m]
        act = np.empty(new_f, np.int64)
        act[: self.n_act] = self.active[: self.n_act]
        self.active = act

    def add_flows(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray, group=None,
                  priority: int = 0) -> np.ndarray:
        """Start flows ``src[i] -> dst[i]`` (GPU numbers) of ``nbytes[i]`` bytes at ``self.now``.

        Zero-byte and self flows are dropped. Returns the ids of the flows added.
        ``group`` (int per flow) tags flows for the caller's bookkeeping (e.g. receiver phase).
        ``priority`` > 0 puts the flows in a lower strict-priority class: they share only the
        capacity that the flows of lower classes leave on each link (max-min within a class).
        """
        if self.now > 0.0 and not self.later_arrivals:
            raise RuntimeError("flows added after time 0 to a flow fabric made with"
                               " later_arrivals=False")
        self._flush()
        src = np.asarray(src, np.int64)
        dst = np.asarray(dst, np.int64)
        nbytes = np.asarray(nbytes, np.float64)
        group = np.zeros(len(src), np.int64) if group is None else np.asarray(group, np.int64)
        if len(src) <= 8 and self._single:
            return self._add_few(src, dst, nbytes, group, priority)
        keep = (nbytes > 0) & (src != dst)
        src, dst, nbytes, group = src[keep], dst[keep], nbytes[keep], group[keep]
        k = len(src)
        if k == 0:
            return np.empty(0, np.int64)
        pp, pl, lat = self.topo.route(src, dst, self.seed, self.hash_offset)
        red = self.topo.redundant
        if red is None:
            red = _NO_RED
        n = self.n
        base = self.path_ptr[n]
        self._grow(n + k, base + len(pl))
        # drop constraints implied by another link's while storing (one pass, in the kernel)
        one_hop = _store_paths(pp, pl, red, self.path_ptr, self.path_links, n)
        if self._single and not one_hop:
            self._single = False
        sl = slice(n, n + k)
        self.src[sl] = src
        self.dst[sl] = dst
        self.bytes[sl] = nbytes
        self.rem[sl] = nbytes
        self.start[sl] = self.now
        self.finish[sl] = np.nan
        self.lat[sl] = lat
        self.group[sl] = group
        self.prio[sl] = priority
        if priority:
            self._classes = True
        ids = np.arange(n, n + k, dtype=np.int64)
        self.n += k
        self._dirty = True
        join_components(ids, self.path_ptr, self.path_links, self._parent, self._lcomp,
                        self._cmask, self._cdirty)
        self._append_to_table(ids)
        if not self._single and self._n_pk:
            self._unpark(None)
        if self._single:  # flows whose circuit is down wait outside the kernel's active list
            first = self.path_links[self.path_ptr[ids]]
            down = self.cap[first] <= 0.0
            self._park(ids[down], first[down])
            ids_act = ids[~down]
        else:
            ids_act = ids
        self.active[self.n_act : self.n_act + len(ids_act)] = ids_act
        self.n_act += len(ids_act)
        return ids

    def _append_to_table(self, ids: np.ndarray) -> None:
        """New flows ``ids`` (about to join the end of the active list) into the kept link ->
        flow table, if there is one with room (else it is dropped and rebuilt, with room, at the
        next recomputation): an engine adding each GPU's flows as it starts would otherwise
        rebuild the whole table once per arrival."""
        t = self._csr
        if t is None or self._single or self._classes or self._n_pk:
            self._csr = None
            return
        lptr, lend, lf, lpath, lplen, cnt, stamp = t
        if len(stamp) < len(self.src):  # the flow arrays grew: stamps for the new ids
            stamp = np.concatenate([stamp, np.full(len(self.src) - len(stamp), -1, np.int8)])
        lcap, top = self._csr_cap
        lf, lpath, lplen, ok = csr_append(ids, self.path_ptr, self.path_links, lptr, lend, lcap,
                                          top, lf, lpath, lplen, cnt)
        if not ok:
            self._csr = None
            return
        stamp[ids] = 0
        self._csr = (lptr, lend, lf, lpath, lplen, cnt, stamp)

    def prime_routes(self, src: np.ndarray, dst: np.ndarray) -> bool:
        """Route these GPU pairs now, in one kernel call, into the one-hop table used by small
        additions; returns False (and keeps nothing) if some pair is not one hop."""
        src = np.asarray(src, np.int64)
        dst = np.asarray(dst, np.int64)
        pp, pl, lat = self.topo.route(src, dst, self.seed, self.hash_offset)
        if np.any(np.diff(pp) != 1):
            return False  # not one-hop: the table is only for circuit fabrics
        if self._hop is None:
            g = self.topo.n_gpus
            self._hop = np.full((g, g), -1, np.int64)
            self._hop_lat = np.zeros((g, g))
        self._hop[src, dst] = pl
        self._hop_lat[src, dst] = lat
        return True

    def _add_few(self, src, dst, nbytes, group, priority) -> np.ndarray:
        """add_flows for a handful of one-hop flows (a GPU's batch on a circuit fabric): scalar
        work and the one-hop route table instead of array calls, which dominate at this size."""
        src_l, dst_l = src.tolist(), dst.tolist()
        hop = self._hop
        miss = [i for i, (a, b) in enumerate(zip(src_l, dst_l))
                if a != b and (hop is None or hop[a, b] < 0)]
        if miss and not self.prime_routes(src[miss], dst[miss]):
            self._single = False  # not a one-hop fabric after all: the general path
            return self.add_flows(src, dst, nbytes, group, priority)
        hop, hop_lat, cap = self._hop, self._hop_lat, self.cap
        ids, down = [], []
        n0 = self.n
        b0 = int(self.path_ptr[n0])
        self._grow(n0 + len(src), b0 + len(src))
        for s_, d_, b_, g_ in zip(src_l, dst_l, nbytes.tolist(), group.tolist()):
            if b_ <= 0 or s_ == d_:
                continue
            e = int(hop[s_, d_])
            n = self.n
            base = b0 + len(ids)  # one link per flow
            self.src[n], self.dst[n], self.bytes[n], self.rem[n] = s_, d_, b_, b_
            self.start[n], self.finish[n], self.lat[n] = self.now, np.nan, hop_lat[s_, d_]
            self.group[n], self.prio[n] = g_, priority
            self.path_ptr[n + 1] = base + 1
            self.path_links[base] = e
            self.n = n + 1
            if cap[e] <= 0.0:
                down.append(n)
            else:
                self.active[self.n_act] = n
                self.n_act += 1
            ids.append(n)
        if down:
            d = np.asarray(down, np.int64)
            self._park(d, self.path_links[self.path_ptr[d]])
        if priority:
            self._classes = True
        self._touch_all()
        self._csr = None
        return np.asarray(ids, np.int64)

    def extend(self, ids, nbytes) -> None:
        """Add ``nbytes`` to flows ``ids`` (array or one int) that have not finished (e.g. a sender's next batch for
        the same receiver, queued behind what it is still sending): their completion moves
        later, their rates do not change. Raises ValueError if one has finished."""
        if self._inc is not None:
            self._flush()
        if type(ids) is int or np.isscalar(ids):  # one flow (a combine batch), in scalars
            fin = self.finish[ids]
            if fin == fin:  # not NaN: finished
                raise ValueError("extend: flow already finished; start a new one")
            self.bytes[ids] += nbytes
            self._rem[ids] += nbytes
            return
        ids = np.atleast_1d(np.asarray(ids, np.int64))
        if not np.isnan(self.finish[ids]).all():
            raise ValueError("extend: flow already finished; start a new one")
        nb = np.broadcast_to(np.asarray(nbytes, np.float64), ids.shape)
        np.add.at(self.bytes, ids, nb)
        np.add.at(self._rem, ids, nb)

    def set_link_capacity(self, links: np.ndarray, bandwidth_Bps: np.ndarray) -> None:
        """Change link capacities from ``self.now`` on (e.g. OCS circuits going up or down).

        On a one-hop (circuit) fabric, flows whose link goes down leave the kernel's active list
        (they cannot move) and come back when it comes up, so a kernel call costs what is live,
        not everything waiting for a circuit. The change and the parking are one kernel call
        (:func:`netsim.fabric.parking.set_capacity`); flows wait per link, so bringing circuits
        up costs what waits on them.
        """
        if self._inc is not None:
            self._flush()
        links = np.asarray(links, np.int64)
        if links.ndim != 1:
            links = np.atleast_1d(links).ravel()
        new = bandwidth_Bps
        if not (type(new) is np.ndarray and new.dtype == np.float64 and new.shape == links.shape
                and new.flags.c_contiguous):
            new = np.ascontiguousarray(
                np.broadcast_to(np.asarray(new, np.float64), links.shape).ravel())
        if not links.flags.c_contiguous:
            links = np.ascontiguousarray(links)
        self._touch_all()
        if self._single and len(self._pk_next) < self.n:
            self._pk_next = grown(self._pk_next, self.n)
            self._pk_seq = grown(self._pk_seq, self.n)
        self.n_act, self._n_pk, self._pk_count, back = set_capacity(
            links, new, self.cap, self._single, self.active, self.n_act, self.path_ptr,
            self.path_links, self._rem, self.bytes, _EPS_BYTES, _EPS_REL, self._pk_head,
            self._pk_tail, self._pk_next, self._pk_seq, self._pk_mark, self._n_pk, self._pk_count)
        if back:
            self._csr = None

    def _park(self, ids: np.ndarray, links: np.ndarray) -> None:
        """Hold flows ``ids`` (whose circuits ``links`` are down) outside the active list."""
        if not len(ids):
            return
        need = int(ids.max()) + 1
        if len(self._pk_next) < need:
            self._pk_next = grown(self._pk_next, need)
            self._pk_seq = grown(self._pk_seq, need)
        self._pk_count = park(np.asarray(ids, np.int64), np.asarray(links, np.int64),
                              self._pk_head, self._pk_tail, self._pk_next, self._pk_seq,
                              self._pk_count)
        self._n_pk += len(ids)

    def _unpark(self, links: np.ndarray | None) -> None:
        """Return the parked flows on ``links`` (None: all) to the active list, in the order
        they were parked."""
        if not self._n_pk:
            return
        every = links is None
        links = np.zeros(0, np.int64) if every else np.atleast_1d(np.asarray(links, np.int64))
        n0 = self.n_act
        self.n_act, self._n_pk = unpark(links, every, self._pk_head, self._pk_tail,
                                        self._pk_next, self._pk_seq, self.active, self.n_act,
                                        self._n_pk)
        if self.n_act > n0:
            self._touch_all()
            self._csr = None

    @property
    def n_parked(self) -> int:
        """Flows waiting for a circuit (not in the kernel's active list)."""
        return self._n_pk

    def _n_classes(self) -> int:
        return int(self.prio[self.active[: self.n_act]].max()) + 1 if self._classes else 1

    def _table_dtypes(self) -> tuple[np.ndarray, np.ndarray]:
        """Empty arrays of the link -> flow table's link and path-length dtypes: uint16 and
        uint8 when every link id and path length fits (the scans stream half the bytes), else
        int32 (a second compiled signature, only for such fabrics)."""
        n = self.n
        plen = int(np.diff(self.path_ptr[: n + 1]).max()) if n else 0
        if len(self.cap) <= 1 << 16 and plen <= 255:
            return _NARROW
        return _WIDE

    def _table(self, n_classes: int):
        """The kept link -> flow table when it applies (multi-link paths, one priority class),
        built if the set of active flows changed other than by completions; else None."""
        if self._single or n_classes > 1:
            self._csr = None
            return None
        if self._csr is None:
            lptr, lend, lf, lpath, lplen, cnt = link_csr(self.active, self.n_act, self.path_ptr,
                                                         self.path_links, len(self.cap),
                                                         *self._table_dtypes())
            self._csr_cap = (lptr[1:].copy(), np.array([lptr[-1]], np.int64))  # room, end
            stamp = np.full(len(self.src), -1, np.int8)  # -1: not active
            stamp[self.active[: self.n_act]] = 0
            self._csr = (lptr, lend, lf, lpath, lplen, cnt, stamp)
            self._cmask[:] = 0
            self._cdirty[:] = True
        return self._csr

    def _touch_all(self) -> None:
        """Rates are stale everywhere (a change the components do not track)."""
        self._dirty = True
        self._cdirty[:] = True

    def _recompute(self):
        if self._dirty and self.n_act:
            nc = self._n_classes()
            t = self._table(nc)
            if t is not None:
                self.refilled += maxmin_csr(*t, self.cap, self.rate, self._lcomp, self._cdirty,
                                            self._cmask, self.tolerance == 0.0)
            else:
                _rates(self.active, self.n_act, self.prio, self.path_ptr, self.path_links,
                       self.cap, self.rate, self._single, nc)
                self.refilled += self.n_act
            self.recomputes += 1
        self._dirty = False

    def next_event_time(self) -> float:
        """Earliest projected completion (s), or inf when nothing is active."""
        if self._inc is not None:
            st = self._inc
            return float(st["lmin"][: st["n_steps"]].min()) if self.n_act else _INF
        self._recompute()
        if not self.n_act:
            return _INF
        return _next_time(self.active, self.n_act, self.rem, self.bytes, self.rate, self.now)

    def step(self, horizon: float = _INF) -> np.ndarray:
        """Advance to the next completion event, or to ``horizon`` if that comes first.

        Returns the ids of the flows completed (their send finish is ``self.finish[id]``,
        their delivery ``finish + lat``).
        """
        self._flush()
        self._recompute()
        if not self.n_act:
            if horizon < _INF:
                self.now = max(self.now, horizon)
            return np.empty(0, np.int64)
        t, nd = advance(self.active, self.n_act, self.rem, self.bytes, self.rate, self.finish,
                        self.now, horizon, self.tolerance, np.empty(self.n_act))
        if not np.isfinite(t):
            raise RuntimeError("flow fabric stalled: active flows with zero rate and no horizon")
        self.now = t
        self.events += 1
        if nd == 0:
            return np.empty(0, np.int64)
        done = self.active[self.n_act - nd : self.n_act].copy()
        self.n_act -= nd
        self._touch_all()
        self._csr = None  # (the exact single-event API: rebuilt, not updated)
        return done

    def run_until(self, horizon: float, left: np.ndarray, done_at: np.ndarray,
                  hit: np.ndarray) -> bool:
        """Advance inside the kernel until ``horizon`` or until a group completes.

        ``left[g]`` counts flows still expected in group ``g`` (decremented here), ``done_at[g]``
        the latest delivery time (send finish + path latency) among its completed flows; ``hit[g]``
        is set when a completion brings ``left[g]`` to zero. Returns whether that happened.
        """
        if not self.n_act:
            if horizon < _INF:
                self.now = max(self.now, horizon)
            return False
        n_classes = self._n_classes()
        inc_ok = self.tolerance > 0.0 and not self._single and n_classes == 1
        if inc_ok and self.solver == "incremental":
            return self._run_inc(horizon, left, done_at, hit)
        whole = self._whole or not self.later_arrivals  # no arrival can restart the solver
        if inc_ok and self.solver == "auto" and whole and not self._auto_full:
            # the incremental solver in windows of AUTO_PROBE events, as long as each refills
            # at most AUTO_SHARE of the live flows per recomputation; after the first window
            # that refills more, the full solver (its recomputation costs less per flow)
            n0, rc0, w0 = self.n_act, self.recomputes, self.refilled
            fired = self._run_inc(horizon, left, done_at, hit, AUTO_PROBE)
            rc = self.recomputes - rc0
            if self.refilled - w0 > AUTO_SHARE * rc * n0:
                self._auto_full = True
                self._flush()
                # in id order, as a fresh run's: the full solver's passes read memory in order
                self.active[: self.n_act] = np.sort(self.active[: self.n_act])
            return fired
        t = self._table(n_classes)
        if t is not None:
            now, n_act, ev, rc, fired, dirty, work = run_until(
                self.active, self.n_act, self.rem, self.bytes, self.rate, self.finish, self.lat,
                self.group, left, done_at, hit, self.path_ptr, self.path_links, self.cap,
                self.now, horizon, self.tolerance, self._dirty, *t, self._lcomp, self._cdirty,
                self._cmask)
        else:
            now, n_act, ev, rc, fired, dirty, work = run_until_rates(
                self.active, self.n_act, self.rem, self.bytes, self.rate, self.finish, self.lat,
                self.group, left, done_at, hit, self.prio, self.path_ptr, self.path_links,
                self.cap, self.now, horizon, self.tolerance, self._single, n_classes,
                self._dirty)
        self.now, self.n_act, self._dirty = now, n_act, dirty
        self.events += ev
        self.recomputes += rc
        self.refilled += work
        return fired

    @property
    def rem(self) -> np.ndarray:
        """Bytes left to send per flow, as of ``self.now``."""
        st = self._inc
        if st is not None:
            inc_materialize(st["order"], self.n_act, self._rem, self.rate, st["t_upd"], self.now)
        return self._rem

    @rem.setter
    def rem(self, value: np.ndarray) -> None:
        self._flush()
        self._rem = value

    def _flush(self) -> None:
        """Leave the incremental solver (before anything changes flows, bytes or capacities):
        remaining bytes brought to ``self.now``, live flows back into ``active`` (level order)."""
        st = self._inc
        if st is None:
            return
        n = self.n_act
        inc_materialize(st["order"], n, self._rem, self.rate, st["t_upd"], self.now)
        self.active[:n] = st["order"][:n]
        self._inc = None
        self._touch_all()
        self._csr = None

    def _run_inc(self, horizon: float, left, done_at, hit,
                 max_events: int = np.iinfo(np.int64).max) -> bool:
        """:meth:`run_until` with the incremental solver (see :func:`inc_run_until`), for at
        most ``max_events`` events."""
        st = self._inc
        full = st is None
        if full:
            nf, nl = len(self.src), len(self.cap)
            st = self._inc = dict(
                table=link_csr(self.active, self.n_act, self.path_ptr, self.path_links, nl,
                               *self._table_dtypes()),
                stamp=np.full(nf, -1, np.int64), epoch=0,
                order=np.empty(nf, np.int64), n_steps=0,
                step_ptr=np.zeros(nl + 2, np.int64), lev=np.full(nf, -1, np.int64),
                t_upd=np.zeros(nf), proj=np.full(nf, _INF), lmin=np.full(nl + 1, _INF),
                res=np.empty(nl), c=np.zeros(nl, np.int64), lpos=np.full(nl, -1, np.int64),
                touched=np.empty(nl, np.int64), lhk=np.empty(nl + 1),
                lhv=np.empty(nl + 1, np.int64),
                D=np.empty(nf, np.int64))
        (now, n_ord, st["n_steps"], st["epoch"], ev, rc, refilled,
         fired) = inc_run_until(
            self.active, self.n_act, self._rem, self.bytes, self.rate, self.finish, self.lat,
            self.group, left, done_at, hit, self.path_ptr, self.path_links, self.cap, self.now,
            horizon, self.tolerance, full, *st["table"], st["stamp"], st["epoch"],
            self.refill_frac, st["order"], self.n_act, st["step_ptr"], st["n_steps"],
            st["lev"], st["t_upd"],
            st["proj"], st["lmin"], st["res"], st["c"], st["lpos"], st["touched"], st["lhk"],
            st["lhv"], st["D"], max_events)
        self.now, self.n_act = now, n_ord
        self._dirty = False
        self.events += ev
        self.recomputes += rc
        self.refilled += refilled
        return fired

    def run_to_completion(self) -> None:
        """Run until every flow has finished (no control plane attached): one kernel call."""
        if not self.n_act:
            return
        g = int(self.group[: self.n].max()) + 1
        left = np.full(g, np.iinfo(np.int64).max // 2, np.int64)  # never reaches zero
        self._whole = True
        self._auto_full = False  # auto has handed this run to the full solver
        try:
            while self.n_act:
                before = self.n_act
                self.run_until(_INF, left, np.zeros(g), np.zeros(g, np.bool_))
                if self.n_act == before and np.isinf(self.next_event_time()):
                    raise RuntimeError("flow fabric stalled: active flows with zero rate")
        finally:
            self._whole = False

    def delivered_at(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Delivery times (s): send finish + path latency."""
        if ids is None:
            ids = np.arange(self.n)
        return self.finish[ids] + self.lat[ids]
