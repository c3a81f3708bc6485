"""Units. netsim is SI inside: seconds, bytes, bytes per second, FLOP per second.

Helpers convert the units people write in parameters (Gbit/s, GB/s, microseconds, KiB) to SI.
Parameter names carry their unit as a suffix (``link_gbps``, ``latency_us``, ``buffer_kib``).
"""
from __future__ import annotations

KiB = 1024
MiB = 1024**2
GiB = 1024**3


def gbps(x: float) -> float:
    """Gigabits per second -> bytes per second."""
    return float(x) * 1e9 / 8.0


def gBps(x: float) -> float:
    """Gigabytes (1e9) per second -> bytes per second."""
    return float(x) * 1e9


def us(x: float) -> float:
    """Microseconds -> seconds."""
    return float(x) * 1e-6


def ns(x: float) -> float:
    """Nanoseconds -> seconds."""
    return float(x) * 1e-9


def ms(x: float) -> float:
    """Milliseconds -> seconds."""
    return float(x) * 1e-3


def tflops(x: float) -> float:
    """TFLOP/s -> FLOP/s."""
    return float(x) * 1e12
