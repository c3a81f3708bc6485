"""Packet-model benchmark: uniform all-to-all, 1 MiB per GPU pair, on leaf_spine (64 and 256 GPUs).

Prints, per case: GPUs, flows, packets, packet-hops, wall time of :func:`simulate_packets`
(planning + kernel), packet-hops per second, the same figure for a bare numba Lindley loop over
the same number of hops (the ceiling on this machine: arrivals already sorted per link, read from
memory, nothing else), their ratio, the packet and flow makespans, the process's peak RSS
(resource.getrusage, measured before the bare loop runs), the arrivals at links fed by several
links (``merged``: those the engine must order) and ``cap1``: the ratio a one-thread engine
could reach if ordering those arrivals with the engine's own merge step (timed alone on
synthetic runs, printed first) were all it did. Both loops: best of ``--repeat`` calls.
The bare loop is a ceiling, not a like-for-like engine: it does no ordering (the simulator sorts
the arrivals of every link fed by several links, about three per inter-leaf packet), no next-hop
look-ups and no scattered buffer writes; and it runs on one thread, where the simulator uses up
to 4 (``--threads``; 0 = automatic). The measured ratios are the README's bench-packet table,
written from a run's rows (in earlier sessions' printed output, 0.155 and 0.108 before the state
numbering, buffer pads, serialiser function and merge-window changes; 0.026-0.036 with the
earlier loser-tree engine).
Run: python benchmarks/bench_packet.py [--sizes 64,256] [--events] [--multipath ecmp|spray]
[--threads N[,N...]] [--repeat R] (threads 0: automatic, the usable cores up to 4; several
counts run each size once per count). ``--out FILE.parquet`` also writes the printed rows (one
per case, with the commit); ``--table FILE --write README.md`` (or ``--check``) renders them as
the README's table between its bench-packet markers.
Not a test: figures depend on the machine (docs/packet_model.md has the measured ones).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
from numba import njit

from netsim.fabric.packet import _CHUNK, _merge_scratch, _merge_window
from netsim.tools.docblock import table_step

BEGIN, END = "<!-- bench-packet -->", "<!-- /bench-packet -->"

CHUNK = 1 << 22  # 32 MiB of arrival times: streamed from memory, not from cache


@njit(cache=True)
def bare_lindley(arr_t, svc, n_hops, seg_len, lat):
    """Lindley recursion ``d = max(a, d_prev) + s`` over ``n_hops`` hops, links of ``seg_len``
    consecutive arrivals each, re-reading ``arr_t`` (sorted) chunk by chunk."""
    acc = 0.0
    done = 0
    m = len(arr_t)
    while done < n_hops:
        n = min(m, n_hops - done)
        b = -np.inf
        for i in range(n):
            if i % seg_len == 0:
                b = -np.inf
            t = arr_t[i]
            st = t if t > b else b
            b = st + svc
            acc += b + lat
        done += n
    return acc


def ceiling(n_hops: int, repeat: int) -> float:
    """Hops per second of the bare loop over ``n_hops`` hops (best of ``repeat``)."""
    rng = np.random.default_rng(0)
    arr = np.cumsum(rng.exponential(80e-9, CHUNK))
    bare_lindley(arr, 82e-9, 1000, 4096, 5e-7)  # compile / load from cache
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        bare_lindley(arr, 82e-9, n_hops, 4096, 5e-7)
        best = min(best, time.perf_counter() - t0)
    return n_hops / best


@njit(cache=True)
def order_only(buf_t, buf_c, k, m, W):
    """Order ``k`` time-sorted runs of ``m`` arrivals each (``buf_t/buf_c``, run after run) with
    the engine's own window merge, and nothing else; returns a checksum."""
    ct, cc, bk, cnt, gt, gc, pos, end, take = _merge_scratch(k * W + 1, k)
    for j in range(k):
        pos[j] = j * m
        end[j] = pos[j] + m
    left = k * m
    acc = 0.0
    while left > 0:
        n = _merge_window(k, W, pos, end, take, buf_t, buf_c, ct, cc, bk, cnt, gt, gc)
        acc += ct[n - 1]
        left -= n
    return acc


