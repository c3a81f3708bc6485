"""Two-tier hybrid: an NVLink domain per server plus a scale-out fabric across servers, either an
optical circuit switch (``scale_out="ocs"``) or a leaf-spine (``scale_out="leaf_spine"``).

With the OCS, NIC r of server s holds a circuit to NIC r of server (s + 1 + p) mod S on port
plane p (a fixed, rail-wise shift matching until a circuit schedule drives it); NICs relay traffic
for other servers' NICs when no direct circuit exists (multi-hop over circuits).
With ``eps_gbps`` > 0 every NIC also has a port of that rate on one electrical packet switch (a
hybrid circuit/packet network, c-Through / Helios style): circuit schedulers send the bytes their
schedule leaves (``greedy:K:RULE:leftover``) over it (see :mod:`netsim.engines.circuit`).
A circuit scheduler (``--scheduler``) drives the OCS between *servers*: see :mod:`netsim.engines.circuit`.
"""
from netsim.errors import ConfigError
from netsim.topology import Topology, add_servers
from netsim.units import gbps, us


def build(servers: int = 4, gpus_per_server: int = 8, nvlink_gbps: float = 3600.0,
          nic_gbps: float = 400.0, scale_out: str = "ocs", ports: int = 1,
          reconfig_us: float = 10.0, spines: int = 4, pcie_gbps: float = 512.0,
          latency_us: float = 0.5, eps_gbps: float = 0.0, hardware: str = "",
          nic: str = "") -> Topology:
    """``servers`` x ``gpus_per_server`` GPUs; Gbit/s per direction; ``latency_us`` per link;
    ``eps_gbps``: each NIC's port on an electrical packet switch beside the OCS (0: none);
    ``hardware`` / ``nic`` presets (:mod:`netsim.hardware`) set ``nvlink_gbps`` / ``nic_gbps``
    and ``pcie_gbps``."""
    from netsim.hardware import resolve

    sp = resolve(hardware, nic, dict(nvlink_gbps=nvlink_gbps, nic_gbps=nic_gbps,
                                     pcie_gbps=pcie_gbps),
                 dict(nvlink_gbps=3600.0, nic_gbps=400.0, pcie_gbps=512.0))
    nvlink_gbps, nic_gbps, pcie_gbps = sp["nvlink_gbps"], sp["nic_gbps"], sp["pcie_gbps"]
    S, gps, ports = int(servers), int(gpus_per_server), int(ports)
    if scale_out not in ("ocs", "leaf_spine"):
        raise ConfigError(f"scale_out={scale_out!r}; expected 'ocs' or 'leaf_spine'")
    if not eps_gbps >= 0:
        raise ConfigError(f"eps_gbps={eps_gbps!r}; expected >= 0 (0: no electrical network)")
    if S < 2 or gps < 1 or ports < 1 or ports >= S:
        raise ConfigError(f"servers={S}, gpus_per_server={gps}, ports={ports}: expected"
                          " servers >= 2, gpus_per_server >= 1, 1 <= ports < servers")
    # with the OCS, cross-rail traffic hops over NVLink to the right rail first (PXN-style):
    # GPUs relay for each other.
    t = Topology("hybrid", gpu_forwarding=(scale_out == "ocs"), params=dict(
        servers=S, gpus_per_server=gps, nvlink_gbps=nvlink_gbps, nic_gbps=nic_gbps,
        scale_out=scale_out, ports=ports, reconfig_us=reconfig_us, spines=spines,
        pcie_gbps=pcie_gbps, latency_us=latency_us, eps_gbps=eps_gbps,
        **({"hardware": hardware} if hardware else {}), **({"nic": nic} if nic else {})))
    lat = us(latency_us)
    _, nics = add_servers(t, S, gps, gbps(nvlink_gbps), gbps(nic_gbps), gbps(pcie_gbps), lat)
    if scale_out == "leaf_spine":
        leaf = t.add_switch("leaf")
        for s in range(S):
            for nic in nics[s]:
                t.add_link(nic, leaf, gbps(nic_gbps), lat)
        return t
    ocs = t.add_ocs("ocs")
    per_port = gbps(nic_gbps) / ports
    for p in range(ports):
        for s in range(S):
            for r in range(gps):
                t.add_link(nics[s][r], nics[(s + 1 + p) % S][r], per_port, lat, duplex=False,
                           tag="circuit", ocs=ocs)
    if eps_gbps > 0:
        eps = t.add_switch("eps")
        for s in range(S):
            for nic in nics[s]:
                t.add_link(nic, eps, gbps(eps_gbps), lat, tag="eps")
    # what a circuit scheduler drives: a server matching joins all gps rails of two servers
    t.declare_circuits(group=gps, planes=ports, rate_Bps=gps * per_port, reconfig_s=us(reconfig_us),
                       latency_s=lat, nvlink_Bps=gbps(nvlink_gbps), eps_Bps=gbps(eps_gbps))
    return t
