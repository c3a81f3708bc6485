"""Wall time of one circuit-scheduled MoE layer (dispatch, overlapped compute, combine) on an
``ocs_direct`` fabric (or, with ``--hybrid``, a two-tier fabric of 8-GPU servers whose circuits a
scheduler drives between servers): Qwen3-30B-A3B, 1024 tokens per GPU, Zipf 1.2 routing, 10 us
reconfiguration. Each figure is the best of ``--repeat`` runs (CPU time of this process, which
other jobs on a shared machine disturb less than wall time), and its ratio to the first
scheduler's (greedy:4 by default), taken in the same run. ``bvn`` is the strong BvN
(bottleneck rule), ``bvn:any`` the naive one (many more matchings and batches).

``--against REV`` also runs the circuit engine of git revision REV (its
``netsim/engines/circuit.py``, ``netsim/devices/ocs.py`` and flow fabric
``netsim/fabric/flow.py``, read with ``git show`` and run against this checkout's other modules;
the fabric's kernels are compiled once into a numba cache under the temporary directory) on the
same prepared layer, alternating old and new within each repeat: it prints both CPU times, their
ratio (old / new) and whether the two rows are identical (every column but ``sim_wall_s``;
otherwise the largest relative difference and its column). That is the check a change to the engine's speed must pass.

``--against REV --cases`` compares the rows of about fifty small runs instead (:func:`cases`:
every scheduler, batching rule, overlap setting, OCS mode and fabric kind) and exits 1 if one
differs.

``--where`` profiles one more run of each scheduler and prints where its time goes, by part of
the code (:func:`where`).

``--out FILE.parquet`` also writes the printed rows (one per scheduler, with the fabric, the
sizes and the commit); ``--table FILE[,FILE] --write README.md`` (or ``--check``) renders them
(the ``--hybrid`` run's file beside the other) as the README's table between its
bench-ocs-layer markers.

Run: python benchmarks/bench_ocs_layer.py [--gpus 128] [--schedulers ...] [--hybrid]
[--against HEAD~1 [--cases]] [--where] [--out FILE.parquet]."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

import netsim.engines.circuit as engine
from netsim.prepare import prepare
from netsim.scenario import run
from netsim.spec import RunSpec
from netsim.tools.docblock import table_step

BEGIN, END = "<!-- bench-ocs-layer -->", "<!-- /bench-ocs-layer -->"
ROOT = Path(__file__).resolve().parent.parent


def _git_show(rev: str, path: str) -> str:
    """File ``path`` as it is at git revision ``rev`` of this repository."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"--against {rev!r}: cannot read {path} at that revision ({exc})")


def _load(rev: str, path: str, name: str) -> types.ModuleType:
    """Module ``name`` made from file ``path`` as it is at git revision ``rev`` of this
    repository."""
    src = _git_show(rev, path)
    mod = types.ModuleType(name)
    mod.__file__ = f"{rev}:{path}"
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def _load_kernels(name: str, src: str) -> types.ModuleType:
    """Module ``name`` made from source ``src`` (a file at an older revision), imported from a
    copy on disk: numba caches compiled kernels beside their source file, which ``exec`` has
    none of. The copy is named by the source's hash and never rewritten (its time stamp keys
    numba's cache), so a second run finds its kernels compiled."""
    import hashlib
    import importlib.util
    import tempfile

    digest = hashlib.sha1(src.encode()).hexdigest()[:12]
    where = Path(tempfile.gettempdir()) / "netsim-bench-ocs"
    where.mkdir(exist_ok=True)
    file = where / f"{name}_{digest}.py"
    if not file.exists():
        tmp = file.with_suffix(".tmp")
        tmp.write_text(src)
        tmp.replace(file)
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def old_engine(rev: str) -> types.ModuleType:
    """The circuit engine of revision ``rev``, with that revision's OCS process and flow fabric
    (netsim/fabric/flow.py and, where it has one, its netsim/fabric/parking.py)."""
    ocs = _load_kernels("_bench_old_ocs", _git_show(rev, "netsim/devices/ocs.py"))  # kernels
    old = _load(rev, "netsim/engines/circuit.py", "_bench_old_circuit")
    old.OCS = ocs.OCS
    flow_src = _git_show(rev, "netsim/fabric/flow.py")
    if "netsim.fabric.parking" in flow_src:  # that revision's parking kernels, not this one's
        _load_kernels("_bench_old_parking", _git_show(rev, "netsim/fabric/parking.py"))
        flow_src = flow_src.replace("netsim.fabric.parking", "_bench_old_parking")
    flow = _load_kernels("_bench_old_flow", flow_src)
    old.FlowFabric, old.unfinished = flow.FlowFabric, flow.unfinished
    return old


