#!/usr/bin/env python3
"""Write the skewed all-to-all byte matrices that ``benchmarks/gpu_alltoall.py`` times.

Each matrix is the **dispatch** matrix of one Mixtral-8x7B MoE layer (8 experts, top-2,
hidden 4096, bf16: 8 KiB per (token, expert) pair) under expert parallelism over all ``n``
GPUs, with Zipf(1.2) routing, exactly as ``netsim run --workload mixtral_8x7b --routing
zipf:1.2`` builds it::

    layer = resolve("workloads", "mixtral_8x7b")[1](tokens_per_gpu=T)
    counts = parse_routing("zipf:1.2").counts(n, T, layer.experts, layer.top_k, rng)
    disp, _ = layer.traffic(counts, n)        # disp[i, j]: bytes GPU i sends to GPU j

with ``rng = numpy.random.default_rng(seed)``. ``disp[i, i]`` (tokens whose expert is on
their own GPU) is kept: the GPU benchmark passes it to ``all_to_all_single`` as the
self-split (a local copy), and netsim ignores it (no network traffic).

Output: ``workloads/calibration/alltoall_matrices/<id>.npy`` (int64 bytes, ``n x n``) and
``index.json`` listing every id with ``n``, ``tokens_per_gpu``, ``seed``, ``routing`` and
``workload``. The GPU machine loads only these ``.npy`` files (numpy), never netsim.

Usage: ``python benchmarks/make_alltoall_matrices.py [--out DIR]``. Deterministic: the same
files every time.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "workloads" / "calibration" / "alltoall_matrices"
WORKLOAD = "mixtral_8x7b"
ROUTING = "zipf:1.2"
GPUS = (2, 4, 8)
TOKENS = (256, 1024, 4096, 16384)
SEEDS = (0, 1)


def matrix_id(n: int, tokens: int, seed: int) -> str:
    return f"{WORKLOAD}_zipf1.2_n{n}_T{tokens}_s{seed}"


def make(n: int, tokens: int, seed: int) -> np.ndarray:
    """The dispatch byte matrix (int64, n x n) of one layer."""
    from netsim.plugins import resolve
    from netsim.workload.routing import parse_routing

    layer = resolve("workloads", WORKLOAD)[1](tokens_per_gpu=tokens)
    counts = parse_routing(ROUTING).counts(n, tokens, layer.experts, layer.top_k,
                                           np.random.default_rng(seed))
    disp, _ = layer.traffic(counts, n)
    out = np.rint(disp).astype(np.int64)
    assert np.array_equal(out, disp), "dispatch bytes are not integers"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    index = []
    for n in GPUS:
        for t in TOKENS:
            for s in SEEDS:
                mid = matrix_id(n, t, s)
                m = make(n, t, s)
                np.save(args.out / f"{mid}.npy", m)
                off = m - np.diag(np.diag(m))
                index.append(dict(id=mid, n=n, tokens_per_gpu=t, seed=s, routing=ROUTING,
                                  workload=WORKLOAD, total_bytes=int(m.sum()),
                                  max_row_offdiag_bytes=int(off.sum(1).max()),
                                  max_col_offdiag_bytes=int(off.sum(0).max())))
    (args.out / "index.json").write_text(json.dumps(
        {"generator": "benchmarks/make_alltoall_matrices.py", "workload": WORKLOAD,
         "routing": ROUTING, "rng": "numpy.random.default_rng(seed)",
         "note": "dispatch[i, j] = bytes GPU i sends to GPU j; diagonal = local (self) bytes",
         "matrices": index}, indent=1) + "\n")
    print(f"wrote {len(index)} matrices to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
