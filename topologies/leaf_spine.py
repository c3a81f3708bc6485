"""Two-tier leaf-spine (Clos) fabric: servers of GPUs, one NIC per GPU, leaves and spines.

Each GPU reaches its own NIC over PCIe (``pcie_gbps``); each NIC has one ``nic_gbps`` link to its
leaf. A leaf serves ``servers_per_leaf`` servers; its uplink capacity is its downlink capacity
divided by ``oversubscription``, spread evenly over ``spines`` links (one to each spine). With
``nvlink_gbps > 0`` the GPUs of a server also share an NVLink switch (intra-server traffic then
stays on NVLink). A single leaf needs no spine.
"""
from netsim.hardware import resolve
from netsim.topology import Topology, add_servers
from netsim.units import gbps, us


def build(
    gpus: int = 64,
    gpus_per_server: int = 8,
    servers_per_leaf: int = 2,
    spines: int = 4,
    nic_gbps: float = 400.0,
    oversubscription: float = 1.0,
    pcie_gbps: float = 512.0,
    nvlink_gbps: float = 0.0,
    latency_us: float = 0.5,
    hardware: str = "",
    nic: str = "",
) -> Topology:
    """Leaf-spine of ``gpus`` GPUs (a multiple of ``gpus_per_server``); bandwidths in Gbit/s per
    direction, ``latency_us`` microseconds per switch link; ``hardware`` / ``nic`` presets
    (:mod:`netsim.hardware`) set ``nvlink_gbps`` / ``nic_gbps`` and ``pcie_gbps``."""
    sp = resolve(hardware, nic, dict(nvlink_gbps=nvlink_gbps, nic_gbps=nic_gbps,
                                     pcie_gbps=pcie_gbps),
                 dict(nvlink_gbps=0.0, nic_gbps=400.0, pcie_gbps=512.0))
    nvlink_gbps, nic_gbps, pcie_gbps = sp["nvlink_gbps"], sp["nic_gbps"], sp["pcie_gbps"]
    gpus, gps, spl, spines = int(gpus), int(gpus_per_server), int(servers_per_leaf), int(spines)
    from netsim.errors import ConfigError

    if gps < 1 or gpus < 1 or gpus % gps:
        raise ConfigError(f"gpus={gpus} must be a positive multiple of gpus_per_server={gps}")
    if oversubscription <= 0:
        raise ConfigError(f"oversubscription={oversubscription!r}; expected > 0")
    if spl < 1 or spines < 1:
        raise ConfigError(f"servers_per_leaf={spl}, spines={spines}; expected >= 1")
    t = Topology("leaf_spine", params=dict(
        gpus=gpus, gpus_per_server=gps, servers_per_leaf=spl, spines=spines, nic_gbps=nic_gbps,
        oversubscription=oversubscription, pcie_gbps=pcie_gbps, nvlink_gbps=nvlink_gbps,
        latency_us=latency_us, **({"hardware": hardware} if hardware else {}),
        **({"nic": nic} if nic else {})))
    servers = gpus // gps
    _, nics = add_servers(t, servers, gps, gbps(nvlink_gbps), gbps(nic_gbps), gbps(pcie_gbps),
                          us(latency_us))
    n_leaves = -(-servers // spl)
    leaves = [t.add_switch(f"leaf{i}") for i in range(n_leaves)]
    for s, server_nics in enumerate(nics):
        for nic in server_nics:
            t.add_link(nic, leaves[s // spl], gbps(nic_gbps), us(latency_us))
    if n_leaves > 1:
        spine_ids = [t.add_switch(f"spine{i}") for i in range(spines)]
        up = gbps(nic_gbps) * spl * gps / oversubscription / spines
        for leaf in leaves:
            for sp in spine_ids:
                t.add_link(leaf, sp, up, us(latency_us))
    return t
