"""Flow-model benchmark, side by side with the full-recomputation solver and the packet model.

Cases (each printed as one row per model, all in this one process):

* ``fattree``: uniform all-to-all on a k-ary fat-tree (400 Gbit/s, 1 us per hop), ``--pair-kib``
  per GPU pair (256 KiB and 1 MiB by default); models ``flow`` (the default solver, ``auto``,
  at ``--tolerance``: run to completion, the incremental solver while it refills few flows,
  then the full one), ``flow-full`` (every
  rate recomputed at every event, same tolerance; ``--full``) and ``packet``
  (:func:`netsim.fabric.packet.simulate_packets`, 4 KiB MTU; ``--packet``);
* ``moe``: DeepSeek-V3 dispatch (4096 tokens per GPU) on leaf_spine, uniform and zipf:1.2 routing;
* ``dense``: every pair Poisson(32) tokens of 7168 x 2 bytes at 1024 GPUs (a million flows);
* ``exact``: the uniform MoE dispatch at ``--exact`` GPUs with tolerance 0 (the exact solver).

Per row: flows, fabric events, rate recomputations, flows whose rates were recomputed per
recomputation (``flows/rc``; the full solver: the live flows), wall time per phase (``build_s``:
topology build and freeze,
``route_s``: routing and storing the flows, ``sim_s``: the simulation), the makespan, the
process's peak RSS, ``x_flow``: this row's total time over the ``flow`` row's of the same case,
and ``merge``: flows per class of flows with the same link set and the same size (what merging
such flows into one with a multiplicity would divide the flow count by; 1.00: nothing to merge).
Run: python benchmarks/bench_flow.py [--fat-k 8,16] [--pair-kib 256,1024] [--sizes 64,256,1024]
[--dense 1024] [--exact 256] [--full] [--packet] [--tolerance T]. Not a test: figures depend on
the machine (the README's bench-flow table is written from a run's rows; docs/flow_model.md says
how to compare two versions).

``--against PATH`` (another checkout's ``netsim/fabric/flow.py``, e.g. a clean clone of an
earlier commit) adds that version's flow rows (``flow@NAME``, ``--against-name``), each run
alternately with this version's in this process (``--repeat N`` runs of each, the fastest
kept), so that a before/after ratio is taken on the same machine state.

``--compile``: instead, the compile time of the flow kernels a layer run uses (what a first run
after install pays): a subprocess with an empty numba cache types a small layer-like use of
:class:`~netsim.fabric.flow.FlowFabric` (arrivals into the kept table, ``run_until``), then a
second one compiles each of those kernels' signatures, callees first, and prints CPU seconds
per kernel (each kernel's own compilation: its callees are compiled by then).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from netsim.tools.docblock import commit_line, table_step


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


# the flow kernels a layer run can reach, callees before callers (names of several versions)
_KERNELS = ["kheap_push", "kheap_pop", "heap_push", "heap_pop", "advance", "_store_paths",
            "join_components",
            "link_csr", "csr_append", "maxmin_csr", "single_link_rates", "_subtract_usage",
            "maxmin_rates", "_rates", "_next_time", "run_until", "run_until_rates"]


def _kernel(name: str):
    import netsim.fabric.flow as F
    import netsim.fabric.heap as H

    return getattr(F, name, None) or getattr(H, name, None)


def _layer_like_use() -> None:
    """What the layer engine does with a fabric: flows, run_until, arrivals, run_until."""
    from netsim.fabric.flow import FlowFabric
    from netsim.plugins import resolve

    _, xbar = resolve("topologies", "crossbar")
    f = FlowFabric(xbar(gpus=8).freeze(), tolerance=1e-3)
    f.add_flows(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([1e6, 2e6, 3e6]))
    left = np.full(1, 10, np.int64)
    f.run_until(1e-6, left, np.zeros(1), np.zeros(1, np.bool_))
    f.add_flows(np.array([2, 3, 0, 4, 5, 6, 7, 1, 2]), np.array([1, 2, 3, 5, 6, 7, 4, 0, 0]),
                np.arange(1, 10) * 1e6)
    f.run_until(np.inf, left, np.zeros(1), np.zeros(1, np.bool_))
    f.next_event_time()


def compile_seconds() -> None:
    """``--compile`` (module doc): CPU seconds per kernel, each in a fresh numba cache."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sig_file = os.path.join(tmp, "signatures.pkl")
        for flag, cache in (("--_signatures", "a"), ("--_compile", "b")):
            env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, cache))
            subprocess.run([sys.executable, __file__, flag, sig_file], env=env, check=True)


