"""netsim's three fabric models side by side on one MoE layer, from 16 to 16,384 GPUs.

One DeepSeek-V3 layer (256 experts, top-8, 7168 hidden, bf16; ``--tokens`` tokens per GPU,
uniform routing, seed 1) on the ``cluster`` fabric (8 GPUs per server on 8 rails, 32 servers per
leaf group, 3 tiers, full bisection; EP groups of up to 256 GPUs, so a 16,384-GPU cluster runs 64
groups), with each model:

* ``analytic``: the closed form (per-GPU min-cut bounds), no simulation;
* ``analytic+blocks``: the same closed form with ``aggregate=block`` (each independent block of
  EP groups' bounds on its own GPU-level fabric: the same row, without the cluster's GPU x GPU
  tables), from 256 GPUs up;
* ``flow``: the max-min fair flow model at GPU level;
* ``flow+blocks``: the same GPU-level flow model with ``aggregate=block`` (each independent block
  of EP groups simulated on its own GPU-level block fabric, one after another: the GPU-level
  layer, but for completion events merged by ``tolerance`` within a block only), from 256 GPUs
  up;
* ``flow+aggregate``: the flow model with ``aggregate=server`` (``docs/cluster.md`` says what the
  aggregation assumes), from 256 GPUs (one whole EP group) up;
* ``packet``: the packet model (4 KiB packets, unbounded buffers);
* ``simgrid``: the same layer in SimGrid's flow-level max-min solver (CM02), the peer closest to
  the flow model, driven by ``benchmarks/peers/simgrid_layer.cpp`` on netsim's own fabric (every
  directed link, netsim's ECMP route of every GPU pair) with netsim's dispatch bytes and
  per-GPU compute times: each GPU sends its dispatch at time 0, computes once all its dispatch
  bytes have arrived, then sends its combine (what netsim's GPU processes do). Its cell is the
  wall time of the driver's process (reading the layer file and building SimGrid's platform
  included: a C++ program has no start-up to exclude), up to ``--max-simgrid`` GPUs. Skipped
  with a line saying why when the driver cannot be built (``apt-get install libsimgrid-dev``
  and g++, or ``--simgrid-bin``). htsim runs no MoE layer (no compute between phases in its
  drivers) and has no model of this fabric: it is in the README's peers table instead.

Every case runs in a fresh process, after an untimed 16-GPU warm-up of the same model (numba's
compilation or cache loading is not counted), under a wall-clock limit (``--limit-s``): a case that
runs past it is recorded as such, not left out. Each case writes one row (layer time, wall and CPU
time, peak memory) to ``--out``; rerunning skips cases already on disk. ``--write README.md``
replaces every block ``<!-- scale-table DIR -->`` ... ``<!-- /scale-table -->`` with the table
printed from the rows in DIR (so one document can show runs at several ``--tokens``), and
``--check README.md`` exits 1 when a block differs from its rows. Under each table a line names
the fastest of the simulators (flow, flow+aggregate, packet) at each size, from the rows.

    python benchmarks/scale_table.py --out results/scale_table                 # 512 tokens per GPU
    python benchmarks/scale_table.py --out results/scale_table_4096 --tokens 4096
    python benchmarks/scale_table.py --write README.md

Wall times are the host's wall clock on whatever machine runs it (shared machines are noisy:
compare models within one run, not runs with each other).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from netsim.tools.docblock import commit_line, write_blocks

SIZES = (16, 64, 256, 1024, 4096, 16384)
MODELS = ("analytic", "analytic+blocks", "flow", "flow+blocks", "flow+aggregate", "packet",
          "simgrid")
#: models that run whole EP groups of 256 GPUs (blocks), from 256 GPUs up
BLOCK_MODELS = ("analytic+blocks", "flow+blocks", "flow+aggregate")
#: the simulators (the analytic columns are closed forms, not simulations)
SIMULATORS = ("flow", "flow+blocks", "flow+aggregate", "packet", "simgrid")
HERE = Path(__file__).resolve().parent
SIMGRID_LAYER_SRC = HERE / "peers" / "simgrid_layer.cpp"
LAYER_MAGIC = 0x53474C31  # "SGL1", checked by simgrid_layer.cpp
#: README blocks: ``<!-- scale-table DIR -->`` ... ``<!-- /scale-table -->``, each from DIR's rows
TAG = "scale-table"


def params(model: str, gpus: int, tokens: int) -> dict:
    """The run parameters of one case."""
    p = dict(topology="cluster", servers=max(1, gpus // 8), gpus_per_server=8, rails=8,
             servers_per_leaf=32, tiers=3, units_per_pod=8, spines=8, cores=8,
             workload="deepseek_v3", ep_size=min(gpus, 256), tokens_per_gpu=tokens,
             routing="uniform", seed=1)
    if model == "flow+aggregate":
        p.update(fabric="flow", aggregate="server")
    elif model == "flow+blocks":
        p.update(fabric="flow", aggregate="block")
    elif model == "analytic+blocks":
        p.update(fabric="analytic", aggregate="block")
    else:
        p.update(fabric=model)
    return p


def applies(model: str, gpus: int, max_flow: int, max_packet: int,
            max_simgrid: int = 0) -> bool:
    if model == "flow":
        return gpus <= max_flow
    if model == "packet":
        return gpus <= max_packet
    if model == "simgrid":
        return gpus <= max_simgrid
    if model in BLOCK_MODELS:
        return gpus >= 256
    return True


def bench_peers():
    """``benchmarks/bench_peers.py``, whose SimGrid build, timing and output parsing this script
    shares (imported from this folder: the benchmarks are not a package)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import bench_peers as bp

    return bp


