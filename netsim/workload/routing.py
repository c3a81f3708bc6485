"""Routing sources: which experts each GPU's tokens choose.

A routing source turns (GPUs, tokens per GPU, experts, top-k, RNG, layer, iteration) into a
GPU x expert matrix of token counts: ``counts[g, e]`` is the number of tokens on GPU ``g`` that
chose expert ``e`` among their top-k. Every row sums to ``tokens_per_gpu * top_k``.

Per-token routing. Every source except ``counts:FILE`` (and per-batch count traces) also gives
each token's k distinct experts, :meth:`RoutingSource.choices`: an int32 array
``(n_gpus * tokens_per_gpu, top_k)`` whose row t is token t's experts, token t on GPU
``t // tokens_per_gpu``. For the same rng state, layer and iteration, ``choices`` makes exactly the
random draws ``counts`` makes, so the per-token choices *are* the counted batch:
``bincount(gpu * E + choices) == counts`` bit for bit (the de-duplicating dispatchers of
:mod:`netsim.workload.moe` rely on it, and ``dispatcher=pairs`` rows do not change).

Node-limited routing (``max_groups`` > 0 with an expert -> group map, the servers holding the
experts): each token's experts span at most ``max_groups`` groups, chosen as DeepSeek-V3's router
does. A token's expert scores are ``log p_e + G_e`` with ``G_e`` i.i.d. standard Gumbel (the top-k
of such scores is exactly a Plackett-Luce draw of k distinct experts with weights p, so the
unlimited case has the same law as the sampling above); a group's score is the sum of its best
:data:`GROUP_BEST` expert scores (``topk(2).sum()`` of DeepSeek-V3's ``MoEGate``), the token keeps
the ``max_groups`` best groups and takes its top-k experts among theirs. The sampler
(:func:`sample_limited_choices`) draws that law exactly without scoring every expert: lazy
exponential races that reach only the groups that can still be kept (about 9 of 32 for 4 kept).
With ``max_groups`` at or above the number of groups the plain sampler runs (same rows as no
limit).

Speed: the uniforms come a Mersenne Twister block at a time (:func:`mt_block`: the numbers of
numba's ``np.random``, without its per-call cost), the search is a guide table's O(1) and a
repeat is taken without a branch, so the plain sampler costs a few times the drawing of its
uniforms; the node-limited one needs several draws and logarithms a token.
``benchmarks/bench_routing.py --sampling-only`` prints both for 1024 GPUs x 4096 tokens beside
those floors.

Sources are selected by a spec string, ``NAME[:ARG[:ARG...]]``:

* ``uniform`` -- every token picks k distinct experts uniformly at random: what kernel benchmarks
  and "mock token" all-to-all tests use.
* ``zipf:S`` -- expert popularity p_e proportional to 1 / rank^S, ranks a random permutation
  of the experts (drawn from the run's seed, so the hot experts land on random GPUs); each token
  picks k distinct experts by sequential sampling without replacement (Plackett-Luce).
* ``counts:FILE`` -- a fixed GPU x expert count matrix (.npy or .csv), e.g. measured.

More sources register themselves with :func:`register` (see ``netsim.workload.synthetic``,
``netsim.workload.profiles`` and ``netsim.workload.traces`` where present).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from numba import njit

from netsim.errors import ConfigError, TraceError, UnknownNameError
from netsim.namespec import parse_name_spec


class RoutingSource(Protocol):
    """What the MoE layer needs from a routing source."""

    spec: str

    def counts(self, n_gpus: int, tokens_per_gpu: int, experts: int, top_k: int,
               rng: np.random.Generator, layer: int = 0, iteration: int = 0) -> np.ndarray:
        """GPU x expert token counts (int64); each row sums to tokens_per_gpu * top_k."""
        ...

    def choices(self, n_gpus: int, tokens_per_gpu: int, experts: int, top_k: int,
                rng: np.random.Generator, layer: int = 0, iteration: int = 0,
                groups: np.ndarray | None = None, max_groups: int = 0) -> np.ndarray:
        """Each token's experts: int32 ``(n_gpus * tokens_per_gpu, top_k)`` (module doc)."""
        ...


_REGISTRY: dict[str, tuple[Callable[..., RoutingSource], str]] = {}


