"""A GPU cluster from a handful of parameters: servers, GPUs per server, rails, tiers,
oversubscription.

* Servers of ``gpus_per_server`` GPUs on one NVLink switch each (``nvlink_gbps``; 0: none), one
  NIC per GPU behind PCIe (``pcie_gbps``), ``nic_gbps`` per NIC.
* Servers are grouped in *scalable units* of ``servers_per_leaf`` servers. A unit has ``rails``
  leaf switches; NIC ``g`` of each server of the unit connects to the unit's leaf
  ``g % rails`` (``rails = gpus_per_server``: rail-optimised; ``rails = 1``: one top-of-rack
  leaf per unit).
* ``tiers = 2``: every leaf connects to each of ``spines`` spine switches; a leaf's uplink
  capacity is its downlink capacity over ``oversubscription``, spread evenly over its spines.
* ``tiers = 3``: units are grouped in pods of ``units_per_pod``; each pod has its own ``spines``
  spines (leaf uplinks as above) and every spine connects to each of ``cores`` core switches with
  its downlink capacity over ``core_oversubscription``, spread evenly.

E.g. ``cluster:servers=2048,gpus_per_server=8,servers_per_leaf=32,tiers=3,units_per_pod=8``:
16,384 GPUs in 8 pods of 8 units. All switch links ``latency_us`` each.

:func:`aggregation_block` gives the aggregated flow model (``aggregate=server``,
:mod:`netsim.aggregate`) one independent block of the cluster: the smallest run of whole units
(or pods) holding whole EP groups, whose traffic uses no link of another block.
"""
import inspect

from netsim.errors import ConfigError
from netsim.topology import Topology, add_servers
from netsim.units import gbps, us


