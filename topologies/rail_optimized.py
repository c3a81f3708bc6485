"""Rail-optimised fabric (as in NVIDIA DGX SuperPOD): GPU r of every server connects, through its
own NIC, to rail leaf r; the GPUs of a server share an NVLink switch; spines join the rails.

Same-rail traffic crosses one leaf; cross-rail traffic between servers goes up to a spine (GPUs do
not relay; NCCL's PXN-style relaying over NVLink is not modelled here)."""
from netsim.errors import ConfigError
from netsim.hardware import resolve
from netsim.topology import Topology, add_servers
from netsim.units import gbps, us


def build(servers: int = 8, gpus_per_server: int = 8, nic_gbps: float = 400.0,
          nvlink_gbps: float = 3600.0, spines: int = 4, oversubscription: float = 1.0,
          pcie_gbps: float = 512.0, latency_us: float = 0.5, hardware: str = "",
          nic: str = "") -> Topology:
    """``servers`` x ``gpus_per_server`` GPUs; Gbit/s per direction; ``latency_us`` per link.
    ``nvlink_gbps`` default 3600 = 450 GB/s per direction (H100 SXM NVLink 4). ``hardware``
    (h800, h100, h200, b200, gb200_nvl72) and ``nic`` (cx7, cx8) set those speeds from
    :mod:`netsim.hardware`'s presets instead."""
    sp = resolve(hardware, nic, dict(nvlink_gbps=nvlink_gbps, nic_gbps=nic_gbps,
                                     pcie_gbps=pcie_gbps),
                 dict(nvlink_gbps=3600.0, nic_gbps=400.0, pcie_gbps=512.0))
    nvlink_gbps, nic_gbps, pcie_gbps = sp["nvlink_gbps"], sp["nic_gbps"], sp["pcie_gbps"]
    servers, gps, spines = int(servers), int(gpus_per_server), int(spines)
    if servers < 1 or gps < 1 or spines < 1 or oversubscription <= 0:
        raise ConfigError(f"servers={servers}, gpus_per_server={gps}, spines={spines},"
                          f" oversubscription={oversubscription}: expected positive values")
    t = Topology("rail_optimized", params=dict(
        servers=servers, gpus_per_server=gps, nic_gbps=nic_gbps, nvlink_gbps=nvlink_gbps,
        spines=spines, oversubscription=oversubscription, pcie_gbps=pcie_gbps,
        latency_us=latency_us, **({"hardware": hardware} if hardware else {}),
        **({"nic": nic} if nic else {})))
    lat = us(latency_us)
    _, nics = add_servers(t, servers, gps, gbps(nvlink_gbps), gbps(nic_gbps), gbps(pcie_gbps), lat)
    rails = [t.add_switch(f"rail{r}") for r in range(gps)]
    for s in range(servers):
        for r in range(gps):
            t.add_link(nics[s][r], rails[r], gbps(nic_gbps), lat)
    if gps > 1:
        sp = [t.add_switch(f"spine{i}") for i in range(spines)]
        up = gbps(nic_gbps) * servers / oversubscription / spines
        for leaf in rails:
            for x in sp:
                t.add_link(leaf, x, up, lat)
    return t