def write_layer_platform(path: Path, layer) -> int:
    """Write the binary layer file ``simgrid_layer.cpp`` reads (little-endian) from a prepared
    GPU-level layer (:func:`netsim.prepare.prepare`): six int64 (magic, hosts, links, pairs,
    route length, combine flag), link bandwidths (bytes/s) and latencies (s) as float64, the
    pairs' sources and destinations (int64), their dispatch and combine bytes (float64: what the
    pair's source sends its destination in each phase; the combine returns the transpose of the
    dispatch), route pointers and route links (int64; netsim's own ECMP route of each pair) and
    each GPU's compute seconds (float64). Returns the number of flows of both phases."""
    import numpy as np

    if layer.hook is not None:
        raise ValueError("the SimGrid driver runs the direct layer only (no layer hook)")
    ft = layer.topo
    d = np.array(layer.dispatch, dtype=np.float64)
    np.fill_diagonal(d, 0.0)
    c = d.T if layer.combine else np.zeros_like(d)
    src, dst = np.nonzero((d > 0) | (c > 0))
    ptr, links, _ = ft.route(src, dst, layer.ecmp_seed)
    comp = np.asarray(layer.compute_gpu_s, dtype="<f8")
    head = np.array([LAYER_MAGIC, ft.n_gpus, len(ft.link_bw), len(src), len(links),
                     int(layer.combine)], dtype="<i8")
    with open(path, "wb") as f:
        for a, dt in ((head, "<i8"), (ft.link_bw, "<f8"), (ft.link_lat, "<f8"), (src, "<i8"),
                      (dst, "<i8"), (d[src, dst], "<f8"), (c[src, dst], "<f8"), (ptr, "<i8"),
                      (links, "<i8"), (comp, "<f8")):
            f.write(np.ascontiguousarray(a, dtype=dt).tobytes())
    return int(np.count_nonzero(d[src, dst]) + np.count_nonzero(c[src, dst]))


