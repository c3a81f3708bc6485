"""Two-tier hybrid: an NVLink domain per server plus a scale-out fabric across servers, either an
optical circuit switch (``scale_out="ocs"``) or a leaf-spine (``scale_out="leaf_spine"``).

With the OCS, NIC r of server s holds a circuit to NIC r of server (s + 1 + p) mod S on port
plane p (a fixed, rail-wise shift matching until a circuit schedule drives it); NICs relay traffic
for other servers' NICs when no direct circuit exists (multi-hop over circuits).
"""
from netsim.errors import ConfigError
from netsim.topology import Topology, add_servers
from netsim.units import gbps, us


def build(servers: int = 4, gpus_per_server: int = 8, nvlink_gbps: float = 3600.0,
          nic_gbps: float = 400.0, scale_out: str = "ocs", ports: int = 1,
          reconfig_us: float = 10.0, spines: int = 4, pcie_gbps: float = 512.0,
          latency_us: float = 0.5) -> Topology:
    """``servers`` x ``gpus_per_server`` GPUs; Gbit/s per direction; ``latency_us`` per link."""
    S, gps, ports = int(servers), int(gpus_per_server), int(ports)
    if scale_out not in ("ocs", "leaf_spine"):
        raise ConfigError(f"scale_out={scale_out!r}; expected 'ocs' or 'leaf_spine'")
    if S < 2 or gps < 1 or ports < 1 or ports >= S:
        raise ConfigError(f"servers={S}, gpus_per_server={gps}, ports={ports}: expected"
                          " servers >= 2, gpus_per_server >= 1, 1 <= ports < servers")
    # with the OCS, cross-rail traffic hops over NVLink to the right rail first (PXN-style):
    # GPUs relay for each other.
    t = Topology("hybrid", gpu_forwarding=(scale_out == "ocs"), params=dict(
        servers=S, gpus_per_server=gps, nvlink_gbps=nvlink_gbps, nic_gbps=nic_gbps,
        scale_out=scale_out, ports=ports, reconfig_us=reconfig_us, spines=spines,
        pcie_gbps=pcie_gbps, latency_us=latency_us))
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
    return t