def register(name: str, help: str = "") -> Callable:
    """Decorator: register ``factory(*args: str) -> RoutingSource`` under ``name``."""

    def deco(factory):
        _REGISTRY[name] = (factory, help or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return deco


def _load_plugins() -> None:
    # optional modules that register more sources; absent ones are skipped
    import importlib

    for mod in ("netsim.workload.synthetic", "netsim.workload.profiles", "netsim.workload.traces"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def list_sources() -> dict[str, str]:
    """Registered routing source names with a one-line description."""
    _load_plugins()
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def parse_routing(spec: str) -> RoutingSource:
    """Build the routing source named by ``spec`` (``NAME[:ARG...]``)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"routing={spec!r}; expected a string such as 'uniform' or 'zipf:1.2'")
    _load_plugins()
    ns = parse_name_spec(spec, "routing")
    if ns.name not in _REGISTRY:
        raise UnknownNameError(
            f"unknown routing source {ns.name!r} in {spec!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[ns.name][0](*ns.args)


#: guide-table buckets per expert (at least :data:`GUIDE_MIN` buckets): with many more buckets
#: than cdf steps, most buckets hold no step and a draw's search is one table read and two
#: comparisons (a few per cent of the draws take one more step)
GUIDE_PER_EXPERT = 16
GUIDE_MIN = 1024

#: doubles one Mersenne Twister block gives (624 32-bit words, two per double)
MT_DOUBLES = 312


def mt_state(seed: int) -> np.ndarray:
    """The MT19937 state that ``np.random.seed(seed)`` sets in numba: 624 uint32 words, Knuth's
    initialisation from the 32-bit ``seed``, which is NumPy's ``RandomState(seed)`` (read from it
    here, so that no kernel is compiled for it). A new array each call: the kernels advance it."""
    return np.random.RandomState(int(seed)).get_state()[1].astype(np.uint32)


@njit(cache=True)
def mt_block(mt, buf):
    """Advance the MT19937 state ``mt`` by one block and write its :data:`MT_DOUBLES` uniforms into
    ``buf``: the doubles ``np.random.random()`` would return next, bit for bit (two tempered words
    ``a, b`` make ``((a >> 5) * 2**26 + (b >> 6)) / 2**53``). Drawing a block at a time in a
    tight loop runs several times faster than numba's one-call-per-number generator."""
    up, lo, ma = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)
    one = np.uint32(1)
    for i in range(227):  # three loops without index arithmetic, so that they vectorise
        y = (mt[i] & up) | (mt[i + 1] & lo)
        mt[i] = mt[i + 397] ^ (y >> one) ^ (ma * (y & one))
    for i in range(227, 623):
        y = (mt[i] & up) | (mt[i + 1] & lo)
        mt[i] = mt[i - 227] ^ (y >> one) ^ (ma * (y & one))
    y = (mt[623] & up) | (mt[0] & lo)
    mt[623] = mt[396] ^ (y >> one) ^ (ma * (y & one))
    for i in range(MT_DOUBLES):
        a = mt[2 * i]
        a ^= a >> np.uint32(11)
        a ^= (a << np.uint32(7)) & np.uint32(0x9D2C5680)
        a ^= (a << np.uint32(15)) & np.uint32(0xEFC60000)
        a ^= a >> np.uint32(18)
        b = mt[2 * i + 1]
        b ^= b >> np.uint32(11)
        b ^= (b << np.uint32(7)) & np.uint32(0x9D2C5680)
        b ^= (b << np.uint32(15)) & np.uint32(0xEFC60000)
        b ^= b >> np.uint32(18)
        buf[i] = ((a >> np.uint32(5)) * 67108864.0 + (b >> np.uint32(6))) / 9007199254740992.0


def guide_table(cdf: np.ndarray) -> np.ndarray:
    """``guide[m]``: the first index whose cumulative weight exceeds ``m / G`` of the total,
    ``G = max(GUIDE_MIN, GUIDE_PER_EXPERT * len(cdf))`` buckets (int32), so that :func:`_search`
    starts next to the answer (Chen and Asau's guide table); it only speeds the search up, the
    index found is binary search's. Built by NumPy and passed to the kernels."""
    cdf = np.asarray(cdf, np.float64)
    nb = max(GUIDE_MIN, GUIDE_PER_EXPERT * len(cdf))
    return np.searchsorted(cdf, np.arange(nb) * (cdf[-1] / nb), side="right").astype(np.int32)


@njit(cache=True, inline="always")
def _search(cdf, guide, scale, u):
    """``searchsorted(cdf, u, side="right")`` clipped to the last index, from the guide table
    (``scale = len(guide) / cdf[-1]``): exactly the binary search's answer (non-decreasing
    ``cdf``; the two loops correct any start, so rounding in the bucket index cannot change
    it), in O(1) expected steps."""
    ne = len(cdf)
    nb = len(guide)
    m = int(u * scale)
    if m >= nb:
        m = nb - 1
    if m < 0:
        m = 0
    e = guide[m]
    while e > 0 and cdf[e - 1] > u:
        e -= 1
    while e < ne and cdf[e] <= u:
        e += 1
    if e >= ne:
        e = ne - 1
    return e


