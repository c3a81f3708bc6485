"""numba kernels of the circuit engine (:mod:`netsim.engines.circuit`): the per-piece work done
at the end of every matching, which numpy did in some thirty small array calls per matching.

Each kernel does, element by element, the same IEEE operations in the same order as the numpy
expressions it replaces (no fastmath), so the engine's rows are unchanged to the bit
(``benchmarks/bench_ocs_layer.py --against REV --cases``)."""
from __future__ import annotations

import numpy as np
from numba import njit

# a flow with at most _EPS_BYTES + _EPS_REL x its bytes left is complete (the fabric's rule)
from netsim.fabric.flow import _EPS_BYTES, _EPS_REL


@njit(cache=True)
def hand_pieces(flows, ptr, pflow, psrc, pdst, pnbytes, handed, full, rem, tot, token_bytes,
                whole):
    """Hand the receivers of the pieces of ``flows`` the bytes that arrived since their last
    batch (:meth:`netsim.engines.circuit._OcsLayer._give`).

    ``flows``: distinct flow ids (those outside ``ptr`` are ignored); pieces of flow f are
    ``ptr[f]:ptr[f + 1]``, piece k carrying ``pnbytes[k]`` B of GPU pair (``psrc[k]``,
    ``pdst[k]``) inside fabric flow ``pflow[k]`` (``whole``: the whole flow; else its share,
    progressing in proportion); ``rem`` and ``tot``: the fabric's remaining and total bytes per
    flow. Tokens are atomic: a piece not
    complete hands whole tokens (``token_bytes`` B) only. Updates ``handed`` (B handed so far)
    and ``full`` (piece completely handed).

    Returns, per receiver with something new (in order of receiver, stable): ``recv`` (GPU),
    ``n_done`` (pieces into it completed now) and ``sptr``, its pieces that send bytes being
    ``src[sptr[r]:sptr[r + 1]]`` with ``got`` B each (pieces in the order given)."""
    nf = len(ptr) - 1
    m = 0
    for q in range(len(flows)):
        f = flows[q]
        if 0 <= f < nf:
            m += ptr[f + 1] - ptr[f]
    ks = np.empty(m, np.int64)  # the pieces not yet full, in order
    m = 0
    for q in range(len(flows)):
        f = flows[q]
        if 0 <= f < nf:
            for k in range(ptr[f], ptr[f + 1]):
                if not full[k]:
                    ks[m] = k
                    m += 1
    got = np.empty(m, np.float64)
    send = np.zeros(m, np.bool_)
    done = np.zeros(m, np.bool_)
    sel = np.empty(m, np.int64)  # positions (in ks) of pieces that send or complete
    ns = 0
    for a in range(m):
        k = ks[a]
        fl = pflow[k]
        r, t = rem[fl], tot[fl]
        dn = not (r > _EPS_BYTES + _EPS_REL * t)
        nb = pnbytes[k]
        if dn:
            g = nb - handed[k]
        else:
            if whole:
                s = t - r
            else:
                s = nb * ((t - r) / t)
            g = s - handed[k]
            g = np.floor(g / token_bytes) * token_bytes
        sd = g > _EPS_BYTES + _EPS_REL * nb
        if dn:
            handed[k] = nb
            full[k] = True
        else:
            handed[k] = handed[k] + (g if sd else 0.0)
        got[a], send[a], done[a] = g, sd, dn
        if sd or dn:
            sel[ns] = a
            ns += 1
    sel = sel[:ns]
    keys = np.empty(ns, np.int64)
    for q in range(ns):
        keys[q] = pdst[ks[sel[q]]]
    order = sel[np.argsort(keys, kind="mergesort")]  # by receiver, pieces in their order
    n_r = 0
    for q in range(ns):
        if q == 0 or pdst[ks[order[q]]] != pdst[ks[order[q - 1]]]:
            n_r += 1
    recv = np.empty(n_r, np.int64)
    n_done = np.zeros(n_r, np.int64)
    sptr = np.zeros(n_r + 1, np.int64)
    src = np.empty(ns, np.int64)
    gots = np.empty(ns, np.float64)
    r_ = -1
    w = 0
    for q in range(ns):
        a = order[q]
        k = ks[a]
        if q == 0 or pdst[k] != pdst[ks[order[q - 1]]]:
            r_ += 1
            recv[r_] = pdst[k]
            sptr[r_] = w
        if done[a]:
            n_done[r_] += 1
        if send[a]:
            src[w] = psrc[k]
            gots[w] = got[a]
            w += 1
        sptr[r_ + 1] = w
    return recv, n_done, sptr, src[:w], gots[:w]
