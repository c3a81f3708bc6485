"""Start-up cost of one small run: `netsim run` (16 GPUs) with a cold and a warm numba cache.

Every run is a fresh process (``python -m netsim.cli run --set gpus=16 --fabric F``). The cache is
cleared by the benchmark itself: ``NUMBA_CACHE_DIR`` points at a new empty folder, so the first
run of each fabric compiles every kernel it uses (as the first run after ``pip install`` does) and
the next ones load them; the shared ``__pycache__`` caches are not touched. Each cold run is made
twice, in two new caches: as a first run does (``cold s``: with compile-ahead, the run's kernels
compiled in two processes, :mod:`netsim.kernels`) and with ``NETSIM_COMPILE_AHEAD=0``
(``1-proc s``: one process compiles them all, one after another). Prints wall seconds
(best of ``--rounds`` warm runs), the kernels each run compiled (cache index files written), and
the ratios cold / warm and fabric / analytic within this one run, beside two floors every run
pays before netsim does anything (a bare interpreter with numpy and click, and numba's import plus
its CPU target's start, which the first kernel call of any process triggers)::

    python benchmarks/bench_startup.py [--rounds 3] [--fabrics analytic flow packet]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _env(**extra: str) -> dict:
    """The children's environment: bytecode caching on (as after ``pip install``, which writes
    the .pyc files; a ``PYTHONDONTWRITEBYTECODE`` of the caller would make every run compile
    netsim's sources again), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | extra


def _run(fabric: str, cache: Path, ahead: bool = True) -> float:
    env = _env(NUMBA_CACHE_DIR=str(cache), NETSIM_COMPILE_AHEAD="1" if ahead else "0")
    cmd = [sys.executable, "-m", "netsim.cli", "run", "--set", "gpus=16", "--fabric", fabric]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fabrics", nargs="+", default=["analytic", "flow", "packet"])
    args = ap.parse_args()
    floors = {"import netsim": "import netsim",
              "numpy + click": "import numpy, click",
              "numba + target": "import numba; from numba.core.registry import cpu_target;"
                                " cpu_target.target_context.refresh()"}
    for name, code in floors.items():
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=_env())
            best = min(best, time.perf_counter() - t0)
        floors[name] = best
        print(f"floor {name:<16} {best:6.2f} s")
    rows = {}
    for fab in args.fabrics:
        one = _run(fab, Path(tempfile.mkdtemp(prefix=f"numba-{fab}-1-")), ahead=False)
        cache = Path(tempfile.mkdtemp(prefix=f"numba-{fab}-"))
        cold = _run(fab, cache)
        kernels = len(list(cache.rglob("*.nbi")))
        warm = min(_run(fab, cache) for _ in range(args.rounds))
        rows[fab] = (cold, one, warm, kernels)
    ref = rows.get("analytic", next(iter(rows.values())))[2]
    numba_floor = floors["numba + target"]
    print(f"{'fabric':<10} {'cold s':>8} {'1-proc s':>9} {'1-proc/cold':>12} {'warm s':>8}"
          f" {'cold/warm':>10} {'warm/analytic':>14} {'warm/numba':>11} {'kernels':>8}")
    for fab, (cold, one, warm, k) in rows.items():
        print(f"{fab:<10} {cold:>8.2f} {one:>9.2f} {one / cold:>12.2f} {warm:>8.2f}"
              f" {cold / warm:>10.1f} {warm / ref:>14.2f} {warm / numba_floor:>11.2f} {k:>8}")


if __name__ == "__main__":
    main()
