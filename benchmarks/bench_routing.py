"""Routing benchmarks: the per-token sampler, then one 64-iteration run with ``relayout=eplb:8``.

1. Per-token sampling (issue 18): each token's top-k distinct experts for ``--sample-gpus``
   (1024) GPUs x ``--sample-tokens`` (4096) tokens x top-8 of 256 experts, uniform and Zipf(1.2)
   popularity (:func:`netsim.workload.routing.popularity_choices`), the counts of the uniform
   draw, and the node-limited sampler (32 servers, ``max_nodes=4``) on all the tokens
   (``--limited-share`` runs it on a share of the GPUs). Each is printed beside the time of
   drawing as many uniform random numbers as the batch has (token, expert) pairs with the
   samplers' generator (``uniforms_s``: numba's MT19937 a block at a time,
   :func:`netsim.workload.routing.mt_block`; the floor of any sampler that keeps these draws:
   rejected repeats draw more) and with numba's one-call-per-number ``np.random.random()``
   (``np.random_s``, the generator the samplers called before), as ratios taken in one run;
   best of ``--repeat`` runs.
2. One 64-iteration run on 256 GPUs with ``relayout=eplb:8`` (issue 4): the wall time of the
   whole run (routing, EPLB, traffic, 64 flow simulations) and a few of its metrics, beside the
   same run without relayout (``--baseline``). ``--sampling-only`` skips it.

Run: ``python benchmarks/bench_routing.py [--sampling-only] [--repeat 3] [--limited-share 1]
[--iterations 64] [--gpus 256] [--ep 8] [--tolerance 1e-3]``. ``--out FILE.parquet`` also writes
the printed rows (one per sampler and one per run, with the sizes and the commit); ``--table
FILE[,FILE] --write README.md`` (or ``--check``) renders them as the README's tables between its
bench-routing markers. Not a test: figures depend on the machine (and on what else runs on it).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from numba import njit

from netsim.tools.docblock import table_step
from netsim.workload.routing import MT_DOUBLES, mt_block, mt_state

BEGIN, END = "<!-- bench-routing -->", "<!-- /bench-routing -->"


@njit(cache=True)
def _uniforms(n, seed):
    """Draw ``n`` uniform numbers with numba's ``np.random.random()``, one call each; their sum."""
    np.random.seed(seed)
    s = 0.0
    for _ in range(n):
        s += np.random.random()
    return s


@njit(cache=True)
def _block_uniforms(n, mt):
    """The same ``n`` numbers from the samplers' generator (:func:`mt_block`, state ``mt``);
    their sum."""
    buf = np.empty(MT_DOUBLES)
    pos = MT_DOUBLES
    s = 0.0
    for _ in range(n):
        if pos == MT_DOUBLES:
            mt_block(mt, buf)
            pos = 0
        s += buf[pos]
        pos += 1
    return s