def run_simgrid(case: dict, binary: Path, work: Path, limit_s: float) -> dict:
    """The row of one SimGrid case: netsim prepares the layer (routing draw, compute times,
    routes), the driver simulates it in a process of its own, timed from outside and killed
    after ``limit_s`` (a row saying so)."""
    bp = bench_peers()
    from netsim.prepare import prepare
    from netsim.spec import RunSpec

    layer = prepare(RunSpec.parse(params("flow", case["gpus"], case["tokens"])))
    plat = work / f"layer_{_name(case)}.bin"
    flows = write_layer_platform(plat, layer)
    try:
        r, wall, rss = bp._timed([str(binary), str(plat), *bp.SIMGRID_CFG,
                               "--log=root.thres:warning"], limit_s)
    finally:
        plat.unlink()
    if r is None:  # (no peak memory: the wait4 figure includes the forking parent's pages)
        return dict(case, status=f"over {limit_s:g} s", wall_s=wall)
    if r.returncode != 0:
        raise RuntimeError(bp._fail(r, wall, rss))
    out = bp.parse_simgrid_output(r.stdout)
    for line in r.stdout.splitlines():
        key, _, val = line.partition(" ")
        if key in ("layer_s", "dispatch_s", "peak_rss_kib"):
            out[key] = float(val)
    if out.get("flows") != flows:
        raise RuntimeError(f"SimGrid finished {out.get('flows')} flows of {flows}")
    return dict(case, layer_s=out["layer_s"], dispatch_s=out["dispatch_s"], flows=flows,
                wall_s=wall, cpu_s=float("nan"), status="ok",
                maxrss_gib=out["peak_rss_kib"] / 2**20 if out.get("peak_rss_kib", -1) > 0
                else float("nan"),
                simulate_s=out["simulate_s"], setup_s=out["setup_s"],
                version=out.get("simgrid_version", "?"))


