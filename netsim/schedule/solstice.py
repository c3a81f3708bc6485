"""Solstice: stuff to equal line sums, then big slices first.

He Liu, Matthew K. Mukerjee, Conglong Li, Nicolas Feltman, George Papen, Stefan Savage, Srinivasan
Seshan, Geoffrey M. Voelker, David G. Andersen, Michael Kaminsky, George Porter, Alex C. Snoeren,
"Scheduling Techniques for Hybrid Circuit/Packet Networks", ACM CoNEXT 2015.

1. QuickStuff: raise the entries that are already nonzero to fill each row's and column's deficit to
   the largest line sum (keeps the support, hence the number of matchings, small), then fill what is
   still missing north-west-corner style (Solstice's second stuffing pass may use any zero entry).
2. Slicing: r starts at the largest power of two <= the largest entry; while something remains, find a
   perfect matching among the entries >= r (warm-started augmenting paths), halving r while none
   exists; hold it for the smallest entry on it (>= r) and subtract. r never grows again (entries only
   shrink).

Differences from the paper, all deliberate: the whole matrix is scheduled on circuits (the paper stops
when the rest fits the packet switch; here every byte goes on circuits, leftover is 0); a slice is held
for the smallest entry on its matching rather than exactly r, which empties at least one entry per
slice and so bounds the slices by nnz - N + 1, as for BvN. ``served_bytes`` counts real bytes only
(stuffing is idle circuit time); ``meta["padded_fraction"]`` as for ``bvn``.
"""
from __future__ import annotations

import numpy as np

from .base import Schedule
from .bvn import decompose_padded

__all__ = ["solstice"]


def solstice(traffic: np.ndarray, line_rate: float, reconfig_s: float) -> Schedule:
    """solstice: Solstice (CoNEXT 2015): QuickStuff, then big slices first (thresholds r = 2^k)."""
    return decompose_padded(
        traffic, line_rate, reconfig_s, name="solstice", prefer_support=True, big_slices=True
    )
