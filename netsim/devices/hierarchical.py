"""GPU processes for the MoE layer beyond the plain all-to-all: a two-phase (hierarchical)
all-to-all, and flows that must arrive before a phase (moved micro-batches, migrated weights).

:class:`LayerHook` replaces :func:`netsim.devices.gpu.gpu_layer` inside
:mod:`netsim.engines.flow` when a prepared layer has a ``hook`` (``collective=hierarchical``, or a
mitigation that moves bytes). ``dispatch[i, j]`` is, as everywhere, the bytes GPU i's tokens need
delivered to GPU j; the combine returns the same bytes.

``collective="direct"``: every GPU sends straight to every other (as ``gpu_layer``).

``collective="hierarchical"`` (DeepEP's internode path): a GPU with local rank l on server A

* sends to GPUs of its own server directly (NVLink where the topology has it);
* for each other server B, sends *one* message over the network to the GPU with the same local
  rank l on B (the *relay*; same rail), carrying ``phase1[i, B]`` bytes; when that message has
  arrived, the relay forwards each destination's share ``dispatch[i, j]`` to the GPUs j of B
  (its own share it keeps). ``phase1[i, B]`` defaults to ``sum_{j in B} dispatch[i, j]`` (no
  de-duplication); a caller may pass fewer bytes, e.g. DeepEP's de-duplication of a token whose
  several experts live on B (sent once, fanned out on NVLink).
* combine mirrors it: each GPU of server B sends its results for source i to i's relay on B over
  NVLink; when the relay has them all (and its own compute is done, if it holds some of i's
  tokens), it sends ``phase1[i, B]`` bytes (the reduced results) back to i over the network.

A relay's forwarding costs no GPU time (copy engines / spare SMs); forwarding starts per
(source, server) message as soon as it has arrived. With ``chunks`` C > 1 (``deepep_normal``)
each phase-1 message is C flows of 1/C of its bytes in strict-priority classes 0..C-1 (chunk c
shares only what chunks < c leave on each link, so the chunks of a message arrive one after
another while the link stays busy) and each chunk is forwarded (1/C of every destination's
share) as soon as it arrives: forwarding overlaps the rest of the message. The combine mirrors
it: chunk c of the gather to a relay, then chunk c of the reduced message back. A GPU's own
server's share (sent directly over NVLink) travels in the same C classes, 1/C of each message
in each, as DeepEP's channels interleave own-server and remote tokens: sent whole at the top
priority it would hold back chunk 0 of every gather, and with it the start of the combine's
network phase (``own_server_chunked=False`` sends it whole, the former model, kept for the
validation benchmark's comparison).

``combine_scale``: combine bytes / dispatch bytes of the same tokens (``combine_dtype`` against
``dispatch_dtype``); every combine flow carries its dispatch counterpart's bytes times it.
``dispatch_delay[g]`` / ``combine_delay[g]``: seconds GPU g spends before it starts sending
its dispatch / combine (``deepep_ll``'s per-message issue cost). ``nvlink_efficiency`` e <= 1:
every flow between GPUs of one server carries its bytes / e (the fraction of the NVLink rate a
kernel's SM-driven copies achieve; ``deepep_normal``'s fitted value, docs/deepep.md); the
end-to-end counters keep the payload bytes.

Pre-phase flows: ``pre[i, j]`` bytes (a moved micro-batch) must reach GPU j before j starts its
dispatch; ``weights[i, j]`` bytes (migrated expert weights) must reach j before j starts its
expert compute. Both start at time 0.

Bookkeeping: :attr:`LayerHook.e2e_bytes` after the run is the end-to-end bytes delivered
(dispatch + combine, every ``dispatch[i, j]`` once each way, however many hops it took; equal
to the direct all-to-all's ``bytes_total``), :attr:`network_bytes` every byte any flow carried
(relay hops, de-duplicated messages, pre-phase flows), :attr:`phase_flow_bytes` those of the
dispatch and combine flows, :attr:`pre_bytes` and :attr:`weight_bytes` the pre-phase flows'
bytes.
"""
from __future__ import annotations

import numpy as np
import simpy

from netsim.devices.network import GroupBlocks

