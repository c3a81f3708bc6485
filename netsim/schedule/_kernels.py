"""numba kernels shared by the schedulers: warm-started perfect matchings on the support of an
integer matrix (BvN, Solstice), and greedy sorted-edge matchings (cleanup rounds).

All kernels take flat numpy arrays and run in nopython mode with ``cache=True``.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _take(i, j, M, R, Tf, row_match, col_match, val, rv, tfv):
    """Match row i to column j (i must be unmatched), loading the pair's figures into the vectors."""
    row_match[i] = j
    col_match[j] = i
    val[i] = M[i, j]
    rv[i] = R[i, j]
    tfv[i] = Tf[i, j]


@njit(cache=True)
def _drop(i, M, R, Tf, row_match, col_match, val, rv, tfv):
    """Unmatch row i, writing its pair's current figures back into the matrices."""
    j = row_match[i]
    M[i, j] = val[i]
    R[i, j] = rv[i]
    Tf[i, j] = tfv[i]
    row_match[i] = -1
    col_match[j] = -1


@njit(cache=True)
def _flip(f, u, M, R, Tf, row_match, col_match, parent, val, rv, tfv):
    """Flip the alternating path that ends at free column ``f`` and starts at free row ``u``."""
    jj = f
    while True:
        rr = parent[jj]
        nxt = row_match[rr]
        if nxt != -1:
            _drop(rr, M, R, Tf, row_match, col_match, val, rv, tfv)
        _take(rr, jj, M, R, Tf, row_match, col_match, val, rv, tfv)
        if rr == u:
            break
        jj = nxt


@njit(cache=True, inline="always")
def _free_col(r, M, thr, free_cols, nf):
    """The first unmatched column ``free_cols[:nf]`` that row ``r`` reaches (M >= thr), or -1."""
    for t in range(nf):
        f = free_cols[t]
        if M[r, f] >= thr:
            return f
    return -1


@njit(cache=True)
def _augment(u, M, R, Tf, thr, row_match, col_match, parent, seen, stamp, queue, free_cols, nf, val, rv, tfv):
    """BFS for an augmenting path from free row ``u`` over edges with ``M[r, j] >= thr``.

    ``free_cols[:nf]`` are the unmatched columns (after a BvN step, a few). Each row reached is first
    tested against them, so a path is found without scanning the row it ends at; only rows that
    reach no free column are scanned. On success flips the path and returns the free column now
    matched; -1 if there is no augmenting path. (A matched pair's entry in M may be stale but is
    then >= its true value >= thr, so the support test stays right.)
    """
    n = M.shape[0]
    f = _free_col(u, M, thr, free_cols, nf)
    if f >= 0:
        parent[f] = u
        _flip(f, u, M, R, Tf, row_match, col_match, parent, val, rv, tfv)
        return f
    head = 0
    tail = 1
    queue[0] = u
    while head < tail:
        r = queue[head]
        head += 1
        for j in range(n):
            if M[r, j] >= thr and seen[j] != stamp:
                seen[j] = stamp
                parent[j] = r
                i2 = col_match[j]
                if i2 == -1:
                    _flip(j, u, M, R, Tf, row_match, col_match, parent, val, rv, tfv)
                    return j
                f = _free_col(i2, M, thr, free_cols, nf)
                if f >= 0:
                    parent[f] = i2
                    _flip(f, u, M, R, Tf, row_match, col_match, parent, val, rv, tfv)
                    return f
                queue[tail] = i2
                tail += 1
    return -1


@njit(cache=True)
def _rematch(M, R, Tf, thr, row_match, col_match, parent, seen, stamp, queue, free_rows, free_cols, val, rv, tfv):
    """Make the matching perfect again on {M >= thr}: direct free-row/free-column edges first, then
    augmenting paths. Returns (stamp, ok)."""
    n = M.shape[0]
    nu = 0
    nf = 0
    for i in range(n):
        if row_match[i] == -1:
            free_rows[nu] = i
            nu += 1
        if col_match[i] == -1:
            free_cols[nf] = i
            nf += 1
    k = 0
    for t in range(nu):
        u = free_rows[t]
        hit = -1
        for x in range(nf):
            if M[u, free_cols[x]] >= thr:
                hit = x
                break
        if hit >= 0:
            f = free_cols[hit]
            _take(u, f, M, R, Tf, row_match, col_match, val, rv, tfv)
            nf -= 1
            free_cols[hit] = free_cols[nf]
        else:
            free_rows[k] = u
            k += 1
    for t in range(k):
        u = free_rows[t]
        stamp += 1
        f = _augment(u, M, R, Tf, thr, row_match, col_match, parent, seen, stamp, queue, free_cols, nf, val, rv, tfv)
        if f < 0:
            return stamp, False
        for x in range(nf):
            if free_cols[x] == f:
                nf -= 1
                free_cols[x] = free_cols[nf]
                break
    return stamp, True


