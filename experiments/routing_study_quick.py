"""The routing study in a few minutes less: ``experiments/routing_study.py`` on every eighth
layer of the trace (0, 8, 16, ...) and the first three seeds of each seeded part, the same
parts, fabrics and analysis (``plots``, ``findings``, ``table`` ... are the full study's).

    NETSIM_ROUTING_TRACE=TRACE netsim sweep experiments/routing_study_quick.py --jobs 2

For checking a change or a captured trace quickly (458 points, about 1.5 minutes with --jobs 2 on
2 shared cores); the README's numbers come from the full study.
"""
from __future__ import annotations

from pathlib import Path

from netsim.plugins import _import_file

_full = _import_file(Path(__file__).with_name("routing_study.py"))

NAME = "routing_study_quick"
SEEDS = _full.SEEDS
LAYER_STEP = 8
QUICK_SEEDS = 3


def _keep(p: dict) -> bool:
    L = _full.trace_layer(p.get("routing", ""))
    if L is not None and L % LAYER_STEP:
        return False
    return int(p.get("seed", 0)) % _full.EP_SEED_STRIDE < QUICK_SEEDS


def points():
    yield from (p for p in _full.points() if _keep(p))


def __getattr__(name):  # the full study's analysis: plots, findings, table, ...
    return getattr(_full, name)


if __name__ == "__main__":
    _full._main()