__all__ = ["LayerHook", "hierarchical_phase1"]


def hierarchical_phase1(dispatch: np.ndarray, gps: int) -> np.ndarray:
    """``phase1[i, B]``: bytes GPU i sends to server B without de-duplication (own server 0)."""
    n = dispatch.shape[0]
    gps = max(1, int(gps))
    S = -(-n // gps)
    srv = np.arange(n) // gps
    out = np.zeros((n, S))
    np.add.at(out.T, srv, np.asarray(dispatch, np.float64).T)
    out[np.arange(n), srv] = 0.0
    return out


class LayerHook:
    """Drives one layer's GPUs on a :class:`~netsim.devices.network.Network` (module doc)."""

    def __init__(self, collective: str = "direct", gpus_per_server: int = 1,
                 phase1: np.ndarray | None = None, pre: np.ndarray | None = None,
                 weights: np.ndarray | None = None, combine_scale: float = 1.0, chunks: int = 1,
                 dispatch_delay: np.ndarray | None = None,
                 combine_delay: np.ndarray | None = None, nvlink_efficiency: float = 1.0,
                 own_server_chunked: bool = True):
        if collective not in ("direct", "hierarchical"):
            raise ValueError(f"collective={collective!r}")
        if int(chunks) < 1 or not combine_scale > 0 or not 0 < nvlink_efficiency <= 1:
            raise ValueError(f"chunks={chunks!r}, combine_scale={combine_scale!r},"
                             f" nvlink_efficiency={nvlink_efficiency!r}")
        self.nvl_eff = float(nvlink_efficiency)
        self.own_chunked = bool(own_server_chunked)
        self.collective = collective
        self.gps = max(1, int(gpus_per_server))
        self.phase1 = phase1
        self.pre = pre
        self.weights = weights
        self.scale = float(combine_scale)
        self.C = int(chunks)
        self.dispatch_delay = dispatch_delay
        self.combine_delay = combine_delay
        self.e2e_bytes = 0.0
        self.network_bytes = 0.0
        self.phase_flow_bytes = {"dispatch": 0.0, "combine": 0.0}
        self.pre_bytes = float(pre.sum() - np.trace(pre)) if pre is not None else 0.0
        self.weight_bytes = float(weights.sum() - np.trace(weights)) if weights is not None else 0.0
        self._rep: list[tuple[np.ndarray, np.ndarray]] = []
        self._phase_ids: dict[str, list[np.ndarray]] = {"dispatch": [], "combine": []}

    def groups(self, n: int) -> GroupBlocks:
        """Completion groups: dispatch into j, combine into i, pre-phase flows into j, weights
        into j; hierarchical: phase-1 chunk c of (i, server B) and combine-gather chunk c of
        (i, B) at i's relay on B."""
        S = -(-n // self.gps)
        extra = (dict(relay_in=(n, S, self.C), relay_gather=(n, S, self.C))
                 if self.collective == "hierarchical" else {})
        return GroupBlocks(dispatch=n, combine=n, pre=n, weights=n, **extra)

    def _send(self, net, src, dst, nbytes, group, represents, phase=None, priority=0):
        src = np.atleast_1d(np.asarray(src, np.int64))
        dst = np.atleast_1d(np.asarray(dst, np.int64))
        nbytes = np.atleast_1d(np.asarray(nbytes, np.float64))
        src, dst, nbytes = np.broadcast_arrays(src, dst, nbytes)
        keep = (nbytes > 0) & (src != dst)
        if not keep.any():
            return
        if self.nvl_eff != 1.0:  # same-server flows carry their bytes / efficiency on NVLink
            gps = self.gps
            nbytes = np.where(src // gps == dst // gps, nbytes / self.nvl_eff, nbytes)
        ids = net.send(src[keep], dst[keep], nbytes[keep],
                       np.broadcast_to(np.asarray(group), src.shape)[keep], priority=priority)
        rep = np.broadcast_to(np.asarray(represents, np.float64), src.shape)[keep]
        if ids is not None:
            self._rep.append((np.asarray(ids), rep))
            if phase is not None:
                self._phase_ids[phase].append(np.asarray(ids))

    def start(self, env: simpy.Environment, net, groups: GroupBlocks, dispatch: np.ndarray,
              compute_s: np.ndarray, times, combine: bool = True) -> None:
        """Set the groups' expectations and start every GPU's process."""
        D = np.asarray(dispatch, np.float64)
        n = D.shape[0]
        self.G = G = groups
        self.n, self.D, self.net, self.env = n, D, net, env
        off = D.copy()
        np.fill_diagonal(off, 0.0)
        self.off = off
        gps, C = self.gps, self.C
        self.srv = np.arange(n) // gps
        S = -(-n // gps)
        self.S = S
        hier = self.collective == "hierarchical"
        same = self.srv[:, None] == self.srv[None, :]
        direct = (off > 0) & (same if hier else True)
        # expectations: final dispatch into j, final combine into i
        # a two-phase collective sends its own server's share in its C chunk classes too
        self.CL = CL = C if hier and self.own_chunked else 1
        net.expect_many(G.id("dispatch", np.nonzero(direct)[1]), CL)
        if combine:
            net.expect_many(G.id("combine", np.nonzero(direct)[0]), CL)
        if self.pre is not None:
            pr = self.pre.copy()
            np.fill_diagonal(pr, 0.0)
            net.expect_many(G.id("pre", np.nonzero(pr > 0)[1]), 1)
        if self.weights is not None:
            w = self.weights.copy()
            np.fill_diagonal(w, 0.0)
            net.expect_many(G.id("weights", np.nonzero(w > 0)[1]), 1)
        self.relay_own: list[list[int]] = [[] for _ in range(n)]
        if hier:
            P1 = self.phase1 if self.phase1 is not None else hierarchical_phase1(D, gps)
            self.P1 = P1
            loc = np.arange(n) % gps
            i_idx, b_idx = np.nonzero(P1 > 0)
            self.pairs = (i_idx, b_idx)
            relay = b_idx * gps + loc[i_idx]
            relay = np.minimum(relay, n - 1)
            self.pair_relay = relay
            for c in range(C):
                net.expect_many(G.id("relay_in", i_idx, b_idx, c), 1)
            # phase-2 (relay -> j) flows into j (one per chunk), for j != relay with dispatch > 0
            for i, b, r in zip(i_idx, b_idx, relay):
                js = np.arange(b * gps, min(n, (b + 1) * gps))
                js = js[(off[i, js] > 0) & (js != r)]
                if len(js):
                    net.expect_many(G.id("dispatch", js), C)
                    if combine:
                        for c in range(C):
                            net.expect(G.id("relay_gather", i, b, c), len(js))
                if off[i, r] > 0:
                    self.relay_own[r].extend(int(G.id("relay_in", i, b, c)) for c in range(C))
                if combine:
                    net.expect(G.id("combine", i), C)
        self.compute_done = [env.event() for _ in range(n)]
        # pre-phase flows start now
        if self.pre is not None:
            s_, d_ = np.nonzero(self.pre * (1 - np.eye(n)) > 0)
            self._send(net, s_, d_, self.pre[s_, d_], G.id("pre", d_), 0.0)
        if self.weights is not None:
            s_, d_ = np.nonzero(self.weights * (1 - np.eye(n)) > 0)
            self._send(net, s_, d_, self.weights[s_, d_], G.id("weights", d_), 0.0)
        for g in range(n):
            env.process(self._gpu(g, float(compute_s[g]), times, combine))
        if hier and combine:
            for i, b, r in zip(*self.pairs, self.pair_relay):
                for c in range(C):
                    env.process(self._combine_relay(int(i), int(b), int(r), c))

    # ---- processes -------------------------------------------------------------------------------
    def _gpu(self, g: int, compute_s: float, times, combine: bool):
        env, net, n, off, G = self.env, self.net, self.n, self.off, self.G
        hier = self.collective == "hierarchical"
        C, sc = self.C, self.scale
        if self.pre is not None:
            yield net.arrival(G.id("pre", g))
        if self.dispatch_delay is not None and self.dispatch_delay[g] > 0:
            yield env.timeout(float(self.dispatch_delay[g]))
        row = off[g]
        dst = np.flatnonzero(row > 0)
        if hier:
            dst = dst[self.srv[dst] == self.srv[g]]
        CL = self.CL
        for c in range(CL):
            self._send(net, np.full(len(dst), g), dst, row[dst] / CL, G.id("dispatch", dst),
                       row[dst] / CL, "dispatch", priority=c)
        if hier:
            gps = self.gps
            bs = np.flatnonzero(self.P1[g] > 0)
            relays = np.minimum(bs * gps + g % gps, n - 1)
            own = np.where(off[g, relays] > 0, off[g, relays], 0.0)
            for c in range(C):
                self._send(net, np.full(len(bs), g), relays, self.P1[g, bs] / C,
                           G.id("relay_in", g, bs, c), own / C, "dispatch", priority=c)
            for b, r in zip(bs, relays):
                for c in range(C):
                    net.arrival(int(G.id("relay_in", g, b, c))).callbacks.append(
                        lambda _e, i=g, b=int(b), r=int(r): self._forward(i, b, r))
        waits = [net.arrival(G.id("dispatch", g))] + [net.arrival(x) for x in self.relay_own[g]]
        yield env.all_of(waits)
        times.dispatch_end[g] = env.now
        if not combine:
            return
        if self.weights is not None:
            yield net.arrival(G.id("weights", g))
        if compute_s > 0:
            yield env.timeout(compute_s)
        times.compute_end[g] = env.now
        self.compute_done[g].succeed()
        if self.combine_delay is not None and self.combine_delay[g] > 0:
            yield env.timeout(float(self.combine_delay[g]))
        col = off[:, g] * sc
        back = np.flatnonzero(col > 0)
        if hier:
            gps = self.gps
            local = back[self.srv[back] == self.srv[g]]
            for c in range(self.CL):
                self._send(net, np.full(len(local), g), local, col[local] / self.CL,
                           G.id("combine", local), col[local] / self.CL, "combine", priority=c)
            far = back[self.srv[back] != self.srv[g]]
            b = self.srv[g]
            relays = np.minimum(b * gps + far % gps, n - 1)
            m = relays != g
            far, relays = far[m], relays[m]
            for c in range(C):
                self._send(net, np.full(len(far), g), relays, col[far] / C,
                           G.id("relay_gather", far, b, c), 0.0, "combine", priority=c)
        else:
            self._send(net, np.full(len(back), g), back, col[back], G.id("combine", back),
                       col[back], "combine")
        yield net.arrival(G.id("combine", g))
        times.combine_end[g] = env.now

    def _forward(self, i: int, b: int, r: int) -> None:
        """One phase-1 chunk of (i, B) has reached relay r: forward its share to B's GPUs."""
        off, gps, n = self.off, self.gps, self.n
        js = np.arange(b * gps, min(n, (b + 1) * gps))
        js = js[(off[i, js] > 0) & (js != r)]
        if len(js):
            part = off[i, js] / self.C
            self._send(self.net, np.full(len(js), r), js, part, self.G.id("dispatch", js), part,
                       "dispatch")

    def _combine_relay(self, i: int, b: int, r: int, c: int):
        net, n = self.net, self.n
        waits = [net.arrival(self.G.id("relay_gather", i, b, c))]
        if self.off[i, r] > 0:
            waits.append(self.compute_done[r])
        yield self.env.all_of(waits)
        gps, C, sc = self.gps, self.C, self.scale
        js = np.arange(b * gps, min(n, (b + 1) * gps))
        represented = float(self.off[i, js].sum()) * sc / C
        self._send(net, r, i, self.P1[i, b] * sc / C, self.G.id("combine", i), represented,
                   "combine", priority=c)

    def finish(self, fabric) -> None:
        """Collect the byte counters after ``env.run()``."""
        nb = fabric.bytes[: fabric.n]
        self.network_bytes = float(nb.sum())
        done = np.isfinite(fabric.finish[: fabric.n])
        tot = 0.0
        for ids, rep in self._rep:
            tot += float(rep[done[ids]].sum())
        self.e2e_bytes = tot
        for phase, lst in self._phase_ids.items():
            self.phase_flow_bytes[phase] = float(sum(nb[ids].sum() for ids in lst))
        self.flows = int(fabric.n)
