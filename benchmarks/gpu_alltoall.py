#!/usr/bin/env python3
"""Time ``torch.distributed.all_to_all_single`` on one host: uniform and skewed (MoE) splits.

One process per GPU (``torch.multiprocessing.spawn``; no ``torchrun`` needed), NCCL on
GPUs or gloo on the CPU. Only PyTorch, numpy and the standard library are needed: the
skewed matrices are ``.npy`` files written beforehand by
``benchmarks/make_alltoall_matrices.py`` (netsim), so the GPU machine needs no netsim.

What is timed
-------------
* ``kind=uniform``: every rank sends ``bytes_per_pair`` bytes to every rank (itself
  included, as ``all_to_all_single`` does: the self-split is a local copy), for
  ``bytes_per_pair`` in powers of two from ``--min-bytes`` (1 KiB) to ``--max-bytes``
  (1 GiB with NCCL; 256 KiB with gloo; ``--quick`` stops at 16 MiB / 64 KiB).
  Sizes that do not fit in device memory (``n * bytes_per_pair`` for each of the send and
  the receive buffer) are the user's to avoid: 1 GiB per pair on 8 GPUs needs 16 GiB.
* ``kind=skewed``: for every matrix ``M`` (``n x n`` int64 bytes, ``n`` = world size) under
  ``--matrices``, rank ``r`` sends ``M[r, j]`` bytes to rank ``j`` and receives
  ``M[i, r]`` from rank ``i`` (``input_split_sizes = M[r]``, ``output_split_sizes = M[:, r]``).
  ``--max-skewed-bytes`` skips matrices whose busiest sender sends more (with gloo
  ``--quick``: 4 MiB, which keeps the Mixtral T=256 matrices).
The payload is ``uint8`` (bytes are bytes to an all-to-all), filled with random data.

How it is timed
---------------
One *repeat* is: a barrier, then ``inner`` back-to-back ``all_to_all_single`` calls on one
stream, bracketed by CUDA events on every rank (``perf_counter`` around a blocking call
with gloo); the repeat's time is the **maximum over ranks** (``all_reduce(MAX)``) of the
elapsed time divided by ``inner``. ``inner`` is chosen from a warm-up so that one repeat
lasts about ``--batch-ms`` (1 ms; ``inner = 1`` for calls that take longer), which
amortises the skew between ranks' start times, as nccl-tests does. Small messages thus
measure the steady-state time per all-to-all including the host's launch cost (the CPU
may enqueue more slowly than the GPUs finish). Repeats continue until ``--target-s``
(0.25 s) of timed work or ``--max-repeats`` (100), at least ``--min-repeats`` (10); the
rule reads only the all-reduced times, so every rank stops after the same repeat. After ``--warmup``
untimed calls per point. Median, min and max over repeats go to the CSV.

``--graph`` (NCCL): the ``inner`` calls are captured once per point in a CUDA graph and a
repeat is one replay (``timing=graph``): the GPU-side time of back-to-back all-to-alls,
without the host's cost of a ``torch.distributed`` call. Without it, ``timing=eager``.

Output
------
``--out`` (default ``alltoall.csv``) with columns ``world_size, kind, matrix_id,
bytes_per_pair, total_bytes, max_row_offdiag_bytes, max_col_offdiag_bytes, median_s, min_s,
max_s, repeats, inner, backend, timing`` (``bytes_per_pair`` is empty for skewed rows;
``total_bytes`` is the sum of the whole matrix, diagonal included), and a sidecar JSON (same
stem, ``.json``) with the date, GPU, torch / NCCL / CUDA / driver versions and settings.
``--append`` adds rows to an existing CSV (to collect several world sizes in one file; the
JSON then lists every run).

Examples::

    NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \\
        python benchmarks/gpu_alltoall.py --world-size 8 --out h200x8_alltoall.csv
    python benchmarks/gpu_alltoall.py --backend gloo --world-size 2 --quick --out /tmp/a.csv

NVLink multicast (NVLS) is switched off in this script's environment before anything
else is imported (``NCCL_NVLS_ENABLE=0``, ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``,
``NVSHMEM_DISABLE_NVLS=1``); an all-to-all does not use it anyway.
"""
from __future__ import annotations

