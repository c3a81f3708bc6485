"""Expert layouts (which EP rank holds which expert copies), EPLB-style relayout and its cost.

A *layout* says, for a token on source GPU ``s`` that chose expert ``e``, which GPU(s) compute it
and in which expert slot. Two kinds:

* :class:`LayerLayout` -- the MoE layer's own placement (``placement=contiguous|round_robin``,
  replicas when experts < ranks): exactly :meth:`MoELayer.traffic`'s rule.
* :class:`ReplicaLayout` -- a slot table ``slot_expert[ep, S]`` (expert id in slot ``j`` of EP rank
  ``r``, -1 empty), the same in every EP group. An expert with ``R`` replicas has its tokens from
  each source split as evenly as integers allow: replica ``j`` gets ``c // R`` plus one if
  ``(j - s) mod R < c mod R`` -- so every (token, expert) pair goes to exactly one replica and
  the replicas' loads differ by at most one token per source.

:func:`eplb` is the EPLB-style rebalancer (DeepSeek's expert-parallel load balancer, without its
node-level grouping): (1) replication -- give the extra slots, one at a time, to the expert with
the largest load per replica (never more replicas than ranks); (2) packing -- replicas sorted by
load per replica, largest first, each to the least-loaded rank that still has a free slot and no
copy of that expert. Every rank ends with at most ``slots`` experts (the budget).
:func:`align_table` then renumbers the new table's ranks to overlap the old one as much as
possible, so a relayout migrates only what it must.

:func:`migration_bytes` charges a new layout: a rank that gains an expert it did not hold
fetches its weights, ``3 * hidden * ffn_hidden * dtype_bytes`` bytes (SwiGLU: gate, up, down
projections), from a GPU that held it (one in the same server if any, else the holder
``r mod holders``), in every EP group: an N x N byte matrix of flows.
"""
from __future__ import annotations

import numpy as np

from netsim.errors import ConfigError

__all__ = ["LayerLayout", "ReplicaLayout", "eplb", "align_table", "expert_weight_bytes",
           "migration_bytes", "layout_traffic"]


def expert_weight_bytes(layer) -> float:
    """Bytes of one routed expert's weights: 3 * hidden * ffn_hidden * dtype_bytes (SwiGLU)."""
    return 3.0 * layer.hidden * layer.ffn_hidden * layer.dtype_bytes