@njit(cache=True)
def decompose_kernel(M, R, Tf, scale, cap, big_slices):
    """Decompose an integer matrix with equal line sums into weighted permutations.

    M: int64 N x N, the padded matrix (all row and column sums equal), modified in place.
    R: int64 N x N, the real (unpadded) part, R <= M, modified in place.
    Tf: float64 N x N, the real bytes (R ~ Tf * scale), modified in place (what is left: zeros);
        served bytes come from it, so that a pair that empties has served exactly its float bytes.
    cap: the most matchings there can be (nnz(M) - N + 1); the output grows by doubling up to it.
    big_slices: False = BvN (any perfect matching on the support, warm-started from the last one);
        True = Solstice (a perfect matching among entries >= r, r the largest power of two for which
        one exists).
    Each matching is held for the smallest entry on it, so at least one entry drops to 0 per step.
    The matched pairs' figures live in vectors (val, rv, tfv) while matched, so a step costs O(N)
    contiguous work; they are written back to the matrices when the pair leaves the matching.

    Returns perms (m, N), coefs (m,) int64 units, served (m, N) float64 bytes, m, thresholds (m,)
    (the r in force, 1 for BvN); m = -1 if a perfect matching was not found (the line sums were not
    equal) or cap was too small.
    """
    n = M.shape[0]
    row_match = -np.ones(n, dtype=np.int64)
    col_match = -np.ones(n, dtype=np.int64)
    parent = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n, dtype=np.int64)
    queue = np.zeros(n + 1, dtype=np.int64)
    free_cols = np.zeros(n, dtype=np.int64)
    free_rows = np.zeros(n, dtype=np.int64)
    val = np.zeros(n, dtype=np.int64)
    rv = np.zeros(n, dtype=np.int64)
    tfv = np.zeros(n, dtype=np.float64)
    alloc = min(cap, max(4 * n, 1024))  # grown by doubling up to cap
    perms = np.empty((alloc, n), dtype=np.int64)
    coefs = np.zeros(alloc, dtype=np.int64)
    ths = np.zeros(alloc, dtype=np.int64)
    served = np.empty((alloc, n), dtype=np.float64)
    remaining = 0
    for j in range(n):
        remaining += M[0, j]
    thr = 1
    if big_slices:
        mx = 0
        for i in range(n):
            for j in range(n):
                if M[i, j] > mx:
                    mx = M[i, j]
        while thr * 2 <= mx:
            thr *= 2
    stamp = 0
    m = 0
    while remaining > 0:
        while True:
            stamp, ok = _rematch(M, R, Tf, thr, row_match, col_match, parent, seen, stamp, queue,
                                 free_rows, free_cols, val, rv, tfv)
            if ok:
                break
            if big_slices and thr > 1:
                thr //= 2
            else:
                return perms, coefs, served, -1, ths
        if m >= alloc:
            if alloc >= cap:
                return perms, coefs, served, -1, ths
            alloc = min(cap, 2 * alloc)
            p2 = np.empty((alloc, n), dtype=np.int64)
            c2 = np.zeros(alloc, dtype=np.int64)
            s2 = np.empty((alloc, n), dtype=np.float64)
            p2[:m] = perms[:m]
            c2[:m] = coefs[:m]
            s2[:m] = served[:m]
            t2 = np.zeros(alloc, dtype=np.int64)
            t2[:m] = ths[:m]
            perms = p2
            coefs = c2
            served = s2
            ths = t2
        c = val[0]
        for i in range(1, n):
            if val[i] < c:
                c = val[i]
        for i in range(n):
            perms[m, i] = row_match[i]
            r = rv[i]
            s = c if c < r else r
            served[m, i] = 0.0
            if s > 0:
                if s == r:
                    served[m, i] = tfv[i]
                    tfv[i] = 0.0
                else:
                    sf = s / scale
                    if sf > tfv[i]:
                        sf = tfv[i]
                    served[m, i] = sf
                    tfv[i] -= sf
                rv[i] = r - s
            val[i] -= c
        for i in range(n):
            if val[i] < thr:
                _drop(i, M, R, Tf, row_match, col_match, val, rv, tfv)
        coefs[m] = c
        ths[m] = thr
        m += 1
        remaining -= c
    return perms, coefs, served, m, ths