def ordering_ns(k: int = 16, m: int = 1 << 16) -> float:
    """Nanoseconds per arrival of the ordering step alone (:func:`_merge_window`, as in the
    engine's merge links with ``k`` feeders): ``k`` runs whose arrivals are spaced by one packet
    time plus an exponential gap of mean ``k - 1`` packet times (together, one arrival per
    packet time, as on a leaf uplink under uniform all-to-all); best of 5."""
    s = 82e-9
    rng = np.random.default_rng(1)
    buf_t = np.concatenate([np.cumsum(s + s * rng.exponential(k - 1, m)) for _ in range(k)])
    buf_c = np.arange(k * m, dtype=np.int32)
    W = max(8, _CHUNK // k)
    order_only(buf_t, buf_c, k, m, W)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        order_only(buf_t, buf_c, k, m, W)
        best = min(best, time.perf_counter() - t0)
    return 1e9 * best / (k * m)


def merged_arrivals(ft, src, dst, nb, multipath: str) -> int:
    """Packet arrivals at links fed by several links (those the engine must order)."""
    from netsim.fabric.packet import PacketConfig, _plan

    plan = _plan(ft, src, dst, nb, np.zeros(len(src)), PacketConfig(multipath=multipath))
    return int(plan["edge_cnt"][plan["role"][plan["edge_m"]] == 3].sum())


def one(n: int, multipath: str, engine: str, threads: int, repeat: int) -> dict:
    from netsim.fabric.flow import FlowFabric
    from netsim.fabric.packet import PacketConfig, _threads, simulate_packets
    from netsim.plugins import resolve

    _, build = resolve("topologies", "leaf_spine")
    ft = build(gpus=n).freeze()
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    nb = np.full(len(src), float(2**20))
    cfg = PacketConfig(multipath=multipath, engine=engine, threads=threads)
    r = min((simulate_packets(ft, src, dst, nb, np.zeros(len(src)), cfg)
             for _ in range(repeat)), key=lambda x: x.wall_s)
    assert r.delivered_packets == r.packets
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    f = FlowFabric(ft)
    f.add_flows(src, dst, nb)
    f.run_to_completion()
    flow_ms = 1e3 * float(f.delivered_at().max())
    return dict(gpus=n, engine=r.engine, multipath=multipath, threads_asked=threads,
                threads=_threads(cfg, r.packets) if r.engine == "lindley" else 1,
                flows=len(src), packets=r.packets, hops=r.packet_hops,
                merged=merged_arrivals(ft, src, dst, nb, multipath),
                wall_s=r.wall_s, rate=r.packet_hops / r.wall_s, makespan_ms=1e3 * r.makespan_s,
                flow_ms=flow_ms, peak_rss_mib=rss, max_queue_kib=r.max_queue_bytes.max() / 1024)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--multipath", default="ecmp", choices=["ecmp", "spray"])
    ap.add_argument("--events", action="store_true", help="also time the event-loop engine (64 GPUs)")
    ap.add_argument("--threads", default="0", help="lindley engine threads, comma-separated: each"
                    " size once per count (0 = auto)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (both loops)")
    ap.add_argument("--out", help="also write the rows to this Parquet file")
    ap.add_argument("--table", help="print the Markdown table of these Parquet files"
                    " (comma-separated, written by --out) and exit")
    ap.add_argument("--write", help="with --table: write it into this Markdown file's block")
    ap.add_argument("--check", help="with --table: exit 1 if this file's block differs")
    args = ap.parse_args()
    if args.table:
        sys.exit(table_step(args.table, table, args.write or args.check, bool(args.check),
                            BEGIN, END, "the bench_packet table"))
    from netsim.experiment.sweep import git_commit
    from netsim.fabric.packet import PacketConfig, simulate_packets
    from netsim.topology import Topology

    t = Topology("warm")
    a, s, b = t.add_gpu(), t.add_switch(), t.add_gpu()
    t.add_link(a, s, 1e9)
    t.add_link(s, b, 1e9)
    for eng in ("lindley", "events"):  # compile / load the kernels outside the timings
        simulate_packets(t.freeze(), [0, 1], [1, 0], [1e5, 1e5], [0.0, 0.0],
                         PacketConfig(engine=eng, multipath=args.multipath))
    order = ordering_ns()
    print(f"ordering step alone (merge window, 16 runs): {order:.1f} ns per arrival")
    threads = [int(x) for x in args.threads.split(",") if x]
    cases = [(int(x), "auto", th) for x in args.sizes.split(",") for th in threads]
    if args.events:
        cases.insert(1, (64, "events", threads[0]))
    commit = git_commit()
    print(f"{'gpus':>5} {'engine':>8} {'thr':>3} {'flows':>7} {'packets':>10} {'hops':>11} "
          f"{'wall_s':>7} {'Mhops/s':>8} {'bare':>8} {'ratio':>6} {'pkt_ms':>8} {'flow_ms':>8} "
          f"{'diff%':>6} {'rss_MiB':>8} {'maxq_KiB':>9} {'merged':>10} {'cap1':>5}")
    rows = []
    for n, eng, th in cases:
        r = one(n, args.multipath, eng, th, args.repeat)
        r["bare_rate"] = ceiling(r["hops"], args.repeat)
        r |= dict(ratio=r["rate"] / r["bare_rate"],
                  diff_pct=100 * (r["makespan_ms"] / r["flow_ms"] - 1), order_ns=order,
                  cap1=r["hops"] / r["bare_rate"] / (r["merged"] * order * 1e-9),
                  repeat=args.repeat, commit=commit)
        print(f"{r['gpus']:>5} {r['engine']:>8} {r['threads']:>3} {r['flows']:>7} "
              f"{r['packets']:>10} {r['hops']:>11} {r['wall_s']:>7.2f} {r['rate'] / 1e6:>8.2f} "
              f"{r['bare_rate'] / 1e6:>8.1f} {r['ratio']:>6.3f} {r['makespan_ms']:>8.4f} "
              f"{r['flow_ms']:>8.4f} {r['diff_pct']:>6.2f} {r['peak_rss_mib']:>8.0f} "
              f"{r['max_queue_kib']:>9.0f} {r['merged']:>10} {r['cap1']:>5.2f}", flush=True)
        rows.append(r)
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(args.out, index=False)


def table(paths: str) -> str:
    """The Markdown table of a run's rows (``--out``; comma-separated files are concatenated):
    per case the wall time (s, best of ``repeat``), packet-hops per second beside the bare
    one-thread loop's (millions), their ratio, ``cap1``, the process's peak RSS so far (GiB) and
    the packet makespan against the flow model's; then the ordering step's cost and the commit."""
    import pandas as pd

    df = pd.concat([pd.read_parquet(p) for p in paths.split(",") if p], ignore_index=True)
    out = ["| GPUs | engine | threads | packets | wall_s | Mhops/s | bare Mhops/s | ratio | cap1 "
           "| peak GiB | packet/flow makespan |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        out.append(f"| {r.gpus} | {r.engine} | {r.threads} | {r.packets:,} | {r.wall_s:.3g} | "
                   f"{r.rate / 1e6:.3g} | {r.bare_rate / 1e6:.3g} | {r.ratio:.3f} | {r.cap1:.2f} | "
                   f"{r.peak_rss_mib / 1024:.2f} | {r.makespan_ms / r.flow_ms:.4f} |")
    orders = ", ".join(f"{x:.1f}" for x in df["order_ns"].unique())
    commits = ", ".join(f"`{c[:12]}`" for c in df["commit"].unique())
    mp = ", ".join(df["multipath"].unique())
    out += ["", f"Multipath {mp}; ordering step alone (merge window, 16 runs): {orders} ns "
                f"per arrival; commit {commits}."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