def sampling(gpus: int, tokens: int, top_k: int = 8, experts: int = 256, repeat: int = 3,
             limited_share: float = 1.0) -> list[dict]:
    """Time the per-token samplers (module docstring, part 1), print them and return their
    rows."""
    from netsim.workload.routing import popularity_choices, popularity_counts

    ranks = np.random.default_rng(0).permutation(experts) + 1
    pops = {"uniform": np.ones(experts), "zipf:1.2": ranks ** -1.2}
    groups = np.arange(experts) // (experts // 32)
    lim_gpus = max(1, int(round(gpus * limited_share)))
    cases = [(f"{name} choices", gpus, lambda p=p, g=gpus: popularity_choices(
                  p, g, tokens, top_k, np.random.default_rng(1)))
             for name, p in pops.items()]
    cases.append(("uniform counts", gpus, lambda g=gpus: popularity_counts(
        pops["uniform"], g, tokens, top_k, np.random.default_rng(1))))
    cases.append(("uniform max_nodes=4", lim_gpus, lambda g=lim_gpus: popularity_choices(
        pops["uniform"], g, tokens, top_k, np.random.default_rng(1), groups, 4)))
    popularity_choices(pops["uniform"], 2, 8, top_k, np.random.default_rng(1))
    popularity_counts(pops["uniform"], 2, 8, top_k, np.random.default_rng(1))
    popularity_choices(pops["uniform"], 2, 8, top_k, np.random.default_rng(1), groups, 4)
    _uniforms(10, 1)
    _block_uniforms(10, mt_state(1))
    print(f"per-token sampling: {tokens} tokens x top-{top_k} of {experts} experts, best of"
          f" {repeat}")
    print(f"{'sampler':>22} {'gpus':>5} {'pairs':>11} {'wall_s':>7} {'ns/pair':>8}"
          f" {'uniforms_s':>10} {'x uniforms':>10} {'np.random_s':>11} {'x np.random':>11}")
    rows = []
    for name, g, f in cases:
        pairs = g * tokens * top_k
        ts, tu, tn = [], [], []
        for _ in range(repeat):  # interleaved: the same machine state for all three
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _block_uniforms(pairs, mt_state(1))
            tu.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _uniforms(pairs, 1)
            tn.append(time.perf_counter() - t0)
        t, u, v = min(ts), min(tu), min(tn)
        r = dict(part="sampling", sampler=name, gpus=g, tokens=tokens, top_k=top_k,
                 experts=experts, pairs=pairs, wall_s=t, ns_per_pair=1e9 * t / pairs,
                 uniforms_s=u, x_uniforms=t / u, np_random_s=v, x_np_random=t / v,
                 repeat=repeat)
        print(f"{r['sampler']:>22} {r['gpus']:>5} {r['pairs']:>11} {r['wall_s']:>7.3f} "
              f"{r['ns_per_pair']:>8.1f} {r['uniforms_s']:>10.3f} {r['x_uniforms']:>10.2f} "
              f"{r['np_random_s']:>11.3f} {r['x_np_random']:>11.2f}", flush=True)
        rows.append(r)
    return rows


