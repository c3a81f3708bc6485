"""An optical circuit switch (OCS) as a SimPy process: it walks through a circuit schedule.

Model:

* The switch has one port per GPU on each of its ``planes`` (independent port planes, or
  parallel switches); a plane connects its ports in a matching ``perm`` (TX of GPU i to RX of
  GPU perm[i]; -1: port idle). A circuit carries one GPU pair's bytes at the plane's line rate;
  nothing crosses a pair without a circuit. The fabric underneath is a set of directed GPU-to-GPU
  links whose capacity is line rate x (number of planes currently holding that circuit).
* Changing a plane's matching takes ``reconfig_s``. ``all_stop``: every circuit of the plane is
  down for the whole reconfiguration. ``not_all_stop``: only circuits whose endpoints change go
  down; a circuit present in both the old and the new matching keeps carrying data.
* Every matching of a schedule is preceded by a reconfiguration (the first one too), so a
  schedule of m matchings of durations t_k takes sum(t_k) + m * reconfig_s (DESIGN.md).
* After each matching the switch calls ``on_matching_end(plane, perm)`` so that GPUs can pick up
  the batch of data that matching delivered.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy
from numba import njit

from netsim.devices.network import Network

MODES = ("all_stop", "not_all_stop")


@njit(cache=True)
def circuit_ids(perm, table):
    """``table[i, perm[i]]`` for every port i with a circuit (``perm[i] >= 0``), in port order:
    a matching's circuit link ids (``table``: link of each pair) or anything else indexed by
    pair (what ``table[a, perm[a]]`` with ``a = np.flatnonzero(perm >= 0)`` gives)."""
    m = 0
    for i in range(len(perm)):
        if perm[i] >= 0:
            m += 1
    out = np.empty(m, np.int64)
    m = 0
    for i in range(len(perm)):
        if perm[i] >= 0:
            out[m] = table[i, perm[i]]
            m += 1
    return out


@njit(cache=True)
def recount(links, count, delta, rate):
    """``count[links] += delta`` (distinct links) and the links' capacities after, B/s:
    ``count[links] * rate`` (what the numpy expressions give)."""
    out = np.empty(len(links), np.float64)
    for q in range(len(links)):
        e = links[q]
        count[e] += delta
        out[q] = count[e] * rate
    return out


@dataclass
class OCSStats:
    """What the switch did (all planes)."""

    matchings: int = 0
    reconfig_total_s: float = 0.0  # summed over planes
    circuit_time_s: float = 0.0  # summed over planes (time circuits were held)
    circuit_capacity_bytes: float = 0.0  # sum over matchings of circuits x rate x duration
    port_capacity_bytes: float = 0.0  # sum over matchings of ports (all N) x rate x duration
    plane_busy_s: list = field(default_factory=list)


class OCS:
    """Circuit state of all planes and the process that executes schedules on one plane."""

    def __init__(self, env: simpy.Environment, net: Network, link_of: np.ndarray,
                 rate_Bps: float, reconfig_s: float, planes: int = 1, mode: str = "all_stop"):
        if mode not in MODES:
            from netsim.errors import ConfigError

            raise ConfigError(f"ocs_mode={mode!r}; expected one of {MODES}")
        self.env = env
        self.net = net
        self.link_of = link_of  # N x N directed circuit link ids (-1 on the diagonal)
        self.n = link_of.shape[0]
        self.rate = float(rate_Bps)
        self.reconfig_s = float(reconfig_s)
        self.mode = mode
        self.up = np.full((planes, self.n), -1, np.int64)  # per plane: current circuit of port i
        self.count = np.zeros(link_of.max() + 1, np.int64)  # planes holding each circuit link
        self.stats = OCSStats(plane_busy_s=[0.0] * planes)
        self.on_matching_end = None  # callback(plane, perm)
        self._src = np.arange(self.n)
        self._idle = np.full(self.n, -1, np.int64)  # every port idle (never written)
        self._links_up: list = [None] * planes  # per plane: its circuit links if _bring_up set them

    def _set_plane(self, plane: int, perm: np.ndarray) -> None:
        """Make ``perm`` (-1 = idle port) the plane's live circuits; update link capacities."""
        old = self.up[plane]
        changed = old != perm
        if not changed.any():
            return
        src = self._src
        gone = changed & (old >= 0)
        come = changed & (perm >= 0)
        links_gone = self.link_of[src[gone], old[gone]]
        links_come = self.link_of[src[come], perm[come]]
        # one circuit per source port, and a changed port's old and new circuits differ: the
        # links of a plane's change are distinct, so plain fancy-index updates are exact
        # (np.subtract.at / np.add.at are much slower) and the fabric, which treats the links it
        # is given as a set, needs no np.unique of them
        count = self.count
        count[links_gone] -= 1
        count[links_come] += 1
        touched = np.concatenate([links_gone, links_come])
        self.up[plane] = perm
        self._links_up[plane] = None
        self.net.set_capacity(touched, count[touched] * self.rate)

    def _drop_all(self, plane: int) -> None:
        """:meth:`_set_plane` to all ports idle (an all_stop reconfiguration), without masks."""
        links = self._links_up[plane]  # the plane's circuits, if :meth:`_bring_up` set them
        if links is None:
            links = circuit_ids(self.up[plane], self.link_of)  # distinct (one per source port)
        if not len(links):
            return
        self._links_up[plane] = None
        self.up[plane] = self._idle
        self.net.set_capacity(links, recount(links, self.count, -1, self.rate))

    def _bring_up(self, plane: int, perm: np.ndarray, links: np.ndarray) -> None:
        """:meth:`_set_plane` of an idle plane to ``perm``, whose circuits are ``links``
        (:func:`circuit_ids`), without masks."""
        if not len(links):
            return
        self.up[plane] = perm
        self._links_up[plane] = links
        self.net.set_capacity(links, recount(links, self.count, 1, self.rate))

    def run(self, plane: int, matchings, durations_s):
        """Process: hold each matching for its duration, reconfiguring before each."""
        env = self.env
        t_start = env.now
        all_stop = self.mode == "all_stop"
        for perm, dur in zip(matchings, durations_s):
            perm = np.ascontiguousarray(perm, np.int64)
            links = circuit_ids(perm, self.link_of)  # the matching's circuits, in port order
            # reconfiguration
            if self.reconfig_s > 0:
                if all_stop:
                    self._drop_all(plane)
                else:
                    keep = np.where(self.up[plane] == perm, perm, -1)
                    self._set_plane(plane, keep)
                yield env.timeout(self.reconfig_s)
                self.stats.reconfig_total_s += self.reconfig_s
            if all_stop and self.reconfig_s > 0:  # the plane is idle
                self._bring_up(plane, perm, links)
            else:
                self._set_plane(plane, perm)
            if dur > 0:
                yield env.timeout(dur)
            self.stats.matchings += 1
            self.stats.circuit_time_s += dur
            self.stats.circuit_capacity_bytes += float(len(links)) * self.rate * dur
            self.stats.port_capacity_bytes += float(self.n) * self.rate * dur
            if self.on_matching_end is not None:
                self.on_matching_end(plane, perm)
        self._set_plane(plane, self._idle)
        self.stats.plane_busy_s[plane] += env.now - t_start
