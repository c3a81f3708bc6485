"""Where samples and EP ranks sit: predictive sample placement and EP-aware rank mapping.

**Sequence placement** (``sample_placement=predictive|oracle`` when the routing has sequence
ids: :func:`sequence_placement`). The samples are sequences (their pieces on one GPU,
*fragments*); a sequence's tokens tend to choose the same experts, so moving a fragment to the
GPU or server holding its experts keeps pairs off the network. A linear programme places
fragments (every GPU keeps its token count) to minimise the bottleneck GPU's dispatch and combine
messages plus the moved hidden states; ``predictive`` knows each sequence's first half,
``oracle`` every token; the runner adopts a placement only if the fabric's bounds predict the
moves plus the layer faster than no move, and ``samples_moved`` says how many fragments moved
(0: nothing worth moving).

**Micro-batch placement** (the same options without sequence ids). Row ``b`` of the GPU x expert count
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
identity mapping, and the whole mapping only if it does not raise the fabric's routed link-load
bound of the predicted traffic (:func:`routed_load_bound_s`: every pair on its ECMP path) over
the identity's: domains are servers and leaves, so on a rail-optimised fabric a mapping that
balances servers can move ranks off their rails onto the spines, which that check refuses (a
tie, e.g. both bound by the hot GPU's own port, keeps the partition's choice).
Decided once, at job start, like a job placement: its cost is staleness, not bytes.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sample_assignment", "sequence_placement", "prefix_profiles", "dest_share",
           "move_bytes", "ep_aware_mapping", "routed_load_bound_s",
           "domain_levels", "relabel"]


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


def prefix_profiles(choices: np.ndarray, samples: np.ndarray, experts: int) -> np.ndarray:
    """Each sample run's predicted expert pairs per token, from the sample's
    prefix -- the first ``ceil(L / 2)`` of the sample's ``L`` tokens (a sample is a run of
    consecutive tokens with one sequence id). Returned per sample run as ``(run[T], P[R, E])``."""
    choices = np.asarray(choices, np.int64)
    T, k = choices.shape
    start = np.r_[True, samples[1:] != samples[:-1]]
    run = np.cumsum(start) - 1
    R = int(run[-1]) + 1
    first = np.flatnonzero(start)
    length = np.bincount(run, minlength=R)
    pos = np.arange(T) - first[run]
    pre = pos < (length[run] + 1) // 2
    P = np.bincount(np.repeat(run[pre], k) * experts + choices[pre].ravel(),
                    minlength=R * experts).reshape(R, experts).astype(np.float64)
    return run, P / ((length + 1) // 2)[:, None]


def dest_share(layout, n: int, experts: int) -> np.ndarray:
    """``A[g, h, e]``: share of expert ``e``'s tokens from a source on GPU ``g`` computed on GPU
    ``h`` under ``layout`` (exact for up to 10 replicas of an expert, else to 1/2520)."""
    M = 2520  # lcm(1..10): replicas split a source's tokens evenly
    src, dst, _, tok = layout.assign(np.full((n, experts), M, np.int64))
    per_src = len(src) // n
    e = (np.tile(layout.rep_expert, n) if per_src != experts else
         np.tile(np.arange(experts), n))
    A = np.zeros((n, n, experts))
    np.add.at(A, (src, dst, e), tok / M)
    return A


def sequence_placement(choices: np.ndarray, samples: np.ndarray, layout, gps: int,
                       tokens_per_gpu: int, knows: str = "all", combine_scale: float = 1.0,
                       accept=None):
    """Place samples (sequences) on GPUs by their experts: ``(gpu[T], moved_fragments)``.

    ``choices[T, k]``: each token's experts (window order: token ``i`` starts on GPU
    ``i // tokens_per_gpu``); ``samples[T]``: the sample (sequence) id of each token. A
    *fragment* is a sample's tokens on one GPU. What the placement knows of a fragment's routing
    (its expert pairs per token, ``P``): ``knows="all"`` its own tokens' (the oracle);
    ``"prefix"`` its sample's prefix's (:func:`prefix_profiles`: the first half of the
    sequence predicts the whole).

    The model (token messages; every message to another GPU costs the same at a GPU's port --
    exact where intra-server links run at the NIC rate, pessimistic inside NVLink servers):
    put ``x[f, g]`` tokens of fragment ``f`` on GPU ``g``, every GPU keeping ``tokens_per_gpu``,
    minimising ``z_move + (1 + combine_scale) * z_dispatch``, where ``z_dispatch`` bounds every
    GPU's dispatch egress and ingress (a token of ``f`` on ``g`` sends ``P[f] . A[g, h]`` pairs
    to GPU ``h``, :func:`dest_share`; the combine is its transpose) and ``z_move`` every GPU's
    moved hidden states out and in (a GPU dispatches once its moved tokens have arrived) -- a
    linear programme (HiGHS, :func:`scipy.optimize.linprog`), rounded to whole tokens. If the
    rounded placement is not predicted faster than leaving every token where it is, nothing
    moves (``moved_fragments == 0``); ``accept(pred_new[N, E], pred_stay[N, E], moves[N, N])``,
    when given, is asked too (predicted pairs per GPU and expert under the new placement and
    under none, moved tokens between GPUs), e.g. with the fabric's own bounds. A fragment may be
    split; its tokens move in order."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, csr_matrix, hstack, vstack

    choices = np.asarray(choices, np.int64)
    T, k = choices.shape
    tpg = int(tokens_per_gpu)
    n = T // tpg
    home_tok = np.arange(T) // tpg
    new = np.r_[True, (samples[1:] != samples[:-1]) | (home_tok[1:] != home_tok[:-1])]
    frag = np.cumsum(new) - 1
    F = int(frag[-1]) + 1
    w = np.bincount(frag, minlength=F)
    home = home_tok[new]
    E = int(layout.E if hasattr(layout, "E") else layout.layer.experts)
    if knows == "all":
        P = np.bincount(np.repeat(frag, k) * E + choices.ravel(), minlength=F * E)
        P = P.reshape(F, E) / w[:, None]
    else:
        run, Pr = prefix_profiles(choices, samples, E)
        P = Pr[run[new]]
    A = dest_share(layout, n, E)
    off = 1.0 - np.eye(n)
    S = np.einsum("ghe,fe->fgh", A, P) * off[None]  # messages per token of f on g to h
    c = 1.0 + float(combine_scale)

    def predicted(x):  # z_move + c * z_dispatch of an integer placement x[F, n]
        out_ = np.einsum("fg,fgh->g", x, S)
        in_ = np.einsum("fg,fgh->h", x, S)
        mv = x * (np.arange(n)[None, :] != home[:, None])
        m_out = np.bincount(home, weights=mv.sum(axis=1), minlength=n)
        return float(max(m_out.max(), mv.sum(axis=0).max()) + c * max(out_.max(), in_.max()))

    x0 = np.zeros((F, n))
    x0[np.arange(F), home] = w
    stay = predicted(x0)
    V = F * n
    fi, gi = np.repeat(np.arange(F), n), np.tile(np.arange(n), F)
    eq = coo_matrix((np.ones(2 * V), (np.r_[fi, F + gi], np.r_[np.arange(V), np.arange(V)])),
                    shape=(F + n, V))
    Aeq = hstack([eq, csr_matrix((F + n, 2))]).tocsr()
    beq = np.r_[w, np.full(n, float(tpg))]
    # dispatch egress of g: sum_f x[f, g] * S[f, g, :].sum(); ingress of h: sum x[f, g] S[f,g,h]
    eg = coo_matrix((S.sum(axis=2).ravel(), (gi, np.arange(V))), shape=(n, V))
    ing = csr_matrix(S.transpose(2, 0, 1).reshape(n, V))
    mvd = (gi != home[fi]).astype(np.float64)
    m_in = coo_matrix((mvd, (gi, np.arange(V))), shape=(n, V))
    m_out = coo_matrix((mvd, (home[fi], np.arange(V))), shape=(n, V))
    z = np.zeros((n, 2))
    zd, zm = z.copy(), z.copy()
    zd[:, 0], zm[:, 1] = -1.0, -1.0
    Aub = vstack([hstack([eg, csr_matrix(zd)]), hstack([ing, csr_matrix(zd)]),
                  hstack([m_in, csr_matrix(zm)]), hstack([m_out, csr_matrix(zm)])]).tocsr()
    cost = np.r_[1e-3 * mvd, c, 1.0]  # no move that does not lower a bottleneck
    res = linprog(cost, A_ub=Aub, b_ub=np.zeros(4 * n), A_eq=Aeq, b_eq=beq,
                  bounds=(0, None), method="highs")
    gpu = home_tok.copy()
    if res.status != 0:
        return gpu, 0
    x = _round_placement(res.x[:V].reshape(F, n), w, home, tpg)
    if predicted(x) >= stay * (1.0 - 1e-6):
        return gpu, 0
    if accept is not None:
        mv = np.zeros((n, n))
        np.add.at(mv, (np.repeat(home, n), np.tile(np.arange(n), F)), x.ravel())
        np.fill_diagonal(mv, 0.0)
        if not accept(x.T @ P, x0.T @ P, mv):
            return gpu, 0
    starts = np.flatnonzero(new)
    moved = 0
    for f in np.flatnonzero(x[np.arange(F), home] < w):
        order = [home[f]] + [g for g in np.flatnonzero(x[f]) if g != home[f]]
        dest = np.repeat(order, x[f, order])
        gpu[starts[f]: starts[f] + len(dest)] = dest
        moved += 1
    return gpu, moved


