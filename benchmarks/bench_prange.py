"""Would ``numba.prange`` pay in the flow model? The only data-parallel part of an event is
``netsim.fabric.flow.advance``'s two passes over the live flows (each flow's projected finish
and the earliest of them; each flow's remaining bytes after the step); the max-min filling is
sequential by construction (each link's share depends on the freezes before it).

This times, per call and at the live-flow counts of ``bench_flow.py``'s cases (exact mode at 256
GPUs about 32 k, the 1024-GPU MoE dispatch about 180 k, the dense case about 760 k), the real
``advance`` (serial; with a horizon before any finish it makes exactly these two passes and
moves nothing) and the same two passes under ``prange`` on ``--threads`` threads (a minimum and
element-wise updates: the same bits on any number of threads, checked against ``advance``). The ratios are taken in one
run, best of ``--rounds``; what an event costs in all is in the README's bench-flow table
(``sim_s`` over ``recomputes``).

    python benchmarks/bench_prange.py [--threads 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit, prange, set_num_threads

from netsim.fabric.flow import _EPS_BYTES, _EPS_REL, advance

CASES = (("exact256", 32_000), ("moe1024", 180_000), ("dense1024", 760_000))


@njit(parallel=True, cache=True)
def passes_prange(active, n, rem, nbytes, rate, now, tbuf, dt):
    """advance's two passes under prange (a min reduction, element-wise writes): projected
    finishes into ``tbuf``, then each live flow's bytes after a step of ``dt``."""
    tmin = np.inf
    for a in prange(n):
        f = active[a]
        r = rate[f]
        x = rem[f]
        t = now + x / r if r > 0.0 else np.inf
        if x <= _EPS_BYTES + _EPS_REL * nbytes[f]:
            t = now
        tbuf[a] = t
        tmin = min(tmin, t)
    for a in prange(n):
        f = active[a]
        x = rem[f] - rate[f] * dt
        rem[f] = 0.0 if x < 0.0 else x
    return tmin


def _arrays(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    total = int(n * 1.3)  # some flows already finished: live ids are a sorted subset
    active = np.sort(rng.choice(total, n, replace=False)).astype(np.int64)
    nbytes = rng.uniform(1e5, 1e6, total)
    rate = rng.uniform(1e9, 5e9, total)
    return active, nbytes, rate


def _time(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    set_num_threads(a.threads)
    print(f"per call, best of {a.rounds} rounds; prange on {a.threads} threads")
    print(f"{'case':<10} {'live':>8} {'advance us':>11} {'prange us':>10} {'advance/prange':>15}")
    horizon = 1e-12  # s: before any flow's finish
    for name, n in CASES:
        active, nbytes, rate = _arrays(n)
        rem0 = nbytes.copy()
        tbuf = np.empty(n)
        finish = np.zeros(len(nbytes))
        reps = max(10, int(1e7 // n))
        # warm (compile or load both) and check: the same bits as advance
        r1, r2, b2 = rem0.copy(), rem0.copy(), np.empty(n)
        assert advance(active, n, r1, nbytes, rate, finish, 0.0, horizon, 0.0, tbuf)[1] == 0
        passes_prange(active, n, r2, nbytes, rate, 0.0, b2, horizon)
        assert np.array_equal(r1, r2) and np.array_equal(tbuf, b2)
        best = {}
        for _ in range(max(1, a.rounds)):
            rem = rem0.copy()
            best["advance"] = min(best.get("advance", np.inf), _time(
                lambda: advance(active, n, rem, nbytes, rate, finish, 0.0, horizon, 0.0, tbuf),
                reps))
            best["prange"] = min(best.get("prange", np.inf), _time(
                lambda: passes_prange(active, n, rem, nbytes, rate, 0.0, tbuf, horizon), reps))
        print(f"{name:<10} {n:>8,} {best['advance'] * 1e6:>11.1f} {best['prange'] * 1e6:>10.1f}"
              f" {best['advance'] / best['prange']:>14.2f}x")


if __name__ == "__main__":
    main()
