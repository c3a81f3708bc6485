"""Wall time of one circuit-scheduled MoE layer (dispatch, overlapped compute, combine) on an
``ocs_direct`` fabric (or, with ``--hybrid``, a two-tier fabric of 8-GPU servers whose circuits a
scheduler drives between servers): Qwen3-30B-A3B, 1024 tokens per GPU, Zipf 1.2 routing, 10 us
reconfiguration. Each figure is the best of ``--repeat`` runs (CPU time of this process, which
other jobs on a shared machine disturb less than wall time), and its ratio to the first
scheduler's (greedy:4 by default), taken in the same run. ``bvn`` is the strong BvN
(bottleneck rule), ``bvn:any`` the naive one (many more matchings and batches).
Run: python benchmarks/bench_ocs_layer.py [--gpus 128] [--schedulers ...] [--hybrid]."""
from __future__ import annotations

import argparse
import time

from netsim.scenario import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=128)
    ap.add_argument("--schedulers", default="greedy:4,greedy:N-1,rotor,solstice,bvn,bvn:max,bvn:any",
                    help="comma-separated; greedy:N-1 means K = GPUs - 1")
    ap.add_argument("--hybrid", action="store_true", help="servers of 8 GPUs (hybrid, scale_out=ocs)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = dict(workload="qwen3_30b_a3b", tokens_per_gpu=1024, routing="zipf:1.2",
                reconfig_us=10.0, overlap=True)
    if args.hybrid:
        base |= dict(topology="hybrid", servers=args.gpus // 8, gpus_per_server=8)
        run(base | {"servers": 2, "scheduler": "greedy:2"})  # warm the numba cache
    else:
        base |= dict(topology="ocs_direct", gpus=args.gpus)
        run(base | {"gpus": 8, "scheduler": "greedy:2"})  # warm the numba cache
    print(f"{'scheduler':>10} {'gpus':>5} {'cpu_s':>7} {'layer_ms':>9} {'/bound':>7} "
          f"{'matchings':>9} {'fallback':>8} {'batches':>8} {'events':>7} {'cpu/first':>9}")
    ref = None
    for s in args.schedulers.replace("N-1", str(args.gpus - 1)).split(","):
        w = float("inf")
        for _ in range(max(1, args.repeat)):
            t = time.process_time()
            r = run(base | {"scheduler": s})
            w = min(w, time.process_time() - t)
        ref = w if ref is None else ref
        print(f"{s:>10} {args.gpus:>5} {w:>7.2f} {r['layer_s'] * 1e3:>9.3f} {r['ratio_to_bound']:>7.3f} "
              f"{r['n_matchings']:>9} {r['fallback_matchings']:>8} {r['batches']:>8} {r['events']:>7}"
              f" {w / ref:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