def _round_placement(x: np.ndarray, w: np.ndarray, home: np.ndarray, tpg: int) -> np.ndarray:
    """Whole tokens from a fractional placement: floors, then each fragment's remaining tokens
    to its home GPU while it has room, else to the GPUs with room and the largest fraction."""
    F, n = x.shape
    xi = np.floor(x + 1e-9).astype(np.int64)
    frac = x - xi
    room = tpg - xi.sum(axis=0)
    for f in np.flatnonzero(xi.sum(axis=1) < w):
        r = int(w[f] - xi[f].sum())
        for g in [int(home[f])] + list(np.argsort(-frac[f], kind="stable")):
            if r == 0:
                break
            take = min(r, int(room[g]))
            if take > 0:
                xi[f, g] += take
                room[g] -= take
                r -= take
    return xi


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


def routed_load_bound_s(ft, matrix: np.ndarray, ecmp_seed: int = 0) -> float:
    """Routed link-load bound (s) of a GPU x GPU byte ``matrix`` on topology ``ft``: every pair's
    bytes on the one path the fabric's ECMP hash gives it (:meth:`FrozenTopology.route`, the
    paths the flow model uses), summed per link, the largest load over capacity. No link can
    carry more than its bandwidth, so no schedule on those paths is faster; unlike the min-cut
    bound it sees a shared spine or an oversubscribed uplink that the pairs' paths cross."""
    m = np.asarray(matrix, np.float64)
    src, dst = np.nonzero(m > 0)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    if len(src) == 0:
        return 0.0
    ptr, links, _ = ft.route(src, dst, seed=int(ecmp_seed))
    per = np.repeat(m[src, dst], np.diff(ptr))
    load = np.bincount(links, weights=per, minlength=len(ft.link_bw))
    return float(np.max(load / np.asarray(ft.link_bw, np.float64)))


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
