"""What a circuit-scheduled MoE layer runs on (see :mod:`netsim.ocs_layer`).

* :class:`CircuitFabric`: the endpoints the OCS switches (GPUs on ``ocs_direct``, servers on
  ``hybrid``), their circuit rate, port planes, NVLink and electrical bandwidth, read from a
  topology's parameters; the congestion-free bounds of a GPU byte matrix on it.
* :func:`circuit_topology` (a directed circuit link between every two endpoints, capacity set by
  the OCS), :func:`static_topology` (NVLink switches and the electrical packet switch beside the
  circuits) and :func:`ideal_topology` (the circuits replaced by one non-blocking switch: the
  ``scheduler=ideal`` reference).
* :func:`make_planner`: a scheduler name -> ``plan(bytes)`` giving each port plane its matchings
  and durations, and what the scheduler left over.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from netsim.bounds import line_sum_time
from netsim.errors import ConfigError
from netsim.topology import Circuits, Topology, crossbar
from netsim.units import gbps, us


@dataclass(frozen=True)
class CircuitFabric(Circuits):
    """The layer's view of a scheduled circuit fabric: a topology's declared :class:`Circuits`
    (every field and its unit documented there) on its ``n`` GPUs."""

    n: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.n < 1 or self.n % self.group:
            raise ConfigError(f"circuit fabric of {self.n} GPUs: expected a positive multiple of"
                              f" {self.group} GPUs per endpoint")

    @property
    def units(self) -> int:
        return self.n // self.group

    @classmethod
    def of(cls, topo) -> "CircuitFabric":
        """The circuits a (frozen) topology declares (:meth:`netsim.topology.Topology.declare_circuits`)."""
        c = getattr(topo, "circuits", None)
        if c is None:
            raise ConfigError(
                f"a circuit scheduler needs a topology with an optical circuit switch that declares"
                f" its circuits (Topology.declare_circuits, as ocs_direct and hybrid with"
                f" scale_out=ocs do); topology {topo.name!r} declares none")
        if c.group > 1 and not c.nvlink_Bps > 0:
            raise ConfigError("a circuit-scheduled fabric with several GPUs per endpoint needs"
                              " NVLink inside the server (nvlink_gbps > 0; traffic inside a"
                              f" server); got nvlink_gbps={c.nvlink_Bps * 8e-9!r}")
        return cls(**asdict(c), n=topo.n_gpus)

    def unit_matrix(self, m: np.ndarray) -> np.ndarray:
        """GPU-level bytes -> endpoint-level bytes between different endpoints (diagonal 0)."""
        u, g = self.units, self.group
        out = m.reshape(u, g, u, g).sum(axis=(1, 3)) if g > 1 else m.copy()
        np.fill_diagonal(out, 0.0)
        return out

    def ideal_bounds(self, D: np.ndarray) -> tuple[float, float]:
        """Congestion-free dispatch and combine times (s) of GPU matrix ``D``: the circuits'
        bandwidth of every endpoint used all the time (plus the electrical port), NVLink for
        bytes inside a server, whichever is longer, plus one path's latency."""
        bw = self.planes * self.rate_Bps + self.group * self.eps_Bps
        hops = 3 if self.group > 1 else 1
        out = []
        for m in (D, D.T):
            t = line_sum_time(self.unit_matrix(m), bw)
            if self.group > 1:
                intra = m * (np.arange(self.n)[:, None] // self.group == np.arange(self.n) // self.group)
                t = max(t, line_sum_time(intra, self.nvlink_Bps))
            out.append(float(t) + (hops * self.latency_s if t > 0 else 0.0))
        return out[0], out[1]


def circuit_topology(cf: CircuitFabric):
    """The circuit fabric the layer runs on: one node per endpoint (GPU, or server on ``hybrid``)
    and a directed circuit link between every two, its capacity set by the OCS.
    Returns (frozen topology, link_of[U, U] circuit link ids)."""
    u = cf.units
    t = Topology("ocs_circuits", gpu_forwarding=False)
    ends = [t.add_gpu(f"u{a}") for a in range(u)]
    ocs = t.add_ocs("ocs")
    link_of = np.full((u, u), -1, np.int64)
    for a in range(u):
        for b in range(u):
            if a != b:
                link_of[a, b] = t.add_link(ends[a], ends[b], cf.rate_Bps, cf.latency_s,
                                           duplex=False, tag="circuit", ocs=ocs)[0]
    return t.freeze(), link_of


def static_topology(cf: CircuitFabric):
    """The links beside the circuits: each server's NVLink switch (``group`` > 1) and the
    electrical packet switch (``eps_Bps`` > 0, G x ``eps_Bps`` per server). None if neither."""
    n, g = cf.n, cf.group
    if g == 1 and cf.eps_Bps <= 0:
        return None
    t = Topology("ocs_static", gpu_forwarding=False)
    gpus = [t.add_gpu(f"g{i}") for i in range(n)]
    ends = gpus
    if g > 1:
        ends = [t.add_switch(f"s{a}nvsw") for a in range(cf.units)]
        for i in range(n):
            t.add_link(gpus[i], ends[i // g], cf.nvlink_Bps, cf.latency_s, tag="nvlink")
    if cf.eps_Bps > 0:
        sw = t.add_switch("eps")
        for e in ends:
            t.add_link(e, sw, g * cf.eps_Bps, cf.latency_s, tag="eps")
    # without an electrical network only the pairs inside a server have a route, the only ones
    # this fabric carries
    return t.freeze(connected=cf.eps_Bps > 0)


def ideal_topology(topo):
    """The congestion-free reference for ``scheduler=ideal``: the circuits replaced by one
    non-blocking switch giving each endpoint its circuits' (and electrical) bandwidth."""
    cf = CircuitFabric.of(topo)
    bw = cf.planes * cf.rate_Bps + cf.group * cf.eps_Bps
    if cf.group == 1:
        return crossbar(cf.n, bw, cf.latency_s / 2, params=topo.params)
    t = Topology("ideal_hybrid", params=dict(topo.params))
    xb = t.add_switch("xbar")
    for a in range(cf.units):
        hub = t.add_switch(f"s{a}nvsw")
        for _ in range(cf.group):
            t.add_link(t.add_gpu(), hub, cf.nvlink_Bps, cf.latency_s, tag="nvlink")
        t.add_link(hub, xb, bw, cf.latency_s / 2)
    return t


class _Plan:
    """A schedule on endpoints (what the OCS runs) and the scheduler's own record."""

    def __init__(self, sched, matchings, durations_s, leftover: np.ndarray):
        self.matchings = matchings  # endpoint permutations of this plane
        self.durations_s = durations_s
        self.leftover = leftover  # endpoint-level bytes left by the scheduler (all planes)
        self.meta = sched.meta  # the whole schedule's (all planes for spectra)
        self.n_matchings = sched.n_matchings


def make_planner(spec, cf: CircuitFabric):
    """``plan(Ru, R=None)``: endpoint-level bytes ``Ru`` (and, for ``hier_bvn``'s first plan,
    the GPU-level matrix ``R``) -> list of per-plane :class:`_Plan`.

    ``spec``: a :class:`netsim.schedule.SchedulerSpec` (or its text); arguments the fabric decides
    (spectra's S = the port planes, hier_bvn's G = the GPUs per endpoint) are filled from ``cf``.
    """
    from netsim.schedule import SchedulerSpec, get_scheduler, parse_scheduler

    ss = spec if isinstance(spec, SchedulerSpec) else parse_scheduler(spec)
    name = ss.name
    if name == "hier_bvn" and cf.group == 1:
        raise ConfigError(f"scheduler={ss.canon!r} is for two-tier fabrics: use topology=hybrid "
                          "(scale_out=ocs); on ocs_direct use bvn")
    given = ss.kwargs
    ss = ss.for_fabric(cf.planes, cf.group)
    planes, rate = cf.planes, cf.rate_Bps
    if name == "spectra" and given.get("s") is not None and given["s"] != planes:
        raise ConfigError(f"scheduler={ss.canon!r} schedules {given['s']} switches; the topology"
                          f" has {planes} port plane(s) (ports x ocs_count): use spectra:{planes}"
                          " or plain spectra")
    if name == "hier_bvn" and given.get("gpus_per_server") not in (None, cf.group):
        raise ConfigError(f"scheduler={ss.canon!r}: G={given['gpus_per_server']} but the fabric"
                          f" has {cf.group} GPUs per server: use hier_bvn:{cf.group} or plain"
                          " hier_bvn")
    fn = get_scheduler(ss)
    if name == "hier_bvn":
        server_level = get_scheduler("bvn")

    def plan(Ru: np.ndarray, R: np.ndarray | None = None) -> list:
        if name == "hier_bvn":
            if R is not None:  # GPU-level: server permutation sigma -> GPUs (a, k) -> (sigma(a), k)
                s = fn(R / planes, rate / cf.group, cf.reconfig_s)
                perms = [np.asarray(p)[:: cf.group] // cf.group for p in s.matchings]
                return [_Plan(s, perms, list(s.durations_s), np.zeros_like(Ru))] * planes
            s = server_level(Ru / planes, rate, cf.reconfig_s)  # its server-level step
            return [_Plan(s, s.matchings, s.durations_s, s.leftover_bytes * planes)] * planes
        if name == "spectra":
            s = fn(Ru, rate, cf.reconfig_s)
            per = s.meta.get("per_switch") or [s]
            return [_Plan(s, x.matchings, x.durations_s, s.leftover_bytes) for x in per]
        s = fn(Ru / planes, rate, cf.reconfig_s)
        return [_Plan(s, s.matchings, s.durations_s, s.leftover_bytes * planes)] * planes

    return plan
