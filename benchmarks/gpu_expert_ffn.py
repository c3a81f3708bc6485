#!/usr/bin/env python3
"""Measure the time of one MoE expert's SwiGLU FFN versus tokens per expert.

One expert computes ``y = (silu(x @ W1) * (x @ W3)) @ W2`` with ``x`` of shape
``(tokens, hidden)``, ``W1, W3`` of shape ``(hidden, ffn_hidden)`` and ``W2`` of shape
``(ffn_hidden, hidden)``, all bf16: ``6 * tokens * hidden * ffn_hidden`` FLOPs.

What is timed
-------------
* ``kind=single``: one expert, for every tokens-per-expert count in the sweep
  (1 .. 16384: powers of two and 3, 6, 12, ..., 12288 in between).
* ``kind=grouped_uniform`` / ``grouped_zipf``: one MoE layer's expert compute over ``E``
  experts, ``tokens`` (token-expert pairs) split over the experts uniformly or by a
  Zipf law (share of the expert of rank ``r`` proportional to ``r**-1.2``). The split is
  deterministic (expected counts rounded by largest remainder, no sampling), so the
  table is reproducible. Two implementations are timed and told apart by the ``method``
  column:

  - ``loop``: a Python loop over the experts, one SwiGLU FFN each (experts with zero
    tokens are skipped) -- what a plain PyTorch MoE layer does;
  - ``grouped_mm``: ``torch._grouped_mm`` (PyTorch's grouped GEMM, CUTLASS on sm90),
    three grouped GEMMs plus one activation over the concatenated tokens, used only when
    this PyTorch has it, it runs on the device, and it matches the loop numerically.
  ``kind=single`` rows have ``method=dense``.

How it is timed (CUDA)
----------------------
Each measured call is captured once in a CUDA graph (outputs are preallocated, so the
capture allocates nothing) and each repeat is one graph replay bracketed by two CUDA
events; the median, min and max over the repeats are reported. Graph replay removes
Python/dispatcher launch cost, and a sleep kernel keeps the GPU busy while a chunk of
repeats is enqueued, so the numbers are GPU-side times of back-to-back calls: kernel
launch latency on the device, tile under-utilisation at small batches, and HBM traffic
for the weights.
To keep the weights from being served out of L2 (60 MB on an H200) across repeats, the
single-expert measurement rotates over several copies of the weights (at least 2 and
enough to cover ~256 MB), one graph per copy; the grouped measurement touches all
``E`` experts' weights each call anyway. There are warm-up replays before timing.
``--no-graph`` times eager calls instead (then CPU launch overhead is included).

How it is timed (CPU)
---------------------
``--device cpu`` runs eagerly and times each repeat with ``time.perf_counter``; meant
for small shapes in tests (``--quick --shape tiny=64,128``).

Output
------
A CSV (``--out``, default ``expert_ffn.csv``) with columns
``gpu_name, preset, hidden, ffn_hidden, kind, experts, tokens, median_s, min_s, max_s,
repeats, flops, tflops_achieved, method`` and a sidecar JSON next to it (same stem,
``.json``) with the date, GPU, torch/CUDA/cuBLAS/driver versions and the settings.

Only PyTorch (and the standard library) is needed.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# (hidden, ffn_hidden, experts used for the grouped launch)
PRESETS: dict[str, tuple[int, int, int]] = {
    "mixtral_8x7b": (4096, 14336, 8),
    "deepseek_v3": (7168, 2048, 256),
    "qwen3_30b_a3b": (2048, 768, 128),
    "olmoe_1b_7b": (2048, 1024, 64),
    "deepseek_v2_lite": (2048, 1408, 64),
    "switch_base": (768, 3072, 8),
}

TOKENS_FULL = sorted(
    {2**k for k in range(15)}  # 1 .. 16384
    | {3, 6, 12, 24, 48, 96, 192, 384, 768, 1536, 3072, 6144, 12288}
)
TOKENS_QUICK = [1, 4, 16, 64, 256, 1024, 4096, 16384]
GROUPED_TOTALS_FULL = [4096, 32768]
GROUPED_TOTALS_QUICK = [4096]
ZIPF_S = 1.2

COLUMNS = [
    "gpu_name", "preset", "hidden", "ffn_hidden", "kind", "experts", "tokens",
    "median_s", "min_s", "max_s", "repeats", "flops", "tflops_achieved", "method",
]


def ffn_flops(tokens: int, hidden: int, ffn_hidden: int) -> int:
    """FLOPs of one SwiGLU FFN on ``tokens`` tokens (3 GEMMs; the activation is ignored)."""
    return 6 * tokens * hidden * ffn_hidden


def split_tokens(total: int, experts: int, routing: str, s: float = ZIPF_S) -> list[int]:
    """Deterministic split of ``total`` token-expert pairs over ``experts`` experts.

    ``uniform``: as even as integers allow; ``zipf``: expert of rank r (1-based) gets a
    share proportional to ``r**-s``. Expected counts are rounded by largest remainder so
    that they sum to ``total``.
    """
    if routing == "uniform":
        weights = [1.0] * experts
    elif routing == "zipf":
        weights = [(r + 1) ** -s for r in range(experts)]
    else:
        raise ValueError(f"unknown routing {routing!r}")
    tot_w = sum(weights)
    exact = [total * w / tot_w for w in weights]
    counts = [int(math.floor(e)) for e in exact]
    rest = total - sum(counts)
    order = sorted(range(experts), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return counts


# --------------------------------------------------------------------------- timing

class Timer:
    """Times a list of zero-argument callables, cycling over them, one per repeat."""

    def __init__(self, device: str, use_graph: bool, warmup: int, target_s: float,
                 min_repeats: int, max_repeats: int):
        self.device = device
        self.use_graph = use_graph and device == "cuda"
        self.warmup = warmup
        self.target_s = target_s
        self.min_repeats = min_repeats
        self.max_repeats = max_repeats
        self._sleep = getattr(torch.cuda, "_sleep", None) if device == "cuda" else None

    def _prepare(self, fns):
        if not self.use_graph:
            return fns
        # warm up eagerly on a side stream (cuBLAS workspace, autotuning) before capture
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for fn in fns:
                fn()
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        graphs = []
        for fn in fns:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn()
            graphs.append(g.replay)
        torch.cuda.synchronize()
        return graphs

    def measure(self, fns) -> list[float]:
        calls = self._prepare(fns)
        n = len(calls)
        if self.device == "cuda":
            for i in range(max(self.warmup, n)):
                calls[i % n]()
            torch.cuda.synchronize()
            # estimate one call's time to choose the number of repeats
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for i in range(n):
                calls[i]()
            e1.record()
            torch.cuda.synchronize()
            est = max(e0.elapsed_time(e1) / 1e3 / n, 1e-7)
            reps = int(min(self.max_repeats, max(self.min_repeats, self.target_s / est)))
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
            # Keep the GPU busy with a sleep kernel while the CPU enqueues a chunk of
            # repeats, so that host-side launch time does not leak into the events for
            # tiny batches: the timed calls then run back to back on the GPU, as the
            # expert FFNs of a real MoE layer do (they are enqueued ahead of the GPU).
            chunk = 32
            for c0 in range(0, reps, chunk):
                if self._sleep is not None and est < 1e-3:
                    self._sleep(int(4e6))  # ~2 ms at ~2 GHz: covers enqueueing a chunk
                for i in range(c0, min(reps, c0 + chunk)):
                    starts[i].record()
                    calls[i % n]()
                    ends[i].record()
            torch.cuda.synchronize()
            return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
        # CPU: eager, perf_counter
        for i in range(max(self.warmup, 1)):
            calls[i % n]()
        t0 = time.perf_counter()
        calls[0]()
        est = max(time.perf_counter() - t0, 1e-7)
        reps = int(min(self.max_repeats, max(self.min_repeats, self.target_s / est)))
        out = []
        for i in range(reps):
            t0 = time.perf_counter()
            calls[i % n]()
            out.append(time.perf_counter() - t0)
        return out


# --------------------------------------------------------------------------- workloads

def _rand(shape, dtype, device, gen, scale):
    return (torch.randn(shape, dtype=torch.float32, device=device, generator=gen) * scale).to(dtype)


def make_ffn_call(x, w1t, w3t, w2t, a, b, y):
    """One SwiGLU FFN writing into preallocated buffers (capturable, allocation-free).

    Weights are stored as ``nn.Linear`` stores them, ``(out_features, in_features)``,
    and used transposed (``x @ W1 = x @ w1t.T``), as ``F.linear`` does.
    """
    def call():
        torch.mm(x, w1t.t(), out=a)
        torch.mm(x, w3t.t(), out=b)
        F.silu(a, inplace=True)
        a.mul_(b)
        torch.mm(a, w2t.t(), out=y)
    return call


def bench_single(timer, preset, hidden, ffn, tokens_list, device, dtype, gen, l2_cover_bytes):
    wbytes = 3 * hidden * ffn * torch.finfo(dtype).bits // 8
    copies = 1 if device == "cpu" else int(min(32, max(2, math.ceil(l2_cover_bytes / wbytes))))
    sc1, sc2 = hidden ** -0.5, ffn ** -0.5
    weights = [(_rand((ffn, hidden), dtype, device, gen, sc1),
                _rand((ffn, hidden), dtype, device, gen, sc1),
                _rand((hidden, ffn), dtype, device, gen, sc2)) for _ in range(copies)]
    rows = []
    for n in tokens_list:
        x = _rand((n, hidden), dtype, device, gen, 1.0)
        a = torch.empty((n, ffn), dtype=dtype, device=device)
        b = torch.empty_like(a)
        y = torch.empty((n, hidden), dtype=dtype, device=device)
        fns = [make_ffn_call(x, w1, w3, w2, a, b, y) for (w1, w3, w2) in weights]
        times = timer.measure(fns)
        rows.append(_row(preset, hidden, ffn, "single", 1, n, times, "dense"))
        del x, a, b, y, fns
    del weights
    return rows


def _grouped_mm_fn():
    """``torch.nn.functional.grouped_mm`` (public, newer PyTorch) or ``torch._grouped_mm``."""
    fn = getattr(F, "grouped_mm", None)
    if fn is None:
        fn = getattr(torch, "_grouped_mm", None)
    return fn


def bench_grouped(timer, preset, hidden, ffn, experts, totals, device, dtype, gen,
                  try_grouped_mm: bool, log):
    sc1, sc2 = hidden ** -0.5, ffn ** -0.5
    # weights of all experts, stacked nn.Linear-style (E, out, in); the loop uses views
    # W1[e].t(), grouped_mm gets W1.transpose(1, 2): (E, in, out) column-major, the
    # layout its CUTLASS kernel wants for the forward pass.
    W1 = _rand((experts, ffn, hidden), dtype, device, gen, sc1)
    W3 = _rand((experts, ffn, hidden), dtype, device, gen, sc1)
    W2 = _rand((experts, hidden, ffn), dtype, device, gen, sc2)
    W1g, W3g, W2g = W1.transpose(1, 2), W3.transpose(1, 2), W2.transpose(1, 2)
    gmm = _grouped_mm_fn() if (try_grouped_mm and device == "cuda") else None
    gmm_ok = None
    rows = []
    for total in totals:
        for routing in ("uniform", "zipf"):
            counts = split_tokens(total, experts, routing)
            kind = f"grouped_{routing}"
            flops = sum(ffn_flops(c, hidden, ffn) for c in counts)
            x = _rand((total, hidden), dtype, device, gen, 1.0)
            a = torch.empty((total, ffn), dtype=dtype, device=device)
            b = torch.empty_like(a)
            y = torch.empty((total, hidden), dtype=dtype, device=device)
            # loop over experts on slices of the concatenated token buffer
            calls = []
            off = 0
            for e, c in enumerate(counts):
                if c > 0:
                    sl = slice(off, off + c)
                    calls.append(make_ffn_call(x[sl], W1[e], W3[e], W2[e], a[sl], b[sl], y[sl]))
                off += c

            def loop_call(calls=calls):
                for cfn in calls:
                    cfn()

            times = timer.measure([loop_call])
            rows.append(_row(preset, hidden, ffn, kind, experts, total, times, "loop", flops))
            if gmm is not None and gmm_ok is not False:
                offs = torch.tensor(list(_cumsum(counts)), dtype=torch.int32, device=device)

                def gmm_call(x=x, offs=offs, a=a, b=b, y=y):
                    # torch._grouped_mm allocates its output; capture handles that via pool
                    ga = gmm(x, W1g, offs=offs)
                    gb = gmm(x, W3g, offs=offs)
                    h = F.silu(ga) * gb
                    y.copy_(gmm(h, W2g, offs=offs))

                if gmm_ok is None:
                    try:
                        loop_call()
                        ref = y.float().clone()
                        gmm_call()
                        torch.cuda.synchronize()
                        err = (y.float() - ref).abs().max().item()
                        scale = ref.abs().max().item() + 1e-6
                        gmm_ok = err <= 0.05 * scale
                        log(f"  torch._grouped_mm check: max abs err {err:.3g} (scale {scale:.3g})"
                            f" -> {'ok' if gmm_ok else 'MISMATCH, not used'}")
                    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
                        gmm_ok = False
                        log(f"  torch._grouped_mm unusable here: {type(exc).__name__}: {exc}")
                if gmm_ok:
                    times = timer.measure([gmm_call])
                    rows.append(_row(preset, hidden, ffn, kind, experts, total, times,
                                     "grouped_mm", flops))
            del x, a, b, y, calls
    del W1, W3, W2, W1g, W3g, W2g
    return rows, gmm_ok


def _cumsum(xs):
    s = 0
    for v in xs:
        s += v
        yield s


GPU_NAME = "cpu"


def _row(preset, hidden, ffn, kind, experts, tokens, times, method, flops=None):
    if flops is None:
        flops = ffn_flops(tokens, hidden, ffn)
    med = statistics.median(times)
    return {
        "gpu_name": GPU_NAME, "preset": preset, "hidden": hidden, "ffn_hidden": ffn,
        "kind": kind, "experts": experts, "tokens": tokens,
        "median_s": f"{med:.6e}", "min_s": f"{min(times):.6e}", "max_s": f"{max(times):.6e}",
        "repeats": len(times), "flops": flops,
        "tflops_achieved": f"{flops / med / 1e12:.4f}" if med > 0 else "nan",
        "method": method,
    }


# --------------------------------------------------------------------------- metadata

def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except Exception:  # noqa: BLE001
        return None


def _cublas_version() -> str | None:
    """cuBLAS version of the library torch loaded (via ctypes; None if not found)."""
    import ctypes
    torch.cuda.current_blas_handle()  # make sure cuBLAS is loaded
    for line in open("/proc/self/maps"):
        if "libcublas.so" in line and "Lt" not in line:
            lib = ctypes.CDLL(line.split()[-1])
            v = ctypes.c_int()
            lib.cublasGetProperty(0, ctypes.byref(v)); major = v.value
            lib.cublasGetProperty(1, ctypes.byref(v)); minor = v.value
            lib.cublasGetProperty(2, ctypes.byref(v)); patch = v.value
            return f"{major}.{minor}.{patch}"
    return None


def metadata(args, device, gmm_used, started, finished) -> dict:
    meta = {
        "date_utc": started.isoformat(timespec="seconds"),
        "finished_utc": finished.isoformat(timespec="seconds"),
        "script": "benchmarks/gpu_expert_ffn.py",
        "device": device,
        "gpu_name": GPU_NAME,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "dtype": args.dtype,
        "timing": ("cuda graph replay per repeat, CUDA events" if device == "cuda" and not args.no_graph
                   else "eager, CUDA events" if device == "cuda" else "eager, time.perf_counter"),
        "warmup": args.warmup,
        "target_seconds_per_point": args.target_s,
        "min_repeats": args.min_repeats,
        "max_repeats": args.max_repeats,
        "l2_cover_bytes": args.l2_cover_mb * 2**20,
        "grouped_methods": ["loop"] + (["grouped_mm (torch._grouped_mm)"] if gmm_used else []),
        "grouped_routing": {"uniform": "even split", "zipf": f"share ~ rank**-{ZIPF_S}, deterministic"},
        "flops_formula": "6 * tokens * hidden * ffn_hidden (3 GEMMs; activation not counted)",
        "quick": bool(args.quick),
    }
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        meta.update({
            "driver_version": _driver_version(),
            "cudnn_version": torch.backends.cudnn.version(),
            "multiprocessors": p.multi_processor_count,
            "total_memory_bytes": p.total_memory,
            "compute_capability": f"{p.major}.{p.minor}",
        })
        try:
            meta["cublas_version"] = _cublas_version()
        except Exception:  # noqa: BLE001
            pass
    else:
        meta["cpu_threads"] = torch.get_num_threads()
    return meta


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="fewer token counts and grouped totals")
    p.add_argument("--out", default="expert_ffn.csv", help="CSV path; the JSON sidecar goes beside it")
    p.add_argument("--presets", default=",".join(PRESETS),
                   help="comma-separated preset names (default: all)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=H,F[,E]",
                   help="custom shape instead of the presets (repeatable), e.g. tiny=64,128,4")
    p.add_argument("--max-tokens", type=int, default=None, help="drop token counts above this")
    p.add_argument("--grouped-totals", default=None,
                   help="comma-separated total token counts for grouped runs")
    p.add_argument("--no-grouped", action="store_true")
    p.add_argument("--no-grouped-mm", action="store_true", help="time only the loop for grouped")
    p.add_argument("--no-graph", action="store_true", help="time eager calls, not graph replays")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--target-s", type=float, default=0.1, help="approx. timed seconds per point")
    p.add_argument("--min-repeats", type=int, default=10)
    p.add_argument("--max-repeats", type=int, default=200)
    p.add_argument("--l2-cover-mb", type=int, default=256,
                   help="rotate weight copies covering this many MB (defeats L2 reuse)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    global GPU_NAME
    args = parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    GPU_NAME = torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or "cpu")

    if args.shape:
        shapes = {}
        for spec in args.shape:
            name, dims = spec.split("=")
            parts = [int(v) for v in dims.split(",")]
            h, f = parts[0], parts[1]
            e = parts[2] if len(parts) > 2 else 4
            shapes[name] = (h, f, e)
    else:
        names = [n.strip() for n in args.presets.split(",") if n.strip()]
        unknown = [n for n in names if n not in PRESETS]
        if unknown:
            print(f"error: unknown preset(s) {unknown}; known: {list(PRESETS)}", file=sys.stderr)
            return 2
        shapes = {n: PRESETS[n] for n in names}

    tokens_list = list(TOKENS_QUICK if args.quick else TOKENS_FULL)
    if args.max_tokens is not None:
        tokens_list = [t for t in tokens_list if t <= args.max_tokens]
    if args.grouped_totals:
        totals = [int(v) for v in args.grouped_totals.split(",")]
    else:
        totals = list(GROUPED_TOTALS_QUICK if args.quick else GROUPED_TOTALS_FULL)

    timer = Timer(device, not args.no_graph, args.warmup, args.target_s,
                  args.min_repeats, args.max_repeats)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)

    def log(msg):
        print(msg, flush=True)

    started = _dt.datetime.now(_dt.timezone.utc)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"device={device} gpu={GPU_NAME} torch={torch.__version__} cuda={torch.version.cuda}")
    rows: list[dict] = []
    gmm_used = False
    for name, (h, f, e) in shapes.items():
        t0 = time.perf_counter()
        r = bench_single(timer, name, h, f, tokens_list, device, dtype, gen,
                         args.l2_cover_mb * 2**20)
        rows.extend(r)
        best = max(float(x["tflops_achieved"]) for x in r)
        log(f"{name} ({h}x{f}) single: {len(r)} points, t(1)={float(r[0]['median_s'])*1e6:.1f} us, "
            f"best {best:.1f} TFLOP/s, {time.perf_counter()-t0:.1f} s")
        if not args.no_grouped:
            t0 = time.perf_counter()
            r, ok = bench_grouped(timer, name, h, f, e, totals, device, dtype, gen,
                                  not args.no_grouped_mm, log)
            gmm_used = gmm_used or bool(ok)
            rows.extend(r)
            for x in r:
                log(f"  {x['kind']:16s} {x['method']:10s} E={e} T={x['tokens']}: "
                    f"{float(x['median_s'])*1e3:.3f} ms, {float(x['tflops_achieved']):.1f} TFLOP/s")
            log(f"  grouped: {time.perf_counter()-t0:.1f} s")
        if device == "cuda":
            torch.cuda.empty_cache()
        # rewrite after every preset so that a run cut short keeps what it measured
        write_outputs(out, rows, args, device, gmm_used, started, shapes, complete=False)
    write_outputs(out, rows, args, device, gmm_used, started, shapes, complete=True)
    log(f"wrote {out} ({len(rows)} rows) and {out.with_suffix('.json')}")
    return 0


def write_outputs(out: Path, rows, args, device, gmm_used, started, shapes, complete):
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    meta = metadata(args, device, gmm_used, started, _dt.datetime.now(_dt.timezone.utc))
    meta["complete"] = complete
    meta["rows"] = len(rows)
    meta["shapes"] = {k: {"hidden": v[0], "ffn_hidden": v[1], "grouped_experts": v[2]}
                      for k, v in shapes.items()}
    with out.with_suffix(".json").open("w") as fh:
        json.dump(meta, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