def _signatures(path: str) -> None:
    """Write the signatures a layer-like use types, per kernel, to ``path`` (pickle)."""
    import pickle

    _layer_like_use()
    out = {}
    for name in _KERNELS:
        d = _kernel(name)
        if d is not None and d.signatures:
            out[name] = list(d.signatures)
    with open(path, "wb") as fh:
        pickle.dump(out, fh)


def _compile(path: str) -> None:
    """Compile the signatures in ``path``, kernel by kernel, and print CPU seconds."""
    import pickle

    from numba import njit

    with open(path, "rb") as fh:
        sigs = pickle.load(fh)
    njit(lambda x: x + 1)(1)  # numba's one-off start-up, outside the figures
    total = 0.0
    print(f"{'kernel':>18} {'signatures':>10} {'compile_cpu_s':>13}")
    for name in _KERNELS:
        if name not in sigs:
            continue
        d = _kernel(name)
        t0 = time.process_time()
        for s in sigs[name]:
            d.compile(s)
        dt = time.process_time() - t0
        total += dt
        print(f"{name:>18} {len(sigs[name]):>10} {dt:>13.2f}")
    print(f"{'total':>18} {sum(len(v) for v in sigs.values()):>10} {total:>13.2f}")


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --against: another version's FlowFabric, run alternately with this one (see load_against)
AGAINST: dict = {}


def load_against(path: str):
    """``FlowFabric`` of another checkout's ``netsim/fabric/flow.py`` (e.g. a clean clone of an
    earlier commit), loaded as a module of its own beside this one, so that both versions run in
    this process, alternately, on the same machine state (it imports this checkout's heap)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("flow_against", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["flow_against"] = mod
    spec.loader.exec_module(mod)
    return mod.FlowFabric


def leaf_spine(n: int):
    """The builder of the leaf-spine that the MoE, dense and exact cases run on at ``n`` GPUs."""
    from netsim.plugins import resolve

    _, ls = resolve("topologies", "leaf_spine")
    return lambda: ls(gpus=n, servers_per_leaf=2 if n <= 64 else 4, spines=8)


def retire(fab, table, f: int) -> int:
    """Take finished flow ``f`` off ``fab``'s kept table ``table`` and mark its component dirty,
    as the full solver's kernel loop does; returns the component."""
    from netsim.fabric.flow import _retire

    _retire(f, table[6], fab.path_ptr, fab.path_links, table[5])
    r = fab._lcomp[fab.path_links[fab.path_ptr[f]]]
    fab._cdirty[r] = True
    return r


def full_solver_events(fab, tolerance: float, on_event=None) -> tuple[int, int, float, float]:
    """Run ``fab`` (flows added, nothing arriving later) to completion with the full solver's
    steps called one by one from Python, so that a probe can look between them: per event one
    filling (``maxmin_csr`` on the kept table) and one ``advance``; ``on_event(fab, nd)`` sees
    the event's ``nd`` completed flows, ``fab.active[fab.n_act - nd : fab.n_act]``, before
    they are retired. The events and finish times are ``FlowFabric.run_until``'s. Returns
    (events, flows refilled, seconds in the fillings, seconds in the rest)."""
    import netsim.fabric.flow as F

    table = fab._table(1)
    tbuf = np.empty(fab.n_act)
    events = refilled = 0
    t_fill = t_rest = 0.0
    while fab.n_act:
        t0 = time.perf_counter()
        refilled += F.maxmin_csr(*table, fab.cap, fab.rate, fab._lcomp, fab._cdirty,
                                 fab._cmask, tolerance == 0.0)
        t1 = time.perf_counter()
        t, nd = F.advance(fab.active, fab.n_act, fab._rem, fab.bytes, fab.rate, fab.finish,
                          fab.now, np.inf, tolerance, tbuf)
        if nd <= 0:
            raise RuntimeError("flow fabric stalled")
        if on_event is not None:
            on_event(fab, nd)
        for f in fab.active[fab.n_act - nd: fab.n_act]:
            retire(fab, table, f)
        fab.n_act -= nd
        fab.now = t
        events += 1
        t_fill += t1 - t0
        t_rest += time.perf_counter() - t1
    return events, refilled, t_fill, t_rest


