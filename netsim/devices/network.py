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

    def arrival(self, group: int) -> simpy.Event:
        """Event fired when every flow expected in ``group`` has been delivered."""
        ev = self._events[group]
        if ev is None:
            ev = self._events[group] = self.env.event()
            if self.left[group] == 0:
                ev.succeed()
        return ev

    def send(self, src, dst, nbytes, group) -> None:
        """Start flows now (arrays or scalars; zero-byte and self flows are ignored)."""
        self._sync()
        self.fabric.add_flows(np.atleast_1d(src), np.atleast_1d(dst), np.atleast_1d(nbytes),
                              np.atleast_1d(group))
        if not self._wake.triggered:
            self._wake.succeed()

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
                ev = self._events[g]
                if ev is None:
                    ev = self._events[g] = self.env.event()
                if not ev.triggered:
                    delay = max(0.0, self.done_at[g] - self.env.now)
                    self.env.timeout(delay).callbacks.append(lambda _e, ev=ev: ev.succeed())

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