@njit(cache=True)
def pad_kernel(Q, prefer_support):
    """Add padding to an integer matrix so every row and column sums to the largest line sum.

    prefer_support: first raise entries that are already nonzero (Solstice's QuickStuff, keeps the
    support small), then fill the remaining deficits north-west-corner style (at most 2N - 1 new
    entries). Returns the padded matrix (a copy) and the padding units added.
    """
    n = Q.shape[0]
    M = Q.copy()
    rs = np.zeros(n, dtype=np.int64)
    cs = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            rs[i] += M[i, j]
            cs[j] += M[i, j]
    L = 0
    for i in range(n):
        if rs[i] > L:
            L = rs[i]
        if cs[i] > L:
            L = cs[i]
    dr = L - rs
    dc = L - cs
    added = 0
    if prefer_support:
        for i in range(n):
            if dr[i] == 0:
                continue
            for j in range(n):
                if M[i, j] > 0 and dc[j] > 0:
                    d = dr[i] if dr[i] < dc[j] else dc[j]
                    M[i, j] += d
                    dr[i] -= d
                    dc[j] -= d
                    added += d
                    if dr[i] == 0:
                        break
    i = 0
    j = 0
    while i < n and j < n:
        if dr[i] == 0:
            i += 1
            continue
        if dc[j] == 0:
            j += 1
            continue
        d = dr[i] if dr[i] < dc[j] else dc[j]
        M[i, j] += d
        dr[i] -= d
        dc[j] -= d
        added += d
    return M, added


@njit(cache=True)
def sorted_matchings_kernel(rows, cols, vals, n):
    """Greedy maximal matchings over edges sorted by decreasing bytes, until every edge is used.

    Equivalent to: each round walks the remaining edges in order and takes an edge whose source and
    destination are both still free in that round. Computed edge by edge as first-fit colouring
    (an edge gets the first round in which its source and destination are both free; per-row and
    per-column pointers skip full prefixes). Each round is held for its first (largest) edge, so
    every edge in it drains fully. At most 2 * max_degree - 1 rounds.
    Returns perms (m, n), caps (m,) bytes, served (m, n), m.
    """
    e = rows.size
    cap = 2 * n + 1
    perms = -np.ones((cap, n), dtype=np.int64)
    caps = np.zeros(cap, dtype=np.float64)
    served = np.zeros((cap, n), dtype=np.float64)
    col_busy = np.zeros((n, cap), dtype=np.bool_)  # col_busy[c, k]: destination c used in round k
    first_r = np.zeros(n, dtype=np.int64)  # rounds < first_r[r] all use source r
    first_c = np.zeros(n, dtype=np.int64)
    m = 0
    for x in range(e):
        r = rows[x]
        c = cols[x]
        k = first_r[r] if first_r[r] > first_c[c] else first_c[c]
        while k < cap and (perms[k, r] != -1 or col_busy[c, k]):
            k += 1
        if k >= cap:  # cannot happen (<= 2 * degree - 1 rounds)
            return perms, caps, served, -1
        perms[k, r] = c
        col_busy[c, k] = True
        served[k, r] = vals[x]
        if vals[x] > caps[k]:
            caps[k] = vals[x]
        while first_r[r] < cap and perms[first_r[r], r] != -1:
            first_r[r] += 1
        while first_c[c] < cap and col_busy[c, first_c[c]]:
            first_c[c] += 1
        if k + 1 > m:
            m = k + 1
    return perms, caps, served, m