import os

# Never use NVLink multicast (shared machines): set before torch / NCCL load.
for _k, _v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
               ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ[_k] = _v

import argparse  # noqa: E402
import csv  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MATRICES = ROOT / "workloads" / "calibration" / "alltoall_matrices"
COLUMNS = ["world_size", "kind", "matrix_id", "bytes_per_pair", "total_bytes",
           "max_row_offdiag_bytes", "max_col_offdiag_bytes", "median_s", "min_s", "max_s",
           "repeats", "inner", "backend", "timing"]
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def sizes(lo: int, hi: int) -> list[int]:
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= 2
    return out


def load_matrices(folder: Path, n: int) -> list[tuple[str, np.ndarray]]:
    """Every ``n x n`` matrix in ``folder`` (sorted by name); others are skipped."""
    out = []
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.npy")):
        m = np.load(p, allow_pickle=False)
        if m.shape == (n, n):
            if (m < 0).any() or not np.all(m == np.floor(m)):
                raise ValueError(f"{p}: expected non-negative integer bytes")
            out.append((p.stem, m.astype(np.int64)))
    return out


def _offdiag(m: np.ndarray) -> np.ndarray:
    return m - np.diag(np.diag(m))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ worker


def _worker(rank: int, args, port: int, out_rows: str):
    import torch
    import torch.distributed as dist

    n = args.world_size
    cuda = args.backend == "nccl"
    if cuda:
        torch.cuda.set_device(rank)
        dev = torch.device("cuda", rank)
    else:
        torch.set_num_threads(1)
        dev = torch.device("cpu")
    kw = dict(device_id=dev) if cuda else {}
    dist.init_process_group(args.backend, init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=n, timeout=_dt.timedelta(seconds=300), **kw)
    gen = torch.Generator(device=dev).manual_seed(1234 + rank)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    cases = []  # (kind, matrix_id, matrix)
    for s in sizes(args.min_bytes, args.max_bytes):
        cases.append(("uniform", "", np.full((n, n), s, np.int64)))
    if not args.no_skewed:
        for mid, m in load_matrices(args.matrices, n):
            if args.max_skewed_bytes and m.sum(axis=1).max() > args.max_skewed_bytes:
                continue
            cases.append(("skewed", mid, m))

    max_send = max(int(m.sum(axis=1).max()) for _, _, m in cases)
    max_recv = max(int(m.sum(axis=0).max()) for _, _, m in cases)
    send = torch.randint(0, 256, (max_send,), dtype=torch.uint8, device=dev, generator=gen)
    recv = torch.empty(max_recv, dtype=torch.uint8, device=dev)
    t_max = torch.zeros(1, dtype=torch.float64, device=dev)

    rows = []
    for kind, mid, m in cases:
        in_splits = [int(x) for x in m[rank]]
        out_splits = [int(x) for x in m[:, rank]]
        sb = send[: sum(in_splits)]
        rb = recv[: sum(out_splits)]

        def call():
            dist.all_to_all_single(rb, sb, out_splits, in_splits)

        graph = None

        def batch(inner: int):
            if graph is not None:
                graph.replay()  # ``inner`` calls captured once
            else:
                for _ in range(inner):
                    call()

        def timed(inner: int) -> float:
            dist.barrier()
            sync()
            if cuda:
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                batch(inner)
                e1.record()
                e1.synchronize()
                dt = e0.elapsed_time(e1) * 1e-3 / inner
            else:
                t0 = time.perf_counter()
                for _ in range(inner):
                    call()
                dt = (time.perf_counter() - t0) / inner
            t_max.fill_(dt)
            dist.all_reduce(t_max, op=dist.ReduceOp.MAX)
            return float(t_max.item())

        for _ in range(args.warmup):
            call()
        sync()
        est = timed(1)
        inner = max(1, min(args.max_inner, int(args.batch_ms * 1e-3 / max(est, 1e-9))))
        if args.graph:
            # capture ``inner`` back-to-back calls in one CUDA graph (side stream, after a
            # warm-up there); replays then carry no host launch cost
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(2):
                    call()
            torch.cuda.current_stream(dev).wait_stream(side)
            sync()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(inner):
                    call()
            sync()
            for _ in range(2):
                graph.replay()
            sync()
        # The stopping rule uses only all-reduced times (identical on every rank), so all
        # ranks run the same number of repeats: no rank-local clock may decide it.
        ts, spent = [], 0.0
        while True:
            t = timed(inner)
            ts.append(t)
            spent += t * inner
            if len(ts) >= args.max_repeats or (len(ts) >= args.min_repeats
                                               and spent >= args.target_s):
                break
        off = _offdiag(m)
        rows.append(dict(
            world_size=n, kind=kind, matrix_id=mid,
            bytes_per_pair=int(m[0, 0]) if kind == "uniform" else "",
            total_bytes=int(m.sum()), max_row_offdiag_bytes=int(off.sum(1).max()),
            max_col_offdiag_bytes=int(off.sum(0).max()),
            median_s=statistics.median(ts), min_s=min(ts), max_s=max(ts),
            repeats=len(ts), inner=inner, backend=args.backend,
            timing="graph" if graph is not None else "eager"))
        if graph is not None:
            sync()
            graph.reset()
            graph = None
        if rank == 0 and args.verbose:
            r = rows[-1]
            label = f"{r['bytes_per_pair']} B/pair" if kind == "uniform" else mid
            bw = r["max_row_offdiag_bytes"] / r["median_s"] / 1e9
            print(f"n={n} {kind:8s} {label:40s} median {r['median_s'] * 1e6:12.2f} us "
                  f"({bw:7.1f} GB/s/GPU off-diag send) x{len(ts)}*{inner}", flush=True)
    dist.barrier()
    if rank == 0:
        Path(out_rows).write_text(json.dumps(rows))
    dist.destroy_process_group()


