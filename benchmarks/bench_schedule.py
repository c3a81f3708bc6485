"""Benchmark of the circuit schedulers on a skewed, MoE-like traffic matrix.

Traffic: N GPUs with E = 8 experts each; expert popularity is Zipf(s = 1.2) over a random ranking;
each GPU routes ``tokens`` tokens to top-k = 8 distinct experts drawn by popularity (sampled as a
multinomial over experts per GPU, an approximation of without-replacement top-k); a token moves
hidden * 2 bytes (bf16, hidden = 4096) to each expert's GPU. Whole bytes, so BvN is exact.

Each line also gives the scheduler's wall time over greedy:8's at that N (same process, same
matrix). Usage: python benchmarks/bench_schedule.py [--sizes 64 128 256 512] [--all] [--zipf S] [--dense-random]
(--all also times solstice, eclipse, rotor, static, spectra:4 and hier_bvn:8; eclipse is skipped above N=128,
bvn:max above N=256). ``--out FILE.parquet`` also writes the printed rows; ``--table FILE --write
README.md`` (or ``--check``) renders them as the README's table between its bench-schedule markers.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from netsim.schedule import get_scheduler
from netsim.tools.docblock import table_step

BEGIN, END = "<!-- bench-schedule -->", "<!-- /bench-schedule -->"


def moe_traffic(n: int, seed: int = 0, tokens: int = 4096, experts_per_gpu: int = 8, top_k: int = 8,
                zipf_s: float = 1.2, hidden: int = 4096, dtype_bytes: int = 2) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    e = n * experts_per_gpu
    pop = 1.0 / np.arange(1, e + 1) ** zipf_s
    pop = pop[rng.permutation(e)]
    pop /= pop.sum()
    counts = rng.multinomial(tokens * top_k, pop, size=n)  # (n, e)
    per_gpu = counts.reshape(n, n, experts_per_gpu).sum(axis=2).astype(np.float64)
    np.fill_diagonal(per_gpu, 0.0)
    return per_gpu * hidden * dtype_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256, 512])
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--zipf", type=float, default=1.2, help="Zipf exponent of expert popularity")
    ap.add_argument("--dense-random", action="store_true",
                    help="uniform random real matrix instead (BvN's worst case: ~N^2 matchings)")
    ap.add_argument("--out", help="also write the rows to this Parquet file")
    ap.add_argument("--table", help="print the Markdown table of this Parquet file (--out) and exit")
    ap.add_argument("--write", help="with --table: write it into this Markdown file's block")
    ap.add_argument("--check", help="with --table: exit 1 if this file's block differs")
    args = ap.parse_args()
    if args.table:
        sys.exit(table_step(args.table, table, args.write or args.check, bool(args.check),
                            BEGIN, END, "the bench_schedule table"))
    rows = []
    rate = 400e9 / 8  # 400 Gbit/s
    delta = 10e-6
    specs = ["bvn", "bvn:max", "bvn:any", "greedy:8"]  # bvn = bvn:bottleneck; bvn:any the naive one
    if args.all:
        specs += ["greedy:8:opt", "solstice", "eclipse", "rotor", "static", "spectra:4", "hier_bvn:8"]
    # warm up numba (compilation is cached on disk after the first run)
    t0 = moe_traffic(8)
    for spec in specs:
        get_scheduler(spec)(t0, rate, delta)
    print(f"{'N':>4} {'scheduler':>14} {'wall_s':>8} {'matchings':>9} {'cleanup':>7} {'padded':>7} "
          f"{'total/ideal':>11} {'bubble':>6} {'wall/greedy:8':>13}")
    for n in args.sizes:
        if args.dense_random:
            t = np.random.default_rng(n).random((n, n)) * 1e6
            np.fill_diagonal(t, 0.0)
        else:
            t = moe_traffic(n, zipf_s=args.zipf)
        ref = float("inf")
        for _ in range(3):  # the reference, best of 3
            start = time.perf_counter()
            get_scheduler("greedy:8")(t, rate, delta)
            ref = min(ref, time.perf_counter() - start)
        for spec in specs:
            if (spec == "eclipse" and n > 128) or (spec == "bvn:max" and n > 256):
                continue  # one Hungarian solve per step (bvn:max: ~100 s at N = 256)
            fn = get_scheduler(spec)
            start = time.perf_counter()
            s = fn(t, rate, delta)
            wall = time.perf_counter() - start
            r = dict(n=n, scheduler=spec, wall_s=wall, matchings=s.n_matchings,
                     cleanup=int(s.meta.get("cleanup_matchings", 0)),
                     padded=s.meta.get("padded_fraction", float("nan")),
                     total_over_ideal=s.total_time_s / s.meta["ideal_s"],
                     bubble=s.bubble_fraction, wall_over_greedy8=wall / ref,
                     traffic="dense-random" if args.dense_random else f"zipf:{args.zipf:g}")
            print(f"{n:>4} {spec:>14} {wall:8.3f} {r['matchings']:9d} {r['cleanup']:7d} "
                  f"{r['padded']:7.3f} {r['total_over_ideal']:11.3f} {r['bubble']:6.3f} "
                  f"{r['wall_over_greedy8']:13.1f}", flush=True)
            rows.append(r)
            del s
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(args.out, index=False)


def table(path: str) -> str:
    """The Markdown table of a run's rows (``--out``): wall time in s, matchings, and the wall time
    over greedy:8's at that N in the same process."""
    import pandas as pd

    df = pd.read_parquet(path)
    out = ["| N | traffic | scheduler | wall_s | matchings | total/ideal | wall/greedy:8 |",
           "|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        out.append(f"| {r.n} | {r.traffic} | {r.scheduler} | {r.wall_s:.3g} | {r.matchings} | "
                   f"{r.total_over_ideal:.3f} | {r.wall_over_greedy8:.1f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