def build(servers: int = 16, gpus_per_server: int = 8, rails: int = 8,
          servers_per_leaf: int = 8, tiers: int = 2, spines: int = 8, units_per_pod: int = 4,
          cores: int = 8, oversubscription: float = 1.0, core_oversubscription: float = 1.0,
          nic_gbps: float = 400.0, nvlink_gbps: float = 3600.0, pcie_gbps: float = 512.0,
          latency_us: float = 0.5) -> Topology:
    """``servers`` x ``gpus_per_server`` GPUs; bandwidths in Gbit/s per direction."""
    servers, gps, rails = int(servers), int(gpus_per_server), int(rails)
    spl, tiers, spines = int(servers_per_leaf), int(tiers), int(spines)
    upp, cores = int(units_per_pod), int(cores)
    if min(servers, gps, rails, spl, spines, upp, cores) < 1:
        raise ConfigError(f"servers={servers}, gpus_per_server={gps}, rails={rails}, "
                          f"servers_per_leaf={spl}, spines={spines}, units_per_pod={upp}, "
                          f"cores={cores}: expected positive integers")
    if rails > gps:
        raise ConfigError(f"rails={rails}; expected at most gpus_per_server={gps}")
    if tiers not in (2, 3):
        raise ConfigError(f"tiers={tiers}; expected 2 or 3")
    if oversubscription <= 0 or core_oversubscription <= 0:
        raise ConfigError(f"oversubscription={oversubscription!r}, core_oversubscription="
                          f"{core_oversubscription!r}; expected > 0")
    t = Topology("cluster", params=dict(
        servers=servers, gpus_per_server=gps, rails=rails, servers_per_leaf=spl, tiers=tiers,
        spines=spines, units_per_pod=upp, cores=cores, oversubscription=oversubscription,
        core_oversubscription=core_oversubscription, nic_gbps=nic_gbps,
        nvlink_gbps=nvlink_gbps, pcie_gbps=pcie_gbps, latency_us=latency_us))
    lat, nic = us(latency_us), gbps(nic_gbps)
    _, nics = add_servers(t, servers, gps, gbps(nvlink_gbps), nic, gbps(pcie_gbps), lat)
    units = -(-servers // spl)
    leaves = [[t.add_switch(f"u{u}leaf{r}") for r in range(rails)] for u in range(units)]
    for s, server_nics in enumerate(nics):
        for g, x in enumerate(server_nics):
            t.add_link(x, leaves[s // spl][g % rails], nic, lat)
    if units == 1 and rails == 1:
        return t  # one leaf: no spine needed
    # a leaf's downlink capacity: NICs of its unit on its rail
    down = nic * spl * -(-gps // rails)
    up = down / oversubscription / spines
    if tiers == 2:
        sp = [t.add_switch(f"spine{i}") for i in range(spines)]
        for unit in leaves:
            for leaf in unit:
                for x in sp:
                    t.add_link(leaf, x, up, lat)
        return t
    pods = -(-units // upp)
    core = [t.add_switch(f"core{i}") for i in range(cores)] if pods > 1 else []
    spine_down = up * upp * rails  # every leaf of the pod's units, one link each
    cup = spine_down / core_oversubscription / cores
    for p in range(pods):
        sp = [t.add_switch(f"p{p}spine{i}") for i in range(spines)]
        for unit in leaves[p * upp:(p + 1) * upp]:
            for leaf in unit:
                for x in sp:
                    t.add_link(leaf, x, up, lat)
        for x in sp:
            for c in core:
                t.add_link(x, c, cup, lat)
    return t


def aggregation_block(ep_size: int = 0, **params) -> dict:
    """Build parameters of one *block* of this cluster for the aggregated flow model.

    EP groups are ``ep_size`` consecutive GPUs (0: all). Shortest paths keep a group's
    traffic inside the smallest subtree holding it (its servers; their unit's leaves; the
    pod's spines; the cores), and a subtree's links carry nothing else, so blocks of whole
    units (tiers 2), or whole units inside one pod, or whole pods (tiers 3), each holding whole
    groups, share no link: every block runs on its own. The block is ``servers`` of them,
    built by :func:`build` with the same parameters otherwise: the same links in the same order,
    so its ECMP paths (with ``hash_offset``) are the whole cluster's. Returns the builder's
    keyword arguments for the block plus ``blocks`` (how many) and ``block_gpus``; raises
    :class:`ConfigError` when groups straddle units or pods, or units or pods are partial.
    """
    full = dict(_DEFAULTS)
    full.update(params)
    servers, gps, spl = int(full["servers"]), int(full["gpus_per_server"]), \
        int(full["servers_per_leaf"])
    tiers, upp = int(full["tiers"]), int(full["units_per_pod"])
    n = servers * gps
    ep = int(ep_size) or n
    unit = spl * gps
    pod = unit * upp
    if n % ep or ep % gps:
        raise ConfigError(f"aggregate=server: EP groups of ep_size={ep} GPUs must be whole"
                          f" servers of gpus_per_server={gps} and divide the {n} GPUs")
    if servers % spl or (tiers == 3 and (servers // spl) % upp and servers // spl > upp):
        raise ConfigError(f"aggregate=server: servers={servers} must fill whole units of"
                          f" servers_per_leaf={spl}" + (f" and whole pods of units_per_pod={upp}"
                                                        if tiers == 3 else ""))
    if ep % unit == 0 and (tiers == 2 or ep % pod == 0 or pod % ep == 0):
        block = ep
    elif unit % ep == 0:
        block = unit
    else:
        raise ConfigError(f"aggregate=server: EP groups of ep_size={ep} GPUs straddle units of"
                          f" {unit} GPUs (servers_per_leaf x gpus_per_server)" +
                          (f" or pods of {pod}" if tiers == 3 else "") +
                          "; expected a multiple or a divisor of a unit (and of a pod)")
    block = min(block, n)
    full["servers"] = block // gps
    return dict(params=full, blocks=n // block, block_gpus=block)


_DEFAULTS = {k: v.default for k, v in inspect.signature(build).parameters.items()}