# ------------------------------------------------------------------------------------ driver


def versions(backend: str) -> dict:
    import torch

    info = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "script": "benchmarks/gpu_alltoall.py",
        "backend": backend,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname_cpus": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
                                               "NVSHMEM_DISABLE_NVLS", "NCCL_ALGO", "NCCL_PROTO")},
    }
    if backend == "nccl" and torch.cuda.is_available():
        nv = torch.cuda.nccl.version()
        info["nccl_version"] = ".".join(map(str, nv)) if isinstance(nv, tuple) else str(nv)
        info["cuda_version"] = torch.version.cuda
        info["gpu_name"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        try:
            info["driver_version"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30).stdout.split("\n")[0].strip()
            info["nvidia_smi_topo"] = subprocess.run(
                ["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=30).stdout
        except Exception as exc:  # noqa: BLE001
            info["driver_version"] = f"unknown ({exc})"
    else:
        info["gpu_name"] = "cpu"
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("nccl", "gloo"), default="nccl")
    ap.add_argument("--world-size", type=int, default=0,
                    help="processes (GPUs); 0 = all visible GPUs (nccl) or 2 (gloo)")
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--out", type=Path, default=Path("alltoall.csv"))
    ap.add_argument("--append", action="store_true", help="append rows to an existing --out")
    ap.add_argument("--matrices", type=Path, default=DEFAULT_MATRICES)
    ap.add_argument("--no-skewed", action="store_true")
    ap.add_argument("--max-skewed-bytes", type=int, default=-1,
                    help="skip skewed matrices whose largest row sends more (bytes; 0 = no cap;"
                         " default: no cap, 4 MiB with gloo --quick)")
    ap.add_argument("--min-bytes", type=int, default=KiB)
    ap.add_argument("--max-bytes", type=int, default=0, help="largest bytes per pair (0 = default)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-repeats", type=int, default=10)
    ap.add_argument("--max-repeats", type=int, default=100)
    ap.add_argument("--target-s", type=float, default=0.25)
    ap.add_argument("--batch-ms", type=float, default=1.0)
    ap.add_argument("--max-inner", type=int, default=50)
    ap.add_argument("--graph", action="store_true",
                    help="NCCL only: capture the inner calls in a CUDA graph and time its replays"
                         " (GPU-side time without the host's launch cost)")
    ap.add_argument("--quiet", dest="verbose", action="store_false")
    args = ap.parse_args(argv)

    import torch
    import torch.multiprocessing as mp

    if args.backend == "nccl":
        if not torch.cuda.is_available():
            ap.error("--backend nccl needs CUDA GPUs; use --backend gloo on the CPU")
        if args.world_size <= 0:
            args.world_size = torch.cuda.device_count()
        if args.world_size > torch.cuda.device_count():
            ap.error(f"--world-size {args.world_size} > {torch.cuda.device_count()} visible GPUs")
    elif args.world_size <= 0:
        args.world_size = 2
    if args.graph and args.backend != "nccl":
        ap.error("--graph needs --backend nccl (CUDA graphs)")
    if args.world_size < 2:
        ap.error("--world-size must be >= 2")
    if not args.max_bytes:
        args.max_bytes = {("nccl", False): GiB, ("nccl", True): 16 * MiB,
                          ("gloo", False): 256 * KiB, ("gloo", True): 64 * KiB}[
            (args.backend, args.quick)]
    if args.max_skewed_bytes < 0:
        args.max_skewed_bytes = 4 * MiB if (args.quick and args.backend == "gloo") else 0
    if args.quick:
        args.warmup, args.min_repeats = min(args.warmup, 2), min(args.min_repeats, 5)
        args.max_repeats, args.target_s = min(args.max_repeats, 20), min(args.target_s, 0.05)
    if args.min_bytes < 1 or args.max_bytes < args.min_bytes:
        ap.error("need 1 <= --min-bytes <= --max-bytes")

    info = versions(args.backend)
    info.update(world_size=args.world_size, quick=args.quick, min_bytes=args.min_bytes,
                max_bytes=args.max_bytes, warmup=args.warmup, min_repeats=args.min_repeats,
                max_repeats=args.max_repeats, target_s=args.target_s, batch_ms=args.batch_ms,
                max_inner=args.max_inner, graph=args.graph, max_skewed_bytes=args.max_skewed_bytes, dtype="uint8",
                matrices=str(args.matrices.relative_to(ROOT) if args.matrices.is_relative_to(ROOT)
                             else args.matrices),
                timing=("per repeat: barrier, `inner` back-to-back all_to_all_single calls "
                        + ("captured in one CUDA graph, one replay " if args.graph else "")
                        + "timed with CUDA events (perf_counter for gloo), divided by inner, "
                        "max over ranks"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".rows.json.tmp")
    t0 = time.perf_counter()
    mp.spawn(_worker, args=(args, _free_port(), str(tmp)), nprocs=args.world_size, join=True)
    rows = json.loads(tmp.read_text())
    tmp.unlink()
    info["elapsed_s"] = round(time.perf_counter() - t0, 2)
    info["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    new = not (args.append and args.out.exists())
    with open(args.out, "w" if new else "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerows(rows)
    side = args.out.with_suffix(".json")
    runs = []
    if not new and side.exists():
        old = json.loads(side.read_text())
        runs = old.get("runs", [old])
    runs.append(info)
    side.write_text(json.dumps({"runs": runs} if len(runs) > 1 else info, indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {args.out} ({info['elapsed_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