@njit(cache=True, inline="always")
def in_prefix(chosen, n, e) -> bool:
    """Whether expert ``e`` is among ``chosen[:n]``."""
    for q in range(n):
        if chosen[q] == e:
            return True
    return False


@njit(cache=True, inline="always")
def _heaviest_free(cdf, lo, hi, chosen, n):
    """The heaviest expert of ``lo..hi-1`` (weights from ``cdf``) not among ``chosen[:n]``; the
    fallback when 64 rejection draws all hit chosen experts (first of equal weights wins)."""
    best, eb = -1.0, lo
    for c in range(lo, hi):
        w = cdf[c] - (cdf[c - 1] if c > 0 else 0.0)
        if w > best and not in_prefix(chosen, n, c):
            best, eb = w, c
    return eb


@njit(cache=True)
def _sample_topk(cdf, guide, tokens_per_group, mt, out, tok):
    """Each token draws ``k`` distinct experts from popularity ``cdf`` (sequential sampling
    without replacement: draw, reject repeats; the Plackett-Luce model of a top-k choice with
    weights p), into caller-allocated arrays: ``out`` int64 zeros (groups, E) the per-group
    counts, or ``tok`` int32 (groups * tokens_per_group, k) each token's experts; the other is a
    placeholder (``out`` (1, E) or ``tok`` (0, k)). Both from the same draws.

    Draw by draw: ``u`` the next uniform of numba's ``np.random`` seeded with ``seed`` (``mt``:
    :func:`mt_state` of it, advanced in place), the
    expert ``searchsorted(cdf, u * total, "right")`` (clipped), a repeat of the token's earlier
    experts drawn again; after 64 repeats the heaviest expert not chosen. The uniforms come from
    :func:`mt_block` (the same numbers, a block at a time), the search from the guide table
    (:func:`_search` on ``guide``, :func:`guide_table`: the same index), "already chosen" is a
    stamp (``mark[e] == t``, O(1)),
    a block's searches run in a loop of their own (they do not depend on the acceptances), and
    one loop over the draws takes a repeat without a branch (the slot is overwritten). NumPy
    allocates the outputs (it asks the kernel for huge pages: writing a fresh array
    allocated inside numba costs about 2 ns per element more in page faults)."""
    per_token = tok.shape[0] > 0
    k = tok.shape[1]
    n_groups = tok.shape[0] // tokens_per_group if per_token else out.shape[0]
    n = n_groups * tokens_per_group
    ne = len(cdf)
    chosen = np.empty(k, np.int64)
    mark = np.empty(ne, np.int64)
    for c in range(ne):
        mark[c] = -1
    total = cdf[ne - 1]
    scale = len(guide) / total
    buf = np.empty(MT_DOUBLES)
    drawn = np.empty(MT_DOUBLES, np.int64)  # the experts a block's uniforms pick
    pos = MT_DOUBLES
    # one loop over the draws, the acceptance without a branch: a draw is written to the token's
    # next slot and marked whatever it is; a repeat (already marked) does not advance the slot,
    # so the next draw overwrites it
    t, j, tries, grp, grp_end = 0, 0, 0, 0, tokens_per_group
    while t < n:
        if pos == MT_DOUBLES:  # a block's searches in one loop of their own: they are
            mt_block(mt, buf)  # independent of the acceptances, and so overlap
            for q in range(MT_DOUBLES):
                drawn[q] = _search(cdf, guide, scale, buf[q] * total)
            pos = 0
        c = drawn[pos]
        pos += 1
        fresh = mark[c] != t
        chosen[j] = c
        mark[c] = t
        j += fresh
        tries = (tries + 1) * (1 - fresh)
        if tries == 64:  # 64 repeats: the heaviest expert not chosen
            e = _heaviest_free(cdf, 0, ne, chosen, j)
            chosen[j] = e
            mark[e] = t
            j += 1
            tries = 0
        if j == k:
            if per_token:
                for q in range(k):
                    tok[t, q] = chosen[q]
            else:
                for q in range(k):
                    out[grp, chosen[q]] += 1
            t += 1
            j = 0
            if t == grp_end:
                grp += 1
                grp_end += tokens_per_group


