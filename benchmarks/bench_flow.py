"""Flow-model benchmark: MoE dispatch (DeepSeek-V3 layer, 4096 tokens per GPU) on leaf_spine.

Also a dense all-to-all (every pair, Poisson sizes) at 1024 GPUs: a million flows.
Prints, per case: GPUs, flows, fabric events, rate recomputations, wall time of the fabric
(routing + simulation), events/s, and the process's peak RSS. Run: python benchmarks/bench_flow.py
[--tolerance T] [--sizes 64,256,1024]. Not a test: figures depend on the machine.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def dispatch_matrix(n: int, routing: str, seed: int = 0) -> np.ndarray:
    """DeepSeek-V3 dispatch bytes; ``dense``: every pair Poisson(32) tokens of 7168 x 2 bytes
    (a full all-to-all: n(n-1) flows, e.g. a million at 1024 GPUs)."""
    if routing == "dense":
        m = np.random.default_rng(seed).poisson(32, (n, n)).astype(float) * 7168 * 2
        np.fill_diagonal(m, 0.0)
        return m
    from netsim.plugins import resolve
    from netsim.workload.routing import parse_routing

    _, build = resolve("workloads", "deepseek_v3")
    layer = build(tokens_per_gpu=4096)
    rng = np.random.default_rng(seed)
    counts = parse_routing(routing).counts(n, layer.tokens_per_gpu, layer.experts, layer.top_k, rng)
    disp, _ = layer.traffic(counts, n)
    np.fill_diagonal(disp, 0.0)
    return disp


def one(n: int, routing: str, tolerance: float) -> dict:
    from netsim.fabric.flow import FlowFabric
    from netsim.plugins import resolve

    _, build = resolve("topologies", "leaf_spine")
    spl = 2 if n <= 64 else 4
    ft = build(gpus=n, servers_per_leaf=spl, spines=8).freeze()
    m = dispatch_matrix(n, routing)
    src, dst = np.nonzero(m)
    t0 = time.perf_counter()
    fab = FlowFabric(ft, tolerance=tolerance, capacity=len(src) + 1)
    fab.add_flows(src, dst, m[src, dst])
    t1 = time.perf_counter()
    fab.run_to_completion()
    t2 = time.perf_counter()
    assert np.allclose(fab.rem[: fab.n], 0)
    return dict(gpus=n, routing=routing, flows=len(src), events=fab.events,
                recomputes=fab.recomputes, route_s=t1 - t0, sim_s=t2 - t1, wall_s=t2 - t0,
                events_per_s=fab.events / max(t2 - t1, 1e-9),
                makespan_ms=1e3 * float(fab.delivered_at().max()),
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tolerance", type=float, default=None,
                    help="flow event merging; default: run 0 and 1e-3")
    ap.add_argument("--sizes", default="64,256,1024")
    ap.add_argument("--dense", default="1024", help="GPU counts of the dense all-to-all case ('' = none)")
    args = ap.parse_args()
    tols = [args.tolerance] if args.tolerance is not None else [0.0, 1e-3]
    one(16, "uniform", 0.0)  # warm the numba cache
    print(f"{'gpus':>5} {'routing':>9} {'tol':>6} {'flows':>8} {'events':>7} {'recomp':>7} "
          f"{'route_s':>8} {'sim_s':>8} {'wall_s':>8} {'ev/s':>9} {'makespan_ms':>11} {'rss_MiB':>8}")
    cases = [(int(n), "uniform") for n in args.sizes.split(",")] + [(256, "zipf:1.2")]
    if args.dense:
        cases += [(int(n), "dense") for n in args.dense.split(",")]
    for tol in tols:
        for n, routing in cases:
            r = one(n, routing, tol)
            print(f"{r['gpus']:>5} {routing:>9} {tol:>6g} {r['flows']:>8} {r['events']:>7} "
                  f"{r['recomputes']:>7} {r['route_s']:>8.3f} {r['sim_s']:>8.3f} {r['wall_s']:>8.3f} "
                  f"{r['events_per_s']:>9.0f} {r['makespan_ms']:>11.4f} {r['peak_rss_mib']:>8.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
