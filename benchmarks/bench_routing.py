"""Benchmark of issue 4: one 64-iteration run on 256 GPUs with ``relayout=eplb:8``.

Prints the wall time of the whole run (routing, EPLB, traffic, 64 flow simulations) and a few of
its metrics, beside the same run without relayout. Run: ``python benchmarks/bench_routing.py
[--iterations 64] [--gpus 256] [--ep 8] [--tolerance 1e-3]``. Not a test: figures depend on the
machine (and on what else runs on it).
"""
from __future__ import annotations

import argparse
import time


def params(args, relayout: str) -> dict:
    return dict(topology="leaf_spine", gpus=args.gpus, gpus_per_server=8, servers_per_leaf=4,
                spines=8, workload=args.workload, tokens_per_gpu=args.tokens, ep_size=args.ep,
                routing=args.routing, iterations=args.iterations, relayout=relayout,
                tolerance=args.tolerance, seed=0)


def main() -> None:
    from netsim.scenario import run

    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=256)
    ap.add_argument("--ep", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--workload", default="deepseek_v3")
    ap.add_argument("--routing", default="profile:deepseek_v2_lite:wikitext")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--baseline", action="store_true", help="also time relayout=none")
    args = ap.parse_args()
    run(params(args, "eplb:8") | {"gpus": 32, "iterations": 2})  # warm numba / profile caches
    cases = ["eplb:8"] + (["none"] if args.baseline else [])
    print(f"{'relayout':>8} {'gpus':>5} {'ep':>4} {'iters':>5} {'wall_s':>7} {'s/iter':>7} "
          f"{'flows':>8} {'events':>8} {'layer_ms':>8} {'disp/ideal':>10} {'rank_mm':>7} "
          f"{'migr_GB':>7} {'relayouts':>9}")
    for rl in cases:
        t0 = time.perf_counter()
        r = run(params(args, rl))
        wall = time.perf_counter() - t0
        print(f"{rl:>8} {args.gpus:>5} {args.ep:>4} {args.iterations:>5} {wall:>7.1f} "
              f"{wall / args.iterations:>7.2f} {r['flows']:>8} {r['events']:>8} "
              f"{1e3 * r['layer_s']:>8.3f} {r['dispatch_over_ideal']:>10.3f} "
              f"{r['rank_max_mean']:>7.3f} {r['migration_bytes'] / 1e9:>7.2f} {r['relayouts']:>9}",
              flush=True)


if __name__ == "__main__":
    main()
