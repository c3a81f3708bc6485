"""Rows written and read per second for a sweep of many points (issue 16: 2,000 points).

Runs ``--points`` trivial points (``executors.empty_run``: the executor and the Parquet write,
no simulation) in this process into a temporary folder, twice: written in batches (what every
sweep does: a file per 64 rows or 2 s) and one part file per point (what pool workers did until
their rows came back to the driver; ``executors.BATCH_ROWS = 1``). Each dataset is read with pandas,
``netsim.experiment.dataset.read`` and DuckDB as written, then after the compaction every CLI
sweep does at the end. Prints seconds, rows/s and the ratios, all taken in this one run::

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

    from netsim.experiment import executors

    tmp = Path(tempfile.mkdtemp())
    exp = tmp / "many.py"
    exp.write_text(f'NAME = "many"\nBASE = {{"topology": "crossbar"}}\n'
                   f'GRID = {{"gpus": list(range(2, {args.points} + 2))}}\n')
    written = {}
    for mode, rows in (("batches", executors.BATCH_ROWS), ("one file per point", 1)):
        saved, executors.BATCH_ROWS = executors.BATCH_ROWS, rows
        out = tmp / mode.replace(" ", "_")
        try:
            t0 = time.perf_counter()
            s = run_sweep(str(exp), out, quiet=True, fn=empty_run)
            write_s = time.perf_counter() - t0
        finally:
            executors.BATCH_ROWS = saved
        ddir = out / "many"
        n = s["ran"]
        files = len(list(ddir.glob("status=*/*.parquet")))
        written[mode] = n / write_s
        print(f"\n{mode}: wrote {n} rows as {files} files in {write_s:.2f} s:"
              f" {n / write_s:.0f} rows/s")
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
        print(f"compaction of {files} files: {time.perf_counter() - t0:.2f} s")
        after = {k: _timed(f) for k, f in readers.items()}
        print(f"{'reader':<22} {'as written':>12} {'compacted':>12} {'rows/s compacted':>18}"
              f" {'ratio':>7}")
        for k in readers:
            (tb, nb), (ta, na) = before[k], after[k]
            assert nb == na == n, (k, nb, na)
            print(f"{k:<22} {tb:>10.3f} s {ta:>10.3f} s {n / ta:>18.0f} {tb / ta:>6.0f}x")
    b, p = written["batches"], written["one file per point"]
    print(f"\nwrite rate, batches / one file per point: {b / p:.1f}x")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
