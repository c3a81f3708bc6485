"""Rows written and read per second for a sweep of many points (issue 16: 2,000 points).

Runs ``--points`` trivial points (``executors.empty_run``: the executor and the Parquet write,
no simulation) in this process into a temporary folder, then reads the dataset with pandas,
``netsim.experiment.dataset.read`` and DuckDB, first as one part file per point, then after the
compaction every CLI sweep now does at the end. Prints seconds and rows/s, and the ratios
(part files / compacted) taken in this one run::

    python benchmarks/bench_read.py [--points 2000]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2000)
    args = ap.parse_args()
    import duckdb
    import pandas as pd

    from netsim.experiment import dataset
    from netsim.experiment.executors import empty_run
    from netsim.experiment.sweep import run_sweep

    tmp = Path(tempfile.mkdtemp())
    exp = tmp / "many.py"
    exp.write_text(f'NAME = "many"\nBASE = {{"topology": "crossbar"}}\n'
                   f'GRID = {{"gpus": list(range(2, {args.points} + 2))}}\n')
    out = tmp / "out"
    t0 = time.perf_counter()
    s = run_sweep(str(exp), out, quiet=True, fn=empty_run)
    write_s = time.perf_counter() - t0
    ddir = out / "many"
    n = s["ran"]
    print(f"wrote {n} rows (one part file each) in {write_s:.2f} s: {n / write_s:.0f} rows/s")

    readers = {
        "pandas.read_parquet": lambda: len(pd.read_parquet(ddir)),
        "dataset.read": lambda: len(dataset.read(ddir)),
        "duckdb": lambda: duckdb.sql(f"select count(*) from read_parquet('{ddir}/**/*.parquet',"
                                     " hive_partitioning=true, union_by_name=true)"
                                     ).fetchall()[0][0],
    }
    before = {k: _timed(f, 1) for k, f in readers.items()}
    t0 = time.perf_counter()
    dataset.compact(ddir)
    comp_s = time.perf_counter() - t0
    print(f"compaction of {n} part files: {comp_s:.2f} s")
    after = {k: _timed(f) for k, f in readers.items()}
    print(f"{'reader':<22} {'part files':>12} {'compacted':>12} {'rows/s compacted':>18}"
          f" {'ratio':>7}")
    for k in readers:
        (tb, nb), (ta, na) = before[k], after[k]
        assert nb == na == n, (k, nb, na)
        print(f"{k:<22} {tb:>10.3f} s {ta:>10.3f} s {n / ta:>18.0f} {tb / ta:>6.0f}x")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