def run_flow(build, m: np.ndarray, tolerance: float, solver: str, fabric=None) -> dict:
    """One flow-model run of matrix ``m`` on the topology ``build()`` returns (``fabric``: the
    FlowFabric class, this checkout's by default)."""
    from netsim.fabric.flow import FlowFabric

    FlowFabric = fabric or FlowFabric
    t0 = time.perf_counter()
    ft = build().freeze()
    t1 = time.perf_counter()
    src, dst = np.nonzero(m)
    fab = FlowFabric(ft, tolerance=tolerance, capacity=len(src) + 1, solver=solver)
    fab.add_flows(src, dst, m[src, dst])
    t2 = time.perf_counter()
    fab.run_to_completion()
    t3 = time.perf_counter()
    assert np.allclose(fab.rem[: fab.n], 0)
    per = fab.refilled / max(fab.recomputes, 1)
    return dict(flows=len(src), events=fab.events, recomputes=fab.recomputes, per_rc=per,
                build_s=t1 - t0, route_s=t2 - t1, sim_s=t3 - t2,
                makespan_ms=1e3 * float(fab.delivered_at().max()), rss=_rss(),
                merge=fab.n / _merge_classes(fab))


def _merge_classes(fab) -> int:
    """Classes of flows with the same set of (constraint) links and the same bytes (counted
    after the timings)."""
    n = fab.n
    pp = fab.path_ptr[: n + 1]
    ln = np.diff(pp)
    rows = np.full((n, int(ln.max()) + 2), -1.0)
    rows[:, 0] = fab.bytes[:n]
    rows[:, 1] = ln
    pos = np.arange(pp[-1]) - np.repeat(pp[:-1], ln)
    links = fab.path_links[: pp[-1]]
    order = np.lexsort((links, np.repeat(np.arange(n), ln)))  # each flow's links sorted
    rows[np.repeat(np.arange(n), ln), 2 + pos] = links[order]
    return len(np.unique(rows, axis=0))


def run_packet(build, m: np.ndarray) -> dict:
    """The packet model on the same matrix (planning counted as routing)."""
    from netsim.fabric.packet import PacketConfig, simulate_packets

    t0 = time.perf_counter()
    ft = build().freeze()
    t1 = time.perf_counter()
    src, dst = np.nonzero(m)
    r = simulate_packets(ft, src, dst, m[src, dst], np.zeros(len(src)), PacketConfig())
    t2 = time.perf_counter()
    assert r.delivered_packets == r.packets
    return dict(flows=len(src), events=r.packets, recomputes=0, per_rc=0.0, build_s=t1 - t0,
                route_s=0.0, sim_s=t2 - t1, makespan_ms=1e3 * r.makespan_s, rss=_rss())


HEAD = (f"{'case':>22} {'model':>16} {'flows':>8} {'events':>9} {'recomp':>7} {'flows/rc':>9} "
        f"{'build_s':>7} {'route_s':>7} {'sim_s':>8} {'total_s':>8} {'x_flow':>7} "
        f"{'makespan_ms':>11} {'rss_MiB':>7} {'merge':>6}")


ROWS: list[dict] = []
BEGIN, END = "<!-- bench-flow -->", "<!-- /bench-flow -->"


