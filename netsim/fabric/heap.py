"""Binary min-heap on flat arrays for numba kernels, ordered by (key, tie) lexicographically.

The caller owns three arrays of one capacity: ``hk`` (float64 keys, e.g. times or fair shares),
``hs`` (int64 tie-breakers, e.g. event sequence numbers; all zeros for "key only") and ``hv``
(int64 payloads), plus the count ``n``. Equal (key, tie) pairs stay where they are (a push stops
at an equal parent, a pop at an equal child), so a key-only heap behaves as a plain one.

:func:`kheap_push` / :func:`kheap_pop` are the key-only heap (every tie 0) without the tie
array: the same entries at the same places after every operation as :func:`heap_push` /
:func:`heap_pop` with ties all 0 (so equal keys pop in the same order), moving a hole instead
of swapping and choosing the child without a branch (the flow solver's filling pops a link
heap thousands of times per recomputation).
"""
from __future__ import annotations

from numba import njit


@njit(cache=True, inline="always")
def _before(hk, hs, a, b):
    """Entry a sorts before entry b, or with it."""
    return hk[a] < hk[b] or (hk[a] == hk[b] and hs[a] <= hs[b])


@njit(cache=True, inline="always")
def _swap(hk, hs, hv, a, b):
    """Exchange entries ``a`` and ``b``."""
    hk[a], hk[b] = hk[b], hk[a]
    hs[a], hs[b] = hs[b], hs[a]
    hv[a], hv[b] = hv[b], hv[a]


@njit(cache=True)
def heap_push(hk, hs, hv, n, key, tie, val):
    """Insert (key, tie) -> val; returns the new count."""
    i = n
    hk[i] = key
    hs[i] = tie
    hv[i] = val
    while i > 0:
        p = (i - 1) >> 1
        if _before(hk, hs, p, i):
            break
        _swap(hk, hs, hv, p, i)
        i = p
    return n + 1


@njit(cache=True)
def heap_pop(hk, hs, hv, n):
    """Remove the smallest entry; returns (key, val, new count)."""
    key = hk[0]
    val = hv[0]
    n -= 1
    hk[0] = hk[n]
    hs[0] = hs[n]
    hv[0] = hv[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and not _before(hk, hs, c, c + 1):
            c += 1
        if _before(hk, hs, i, c):
            break
        _swap(hk, hs, hv, c, i)
        i = c
    return key, val, n


@njit(cache=True)
def kheap_push(hk, hv, n, key, val):
    """:func:`heap_push` of a key-only heap (tie 0), without the tie array; returns the count."""
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if hk[p] <= key:
            break
        hk[i] = hk[p]
        hv[i] = hv[p]
        i = p
    hk[i] = key
    hv[i] = val
    return n + 1


@njit(cache=True)
def kheap_pop(hk, hv, n):
    """:func:`heap_pop` of a key-only heap (tie 0): returns (key, val, new count)."""
    key = hk[0]
    val = hv[0]
    n -= 1
    x = hk[n]
    xv = hv[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n:
            c += hk[c + 1] < hk[c]  # the right child only when strictly smaller
        if x <= hk[c]:
            break
        hk[i] = hk[c]
        hv[i] = hv[c]
        i = c
    hk[i] = x
    hv[i] = xv
    return key, val, n