def sample_topk_counts(cdf, n_groups, tokens_per_group, k, seed):
    """Per-group expert counts when each token draws ``k`` distinct experts from popularity
    ``cdf`` (:func:`_sample_topk`): int64 array (n_groups, n_experts)."""
    cdf = np.asarray(cdf, np.float64)
    out = np.zeros((int(n_groups), len(cdf)), np.int64)
    _sample_topk(cdf, guide_table(cdf), int(tokens_per_group), mt_state(seed), out,
                 np.empty((0, int(k)), np.int32))
    return out


def sample_topk_choices(cdf, n_groups, tokens_per_group, k, seed):
    """Each token's ``k`` distinct experts, drawn as :func:`sample_topk_counts` draws them (the same
    random numbers in the same order): int32 array (n_groups * tokens_per_group, k)."""
    cdf = np.asarray(cdf, np.float64)
    tok = np.empty((int(n_groups) * int(tokens_per_group), int(k)), np.int32)
    _sample_topk(cdf, guide_table(cdf), int(tokens_per_group), mt_state(seed),
                 np.zeros((1, len(cdf)), np.int64), tok)
    return tok


#: how many of a group's best expert scores make its group score (DeepSeek-V3: ``topk(2).sum()``)
GROUP_BEST = 2


@njit(cache=True, inline="always")
def _group_search(cdf, lo, hi, x):
    """``searchsorted(cdf[lo:hi], x, "right") + lo`` clipped to ``hi - 1``: a branch-free count
    over a group of up to 16 experts, else binary search."""
    if hi - lo <= 16:
        a = lo
        for c in range(lo, hi - 1):
            a += cdf[c] <= x
        return a
    a, b = lo, hi
    while a < b:
        mid = (a + b) >> 1
        if cdf[mid] <= x:
            a = mid + 1
        else:
            b = mid
    return a if a < hi else hi - 1


@njit(cache=True, inline="always")
def _weight(cdf, c):
    return cdf[c] - (cdf[c - 1] if c > 0 else 0.0)


@njit(cache=True)
def _free_draw(cdf, lo, hi, mark, t, lf, u):
    """The expert of ``lo..hi-1`` not marked for token ``t`` that uniform ``u`` picks in
    proportion to weight (``lf``: the weight of those not marked), by a scan: the exact draw
    after 64 rejected tries."""
    x = u * lf
    last = lo
    for c in range(lo, hi):
        if mark[c] == t:
            continue
        last = c
        x -= _weight(cdf, c)
        if x < 0.0:
            return c
    return last


@njit(cache=True)
def _unmarked_weight(cdf, lo, hi, mark, t):
    """The weight of the experts of ``lo..hi-1`` not marked for token ``t``, summed afresh (when
    subtracting the arrived ones has cancelled most digits), at least ``1e-300``."""
    w = 0.0
    for c in range(lo, hi):
        if mark[c] != t:
            w += _weight(cdf, c)
    return max(w, 1e-300)