def row_difference(a: dict, b: dict) -> str:
    """'identical', or the largest relative difference between two rows and its column."""
    worst, col = 0.0, None
    for k in sorted(set(a) | set(b)):
        if k == "sim_wall_s":
            continue
        x, y = a.get(k), b.get(k)
        if isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == y.shape:
            if np.array_equal(x, y):
                continue
            rel = float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300)))
            if not rel <= worst:
                worst, col = rel, k
            continue
        if x == y or (isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y)):
            continue
        try:
            rel = abs(float(x) - float(y)) / max(abs(float(x)), 1e-300)
        except (TypeError, ValueError):
            rel = float("inf")
        if not rel <= worst:
            worst, col = rel, k
    return "identical" if col is None else f"{col} differs by {worst:.3g} (relative)"


def cases(tmp: Path):
    """About fifty small circuit runs that between them take every branch of the engine: the
    schedulers (bvn, bvn:any, bvn:max, greedy:K, greedy:K:max:leftover, rotor, solstice, eclipse,
    spectra, hier_bvn), both batching rules, overlap on and off, both OCS modes, 8-64 GPUs,
    uniform and Zipf routing, two ports, hybrid servers with and without an electrical network,
    raw matrices with and without their combine (``--cases``)."""
    od = dict(topology="ocs_direct", workload="qwen3_30b_a3b", gpu="h100-roofline",
              port_gbps=400.0, tolerance=0.0, tokens_per_gpu=1024, batch_overhead_us=20.0)
    hy = dict(topology="hybrid", servers=8, gpus_per_server=4, scale_out="ocs", nic_gbps=400.0,
              workload="qwen3_30b_a3b", tokens_per_gpu=1024, gpu="h100-roofline", tolerance=0.0,
              batch_overhead_us=20.0)
    k = 0
    for s in ("bvn", "bvn:any", "greedy:1", "greedy:4", "rotor", "solstice", "eclipse"):
        for g, r, b, ov, mode, d in [(16, "uniform", "merge", True, "all_stop", 10.0),
                                     (32, "zipf:1.2", "per_matching", True, "not_all_stop", 1.0),
                                     (16, "zipf:1.2", "merge", False, "all_stop", 100.0),
                                     (64, "uniform", "per_matching", True, "all_stop", 0.01)]:
            g = 32 if g == 64 and s in ("bvn:any", "eclipse") else g
            yield od | dict(gpus=g, routing=r, scheduler=s, batching=b, overlap=ov, ocs_mode=mode,
                            reconfig_us=d, seed=k % 3)
            k += 1
    yield od | dict(gpus=32, routing="zipf:1.2", scheduler="greedy:31", batching="per_matching",
                    reconfig_us=10.0, seed=1)
    yield od | dict(gpus=16, routing="uniform", scheduler="greedy:2", ports=2, reconfig_us=10.0)
    yield od | dict(gpus=16, routing="zipf:1.2", scheduler="spectra:2", ports=2, reconfig_us=10.0,
                    batching="per_matching")
    yield od | dict(gpus=16, routing="zipf:1.2", scheduler="greedy:2:max:leftover",
                    eps_gbps=100.0, reconfig_us=10.0)
    yield od | dict(gpus=16, routing="uniform", scheduler="greedy:1:max:leftover", reconfig_us=1.0,
                    overlap=False)
    yield od | dict(gpus=32, routing="zipf:1.2", scheduler="bvn:max", reconfig_us=100.0,
                    batching="per_matching")
    for s, e, r, d in [("hier_bvn:4", 0.0, "zipf:1.2", 10.0), ("greedy:4", 100.0, "uniform", 1.0),
                       ("greedy:2:max:leftover", 100.0, "zipf:1.2", 10.0),
                       ("greedy:1:max:leftover", 0.0, "uniform", 100.0),
                       ("greedy:4:max:leftover", 400.0, "zipf:1.2", 0.01),
                       ("bvn", 0.0, "zipf:1.2", 10.0)]:
        both = s in ("hier_bvn:4", "greedy:2:max:leftover")
        for b, ov in ([("merge", True), ("per_matching", False)] if both else [("merge", True)]):
            yield hy | dict(scheduler=s, eps_gbps=e, routing=r, reconfig_us=d, batching=b,
                            overlap=ov)
    yield hy | dict(scheduler="greedy:4", eps_gbps=100.0, routing="zipf:1.2", reconfig_us=10.0,
                    batching="per_matching", ocs_mode="not_all_stop")
    m = np.random.default_rng(3).integers(0, 1 << 20, (8, 8)).astype(float)
    np.fill_diagonal(m, 0.0)
    path = tmp / "matrix.npy"
    np.save(path, m)
    for s, tc, ov in [("bvn", False, True), ("greedy:2", True, True), ("solstice", True, False),
                      ("rotor", True, True)]:
        yield dict(topology="ocs_direct", gpus=8, traffic=str(path), scheduler=s, reconfig_us=10.0,
                   traffic_combine=tc, traffic_compute_us=50.0 if tc else 0.0, overlap=ov)


