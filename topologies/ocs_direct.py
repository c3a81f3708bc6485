"""Direct-connect optical fabric: every GPU has ``ports`` optical ports on one optical circuit
switch (OCS). The OCS holds one matching (a permutation) per port plane; a circuit carries one
pair's bytes at the port line rate, one way (source TX -> destination RX).

Until a circuit schedule drives it, the OCS holds a fixed matching: port plane p connects GPU i to
GPU (i + shifts[p]) mod N (default shifts 1..ports, RotorNet-style). Pairs without a circuit are
reached over several circuits, relayed by intermediate GPUs (``gpu_forwarding``).
``reconfig_us`` is the OCS reconfiguration delay, recorded for the circuit schedulers.
With ``eps_gbps`` > 0 every GPU also has a port of that rate on one electrical packet switch (a
hybrid circuit/packet network, c-Through / Helios style), which carries what a circuit schedule
leaves (``greedy:K:RULE:leftover``; see :mod:`netsim.engines.circuit`).
"""
from netsim.errors import ConfigError
from netsim.topology import Topology, shift_matching
from netsim.units import gbps, us


def build(gpus: int = 16, ports: int = 1, port_gbps: float = 400.0, reconfig_us: float = 10.0,
          latency_us: float = 0.5, shifts: str = "", ocs_count: int = 1,
          eps_gbps: float = 0.0, nic: str = "") -> Topology:
    """``gpus`` GPUs, each with ``ports`` ports of ``port_gbps`` Gbit/s on each of ``ocs_count``
    parallel OCSes (``ports x ocs_count`` port planes in all, each holding its own matching);
    ``eps_gbps``: each GPU's port on an electrical packet switch (0: none);
    ``latency_us`` per circuit; ``shifts``: comma-separated shift per plane (default 1..planes);
    ``nic`` (cx7, cx8: :mod:`netsim.hardware`) sets ``port_gbps``."""
    from netsim.hardware import resolve

    port_gbps = resolve("", nic, dict(link_gbps=port_gbps), dict(link_gbps=400.0))["link_gbps"]
    n, ocs_count = int(gpus), int(ocs_count)
    if n < 2 or int(ports) < 1 or ocs_count < 1:
        raise ConfigError(f"gpus={n}, ports={ports}, ocs_count={ocs_count}: expected gpus >= 2,"
                          " ports >= 1 and ocs_count >= 1")
    ports_per_ocs = int(ports)
    ports = ports_per_ocs * ocs_count  # port planes
    if not eps_gbps >= 0:
        raise ConfigError(f"eps_gbps={eps_gbps!r}; expected >= 0 (0: no electrical network)")
    if reconfig_us < 0:
        raise ConfigError(f"reconfig_us={reconfig_us!r}; expected >= 0")
    sh = [int(x) for x in str(shifts).split(",") if x.strip()] or list(range(1, ports + 1))
    if len(sh) != ports or any(s % n == 0 for s in sh):
        raise ConfigError(f"shifts={shifts!r}: expected {ports} shifts, none a multiple of gpus={n}")
    t = Topology("ocs_direct", gpu_forwarding=True, params=dict(
        gpus=n, ports=ports, port_gbps=port_gbps, reconfig_us=reconfig_us,
        latency_us=latency_us, shifts=shifts, ocs_count=ocs_count, eps_gbps=eps_gbps,
        **({"nic": nic} if nic else {})))
    g = [t.add_gpu(f"g{i}") for i in range(n)]
    switches = [t.add_ocs(f"ocs{k}") for k in range(ocs_count)]
    for plane, s in enumerate(sh):
        ocs = switches[plane // ports_per_ocs]
        perm = shift_matching(n, s)
        for i in range(n):
            t.add_link(g[i], g[int(perm[i])], gbps(port_gbps), us(latency_us), duplex=False,
                       tag="circuit", ocs=ocs)
    if eps_gbps > 0:
        eps = t.add_switch("eps")
        for i in range(n):
            t.add_link(g[i], eps, gbps(eps_gbps), us(latency_us), tag="eps")
    # what a circuit scheduler drives: every GPU an endpoint with `ports` planes
    t.declare_circuits(group=1, planes=ports, rate_Bps=gbps(port_gbps),
                       reconfig_s=us(reconfig_us), latency_s=us(latency_us),
                       eps_Bps=gbps(eps_gbps))
    return t
