"""Where micro-batches and EP ranks sit: predictive sample placement and EP-aware rank mapping.

**Sample placement** (``sample_placement=predictive|oracle``). Row ``b`` of the GPU x expert count
matrix is micro-batch ``b`` (its samples keep their identity across iterations: the same sequences,
the same data stream). Placement assigns micro-batches to GPUs, a permutation, by maximising (Hungarian
algorithm, ``scipy.optimize.linear_sum_assignment``)::

    W[b, g] = 2 * (pairs of b served on g itself + 0.5 * pairs served in g's server)
              - tokens_per_gpu * [g != previous GPU of b]

i.e. the pairs that stay off the network in dispatch *and* combine, minus the cost of moving the
micro-batch (its hidden states, ``tokens_per_gpu`` token-sized messages, once). ``predictive``
scores with the *previous* iteration's routing (stale, what a system can know), ``oracle`` with
the current one (the placement bound). The move is charged as flows before the dispatch: a GPU
starts its dispatch when its micro-batch has arrived.

**EP-aware rank mapping** (``rank_mapping=ep_aware``; the issue's ``topology=ep_aware``). The
logical GPUs (EP rank r of group q: micro-batch and experts) are relabelled onto physical GPUs so
that the *predicted* traffic (the warm-up iteration's dispatch matrix) loads the fabric's locality
domains evenly and keeps heavy pairs together: leaves (``gpus_per_server * servers_per_leaf``
GPUs, when the topology has ``servers_per_leaf``), then servers inside them. Two heuristics, each
followed by swaps between the most and least loaded domain while they help: a greedy (logical GPUs
in decreasing order of traffic, each to the domain with room that minimises the largest
cross-domain ingress or egress so far) and LPT balancing of each domain's total traffic. The
partition with the smallest largest cross-domain load on the prediction is kept if it beats the
identity mapping. Decided once, at
job start, like a job placement: its cost is staleness, not bytes.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sample_assignment", "move_bytes", "ep_aware_mapping", "domain_levels",
           "relabel"]


def sample_assignment(pred_counts: np.ndarray, layout, gps: int, tokens_per_gpu: int,
                      prev: np.ndarray | None = None) -> np.ndarray:
    """``perm[b]``: the GPU micro-batch ``b`` runs on (see the module docstring)."""
    from scipy.optimize import linear_sum_assignment

    c = np.asarray(pred_counts, np.float64)
    n = c.shape[0]
    loc, srv = layout.local_share(gps)
    W = 2.0 * (c @ loc.T + 0.5 * (c @ (srv - loc).T))
    if prev is None:
        prev = np.arange(n)
    moved = np.ones((n, n), bool)
    moved[np.arange(n), prev] = False
    W = W - float(tokens_per_gpu) * moved
    rows, cols = linear_sum_assignment(W, maximize=True)
    perm = np.empty(n, np.int64)
    perm[rows] = cols
    # keep the previous GPU where that is as good (ties: no gratuitous moves)
    stay = W[np.arange(n), prev] >= W[np.arange(n), perm] - 1e-9
    if stay.any() and len(np.unique(np.where(stay, prev, perm))) == n:
        perm = np.where(stay, prev, perm)
    return perm


def move_bytes(prev: np.ndarray, perm: np.ndarray, nbytes: float) -> np.ndarray:
    """N x N bytes of micro-batches moving from GPU ``prev[b]`` to ``perm[b]``."""
    n = len(perm)
    out = np.zeros((n, n))
    m = prev != perm
    np.add.at(out, (prev[m], perm[m]), float(nbytes))
    return out


def domain_levels(ft, n: int) -> list[int]:
    """Locality domain sizes (GPUs), outermost first: leaf (when the topology has servers_per_leaf),
    then server; sizes that do not split ``n`` into several domains are dropped."""
    gps = max(1, int(getattr(ft, "gpus_per_server", 1)))
    out = []
    spl = ft.params.get("servers_per_leaf") if getattr(ft, "params", None) else None
    if spl:
        out.append(gps * int(spl))
    out.append(gps)
    return [d for d in out if 1 < d < n and n % d == 0]


def _max_cross(T: np.ndarray, part: np.ndarray) -> float:
    same = part[:, None] == part[None, :]
    x = np.where(same, 0.0, T)
    P = part.max() + 1
    out_ = np.bincount(part, weights=x.sum(axis=1), minlength=P)
    in_ = np.bincount(part, weights=x.sum(axis=0), minlength=P)
    return float(max(out_.max(), in_.max()))


def _greedy_partition(T: np.ndarray, n_parts: int, cap: int) -> np.ndarray:
    n = T.shape[0]
    part = np.full(n, -1, np.int64)
    fill = np.zeros(n_parts, np.int64)
    c_in = np.zeros(n_parts)
    c_out = np.zeros(n_parts)
    to_p = np.zeros((n, n_parts))    # to_p[i, p] = sum_{j in p} T[i, j]
    from_p = np.zeros((n, n_parts))  # from_p[i, p] = sum_{j in p} T[j, i]
    order = np.argsort(-(T.sum(axis=0) + T.sum(axis=1)), kind="stable")
    for i in order:
        tot_to, tot_from = to_p[i].sum(), from_p[i].sum()
        base = np.maximum(c_out + from_p[i], c_in + to_p[i])
        own = np.maximum(c_out + tot_to - to_p[i], c_in + tot_from - from_p[i])
        # max of base over p != q, via the two largest values
        o = np.argsort(-base, kind="stable")
        top1, top2 = base[o[0]], (base[o[1]] if n_parts > 1 else -np.inf)
        excl = np.where(np.arange(n_parts) == o[0], top2, top1)
        score = np.maximum(excl, own)
        score[fill >= cap] = np.inf
        aff = to_p[i] + from_p[i]
        q = int(np.lexsort((-aff, score))[0])
        part[i] = q
        fill[q] += 1
        c_out[q] = c_out[q] + tot_to - to_p[i, q]
        c_in[q] = c_in[q] + tot_from - from_p[i, q]
        mask = np.arange(n_parts) != q
        c_out[mask] += from_p[i, mask]
        c_in[mask] += to_p[i, mask]
        to_p[:, q] += T[:, i]
        from_p[:, q] += T[i, :]
    return part


def _lpt_partition(T: np.ndarray, n_parts: int, cap: int) -> np.ndarray:
    """Balance each part's total traffic (in + out): heaviest first, to the lightest part."""
    w = T.sum(axis=0) + T.sum(axis=1)
    part = np.empty(len(w), np.int64)
    load = np.zeros(n_parts)
    fill = np.zeros(n_parts, np.int64)
    for i in np.argsort(-w, kind="stable"):
        ok = np.flatnonzero(fill < cap)
        q = ok[np.argmin(load[ok])]
        part[i] = q
        load[q] += w[i]
        fill[q] += 1
    return part


