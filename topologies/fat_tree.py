"""k-ary three-tier fat-tree (Al-Fares et al., SIGCOMM 2008): k pods of k/2 edge and k/2
aggregation switches, (k/2)^2 core switches, k^3/4 GPUs (one NIC each, k/2 per edge switch).
Full bisection bandwidth when every link has the same rate."""
from netsim.errors import ConfigError
from netsim.hardware import resolve
from netsim.topology import Topology, add_servers
from netsim.units import gbps, us


def build(k: int = 4, link_gbps: float = 400.0, pcie_gbps: float = 512.0,
          latency_us: float = 0.5, nic: str = "") -> Topology:
    """Fat-tree of even arity ``k``; every switch link ``link_gbps`` Gbit/s, ``latency_us`` us;
    ``nic`` (cx7, cx8: :mod:`netsim.hardware`) sets ``link_gbps`` and ``pcie_gbps``. One GPU a
    server: no NVLink domain, so no ``hardware`` preset."""
    sp = resolve("", nic, dict(link_gbps=link_gbps, pcie_gbps=pcie_gbps),
                 dict(link_gbps=400.0, pcie_gbps=512.0))
    link_gbps, pcie_gbps = sp["link_gbps"], sp["pcie_gbps"]
    k = int(k)
    if k < 2 or k % 2:
        raise ConfigError(f"k={k}; expected an even integer >= 2")
    h = k // 2
    t = Topology("fat_tree", params=dict(k=k, link_gbps=link_gbps, pcie_gbps=pcie_gbps,
                                         latency_us=latency_us,
                                         **({"nic": nic} if nic else {})))
    bw, lat = gbps(link_gbps), us(latency_us)
    cores = [t.add_switch(f"core{i}") for i in range(h * h)]
    for p in range(k):
        edges = [t.add_switch(f"p{p}e{i}") for i in range(h)]
        aggs = [t.add_switch(f"p{p}a{i}") for i in range(h)]
        for e in edges:
            for a in aggs:
                t.add_link(e, a, bw, lat)
        for i, a in enumerate(aggs):
            for j in range(h):
                t.add_link(a, cores[i * h + j], bw, lat)
        for i, e in enumerate(edges):
            _, nics = add_servers(t, 1, h, 0.0, bw, gbps(pcie_gbps), lat)
            for nic in nics[0]:
                t.add_link(nic, e, bw, lat)
    t.gpus_per_server = 1
    return t
