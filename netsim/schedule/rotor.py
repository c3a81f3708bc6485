"""RotorNet-style rotor schedule: a fixed cycle of the N-1 shift permutations, direct one-hop only.

William M. Mellette, Rob McGuinness, Arjun Roy, Alex Forencich, George Papen, Alex C. Snoeren, George
Porter, "RotorNet: A Scalable, Low-complexity, Optical Datacenter Network", ACM SIGCOMM 2017.

Slot s (s = 1..N-1) connects source i to (i + s) mod N, whatever the traffic (the cycle is fixed,
so a shift with no traffic still costs a reconfiguration). Traffic is sent direct (one hop only; no
RotorLB / VLB two-hop relaying). Slot durations (``mode``):

* ``adaptive`` (default): slot s lasts the largest entry on shift s / line_rate, so one cycle drains
  everything;
* ``uniform``: every slot lasts the largest entry of the whole matrix / line_rate (RotorNet's equal
  slots), again one cycle.

Approximate: real rotor switches cycle obliviously with a fixed slot length, repeating cycles; here
the (one) cycle is sized to the traffic.
"""
from __future__ import annotations

import numpy as np

from netsim.errors import ConfigError

from .base import Schedule, from_arrays, validate_link, validate_traffic

__all__ = ["rotor", "MODES"]

MODES = ("adaptive", "uniform")


def rotor(traffic: np.ndarray, line_rate: float, reconfig_s: float, mode: str = "adaptive") -> Schedule:
    """rotor[:MODE]: RotorNet-style fixed cycle of the N-1 shift permutations (MODE adaptive|uniform slots)."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    if mode not in MODES:
        raise ConfigError(f"rotor: mode {mode!r} is unknown; expected one of {', '.join(MODES)}")
    n = t.shape[0]
    src = np.arange(n)
    shifts = np.arange(1, n)
    perms = (src[None, :] + shifts[:, None]) % n  # (n-1, n)
    served = t[src[None, :], perms] if n > 1 else np.empty((0, n))
    if mode == "adaptive":
        caps = served.max(axis=1) if n > 1 else np.empty(0)
    else:
        caps = np.full(n - 1, float(t.max()))
    name = "rotor" if mode == "adaptive" else f"rotor:{mode}"
    return from_arrays(
        perms.astype(np.int64), caps / rate, served, np.zeros((n, n)),
        reconfig_s=delta, name=name, line_rate=rate, traffic=t, meta={"mode": mode},
    )