class LayerLayout:
    """The MoE layer's own placement (see :meth:`netsim.workload.moe.MoELayer.traffic`)."""

    def __init__(self, layer, n_gpus: int):
        self.layer, self.n = layer, int(n_gpus)
        self.ep = layer.ep(self.n)
        dst, slot, slots = _routes(layer, self.n)
        self.dst, self.slot, self.slots = dst, slot, slots  # dst[N, E], slot[E]

    def assign(self, counts: np.ndarray):
        """(src[K], dst[K], slot[K], tokens[K]) entries: tokens of ``src`` computed on ``dst``."""
        n, E = counts.shape
        src = np.repeat(np.arange(n), E)
        return src, self.dst.ravel(), np.tile(self.slot, n), counts.ravel().astype(np.int64)

    def served(self) -> np.ndarray:
        """``f[s, e, d]`` as a dense (N, E, N) share is too big; return ``holds[r, e]`` (bool):
        EP rank r computes some of expert e's tokens (for group 0's sources)."""
        holds = np.zeros((self.ep, self.layer.experts), bool)
        holds[self.dst[: self.ep] % self.ep, np.arange(self.layer.experts)[None, :]] = True
        return holds

    def local_share(self, gps: int):
        """(loc[N, E], srv[N, E]): share of expert e's tokens of a source on GPU g computed on g
        itself / in g's server."""
        g = np.arange(self.n)[:, None]
        loc = (self.dst == g).astype(np.float64)
        srv = (self.dst // max(1, gps) == g // max(1, gps)).astype(np.float64)
        return loc, srv

    def slot_table(self) -> np.ndarray:
        """``slot_expert[ep, S]`` equivalent of this layout (group 0)."""
        holds = self.served()
        S = max(1, int(holds.sum(axis=1).max()))
        table = np.full((self.ep, S), -1, np.int64)
        for r in range(self.ep):
            es = np.flatnonzero(holds[r])
            table[r, : len(es)] = es
        return table


def _routes(layer, n):
    return layer.routes(n)


class ReplicaLayout:
    """A slot table ``slot_expert[ep, S]`` replicated in every EP group (see module doc)."""

    def __init__(self, slot_expert: np.ndarray, n_experts: int, n_gpus: int):
        t = np.asarray(slot_expert, np.int64)
        if t.ndim != 2:
            raise ConfigError(f"slot table has shape {t.shape}; expected (ep, slots)")
        self.table, self.n, self.E = t, int(n_gpus), int(n_experts)
        self.ep, self.slots = t.shape
        if self.n % self.ep:
            raise ConfigError(f"gpus={self.n} is not a multiple of ep={self.ep}")
        r, j = np.nonzero(t >= 0)
        e = t[r, j]
        if len(np.setdiff1d(np.arange(self.E), e)):
            raise ConfigError("slot table leaves an expert without a replica")
        order = np.lexsort((r, e))
        self.rep_rank, self.rep_slot, self.rep_expert = r[order], j[order], e[order]
        self.reps = np.bincount(self.rep_expert, minlength=self.E)
        first = np.concatenate(([0], np.cumsum(self.reps)[:-1]))
        self.rep_idx = np.arange(len(order)) - first[self.rep_expert]

    def assign(self, counts: np.ndarray):
        counts = np.asarray(counts, np.int64)
        n = counts.shape[0]
        c = counts[:, self.rep_expert]  # (N, P)
        R = self.reps[self.rep_expert][None, :]
        s = np.arange(n)[:, None]
        tok = c // R + (((self.rep_idx[None, :] - s) % R) < (c % R))
        dst = (s // self.ep) * self.ep + self.rep_rank[None, :]
        P = len(self.rep_expert)
        return (np.repeat(np.arange(n), P), dst.ravel(),
                np.tile(self.rep_slot, n), tok.ravel().astype(np.int64))

    def holds(self) -> np.ndarray:
        h = np.zeros((self.ep, self.E), bool)
        h[self.rep_rank, self.rep_expert] = True
        return h

    def local_share(self, gps: int):
        share = np.zeros((self.ep, self.E))
        np.add.at(share, (self.rep_rank, self.rep_expert), 1.0 / self.reps[self.rep_expert])
        g = np.arange(self.n)
        loc = share[g % self.ep]
        gps = max(1, gps)
        srv = np.zeros((self.n, self.E))
        # share of e's replicas inside g's server (ranks of the same EP group on g's server)
        grp0 = (g // self.ep) * self.ep
        for r in range(self.ep):
            same = ((grp0 + r) // gps) == (g // gps)
            srv[same] += share[r]
        return loc, srv

    def slot_table(self) -> np.ndarray:
        return self.table


def layout_traffic(layout, counts: np.ndarray, per_tok: float):
    """Dispatch byte matrix (N x N, local pairs on the diagonal) and batches[N, slots]."""
    src, dst, slot, tok = layout.assign(counts)
    n = counts.shape[0]
    keep = tok > 0
    src, dst, slot, tok = src[keep], dst[keep], slot[keep], tok[keep]
    disp = np.bincount(src * n + dst, weights=tok * float(per_tok), minlength=n * n).reshape(n, n)
    batches = np.bincount(dst * layout.slots + slot, weights=tok,
                          minlength=n * layout.slots).reshape(n, layout.slots).astype(np.int64)
    return disp, batches


def eplb(load: np.ndarray, ep: int, slots: int) -> np.ndarray:
    """EPLB-style slot table ``[ep, slots]`` for per-expert ``load`` (see the module docstring)."""
    load = np.asarray(load, np.float64)
    E, ep, slots = len(load), int(ep), int(slots)
    P = ep * slots
    if P < E:
        raise ConfigError(f"relayout: {ep} ranks x {slots} slots = {P} < experts={E}; expected"
                          f" a slot budget that holds every expert once")
    w = np.maximum(load, 0.0) + 1e-9 * (load.max() if load.max() > 0 else 1.0)
    reps = np.ones(E, np.int64)
    for _ in range(P - E):
        score = np.where(reps < ep, w / reps, -np.inf)
        e = int(np.argmax(score))
        if not np.isfinite(score[e]):
            break
        reps[e] += 1
    items = np.repeat(np.arange(E), reps)
    per = (w / reps)[items]
    order = np.argsort(-per, kind="stable")
    table = np.full((ep, slots), -1, np.int64)
    fill = np.zeros(ep, np.int64)
    rank_load = np.zeros(ep)
    held = np.zeros((ep, E), bool)
    for i in order:
        e = items[i]
        ok = (fill < slots) & ~held[:, e]
        if not ok.any():
            ok = fill < slots
        cand = np.flatnonzero(ok)
        r = cand[np.argmin(rank_load[cand])]
        table[r, fill[r]] = e
        fill[r] += 1
        rank_load[r] += per[i]
        held[r, e] = True
    return table


def align_table(old_table: np.ndarray, new_table: np.ndarray) -> np.ndarray:
    """``new_table`` with its rank rows permuted to keep as many (rank, expert) pairs of
    ``old_table`` as possible (Hungarian algorithm on the overlap): the same per-rank sets, so
    the same balance, with the fewest weights to migrate."""
    from scipy.optimize import linear_sum_assignment

    ep = new_table.shape[0]
    E = int(max(old_table.max(), new_table.max())) + 1

    def onehot(t):
        h = np.zeros((t.shape[0], E))
        r, j = np.nonzero(t >= 0)
        h[r, t[r, j]] = 1.0
        return h

    if old_table.shape[0] != ep:
        return new_table
    overlap = onehot(old_table) @ onehot(new_table).T  # [old rank, new row]
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    out = np.empty_like(new_table)
    out[rows] = new_table[cols]
    return out


def migration_bytes(old_table: np.ndarray, new_table: np.ndarray, n_gpus: int, gps: int,
                    weight_bytes: float) -> np.ndarray:
    """N x N weight-migration bytes from layout ``old_table`` to ``new_table`` (module doc)."""
    ep = new_table.shape[0]
    E = int(max(old_table.max(), new_table.max())) + 1
    old = np.zeros((ep, E), bool)
    r, j = np.nonzero(old_table >= 0)
    old[r, old_table[r, j]] = True
    new = np.zeros((ep, E), bool)
    r, j = np.nonzero(new_table >= 0)
    new[r, new_table[r, j]] = True
    need_r, need_e = np.nonzero(new & ~old)
    out = np.zeros((n_gpus, n_gpus))
    if len(need_r) == 0:
        return out
    gps = max(1, int(gps))
    for g0 in range(0, n_gpus, ep):
        for r, e in zip(need_r, need_e):
            holders = np.flatnonzero(old[:, e])
            same = holders[(g0 + holders) // gps == (g0 + r) // gps]
            h = same[0] if len(same) else holders[r % len(holders)]
            out[g0 + h, g0 + r] += weight_bytes
    return out