def params(args, relayout: str) -> dict:
    return dict(topology="leaf_spine", gpus=args.gpus, gpus_per_server=8, servers_per_leaf=4,
                spines=8, workload=args.workload, tokens_per_gpu=args.tokens, ep_size=args.ep,
                routing=args.routing, iterations=args.iterations, relayout=relayout,
                tolerance=args.tolerance, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=256)
    ap.add_argument("--ep", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--workload", default="deepseek_v3")
    ap.add_argument("--routing", default="profile:deepseek_v2_lite:wikitext")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--baseline", action="store_true", help="also time relayout=none")
    ap.add_argument("--sample-gpus", type=int, default=1024)
    ap.add_argument("--sample-tokens", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limited-share", type=float, default=1.0,
                    help="run the node-limited sampler on this share of --sample-gpus")
    ap.add_argument("--sampling-only", action="store_true", help="skip the 64-iteration run")
    ap.add_argument("--out", help="also write the rows to this Parquet file")
    ap.add_argument("--table", help="print the Markdown tables of these Parquet files"
                    " (comma-separated, written by --out) and exit")
    ap.add_argument("--write", help="with --table: write them into this Markdown file's block")
    ap.add_argument("--check", help="with --table: exit 1 if this file's block differs")
    args = ap.parse_args()
    if args.table:
        sys.exit(table_step(args.table, table, args.write or args.check, bool(args.check),
                            BEGIN, END, "the bench_routing tables"))
    from netsim.experiment.sweep import git_commit
    from netsim.scenario import run

    commit = git_commit()
    rows = sampling(args.sample_gpus, args.sample_tokens, repeat=args.repeat,
                    limited_share=args.limited_share)
    if not args.sampling_only:
        print()
        run(params(args, "eplb:8") | {"gpus": 32, "iterations": 2})  # warm numba / profile caches
        cases = ["eplb:8"] + (["none"] if args.baseline else [])
        print(f"{'relayout':>8} {'gpus':>5} {'ep':>4} {'iters':>5} {'wall_s':>7} {'s/iter':>7} "
              f"{'flows':>8} {'events':>8} {'layer_ms':>8} {'disp/ideal':>10} {'rank_mm':>7} "
              f"{'migr_GB':>7} {'relayouts':>9}")
        for rl in cases:
            t0 = time.perf_counter()
            res = run(params(args, rl))
            wall = time.perf_counter() - t0
            r = dict(part="iterations", relayout=rl, gpus=args.gpus, ep=args.ep,
                     iterations=args.iterations, tokens=args.tokens, workload=args.workload,
                     routing=args.routing, tolerance=args.tolerance, wall_s=wall,
                     s_per_iter=wall / args.iterations, flows=res["flows"],
                     events=res["events"], layer_ms=1e3 * res["layer_s"],
                     dispatch_over_ideal=res["dispatch_over_ideal"],
                     rank_max_mean=res["rank_max_mean"],
                     migration_gb=res["migration_bytes"] / 1e9, relayouts=res["relayouts"])
            print(f"{r['relayout']:>8} {r['gpus']:>5} {r['ep']:>4} {r['iterations']:>5} "
                  f"{r['wall_s']:>7.1f} {r['s_per_iter']:>7.2f} {r['flows']:>8} {r['events']:>8} "
                  f"{r['layer_ms']:>8.3f} {r['dispatch_over_ideal']:>10.3f} "
                  f"{r['rank_max_mean']:>7.3f} {r['migration_gb']:>7.2f} {r['relayouts']:>9}",
                  flush=True)
            rows.append(r)
    if args.out:
        import pandas as pd

        pd.DataFrame([r | {"commit": commit} for r in rows]).to_parquet(args.out, index=False)


def table(paths: str) -> str:
    """The Markdown tables of runs' rows (``--out``; comma-separated files are concatenated):
    the samplers (wall time in s, best of ``repeat``, and its ratios to drawing as many
    uniforms, taken in the same run), then the multi-iteration runs (wall time, per iteration,
    flows, fabric events, relayouts, weights migrated); each followed by its runs' commits."""
    import pandas as pd

    df = pd.concat([pd.read_parquet(p) for p in paths.split(",") if p], ignore_index=True)

    def part(name: str) -> pd.DataFrame:  # its own columns, integers again (not NaN-padded)
        return df[df["part"] == name].dropna(axis=1, how="all").convert_dtypes()

    out: list[str] = []
    smp = part("sampling")
    if len(smp):
        out += ["| sampler | GPUs | tokens | pairs | wall_s | ns/pair | x uniforms | x np.random |",
                "|---|---|---|---|---|---|---|---|"]
        for r in smp.itertuples():
            out.append(f"| {r.sampler} | {r.gpus} | {r.tokens} | {r.pairs:,} | {r.wall_s:.3g} | "
                       f"{r.ns_per_pair:.3g} | {r.x_uniforms:.2f} | {r.x_np_random:.2f} |")
        out += ["", f"Top-{', '.join(map(str, smp['top_k'].unique()))} of "
                    f"{', '.join(map(str, smp['experts'].unique()))} experts, best of "
                    f"{', '.join(map(str, smp['repeat'].unique()))}; commit "
                    f"{', '.join(f'`{c[:12]}`' for c in smp['commit'].unique())}."]
    its = part("iterations")
    if len(its):
        out += [""] if out else []
        out += ["| relayout | GPUs | EP | iterations | wall_s | s/iter | flows | events | "
                "relayouts | migrated GB | layer_ms |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in its.itertuples():
            out.append(f"| {r.relayout} | {r.gpus} | {r.ep} | {r.iterations} | {r.wall_s:.3g} | "
                       f"{r.s_per_iter:.3g} | {r.flows:,} | {r.events:,} | {r.relayouts} | "
                       f"{r.migration_gb:.3g} | {r.layer_ms:.4g} |")
        out += ["", f"{', '.join(its['workload'].unique())}, {', '.join(its['routing'].unique())}"
                    f" routing, {', '.join(map(str, its['tokens'].unique()))} tokens per GPU, "
                    f"tolerance {', '.join(f'{x:g}' for x in its['tolerance'].unique())}; commit "
                    f"{', '.join(f'`{c[:12]}`' for c in its['commit'].unique())}."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
