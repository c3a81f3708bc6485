"""Ideal non-blocking crossbar: every GPU on one switch of unlimited internal capacity.

Each GPU is limited only by its own injection and ejection bandwidth, so this is the
"ideal congestion-free all-to-all" reference of the scheduling study.
"""
from netsim.errors import ConfigError
from netsim.hardware import resolve
from netsim.topology import Topology, crossbar
from netsim.units import gbps, us


def build(gpus: int = 16, link_gbps: float = 400.0, latency_us: float = 0.5,
          nic: str = "") -> Topology:
    """``gpus`` GPUs, each with one full-duplex link of ``link_gbps`` Gbit/s and ``latency_us``
    microseconds per link (a path crosses two links) to a single non-blocking switch; ``nic``
    (cx7, cx8: :mod:`netsim.hardware`) sets ``link_gbps``."""
    link_gbps = resolve("", nic, dict(link_gbps=link_gbps), dict(link_gbps=400.0))["link_gbps"]
    if gpus < 1:
        raise ConfigError(f"gpus={gpus}; expected a positive number of GPUs")
    if not link_gbps > 0:
        raise ConfigError(f"link_gbps={link_gbps}; expected a positive link rate in Gbit/s")
    return crossbar(gpus, gbps(link_gbps), us(latency_us),
                    params=dict(gpus=gpus, link_gbps=link_gbps, latency_us=latency_us,
                                **({"nic": nic} if nic else {})))
