"""Cluster-scale MoE layers: the aggregated flow model (``aggregate=server``) against the
GPU-level flow model, and its wall time and memory from 1,024 to 16,384 GPUs.

Every case runs in a fresh process (so ``ru_maxrss`` is that case's peak; a 64-GPU warm-up of the
same path runs first, untimed, so that numba's compilation is not counted) and writes one row to
``--out`` (a directory of Parquet part files, one per case; rerunning skips cases on disk). The
table is printed from those rows (``--report`` prints it without running anything).

* ``check`` cases: the same layer at 1,024 and 2,048 GPUs (4 and 8 EP groups of 256) with the
  GPU-level flow model and the aggregated one; printed side by side with the relative error of
  the layer time. GPU-level phases: build (topology and freeze), draw (routing draw, traffic,
  compute times), simulate (routing the flows, the flow model, the reference bounds).
* ``scale`` cases: the aggregated model at 4,096, 8,192 and 16,384 GPUs (16 to 64 EP groups of
  256): wall and CPU time, peak memory, and the aggregated run's own phases: build (one block's
  GPU-level fabric and its reduction), draw, route (GPU-pair ECMP paths, member loads, reduced
  capacities, reference bounds), simulate (the flow model on the reduced fabrics).

The fabric: ``cluster`` with 8 GPUs per server, 8 rails, 32 servers per leaf (a unit of 256
GPUs = one EP group), 3 tiers, 8 units per pod (2,048 GPUs), 8 spines per pod, 8 cores, full
bisection; DeepSeek-V3 (256 experts, top-8, 4,096 tokens per GPU).

    python benchmarks/bench_cluster.py --cases check --routing uniform
    python benchmarks/bench_cluster.py --cases scale
    python benchmarks/bench_cluster.py --report
    python benchmarks/bench_cluster.py --write docs/cluster.md   # its tables, from the rows
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from netsim.tools.docblock import write_blocks

BASE = dict(topology="cluster", gpus_per_server=8, rails=8, servers_per_leaf=32, tiers=3,
            units_per_pod=8, spines=8, cores=8, workload="deepseek_v3", ep_size=256, seed=1)
CHECK_GPUS = (1024, 2048)
SCALE_GPUS = (4096, 8192, 16384)
KEEP = ("layer_s", "dispatch_s", "compute_s", "combine_s", "ideal_dispatch_s", "events",
        "rate_recomputes", "flows", "aggregate_blocks", "aggregate_flows", "build_wall_s",
        "draw_wall_s", "route_wall_s", "simulate_wall_s")


def one(case: dict) -> dict:
    """Run one case in this process; the row (parameters, metrics, walls, peak memory)."""
    from netsim.prepare import context, prepare
    from netsim.scenario import run
    from netsim.simulate import layer_metrics
    from netsim.spec import RunSpec

    params = dict(BASE, servers=case["gpus"] // 8, routing=case["routing"],
                  aggregate=case["aggregate"])
    # warm-up: the same path on 64 GPUs, so that numba's compilation (or loading its cache)
    # is not timed
    run(dict(params, servers=8, servers_per_leaf=8, ep_size=64, tokens_per_gpu=64))
    t0, c0 = time.perf_counter(), time.process_time()
    if case["aggregate"] == "none":  # GPU level, timed by phase
        spec = RunSpec.parse(params)
        ctx = context(spec)
        t1 = time.perf_counter()
        layer = prepare(spec, ctx)
        t2 = time.perf_counter()
        m = layer_metrics(layer)
        t3 = time.perf_counter()
        m.update(build_wall_s=t1 - t0, draw_wall_s=t2 - t1, simulate_wall_s=t3 - t2)
    else:
        m = run(params)
    row = {k: m.get(k) for k in KEEP}
    row.update(case, wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
               maxrss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return row


def cases(which: str, routing: str) -> list[dict]:
    out = []
    if which in ("check", "all"):
        for n in CHECK_GPUS:
            for agg in ("server", "none"):
                out.append(dict(kind="check", gpus=n, routing=routing, aggregate=agg))
    if which in ("scale", "all"):
        for n in SCALE_GPUS:
            out.append(dict(kind="scale", gpus=n, routing=routing, aggregate="server"))
    return out


def _name(case: dict) -> str:
    return hashlib.blake2b(json.dumps(case, sort_keys=True).encode(), digest_size=6).hexdigest()


def report(out: Path) -> None:
    """Print the tables from the rows in ``out``."""
    import pandas as pd

    files = sorted(out.glob("*.parquet"))
    if not files:
        print(f"no rows in {out}")
        return
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    chk = df[df.kind == "check"]
    if len(chk):
        print("Aggregated (aggregate=server) vs GPU-level flow model, same layer, same draw:")
        print(f"{'GPUs':>6} {'routing':>9} {'GPU-level ms':>13} {'aggregated ms':>14} "
              f"{'error':>8} {'GPU-level s':>12} {'aggr. s':>8} {'speed-up':>9} "
              f"{'GPU flows':>10} {'aggr. flows':>11}")
        for (n, r), g in chk.groupby(["gpus", "routing"], sort=True):
            a = g[g["aggregate"] == "server"]
            u = g[g["aggregate"] == "none"]
            if not len(a) or not len(u):
                continue
            a, u = a.iloc[0], u.iloc[0]
            print(f"{n:>6} {r:>9} {u.layer_s * 1e3:>13.4f} {a.layer_s * 1e3:>14.4f} "
                  f"{(a.layer_s / u.layer_s - 1) * 100:>+7.2f}% {u.wall_s:>12.1f} "
                  f"{a.wall_s:>8.1f} {u.wall_s / a.wall_s:>8.1f}x {int(u.flows):>10} "
                  f"{int(a.aggregate_flows):>11}")
        print("  phases (wall s)       build    draw   route  simulate   peak GiB")
        for _, x in chk.sort_values(["gpus", "routing", "aggregate"]).iterrows():
            route = "-" if x["aggregate"] == "none" else f"{x.route_wall_s:.1f}"
            print(f"  {x.gpus:>6} {x.routing:>9} {x['aggregate']:>6} {x.build_wall_s:>6.1f} "
                  f"{x.draw_wall_s:>7.1f} {route:>7} {x.simulate_wall_s:>9.1f} "
                  f"{x.maxrss_gib:>10.2f}")
    sc = df[df.kind == "scale"]
    if len(sc):
        print("Aggregated model at scale (one layer, EP groups of 256):")
        print(f"{'GPUs':>6} {'routing':>9} {'groups':>7} {'layer ms':>9} {'wall s':>7} "
              f"{'CPU s':>6} {'peak GiB':>9} {'build':>6} {'draw':>6} {'route':>6} "
              f"{'simulate':>9} {'aggr. flows':>11} {'events':>7} {'recomputes':>10}")
        for _, x in sc.sort_values(["gpus", "routing"]).iterrows():
            print(f"{x.gpus:>6} {x.routing:>9} {x.gpus // 256:>7} {x.layer_s * 1e3:>9.4f} "
                  f"{x.wall_s:>7.1f} {x.cpu_s:>6.1f} {x.maxrss_gib:>9.2f} "
                  f"{x.build_wall_s:>6.1f} {x.draw_wall_s:>6.1f} {x.route_wall_s:>6.1f} "
                  f"{x.simulate_wall_s:>9.1f} {int(x.aggregate_flows):>11} {int(x.events):>7} "
                  f"{int(x.rate_recomputes):>10}")
    print("(wall: host wall clock on a shared machine; CPU: this process's CPU time)")


def write(doc: Path, check: bool) -> int:
    """Rewrite every ``<!-- bench_cluster DIR -->`` ... ``<!-- /bench_cluster -->`` block of
    ``doc`` with the tables :func:`report` prints from the rows in DIR (``check``: exit 1 when a
    block differs instead of writing)."""

    def table(rows_dir: str) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            report(Path(rows_dir))
        return f"```\n{buf.getvalue()}```"

    return write_blocks(doc, "bench_cluster", table, check, "the bench_cluster tables")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/bench_cluster"))
    ap.add_argument("--cases", default="all", choices=("all", "check", "scale"))
    ap.add_argument("--routing", default="uniform", help="routing of the cases (uniform, zipf:S)")
    ap.add_argument("--gpus", type=int, default=0, help="only the cases of this size")
    ap.add_argument("--report", action="store_true", help="print the tables only")
    ap.add_argument("--write", type=Path, help="write the tables into this Markdown file's"
                    " <!-- bench_cluster DIR --> blocks, each from the rows in DIR")
    ap.add_argument("--check", type=Path, help="exit 1 if those blocks differ from the rows")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write or a.check:
        sys.exit(write(a.write or a.check, check=bool(a.check)))
    if a.one:
        case = json.loads(a.one)
        row = one(case)
        import pandas as pd

        a.out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row]).to_parquet(a.out / f"{_name(case)}.parquet")
        return
    if not a.report:
        for case in cases(a.cases, a.routing):
            if a.gpus and case["gpus"] != a.gpus:
                continue
            if (a.out / f"{_name(case)}.parquet").exists():
                continue
            print("running", case, flush=True)
            subprocess.run([sys.executable, __file__, "--out", str(a.out), "--one",
                            json.dumps(case)], check=True)
    report(a.out)


if __name__ == "__main__":
    main()
