"""The fabric as a SimPy process: the control plane's view of the numba flow model.

GPU processes call :meth:`Network.send` to start flows and wait on :meth:`Network.arrival`, an
event that fires when every flow of a *group* (e.g. "dispatch data for GPU 7") has been delivered.
The network process sleeps until the fabric's next completion or until new flows arrive, then
lets the kernel advance; it never creates a SimPy event per flow or per packet.
"""
from __future__ import annotations

import numpy as np
import simpy

from netsim.fabric.flow import FlowFabric


class Network:
    """SimPy process driving a :class:`FlowFabric`; ``n_groups`` completion groups."""

    def __init__(self, env: simpy.Environment, fabric: FlowFabric, n_groups: int):
        self.env = env
        self.fabric = fabric
        self.left = np.zeros(n_groups, np.int64)
        self.done_at = np.zeros(n_groups, np.float64)
        self._events: list[simpy.Event | None] = [None] * n_groups
        self._wake = env.event()
        self.process = env.process(self._run())

    def expect(self, group: int, n_flows: int) -> None:
        """Declare that ``group`` is complete after ``n_flows`` flows (set before sending)."""
        self.left[group] += n_flows

    def expect_many(self, groups: np.ndarray, n: int = 1) -> None:
        """Add ``n`` expected completions to each group listed (repeats add up)."""
        np.add.at(self.left, np.asarray(groups), n)

    def release(self, group: int, n: int = 1) -> None:
        """Drop ``n`` expected completions of ``group`` (e.g. a sender's hold once it knows it
        will send nothing more); fires the group's event if nothing is left."""
        self.left[group] -= n
        if self.left[group] == 0:
            self._fire(group)

    def arrival(self, group: int) -> simpy.Event:
        """Event fired when every flow expected in ``group`` has been delivered."""
        ev = self._events[group]
        if ev is None:
            ev = self._events[group] = self.env.event()
            if self.left[group] == 0:
                ev.succeed()
        return ev

    def set_capacity(self, links: np.ndarray, bandwidth_Bps: np.ndarray) -> None:
        """Change link capacities now (an OCS bringing circuits up or down)."""
        self._sync()
        self.fabric.set_link_capacity(links, bandwidth_Bps)
        if not self._wake.triggered:
            self._wake.succeed()

    def sync(self) -> None:
        """Bring the fabric up to ``env.now`` (so its byte counters are current)."""
        self._sync()

    def send(self, src, dst, nbytes, group, priority: int = 0) -> np.ndarray:
        """Start flows now (arrays or scalars; zero-byte and self flows are ignored)."""
        self._sync()
        ids = self.fabric.add_flows(np.atleast_1d(src), np.atleast_1d(dst), np.atleast_1d(nbytes),
                                    np.atleast_1d(group), priority=priority)
        if not self._wake.triggered:
            self._wake.succeed()
        return ids

    # ---- internals -----------------------------------------------------------------------------
    def _sync(self) -> None:
        """Advance the fabric to ``env.now``, handing out completions on the way."""
        now = self.env.now
        while True:
            done = self.fabric.step(horizon=now)
            if len(done):
                self._complete(done)
            elif self.fabric.now >= now or not self.fabric.n_act:
                self.fabric.now = max(self.fabric.now, now)
                return

    def _complete(self, done: np.ndarray) -> None:
        fab = self.fabric
        groups = fab.group[done]
        np.maximum.at(self.done_at, groups, fab.finish[done] + fab.lat[done])
        np.subtract.at(self.left, groups, 1)
        for g in np.unique(groups):
            if self.left[g] == 0:
                self._fire(int(g))

    def _fire(self, g: int) -> None:
        ev = self._events[g]
        if ev is None:
            ev = self._events[g] = self.env.event()
        if not ev.triggered:
            delay = max(0.0, self.done_at[g] - self.env.now)
            self.env.timeout(delay).callbacks.append(
                lambda _e, ev=ev: None if ev.triggered else ev.succeed())

    def _run(self):
        env = self.env
        while True:
            t_next = self.fabric.next_event_time()
            if self._wake.triggered:
                self._wake = env.event()
            if np.isinf(t_next):
                yield self._wake
            else:
                yield env.timeout(max(0.0, t_next - env.now)) | self._wake
            self._sync()
