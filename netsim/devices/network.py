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


class GroupBlocks:
    """Named blocks of completion-group ids, so that no caller writes offset arithmetic.

    ``GroupBlocks(dispatch=n, combine=n, relay=(n, S))`` lays the blocks out one after another;
    ``id("relay", i, b)`` is the group of (i, b) in block ``relay`` (scalars or numpy arrays,
    row-major); ``total`` is how many groups a :class:`Network` needs.
    """

    def __init__(self, **blocks: "int | tuple[int, ...]"):
        self._offset: dict[str, int] = {}
        self._shape: dict[str, tuple[int, ...]] = {}
        total = 0
        for name, shape in blocks.items():
            shape = (int(shape),) if np.isscalar(shape) else tuple(int(x) for x in shape)
            self._offset[name], self._shape[name] = total, shape
            total += int(np.prod(shape))
        self.total = total

    def id(self, name: str, *index):
        """Group id(s) of ``index`` in block ``name``."""
        shape = self._shape[name]
        if len(index) != len(shape):
            raise IndexError(f"group block {name!r} has {len(shape)} dimension(s)")
        flat = 0
        for i, dim in zip(index, shape):
            flat = flat * dim + i
        return self._offset[name] + flat


class Network:
    """SimPy process driving a :class:`FlowFabric`; ``n_groups`` completion groups."""

    def __init__(self, env: simpy.Environment, fabric: FlowFabric, n_groups: int):
        self.env = env
        self.fabric = fabric
        self.left = np.zeros(n_groups, np.int64)
        self.done_at = np.zeros(n_groups, np.float64)
        self._events: list[simpy.Event | None] = [None] * n_groups
        self._hit = np.zeros(n_groups, np.bool_)
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

    def extend(self, ids: np.ndarray, nbytes: np.ndarray) -> None:
        """Add bytes to unfinished flows now (see :meth:`FlowFabric.extend`)."""
        self._sync()
        self.fabric.extend(ids, nbytes)
        if not self._wake.triggered:
            self._wake.succeed()

    # ---- internals -----------------------------------------------------------------------------
    def _sync(self) -> None:
        """Advance the fabric to ``env.now``, firing groups that complete on the way."""
        now = self.env.now
        while self.fabric.now < now and self.fabric.n_act:
            if self.fabric.run_until(now, self.left, self.done_at, self._hit):
                self._fire_completed()
            elif self.fabric.now < now:  # stalled (no flow can progress): jump
                break
        self.fabric.now = max(self.fabric.now, now)

    def _fire_completed(self) -> None:
        groups = np.flatnonzero(self._hit)
        self._hit[groups] = False
        for g in groups:
            if self.left[g] == 0:
                self._fire(int(g))

    def _fire(self, g: int) -> None:
        ev = self._events[g]
        if ev is None:
            ev = self._events[g] = self.env.event()
        if not ev.triggered:
            # never before the fabric's own clock: processes must not act in its past
            delay = max(0.0, self.done_at[g] - self.env.now, self.fabric.now - self.env.now)
            self.env.timeout(delay).callbacks.append(
                lambda _e, ev=ev: None if ev.triggered else ev.succeed())

    def _run(self):
        """Advance the fabric in the kernel up to the next SimPy event (``env.peek()``) or the
        next group completion, whichever is first, then sleep until that time. Nothing else can
        happen in between, so no SimPy event is spent on flow completions that change nothing
        for the control plane."""
        env = self.env
        while True:
            if self._wake.triggered:
                self._wake = env.event()
            if self.fabric.n_act:
                horizon = env.peek()
                if self.fabric.run_until(horizon, self.left, self.done_at, self._hit):
                    self._fire_completed()
            if not self.fabric.n_act:
                yield self._wake
                continue
            t = self.fabric.now if self.fabric.now > env.now else self.fabric.next_event_time()
            if np.isinf(t):
                yield self._wake  # stalled until capacity or flows change
            else:
                yield env.timeout(max(0.0, t - env.now)) | self._wake