def show(case: str, model: str, r: dict, ref: float) -> None:
    tot = r["build_s"] + r["route_s"] + r["sim_s"]
    ROWS.append(dict(case=case, model=model, **r, total_s=tot, x_flow=tot / ref))
    print(f"{case:>22} {model:>16} {r['flows']:>8} {r['events']:>9} {r['recomputes']:>7} "
          f"{r['per_rc']:>9.0f} {r['build_s']:>7.3f} {r['route_s']:>7.3f} {r['sim_s']:>8.3f} "
          f"{tot:>8.3f} {tot / ref:>7.2f} {r['makespan_ms']:>11.5f} {r['rss']:>7.0f} "
          f"{r.get('merge', 0.0):>6.2f}", flush=True)


def _best(build, m, tol, solver, repeat: int) -> tuple[dict, dict | None]:
    """This version's run and, with ``--against``, the other's: ``repeat`` of each, alternating,
    the fastest (total time) of each kept."""
    def total(r):
        return r["build_s"] + r["route_s"] + r["sim_s"]

    mine = other = None
    for _ in range(repeat):
        r = run_flow(build, m, tol, solver)
        mine = r if mine is None or total(r) < total(mine) else mine
        if AGAINST:
            r = run_flow(build, m, tol, solver, AGAINST["cls"])
            other = r if other is None or total(r) < total(other) else other
    return mine, other


def case(name: str, build, m: np.ndarray, tol: float, full: bool, packet: bool,
         repeat: int = 1) -> None:
    r, o = _best(build, m, tol, "auto", repeat)
    ref = r["build_s"] + r["route_s"] + r["sim_s"]
    show(name, "flow", r, ref)
    if o is not None:
        show(name, "flow@" + AGAINST["name"], o, ref)
    if full and tol > 0:
        r, o = _best(build, m, tol, "full", repeat)
        show(name, "flow-full", r, ref)
        if o is not None:
            show(name, "flow-full@" + AGAINST["name"], o, ref)
    if packet:
        show(name, "packet", run_packet(build, m), ref)


def main() -> None:
    from netsim.fabric.flow import SOLVERS
    from netsim.plugins import resolve

    ap = argparse.ArgumentParser()
    ap.add_argument("--tolerance", type=float, default=1e-3, help="flow event merging (> 0)")
    ap.add_argument("--fat-k", default="8,16", help="fat-tree arities of the all-to-all case")
    ap.add_argument("--pair-kib", default="256,1024", help="bytes per GPU pair, KiB")
    ap.add_argument("--sizes", default="64,256,1024", help="GPU counts of the MoE dispatch case")
    ap.add_argument("--dense", default="1024", help="GPU counts of the dense case ('' = none)")
    ap.add_argument("--exact", default="256", help="GPU counts of the exact-mode case ('' = none)")
    ap.add_argument("--full", action="store_true", help="also the full-recomputation solver")
    ap.add_argument("--packet", action="store_true", help="also the packet model (fat-tree)")
    ap.add_argument("--out", default="", help="also write the rows to this Parquet file")
    ap.add_argument("--table", default="", help="print a Markdown table of these Parquet files "
                    "(comma-separated, written by --out) and exit")
    ap.add_argument("--write", default="", help="with --table: write the table into this"
                    " Markdown file, between its bench-flow markers")
    ap.add_argument("--check", default="", help="with --table: exit 1 if this file's table"
                    " differs")
    ap.add_argument("--against", default="", help="another checkout's netsim/fabric/flow.py: "
                    "its flow rows too, run alternately with this one's ('flow@NAME')")
    ap.add_argument("--against-name", default="before", help="NAME of --against's rows")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each flow row (and of its "
                    "--against row, alternating); the fastest is printed")
    ap.add_argument("--compile", action="store_true",
                    help="print the layer-run flow kernels' compile seconds and exit")
    ap.add_argument("--_signatures", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_compile", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        sys.exit(table_step(args.table, table, args.write or args.check, bool(args.check),
                            BEGIN, END, "the bench_flow table"))
    if args._signatures:
        _signatures(args._signatures)
        return
    if args._compile:
        _compile(args._compile)
        return
    if args.compile:
        compile_seconds()
        return
    _, fat = resolve("topologies", "fat_tree")
    leaf = leaf_spine

    if args.against:
        AGAINST.update(cls=load_against(args.against), name=args.against_name)
    warm = dispatch_matrix(16, "uniform")  # compile / load every kernel outside the timings
    for fabric in [None] + ([AGAINST["cls"]] if AGAINST else []):
        for solver in SOLVERS:
            run_flow(leaf(16), warm, args.tolerance, solver, fabric)
        run_flow(leaf(16), warm, 0.0, "auto", fabric)
    if args.packet:
        run_packet(leaf(16), warm)
    print(HEAD)
    for k in [int(x) for x in args.fat_k.split(",") if x]:
        n = k ** 3 // 4
        for kib in [float(x) for x in args.pair_kib.split(",") if x]:
            m = np.full((n, n), kib * 1024.0)
            np.fill_diagonal(m, 0.0)
            case(f"fattree{n}x{kib:g}KiB", lambda k=k: fat(k=k, latency_us=1.0), m,
                 args.tolerance, args.full, args.packet, args.repeat)
    for n in [int(x) for x in args.sizes.split(",") if x]:
        for routing in ("uniform", "zipf:1.2") if n == 256 else ("uniform",):
            case(f"moe{n}-{routing}", leaf(n), dispatch_matrix(n, routing), args.tolerance,
                 args.full, False, args.repeat)
    for n in [int(x) for x in args.dense.split(",") if x]:
        case(f"dense{n}", leaf(n), dispatch_matrix(n, "dense"), args.tolerance, args.full, False,
             args.repeat)
    for n in [int(x) for x in args.exact.split(",") if x]:
        case(f"exact{n}-uniform", leaf(n), dispatch_matrix(n, "uniform"), 0.0, False, False,
             args.repeat)
    if args.out:
        import pandas as pd

        from netsim.experiment.sweep import git_commit

        pd.DataFrame(ROWS).assign(commit=git_commit(), repeat=args.repeat).to_parquet(args.out)