def _refine(T: np.ndarray, part: np.ndarray, passes: int | None = None) -> np.ndarray:
    """Swap a member of the most loaded part with one of the least loaded while that lowers the
    largest cross-domain load."""
    part = part.copy()
    w = T.sum(axis=0) + T.sum(axis=1)
    best = _max_cross(T, part)
    P = part.max() + 1
    for _ in range(passes or 2 * len(part)):
        same = part[:, None] == part[None, :]
        x = np.where(same, 0.0, T)
        load = np.maximum(np.bincount(part, weights=x.sum(axis=1), minlength=P),
                          np.bincount(part, weights=x.sum(axis=0), minlength=P))
        hi, lo = int(np.argmax(load)), int(np.argmin(load))
        if hi == lo:
            break
        a = np.flatnonzero(part == hi)
        b = np.flatnonzero(part == lo)
        improved = False
        for i in a[np.argsort(-w[a])][:4]:
            for j in b[np.argsort(w[b])][:4]:
                part[i], part[j] = lo, hi
                v = _max_cross(T, part)
                if v < best * (1 - 1e-12):
                    best, improved = v, True
                    break
                part[i], part[j] = hi, lo
            if improved:
                break
        if not improved:
            break
    return part


def ep_aware_mapping(pred_dispatch: np.ndarray, levels: list[int]) -> np.ndarray:
    """``sigma[i]``: physical GPU of logical GPU ``i`` (see the module docstring)."""
    T = np.asarray(pred_dispatch, np.float64).copy()
    np.fill_diagonal(T, 0.0)
    n = T.shape[0]
    sigma = np.arange(n)
    if not levels:
        return sigma

    def place(items: np.ndarray, offset: int, lv: list[int]) -> None:
        if not lv or len(items) <= lv[0]:
            if lv and len(items) > 1:
                place(items, offset, lv[1:])
            else:
                sigma[items] = offset + np.arange(len(items))
            return
        size = lv[0]
        P = len(items) // size
        sub = T[np.ix_(items, items)]
        ident = np.arange(len(items)) // size
        cands = [ident, _lpt_partition(sub, P, size), _greedy_partition(sub, P, size)]
        cands = [_refine(sub, c) for c in cands[1:]]
        part = min(cands, key=lambda c: _max_cross(sub, c))
        if _max_cross(sub, part) >= _max_cross(sub, ident) * (1 - 1e-9):
            part = ident
        for p in range(P):
            place(items[part == p], offset + p * size, lv[1:])

    place(np.arange(n), 0, list(levels))
    return sigma


def relabel(m: np.ndarray, sigma: np.ndarray, rows_only: bool = False) -> np.ndarray:
    """Array over logical GPUs -> over physical GPUs: ``out[sigma[i], sigma[j]] = m[i, j]`` for an
    N x N matrix, ``out[sigma[i]] = m[i]`` for a vector or with ``rows_only``."""
    m = np.asarray(m)
    out = np.empty_like(m)
    if m.ndim == 1 or rows_only:
        out[sigma] = m
    else:
        out[np.ix_(sigma, sigma)] = m
    return out
