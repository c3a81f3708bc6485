"""Progress of one long run, on one self-overwriting line of stderr.

``netsim run`` turns it on when stderr is a terminal or with ``--progress`` (off with
``--no-progress``); nothing else prints it. The engines report between their steps, never from
inside a numba kernel: the flow engine between SimPy events (simulated time, the kernel's events,
the fraction of the layer's bytes delivered), the packet engine between its passes (one kernel
call each), the preparation between its stages (topology, routing draw). A kernel that runs for
a long time in one call (a routing draw of 10^10 tokens, a packet pass) therefore shows its stage
and when it started, not a fraction. Lines are redrawn at most every ``min_interval_s``.

With no progress active, :func:`tick` and :func:`stage` cost one global lookup.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, TextIO

__all__ = ["Progress", "active", "stage", "tick", "current"]

_CURRENT: "Progress | None" = None


class Progress:
    """One status line on ``stream``: a stage name and, throttled, a detail after it."""

    def __init__(self, stream: TextIO, min_interval_s: float = 0.25):
        self.stream = stream
        self.min_interval_s = min_interval_s
        self.t0 = time.monotonic()
        self._last = -1e9
        self._stage = ""
        self._width = 0

    def _write(self, text: str) -> None:
        line = f"netsim: {time.monotonic() - self.t0:6.1f} s  {text}"
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)
        self._last = time.monotonic()

    def stage(self, name: str) -> None:
        """A new stage (always drawn)."""
        self._stage = name
        self._write(name)

    def tick(self, detail: Callable[[], str]) -> None:
        """Redraw the stage with ``detail()`` if the last line is older than the interval
        (``detail`` is called only then)."""
        if time.monotonic() - self._last >= self.min_interval_s:
            self._write(f"{self._stage}: {detail()}")

    def close(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def current() -> "Progress | None":
    """The active progress line, or None."""
    return _CURRENT


def stage(name: str) -> None:
    """Start stage ``name`` on the active progress line (no-op without one)."""
    if _CURRENT is not None:
        _CURRENT.stage(name)


def tick(detail: Callable[[], str]) -> None:
    """Throttled detail of the current stage (no-op without an active progress line)."""
    if _CURRENT is not None:
        _CURRENT.tick(detail)


@contextmanager
def active(stream: TextIO, min_interval_s: float = 0.25):
    """Show progress on ``stream`` inside the block; the line is erased at the end."""
    global _CURRENT
    prev, _CURRENT = _CURRENT, Progress(stream, min_interval_s)
    try:
        yield _CURRENT
    finally:
        _CURRENT.close()
        _CURRENT = prev