def check_cases(old: types.ModuleType) -> int:
    """Run :func:`cases` on both engines; print each case that differs; return how many."""
    import tempfile

    bad = n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for p in cases(Path(tmp)):
            setup = prepare(RunSpec.parse(p))
            diff = row_difference(_row(old.simulate(setup)), _row(engine.simulate(setup)))
            n += 1
            if diff != "identical":
                bad += 1
                print(f"case {p}: {diff}", flush=True)
    print(f"{n - bad} of {n} cases identical to the old engine's rows")
    return bad


#: where a run's time is attributed by ``--where``: (label, path fragment of the source file)
PARTS = (("circuit engine (netsim/engines/circuit.py, its kernels)", "netsim/engines/"),
         ("OCS process (netsim/devices/ocs.py)", "netsim/devices/ocs.py"),
         ("network process (netsim/devices/network.py)", "netsim/devices/network.py"),
         ("flow fabric's Python methods and kernels (netsim/fabric/)", "netsim/fabric/"),
         ("compute model (netsim/prepare.py batch_time)", "netsim/prepare.py"),
         ("SimPy's event loop (simpy/)", "simpy/"),
         ("the scheduler's plans (netsim/schedule/)", "netsim/schedule/"),
         ("the fabric's set-up (netsim/topology.py, netsim/circuit_fabric.py)",
          "netsim/topology.py"),
         ("the fabric's set-up (netsim/topology.py, netsim/circuit_fabric.py)",
          "netsim/circuit_fabric.py"))