@njit(cache=True)
def sample_limited_choices(cdf, guide, ptr, order, max_groups, best, mt, tok):
    """Node-limited top-k (module doc) into ``tok`` (int32 (tokens, k)), by exponential races.

    Expert e's key is ``Exp(1) / p_e`` (its score ``log p_e + Gumbel`` is ``-log key``), so a
    group's experts arrive in key order as a race: the next arrival comes ``Exp(1) / (weight
    left)`` after the last and is an expert drawn in proportion to ``p`` among those not yet
    arrived, independently of when. A group's score, the sum of its first ``best`` arrivals'
    scores, is ``-log`` of the product of their times (``P_g``), so the ``max_groups`` best groups
    are those of the smallest products, compared without a logarithm.

    Pass 0 races the groups' *first* arrivals: the next one comes ``Exp(1) / (weight of the groups
    not arrived)`` later and is an expert drawn from the whole popularity (guide table), drawn
    again if its group has arrived, so it names the group and its first expert at once. Each
    group that arrives is raced on to ``best`` arrival times (the last one's expert is left open)
    and offered to the kept set. A group not arrived by time ``tau`` has ``P_g >= tau^m`` (m its
    arrivals), so pass 0 stops when that bound reaches the kept set's largest product: about 9
    of 32 groups are raced. Pass 1 merges the kept groups' races lazily: the union's next
    arrival is the earliest pending one of a kept group, whose expert is drawn then (if still
    open) and whose group draws its next time, until ``k`` arrivals. Exact (memorylessness; the
    draws skipped are of groups that cannot be kept): the law of DeepSeek-V3's rule with Gumbel
    scores (ties, of probability zero, to the group raced first), from ``O(k + groups raced)``
    draws a token instead of one score per expert.

    ``cdf``: cumulative weights in group order (group g is ``ptr[g]..ptr[g+1]-1``), ``order[i]``
    the expert at position i, ``guide`` its :func:`guide_table`. Uniforms from numba's MT19937
    (``mt``: :func:`mt_state` of the seed, advanced in place; :func:`mt_block`),
    ``Exp(1) = -log(1 - u)``; an expert within a group by binary search of
    its cdf, a repeat drawn again (64 tries, then one exact draw, :func:`_free_draw`)."""
    n_grp = len(ptr) - 1
    n_tokens, k = tok.shape
    ne = len(cdf)
    grp_of = np.empty(ne, np.int64)
    gw = np.zeros(n_grp)
    size = np.zeros(n_grp, np.int64)
    n_live, mmin = 0, best
    for g in range(n_grp):
        lo, hi = ptr[g], ptr[g + 1]
        size[g] = hi - lo
        for c in range(lo, hi):
            grp_of[c] = g
        if hi > lo:
            gw[g] = cdf[hi - 1] - (cdf[lo - 1] if lo > 0 else 0.0)
            n_live += 1
            mmin = min(mmin, hi - lo)
    total = cdf[ne - 1]
    scale = len(guide) / total
    bw = max(best, 1)
    times = np.empty((n_grp, bw))  # pass 0 arrival times of a raced group
    first = np.empty((n_grp, bw), np.int64)  # their experts (positions), where drawn
    m0 = np.zeros(n_grp, np.int64)  # arrival times pass 0 drew
    known = np.zeros(n_grp, np.int64)  # arrival experts pass 0 drew
    left0 = np.empty(n_grp)  # weight of the group's experts not drawn in pass 0
    mark = np.empty(ne, np.int64)  # mark[c] == t: expert c arrived for token t
    for c in range(ne):
        mark[c] = -1
    garr = np.empty(n_grp, np.int64)  # garr[g] == t: group g arrived for token t
    for g in range(n_grp):
        garr[g] = -1
    ksel = np.empty(max_groups)  # the kept set's products, ascending
    gsel = np.empty(max_groups, np.int64)
    nxt = np.empty(max_groups)  # pass 1: a kept group's pending arrival time
    cnt = np.empty(max_groups, np.int64)  # its arrivals emitted
    left = np.empty(max_groups)  # its weight not arrived
    buf = np.empty(MT_DOUBLES)
    pos = MT_DOUBLES
    for t in range(n_tokens):
        ns, narr, tau, wrem = 0, 0, 0.0, total
        while narr < n_live:  # pass 0
            if pos == MT_DOUBLES:
                mt_block(mt, buf)
                pos = 0
            tau -= np.log(1.0 - buf[pos]) / wrem
            pos += 1
            if ns == max_groups:
                lb = 1.0
                for _ in range(mmin if tau >= 1.0 else best):
                    lb *= tau
                if lb >= ksel[ns - 1]:
                    break
            e = -1
            for _try in range(64):
                if pos == MT_DOUBLES:
                    mt_block(mt, buf)
                    pos = 0
                c = _search(cdf, guide, scale, buf[pos] * total)
                pos += 1
                if garr[grp_of[c]] != t:
                    e = c
                    break
            if e < 0:  # exact: a group not arrived in proportion to weight, then its expert
                if pos == MT_DOUBLES:
                    mt_block(mt, buf)
                    pos = 0
                x = buf[pos] * wrem
                pos += 1
                gl = -1
                for g in range(n_grp):
                    if garr[g] != t and size[g] > 0:
                        gl = g
                        x -= gw[g]
                        if x < 0.0:
                            break
                lo = ptr[gl]
                base = cdf[lo - 1] if lo > 0 else 0.0
                xx = min(max(x + gw[gl], 0.0), gw[gl])
                e = _group_search(cdf, lo, ptr[gl + 1], base + xx)
            g = grp_of[e]
            garr[g] = t
            narr += 1
            wrem -= gw[g]
            if wrem <= 1e-9 * total:  # cancellation: sum what is left afresh
                wrem = 0.0
                for h in range(n_grp):
                    if garr[h] != t:
                        wrem += gw[h]
                if wrem <= 0.0:
                    wrem = 1e-300
            lo, hi = ptr[g], ptr[g + 1]
            m = min(best, hi - lo)
            m0[g] = m
            mark[e] = t
            first[g, 0] = e
            kn = 1
            lf = gw[g] - _weight(cdf, e)
            if m > 1 and lf <= 1e-9 * gw[g]:
                lf = _unmarked_weight(cdf, lo, hi, mark, t)
            tm = tau
            times[g, 0] = tau
            key = tau
            for j in range(1, m):
                if j > kn:  # the expert of arrival j - 1 (the next rate depends on it)
                    base = cdf[lo - 1] if lo > 0 else 0.0
                    ej = -1
                    for _try in range(64):
                        if pos == MT_DOUBLES:
                            mt_block(mt, buf)
                            pos = 0
                        c = _group_search(cdf, lo, hi, base + buf[pos] * gw[g])
                        pos += 1
                        if mark[c] != t:
                            ej = c
                            break
                    if ej < 0:
                        if pos == MT_DOUBLES:
                            mt_block(mt, buf)
                            pos = 0
                        ej = _free_draw(cdf, lo, hi, mark, t, lf, buf[pos])
                        pos += 1
                    mark[ej] = t
                    first[g, kn] = ej
                    kn += 1
                    lf -= _weight(cdf, ej)
                if lf <= 1e-9 * gw[g]:
                    lf = _unmarked_weight(cdf, lo, hi, mark, t)
                if pos == MT_DOUBLES:
                    mt_block(mt, buf)
                    pos = 0
                tm -= np.log(1.0 - buf[pos]) / lf
                pos += 1
                times[g, j] = tm
                key *= tm
            known[g] = kn
            left0[g] = lf
            if ns < max_groups or key < ksel[ns - 1]:  # into the kept set (a tie: the earlier)
                q = ns if ns < max_groups else max_groups - 1
                while q > 0 and ksel[q - 1] > key:
                    ksel[q] = ksel[q - 1]
                    gsel[q] = gsel[q - 1]
                    q -= 1
                ksel[q] = key
                gsel[q] = g
                if ns < max_groups:
                    ns += 1
        for q in range(ns):
            g = gsel[q]
            cnt[q] = 0
            nxt[q] = times[g, 0]
            left[q] = left0[g]
        for j in range(k):  # pass 1: the union's next arrival
            bq, bt = 0, nxt[0]
            for q in range(1, ns):
                if nxt[q] < bt:
                    bq, bt = q, nxt[q]
            g = gsel[bq]
            c = cnt[bq]
            lo, hi = ptr[g], ptr[g + 1]
            if c < known[g]:
                e = first[g, c]
            else:  # its expert, among those not arrived
                base = cdf[lo - 1] if lo > 0 else 0.0
                e = -1
                for _try in range(64):
                    if pos == MT_DOUBLES:
                        mt_block(mt, buf)
                        pos = 0
                    a = _group_search(cdf, lo, hi, base + buf[pos] * gw[g])
                    pos += 1
                    if mark[a] != t:
                        e = a
                        break
                if e < 0:
                    if pos == MT_DOUBLES:
                        mt_block(mt, buf)
                        pos = 0
                    e = _free_draw(cdf, lo, hi, mark, t, left[bq], buf[pos])
                    pos += 1
                mark[e] = t
                left[bq] -= _weight(cdf, e)
                if left[bq] <= 1e-9 * gw[g]:
                    left[bq] = _unmarked_weight(cdf, lo, hi, mark, t)
            tok[t, j] = order[e]
            c += 1
            cnt[bq] = c
            if c < m0[g]:
                nxt[bq] = times[g, c]
            elif c < hi - lo:
                if pos == MT_DOUBLES:
                    mt_block(mt, buf)
                    pos = 0
                nxt[bq] = bt - np.log(1.0 - buf[pos]) / left[bq]
                pos += 1
            else:
                nxt[bq] = np.inf