def one(case: dict, simgrid_bin: Path | None = None, work: Path | None = None,
        limit_s: float = 300.0) -> dict:
    """Run one case in this process: its row."""
    from netsim.scenario import run

    if case["model"] == "simgrid":
        return run_simgrid(case, simgrid_bin, work, limit_s)
    warm = params(case["model"], 16, 64)
    if case["model"] in BLOCK_MODELS:
        warm = params(case["model"], 256, 16)
    run(warm)
    t0, c0 = time.perf_counter(), time.process_time()
    m = run(params(case["model"], case["gpus"], case["tokens"]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return dict(case, layer_s=float(m["layer_s"]), dispatch_s=float(m["dispatch_s"]),
                flows=int(m.get("flows") or 0), wall_s=wall, cpu_s=cpu, status="ok",
                maxrss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def _name(case: dict) -> str:
    return hashlib.blake2b(json.dumps(case, sort_keys=True).encode(), digest_size=6).hexdigest()


def run_missing(out: Path, cases: list[dict], limit_s: float,
                simgrid_bin: Path | None = None) -> None:
    import pandas as pd

    from netsim.experiment.sweep import git_commit

    commit = git_commit()  # (a case's own process records it in its row; these rows too)
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        f = out / f"{_name(case)}.parquet"
        if f.exists():
            continue
        print("running", case, flush=True)
        t0 = time.perf_counter()
        # a SimGrid case kills its own driver at the limit (its row says so); its Python
        # process, which only prepares the layer, gets a margin beyond that
        peer = case["model"] == "simgrid"
        extra = ["--simgrid-bin", str(simgrid_bin), "--limit-s", str(limit_s)] if peer else []
        try:
            r = subprocess.run([sys.executable, __file__, "--out", str(out), "--one",
                                json.dumps(case), *extra],
                               timeout=limit_s + (600 if peer else 0), capture_output=True,
                               text=True)
            if r.returncode != 0:
                tail = (r.stderr.strip().splitlines() or ["?"])[-1]
                pd.DataFrame([dict(case, status=f"failed: {tail}",
                                   wall_s=time.perf_counter() - t0,
                                   commit=commit)]).to_parquet(f)
        except subprocess.TimeoutExpired:
            pd.DataFrame([dict(case, status=f"over {limit_s:g} s", wall_s=limit_s,
                               commit=commit)]).to_parquet(f)


def table(out: Path) -> str:
    """The Markdown table of the rows in ``out``: one line per GPU count, one column per model
    (wall time, and the layer time it computed)."""
    import pandas as pd

    files = sorted(out.glob("*.parquet"))
    if not files:
        raise SystemExit(f"no rows in {out}")
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    models = [m for m in MODELS if m in set(df["model"])]
    tokens = sorted(set(df["tokens"]))
    lines = [f"| GPUs | {' | '.join(models)} |", "|---|" + "---|" * len(models)]
    notes: list[str] = []
    for n in sorted(set(df["gpus"])):
        cells = []
        for m in models:
            x = df[(df.gpus == n) & (df.model == m)]
            if not len(x):
                cells.append("")
                continue
            x = x.iloc[0]
            if str(x.status).startswith("failed: "):  # the run's own one-line refusal, below
                notes.append(f"{len(notes) + 1}. {m}, {n:,} GPUs: "
                             + str(x.status)[len("failed: "):].split(": ", 1)[-1])
                cells.append(f"refused ({len(notes)})")
            elif x.status != "ok":
                cells.append(str(x.status))
            else:
                cells.append(f"{x.wall_s:.2f} s ({x.layer_s * 1e3:.3f} ms, {x.maxrss_gib:.2f} GiB)")
        lines.append(f"| {n:,} | {' | '.join(cells)} |")
    peer = ("; simgrid: SimGrid's max-min solver on the same links, routes, bytes and compute "
            "times, the wall time and peak memory of its driver's process (reading the layer and "
            "building SimGrid's platform included)") if "simgrid" in models else ""
    commit = commit_line(df)
    return (f"DeepSeek-V3 layer, {', '.join(str(t) for t in tokens)} tokens per GPU, uniform "
            "routing, `cluster` fabric; each cell: wall time of the run in a warm process, start-up "
            "excluded (simulated layer time, "
            f"peak memory of the process){peer}\n\n" + "\n".join(lines)
            + "\n\n" + fastest(df)
            + ("\n\n" + "\n".join(notes) if notes else "")
            + (f"\n\n{commit}" if commit else ""))


def fastest(df) -> str:
    """One line naming, per GPU count, the simulator (of :data:`SIMULATORS`) whose run took the
    least wall time among those that finished."""
    ok = df[(df.status == "ok") & df.model.isin(SIMULATORS)]
    parts = []
    for n in sorted(set(ok["gpus"])):
        x = ok[ok.gpus == n].sort_values(["wall_s", "model"])
        others = x.iloc[1:]
        vs = ", ".join(f"{r.model} {r.wall_s / x.iloc[0].wall_s:.1f}x" for r in others.itertuples())
        parts.append(f"{n:,}: {x.iloc[0].model}" + (f" ({vs})" if vs else ""))
    return ("Fastest simulator per size (the others' wall time as a multiple of it): "
            + "; ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/scale_table"))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--tokens", type=int, default=512, help="tokens per GPU")
    ap.add_argument("--max-flow", type=int, default=4096, help="largest GPU-level flow case")
    ap.add_argument("--max-packet", type=int, default=16384, help="largest packet case")
    ap.add_argument("--max-simgrid", type=int, default=256,
                    help="largest SimGrid case (on the README's 2-core machine, 256 GPUs run"
                    " past the default limit)")
    ap.add_argument("--simgrid-bin", default=os.environ.get("SIMGRID_LAYER"),
                    help="the compiled simgrid_layer driver (default: compiled into OUT/bin)")
    ap.add_argument("--limit-s", type=float, default=300.0, help="wall-clock limit per case")
    ap.add_argument("--write", type=Path, help="write every <!-- scale-table DIR --> block of"
                    " this Markdown file from the rows in its DIR")
    ap.add_argument("--check", type=Path, help="exit 1 if one of those blocks differs")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        import pandas as pd

        from netsim.experiment.sweep import git_commit

        case = json.loads(a.one)
        row = one(case, Path(a.simgrid_bin) if a.simgrid_bin else None, a.out, a.limit_s)
        row["commit"] = git_commit()
        pd.DataFrame([row]).to_parquet(a.out / f"{_name(case)}.parquet")
        return
    if a.write or a.check:  # every scale-table block of the file, each from its own rows
        sys.exit(write_blocks(a.write or a.check, TAG, lambda d: table(Path(d)), bool(a.check),
                              "the scale tables"))
    sizes = [int(s) for s in a.sizes.split(",") if s]
    sgb, why = bench_peers().simgrid_binary(a.simgrid_bin, a.out, SIMGRID_LAYER_SRC)
    if sgb is None:
        print(f"simgrid: skipped ({why}; build: apt-get install libsimgrid-dev and g++, or pass"
              " --simgrid-bin)", flush=True)
    cases = [dict(model=m, gpus=n, tokens=a.tokens) for n in sizes for m in MODELS
             if applies(m, n, a.max_flow, a.max_packet, a.max_simgrid if sgb else 0)]
    run_missing(a.out, cases, a.limit_s, sgb)
    print(table(a.out))


if __name__ == "__main__":
    main()