def table(paths: str) -> str:
    """The rows of ``--out`` files (comma-separated) as one Markdown table (for
    docs/flow_model.md and the README), each row labelled with its file's name (``run``)."""
    from pathlib import Path

    import pandas as pd

    files = [p for p in paths.split(",") if p]
    d = pd.concat([pd.read_parquet(p).assign(run=Path(p).stem) for p in files],
                  ignore_index=True)
    cols = ["run", "case", "model", "flows", "events", "recomputes", "per_rc", "build_s", "route_s",
            "sim_s", "total_s", "x_flow", "makespan_ms", "merge"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in d.iterrows():
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    checks = targets(d)
    if checks:
        lines += [""] + checks
    return "\n".join(lines)


#: the flow model's targets: (case, what, bound) -- ``packet``: the packet row's total over the
#: flow row's (x_flow) at least ``bound``; ``flow``: the flow row's total seconds below ``bound``
TARGETS = (("fattree1024x256KiB", "packet", 10.0), ("fattree1024x1024KiB", "packet", 10.0),
           ("moe1024-uniform", "flow", 2.0), ("dense1024", "flow", 5.0),
           ("exact256-uniform", "flow", 10.0))


def targets(d) -> list[str]:
    """One line per target whose rows are in ``d`` (a run's rows, :func:`table`): the figure,
    the target and whether this run meets it, then the run's commit when the rows carry it."""
    out = []
    for case, what, bound in TARGETS:
        r = d[(d["case"] == case) & (d["model"] == what)]
        if r.empty:
            continue
        r = r.iloc[0]
        if what == "packet":
            fig, ok = f"packet / flow time {r['x_flow']:.3g}x (target >= {bound:g}x)", \
                r["x_flow"] >= bound
        else:
            fig, ok = f"flow total {r['total_s']:.3g} s (target < {bound:g} s)", \
                r["total_s"] < bound
        out.append(f"- {case}: {fig}: {'met' if ok else 'not met'} in this run.")
    line = commit_line(d, f", best of {int(d['repeat'].iloc[0])}" if "repeat" in d else "")
    if out and line:
        out.append(f"- {line}")
    return out


if __name__ == "__main__":
    main()
