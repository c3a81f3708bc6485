"""What de-duplication, precision and the node limit are each worth: DeepSeek-V3 on 64 H800s.

Runs one layer (the collective runner, iteration 1) of ``deepseek_v3`` on ``rail_optimized``
(8 servers x 8 H800s, one ConnectX-7 a GPU) for a ladder of settings, each adding one thing to
the previous: Megatron-style pairs over the two-phase relay, then per-server de-duplication,
FP8 dispatch, the 4-server limit, and DeepEP's chunked kernel model. Prints, per step, the
bytes crossing servers, the dispatch and layer times, and each as a ratio to the first step
(ratios taken in this one run).

Run: ``python benchmarks/dispatch_value.py [--tokens 4096] [--routing uniform] [--out F.parquet]``.
"""
from __future__ import annotations

import argparse

from netsim.scenario import run

STEPS = [
    ("pairs, bf16 (Megatron a2a over the relay)",
     dict(collective="hierarchical:nodedup", dispatcher="pairs")),
    ("+ per-server de-dup (dispatcher=node)", dict(collective="hierarchical", dispatcher="node")),
    ("+ fp8 dispatch", dict(dispatch_dtype="fp8", combine_dtype="bf16")),
    ("+ max_nodes=4", dict(max_nodes=4)),
    ("+ DeepEP kernel model", dict(collective="deepep_normal")),
]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4096, help="tokens per GPU")
    ap.add_argument("--routing", default="uniform")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    base = dict(topology="rail_optimized", servers=8, gpus_per_server=8, hardware="h800",
                nic="cx7", workload="deepseek_v3", tokens_per_gpu=a.tokens, routing=a.routing)
    rows, acc = [], {}
    print(f"{'step':44} {'scale-out GB':>12} {'dispatch ms':>12} {'layer ms':>10}"
          f" {'x bytes':>8} {'x dispatch':>10} {'x layer':>8}")
    for name, kw in STEPS:
        acc.update(kw)
        r = run(base | acc)
        r["step"] = name
        rows.append(r)
        b0 = rows[0]
        print(f"{name:44} {r['dispatch_scaleout_bytes'] / 1e9:>12.3f}"
              f" {1e3 * r['dispatch_s']:>12.3f} {1e3 * r['layer_s']:>10.3f}"
              f" {r['dispatch_scaleout_bytes'] / b0['dispatch_scaleout_bytes']:>8.3f}"
              f" {r['dispatch_s'] / b0['dispatch_s']:>10.3f} {r['layer_s'] / b0['layer_s']:>8.3f}")
    if a.out:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(a.out)
    return rows


if __name__ == "__main__":
    main()