def _check_popularity(p: np.ndarray, top_k: int) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if top_k > len(p) or top_k < 1:
        raise ConfigError(f"top_k={top_k}; expected 1..{len(p)} (the number of experts)")
    if np.any(~np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ConfigError("expert popularity must be finite, non-negative and not all zero")
    if np.count_nonzero(p) < top_k:
        p = p + 1e-12 * p.max()  # keep k distinct choices possible
    return p


def popularity_counts(p: np.ndarray, n_gpus: int, tokens_per_gpu: int, top_k: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Counts for tokens choosing ``top_k`` distinct experts with popularity ``p`` (any scale)."""
    p = _check_popularity(p, top_k)
    seed = int(rng.integers(0, 2**31 - 1))
    return sample_topk_counts(np.cumsum(p), int(n_gpus), int(tokens_per_gpu), int(top_k), seed)


def check_groups(groups, experts: int, top_k: int, max_groups: int, spec: str = ""):
    """``(group[E] int64, number of groups)`` validated for node-limited routing, or None when
    the limit does not bind (``max_groups`` 0 or at least the number of groups)."""
    if max_groups < 0:
        raise ConfigError(f"max_nodes={max_groups}; expected >= 0 (0 = no limit)")
    if not max_groups or groups is None:
        return None
    g = np.asarray(groups, np.int64)
    if g.shape != (experts,) or (len(g) and g.min() < 0):
        raise ConfigError(f"routing {spec!r}: expert groups of shape {g.shape}; expected"
                          f" ({experts},) non-negative server ids")
    n_grp = int(g.max()) + 1
    if max_groups >= n_grp:
        return None
    sizes = np.sort(np.bincount(g, minlength=n_grp))
    if sizes[:max_groups].sum() < top_k:
        raise ConfigError(f"max_nodes={max_groups}: the {max_groups} smallest servers hold"
                          f" {int(sizes[:max_groups].sum())} experts < top_k={top_k}; expected"
                          f" max_nodes x experts per server >= top_k")
    return g, n_grp


def popularity_choices(p: np.ndarray, n_gpus: int, tokens_per_gpu: int, top_k: int,
                       rng: np.random.Generator, groups=None, max_groups: int = 0) -> np.ndarray:
    """Each token's ``top_k`` distinct experts with popularity ``p``: int32 (n_gpus *
    tokens_per_gpu, top_k). Without a binding group limit the draws are those of
    :func:`popularity_counts` for the same rng state; with one, node-limited (module doc)."""
    p = _check_popularity(p, top_k)
    seed = int(rng.integers(0, 2**31 - 1))
    lim = check_groups(groups, len(p), top_k, max_groups)
    if lim is None:
        return sample_topk_choices(np.cumsum(p), int(n_gpus), int(tokens_per_gpu), int(top_k),
                                   seed)
    g, n_grp = lim
    p = np.where(p > 0, p, 1e-12 * p.max())
    order = np.argsort(g, kind="stable")
    ptr = np.concatenate(([0], np.cumsum(np.bincount(g, minlength=n_grp))))
    tok = np.empty((int(n_gpus) * int(tokens_per_gpu), int(top_k)), np.int32)
    cdf = np.cumsum(p[order])
    sample_limited_choices(cdf, guide_table(cdf), ptr, order, int(max_groups), GROUP_BEST,
                           mt_state(seed), tok)
    return tok


def counts_of(choices: np.ndarray, n_gpus: int, tokens_per_gpu: int, experts: int) -> np.ndarray:
    """GPU x expert counts of per-token ``choices`` (token t on GPU t // tokens_per_gpu)."""
    c = np.asarray(choices)
    gpu = np.arange(c.shape[0], dtype=np.int64) // int(tokens_per_gpu)
    flat = (gpu[:, None] * experts + c).ravel()
    return np.bincount(flat, minlength=int(n_gpus) * experts).reshape(int(n_gpus), experts)


class CountOnly(ConfigError):
    """A routing source that knows counts, not tokens, was asked for per-token choices."""


class PopularitySource:
    """Mixin: a source that draws tokens from one popularity vector per call.

    Subclasses define ``batch_popularity(n_gpus, tokens_per_gpu, experts, top_k, rng, layer,
    iteration) -> (p, batch rng)``; ``counts`` and ``choices`` draw from it."""

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        p, brng = self.batch_popularity(n_gpus, tokens_per_gpu, experts, top_k, rng, layer,
                                        iteration)
        return popularity_counts(p, n_gpus, tokens_per_gpu, top_k, brng)

    def choices(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0,
                groups=None, max_groups=0):
        p, brng = self.batch_popularity(n_gpus, tokens_per_gpu, experts, top_k, rng, layer,
                                        iteration)
        return popularity_choices(p, n_gpus, tokens_per_gpu, top_k, brng, groups, max_groups)


def gini(x: np.ndarray, axis: int | None = None):
    """Gini coefficient of non-negative values (0 = equal, -> 1 = concentrated).

    ``axis=None``: of all the values (a float); an int: along that axis, one coefficient per
    slice (an array, e.g. per row with ``axis=1``). No values or a zero sum: 0.
    """
    x = np.asarray(x, np.float64)
    if axis is None:
        x, axis = x.ravel(), -1
    x = np.moveaxis(np.sort(x, axis=axis), axis, -1)
    n = x.shape[-1]
    tot = x.sum(axis=-1)
    if n == 0:
        g = np.zeros(tot.shape)
    else:
        i = np.arange(1, n + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(tot == 0, 0.0, (2.0 * (i * x).sum(axis=-1)) / (n * tot) - (n + 1.0) / n)
    return float(g) if g.ndim == 0 else g


@dataclass
class Uniform(PopularitySource):
    """Uniform random top-k routing (the mock-token benchmark)."""

    spec: str = "uniform"

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        return np.ones(experts), rng


@dataclass
class Zipf(PopularitySource):
    """Zipf expert popularity p_e ~ 1/rank^s, ranks a random permutation of the experts."""

    s: float
    spec: str = ""

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        ranks = rng.permutation(experts) + 1
        return ranks ** (-self.s), rng


@dataclass
class FixedCounts:
    """A fixed GPU x expert token-count matrix read from a file."""

    path: str
    matrix: np.ndarray
    spec: str = ""

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        if self.matrix.shape != (n_gpus, experts):
            raise ConfigError(
                f"counts file {self.path!r} has shape {self.matrix.shape}; this run needs"
                f" (gpus={n_gpus}, experts={experts})")
        return self.matrix.copy()

    def choices(self, *args, **kw):
        raise CountOnly(f"routing {self.spec!r} is count-only (a GPU x expert matrix knows no"
                        f" tokens): dispatcher=rank|node and max_nodes need per-token routing;"
                        f" use a per-token trace (trace:FILE) or a synthetic source")


def _float_arg(spec: str, value: str, what: str, lo: float = 0.0) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"routing {spec!r}: {what}={value!r} is not a number") from None
    if not np.isfinite(v) or v < lo:
        raise ConfigError(f"routing {spec!r}: {what}={value!r}; expected a number >= {lo}")
    return v


@register("uniform", "uniform random top-k (mock-token benchmark routing)")
def _uniform(*args: str) -> RoutingSource:
    if args:
        raise ConfigError(f"routing 'uniform' takes no argument, got {':'.join(args)!r}")
    return Uniform()


@register("zipf", "zipf:S -- expert popularity ~ 1/rank^S (random ranks)")
def _zipf(*args: str) -> RoutingSource:
    if len(args) != 1:
        raise ConfigError(f"routing 'zipf' takes one argument S (e.g. zipf:1.2), got {args!r}")
    s = _float_arg("zipf:" + args[0], args[0], "S")
    return Zipf(s, spec=f"zipf:{args[0]}")


@register("counts", "counts:FILE -- fixed GPU x expert token counts (.npy or .csv)")
def _counts(*args: str) -> RoutingSource:
    path = ":".join(args)
    if not path:
        raise ConfigError("routing 'counts' needs a file: counts:FILE.npy or counts:FILE.csv")
    p = Path(path)
    if p.is_dir():
        raise TraceError(f"counts file {path!r} is a directory; expected a .npy or .csv file")
    if not p.is_file():
        raise TraceError(f"counts file {path!r} does not exist")
    try:
        m = (np.load(p, allow_pickle=False) if p.suffix == ".npy"
             else np.loadtxt(p, delimiter=",", ndmin=2))
    except ValueError as exc:
        if p.suffix == ".npy":
            raise TraceError(f"counts file {path!r} is not a numeric .npy array (numpy.save of a"
                             " GPU x expert matrix of token counts)") from None
        raise TraceError(f"counts file {path!r} cannot be read as CSV: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- any parse failure is a bad file
        raise TraceError(f"counts file {path!r} cannot be read: {exc}") from None
    m = np.asarray(m)
    if m.ndim != 2:
        raise TraceError(f"counts file {path!r} has shape {m.shape}; expected a 2-D GPU x expert"
                         f" matrix of token counts")
    if not np.issubdtype(m.dtype, np.number) or np.issubdtype(m.dtype, np.bool_):
        raise TraceError(f"counts file {path!r} holds {m.dtype} values; expected token counts")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(m) | (m < 0) | (m != np.round(m))
    if np.any(bad):  # the first bad cell in file order, whatever is wrong with it
        r, c = (int(x) for x in np.argwhere(bad)[0])
        v = m[r, c].item()
        what = ("a token count" if not np.isfinite(v) else
                "a non-negative count" if v < 0 else "an integer count")
        raise TraceError(f"counts file {path!r}: {v!r} at row {r} (GPU {r}), column {c}"
                         f" (expert {c}); expected {what}")
    return FixedCounts(path, m.astype(np.int64), spec=f"counts:{path}")