def where(setup) -> list[tuple[str, float]]:
    """Share of one run's profiled time (cProfile, own time per function) by the part of the
    code it is spent in (:data:`PARTS`); time in a built-in (numpy, list methods) goes to its
    callers in proportion to their calls' time. cProfile's cost per Python call inflates the
    parts made of many small calls, so the shares are indicative, not a wall-time split."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(engine.simulate, setup)
    st = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def part(key) -> str | None:
        for label, frag in PARTS:
            if frag in key[0].replace("\\", "/"):
                return label
        return None

    other = "other (Python built-ins and numpy called from elsewhere)"
    memo: dict = {}

    def owners(key, depth: int = 0) -> dict[str, float]:
        """How the own time of function ``key`` splits over the parts: its own part, else its
        callers' (in proportion to the time each caller's calls took), up the call graph."""
        label = part(key)
        if label is not None:
            return {label: 1.0}
        if key in memo:
            return memo[key]
        callers = st[key][4] if key in st else {}
        w = {c: v[2] for c, v in callers.items()}
        tot = sum(w.values())
        out: dict[str, float] = {}
        if depth < 20 and callers:
            memo[key] = {other: 1.0}  # a cycle back to this function counts as "other"
            for c, t in w.items():
                f = t / tot if tot > 0 else 1.0 / len(w)
                for lab, x in owners(c, depth + 1).items():
                    out[lab] = out.get(lab, 0.0) + f * x
        else:
            out = {other: 1.0}
        memo[key] = out
        return out

    share: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in st.items():
        for label, f in owners(key).items():
            share[label] = share.get(label, 0.0) + tt * f
    total = sum(share.values())
    return sorted(((k, v / total) for k, v in share.items()), key=lambda kv: -kv[1])


def _row(res) -> dict:
    """Everything an engine answers (per-GPU times as arrays)."""
    return {"layer_s": res.layer_s, "bytes_delivered": res.bytes_delivered, "events": res.events,
            "rate_recomputes": res.rate_recomputes, "dispatch_end": res.dispatch_end,
            "compute_end": res.compute_end, **res.extra}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=128)
    ap.add_argument("--schedulers", default="greedy:4,greedy:N-1,rotor,solstice,bvn,bvn:max,bvn:any",
                    help="comma-separated; greedy:N-1 means K = GPUs - 1")
    ap.add_argument("--hybrid", action="store_true", help="servers of 8 GPUs (hybrid, scale_out=ocs)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--against", metavar="REV", default=None,
                    help="also time the engine of git revision REV on the same layers (A/B)")
    ap.add_argument("--cases", action="store_true",
                    help="with --against: compare the rows of about fifty small runs covering every"
                         " scheduler, batching rule, overlap, OCS mode and fabric, then stop")
    ap.add_argument("--where", action="store_true",
                    help="profile one run of each scheduler and print the share of its time spent"
                         " in each part of the code (engine, OCS, network, flow fabric, compute"
                         " model, SimPy)")
    ap.add_argument("--out", help="also write the rows to this Parquet file")
    ap.add_argument("--table", help="print the Markdown table of these Parquet files"
                    " (comma-separated, written by --out) and exit")
    ap.add_argument("--write", help="with --table: write it into this Markdown file's block")
    ap.add_argument("--check", help="with --table: exit 1 if this file's block differs")
    args = ap.parse_args()
    if args.table:
        sys.exit(table_step(args.table, table, args.write or args.check, bool(args.check),
                            BEGIN, END, "the bench_ocs_layer table"))
    if args.cases:
        if not args.against:
            sys.exit("--cases needs --against REV")
        run(dict(topology="ocs_direct", gpus=8, workload="qwen3_30b_a3b", scheduler="greedy:2"))
        sys.exit(1 if check_cases(old_engine(args.against)) else 0)
    base = dict(workload="qwen3_30b_a3b", tokens_per_gpu=1024, routing="zipf:1.2",
                reconfig_us=10.0, overlap=True)
    if args.hybrid:
        base |= dict(topology="hybrid", servers=args.gpus // 8, gpus_per_server=8)
        run(base | {"servers": 2, "scheduler": "greedy:2"})  # warm the numba cache
    else:
        base |= dict(topology="ocs_direct", gpus=args.gpus)
        run(base | {"gpus": 8, "scheduler": "greedy:2"})  # warm the numba cache
    old = old_engine(args.against) if args.against else None
    if old is not None:  # warm its flow fabric's kernels too
        old.simulate(prepare(RunSpec.parse(base | ({"servers": 2} if args.hybrid else {"gpus": 8})
                                           | {"scheduler": "greedy:2"})))
    head = (f"{'scheduler':>10} {'gpus':>5} {'cpu_s':>7} {'layer_ms':>9} {'/bound':>7} "
            f"{'matchings':>9} {'fallback':>8} {'batches':>8} {'events':>7} {'cpu/first':>9}")
    if old is not None:
        head += f" {'old_cpu_s':>9} {'old/new':>7}  rows"
    print(head)
    from netsim.experiment.sweep import git_commit

    commit = git_commit()
    rows = []
    ref = None
    for s in args.schedulers.replace("N-1", str(args.gpus - 1)).split(","):
        setup = prepare(RunSpec.parse(base | {"scheduler": s}))
        w = w_old = float("inf")
        for _ in range(max(1, args.repeat)):
            t = time.process_time()
            res = engine.simulate(setup)
            w = min(w, time.process_time() - t)
            if old is not None:
                t = time.process_time()
                res_old = old.simulate(setup)
                w_old = min(w_old, time.process_time() - t)
        r = _row(res)
        ref = (s, w) if ref is None else ref
        row = dict(fabric=base["topology"], gpus=args.gpus,
                   servers=args.gpus // 8 if args.hybrid else 0, scheduler=s, cpu_s=w,
                   layer_ms=r["layer_s"] * 1e3, ratio_to_bound=r["ratio_to_bound"],
                   matchings=r["n_matchings"], fallback=r["fallback_matchings"],
                   batches=r["batches"], events=res.events, first=ref[0],
                   cpu_over_first=w / ref[1], repeat=max(1, args.repeat), commit=commit)
        line = (f"{s:>10} {row['gpus']:>5} {row['cpu_s']:>7.2f} {row['layer_ms']:>9.3f} "
                f"{row['ratio_to_bound']:>7.3f} {row['matchings']:>9} {row['fallback']:>8} "
                f"{row['batches']:>8} {row['events']:>7} {row['cpu_over_first']:>9.1f}")
        if old is not None:
            row |= dict(against=args.against, old_cpu_s=w_old, old_over_new=w_old / w,
                        rows=row_difference(_row(res_old), r))
            line += f" {row['old_cpu_s']:>9.2f} {row['old_over_new']:>7.2f}  {row['rows']}"
        print(line, flush=True)
        rows.append(row)
        if args.where:
            for label, frac in where(setup):
                if frac >= 0.0005:
                    print(f"{'':>10} {frac * 100:5.1f} %  {label}")
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(args.out, index=False)


def table(paths: str) -> str:
    """The Markdown table of runs' rows (``--out``; comma-separated files, e.g. the plain and the
    ``--hybrid`` run): per scheduler the CPU time (s, best of ``repeat``), its ratio to the
    run's first scheduler's (same run), matchings, batches, the layer time (ms) and its ratio to
    the bound; with ``--against`` rows also the old engine's CPU time, old / new and the row
    check; then each run's first scheduler, repeats and commit."""
    import pandas as pd

    df = pd.concat([pd.read_parquet(p) for p in paths.split(",") if p], ignore_index=True)
    against = "old_cpu_s" in df
    cols = ["fabric", "GPUs", "scheduler", "cpu_s", "cpu/first", "matchings", "batches",
            "layer_ms", "/bound"] + (["against", "old_cpu_s", "old/new", "rows"] if against else [])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples():
        cells = [f"{r.fabric} ({r.servers} x 8 GPUs)" if r.servers else r.fabric, str(r.gpus),
                 r.scheduler, f"{r.cpu_s:.3g}", f"{r.cpu_over_first:.2f}", f"{r.matchings:,}",
                 f"{r.batches:,}", f"{r.layer_ms:.4g}", f"{r.ratio_to_bound:.3f}"]
        if against:
            cells += (["", "", "", ""] if pd.isna(r.old_cpu_s) else
                      [r.against, f"{r.old_cpu_s:.3g}", f"{r.old_over_new:.2f}", r.rows])
        out.append("| " + " | ".join(cells) + " |")
    runs = "; ".join(f"{fab}: cpu/first over {g['first'].iloc[0]}, best of {g['repeat'].iloc[0]}, "
                     f"commit `{g['commit'].iloc[0][:12]}`"
                     for fab, g in df.groupby("fabric", sort=False))
    out += ["", f"{runs}."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
