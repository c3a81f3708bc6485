"""Wall time of one circuit-scheduled MoE layer (dispatch, overlapped compute, combine) on an
``ocs_direct`` fabric: Qwen3-30B-A3B, 1024 tokens per GPU, Zipf 1.2 routing, 10 us
reconfiguration. Run: python benchmarks/bench_ocs_layer.py [--gpus 128] [--schedulers ...]."""
from __future__ import annotations

import argparse
import time

from netsim.scenario import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=128)
    ap.add_argument("--schedulers", default="greedy:4,greedy:8,rotor,solstice,bvn")
    args = ap.parse_args()
    base = dict(topology="ocs_direct", gpus=args.gpus, workload="qwen3_30b_a3b",
                tokens_per_gpu=1024, routing="zipf:1.2", reconfig_us=10.0, overlap=True)
    run(base | {"gpus": 8, "scheduler": "greedy:2"})  # warm the numba cache
    print(f"{'scheduler':>10} {'gpus':>5} {'wall_s':>7} {'layer_ms':>9} {'ratio':>7} "
          f"{'matchings':>9} {'fallback':>8} {'batches':>8} {'events':>7}")
    for s in args.schedulers.split(","):
        t = time.perf_counter()
        r = run(base | {"scheduler": s})
        w = time.perf_counter() - t
        print(f"{s:>10} {args.gpus:>5} {w:>7.2f} {r['layer_s'] * 1e3:>9.3f} {r['ratio_to_ideal']:>7.3f} "
              f"{r['n_matchings']:>9} {r['fallback_matchings']:>8} {r['batches']:>8} {r['events']:>7}",
              flush=True)


if __name__ == "__main__":
    main()
