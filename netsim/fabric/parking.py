"""Flows parked outside a one-hop (circuit) flow fabric's active list while their circuit is down
(:meth:`netsim.fabric.flow.FlowFabric.set_link_capacity`), kept per link.

A circuit fabric of U endpoints has U (U - 1) links and, during a circuit schedule, most of its
flows wait for their circuit. Keeping the parked flows in one list made every circuit change scan
all of them; here each link has its own list (a singly linked list through the flows: ``head``,
``tail`` per link, ``nxt`` per flow), so bringing a matching's circuits up costs what is parked
on those circuits. Each parked flow carries the serial number of its parking (``seq``): flows
coming back are appended to the active list in the order they were parked, across links, which
is the order the single list gave (the active list's order is unchanged).

State (numpy arrays, owned by the fabric): ``head[e]``, ``tail[e]`` (-1: nothing parked on link
e), ``nxt[f]`` (next flow parked on f's link, -1: last), ``seq[f]`` (when f was parked; read only
while it is), ``mark`` (per link, all False between calls: scratch). Flow ids index ``nxt`` and
``seq``, which the caller sizes (:func:`grown`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

def grown(a: np.ndarray, need: int) -> np.ndarray:
    """``a`` (per-flow parking state) with room for ``need`` flows: itself, or a copy twice as
    long (or ``need``) with the new entries -1."""
    if need <= len(a):
        return a
    out = np.full(max(need, 2 * len(a)), -1, np.int64)
    out[: len(a)] = a
    return out


@njit(cache=True, inline="always")
def _park_one(f, e, head, tail, nxt, seq, counter):
    """Append flow ``f`` to link ``e``'s parked list with serial number ``counter``."""
    nxt[f] = -1
    seq[f] = counter
    if head[e] < 0:
        head[e] = f
    else:
        nxt[tail[e]] = f
    tail[e] = f


@njit(cache=True)
def park(ids, links, head, tail, nxt, seq, counter):
    """Park flows ``ids`` (in this order) on their links ``links``; returns the next serial
    number."""
    for q in range(len(ids)):
        _park_one(ids[q], links[q], head, tail, nxt, seq, counter)
        counter += 1
    return counter


@njit(cache=True)
def unpark(links, every, head, tail, nxt, seq, active, n_act, n_pk):
    """Append the flows parked on ``links`` (a set: repeats are ignored; ``every``: all links)
    to ``active[n_act:]``, in the order they were parked. Returns (n_act, n_pk) after."""
    n_links = len(head) if every else len(links)
    m = 0
    for q in range(n_links):  # count first: a buffer of every parked flow costs a page fault
        f = head[q if every else links[q]]
        while f >= 0:
            m += 1
            f = nxt[f]
    if m == 0:
        return n_act, n_pk
    buf = np.empty(m, np.int64)
    m = 0
    for q in range(n_links):
        e = q if every else links[q]
        f = head[e]
        while f >= 0:
            buf[m] = f
            m += 1
            f = nxt[f]
        head[e] = -1
    keys = np.empty(m, np.int64)
    for q in range(m):
        keys[q] = seq[buf[q]]
    order = np.argsort(keys)  # serial numbers are distinct: any sort gives the same order
    for q in range(m):
        active[n_act + q] = buf[order[q]]
    return n_act + m, n_pk - m


@njit(cache=True)
def set_capacity(links, new, cap, single, active, n_act, path_ptr, path_links, rem, nbytes,
                 eps_bytes, eps_rel, head, tail, nxt, seq, mark, n_pk, counter):
    """``cap[links] = new`` (the last value of a repeated link wins; a change is judged on the
    capacity before the call) and, on a one-hop fabric (``single``), the parking that follows:
    active flows whose link goes down (capacity > 0 to <= 0) and that are not finished (more
    than ``eps_bytes + eps_rel * nbytes`` left: the fabric's rule) are parked, in the active list's order, the others keeping theirs;
    then the flows parked on links coming up (<= 0 to > 0) return to the end of the active
    list (:func:`unpark`). Returns (n_act, n_pk, counter, whether flows came back)."""
    k = len(links)
    old = np.empty(k, np.float64)
    for q in range(k):
        old[q] = cap[links[q]]
    for q in range(k):
        cap[links[q]] = new[q]
    if not single:
        return n_act, n_pk, counter, False
    n_down = 0
    n_up = 0
    for q in range(k):
        if old[q] > 0.0 and new[q] <= 0.0:
            mark[links[q]] = True
            n_down += 1
        elif old[q] <= 0.0 and new[q] > 0.0:
            n_up += 1
    if n_down and n_act:
        w = 0
        for a in range(n_act):
            f = active[a]
            e = path_links[path_ptr[f]]
            if mark[e] and rem[f] > eps_bytes + eps_rel * nbytes[f]:
                _park_one(f, e, head, tail, nxt, seq, counter)
                counter += 1
                n_pk += 1
            else:
                active[w] = f
                w += 1
        n_act = w
    if n_down:
        for q in range(k):
            mark[links[q]] = False
    back = False
    if n_up and n_pk:
        up = np.empty(n_up, np.int64)
        u = 0
        for q in range(k):
            if old[q] <= 0.0 and new[q] > 0.0:
                up[u] = links[q]
                u += 1
        n0 = n_act
        n_act, n_pk = unpark(up, False, head, tail, nxt, seq, active, n_act, n_pk)
        back = n_act > n0
    return n_act, n_pk, counter, back
