"""Start-up cost of one small run: `netsim run` (16 GPUs) with a cold and a warm numba cache.

Every run is a fresh process (``python -m netsim.cli run --set gpus=16 --fabric F``). The cache is
cleared by the benchmark itself: ``NUMBA_CACHE_DIR`` points at a new empty folder, so the first
run of each fabric compiles every kernel it uses (as the first run after ``pip install`` does) and
the next ones load them; the shared ``__pycache__`` caches are not touched. Each cold run is made
twice, in two new caches: as a first run does (``cold s``: with compile-ahead, the run's kernels
compiled in two processes, :mod:`netsim.kernels`) and with ``NETSIM_COMPILE_AHEAD=0``
(``1-proc s``: one process compiles them all, one after another). Prints wall seconds
(best of ``--rounds`` warm runs), the kernels each run compiled (cache index files written), and
the ratios cold / warm and fabric / analytic within this one run, beside two floors every run
pays before netsim does anything (a bare interpreter with numpy and click, and numba's import plus
its CPU target's start, which the first kernel call of any process triggers)::

    python benchmarks/bench_startup.py [--rounds 3] [--fabrics analytic flow packet]

``--out FILE.parquet`` also writes the printed rows (one per floor and one per fabric, with the
rounds and the commit); ``--table FILE --write README.md`` (or ``--check``) renders them as the
README's table between its bench-startup markers.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netsim.tools.docblock import table_step

BEGIN, END = "<!-- bench-startup -->", "<!-- /bench-startup -->"


def _env(**extra: str) -> dict:
    """The children's environment: bytecode caching on (as after ``pip install``, which writes
    the .pyc files; a ``PYTHONDONTWRITEBYTECODE`` of the caller would make every run compile
    netsim's sources again), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | extra


def _run(fabric: str, cache: Path, ahead: bool = True) -> float:
    env = _env(NUMBA_CACHE_DIR=str(cache), NETSIM_COMPILE_AHEAD="1" if ahead else "0")
    cmd = [sys.executable, "-m", "netsim.cli", "run", "--set", "gpus=16", "--fabric", fabric]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fabrics", nargs="+", default=["analytic", "flow", "packet"])
    ap.add_argument("--out", help="also write the rows to this Parquet file")
    ap.add_argument("--table", help="print the Markdown table of this Parquet file (--out) and"
                    " exit")
    ap.add_argument("--write", help="with --table: write it into this Markdown file's block")
    ap.add_argument("--check", help="with --table: exit 1 if this file's block differs")
    args = ap.parse_args()
    if args.table:
        sys.exit(table_step(args.table, table, args.write or args.check, bool(args.check),
                            BEGIN, END, "the bench_startup table"))
    from netsim.experiment.sweep import git_commit

    commit = git_commit()
    floors = {"import netsim": "import netsim",
              "numpy + click": "import numpy, click",
              "numba + target": "import numba; from numba.core.registry import cpu_target;"
                                " cpu_target.target_context.refresh()"}
    rows = []
    for name, code in floors.items():
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=_env())
            best = min(best, time.perf_counter() - t0)
        rows.append(dict(kind="floor", name=name, warm_s=best))
        print(f"floor {name:<16} {best:6.2f} s")
    for fab in args.fabrics:
        one = _run(fab, Path(tempfile.mkdtemp(prefix=f"numba-{fab}-1-")), ahead=False)
        cache = Path(tempfile.mkdtemp(prefix=f"numba-{fab}-"))
        cold = _run(fab, cache)
        kernels = len(list(cache.rglob("*.nbi")))
        warm = min(_run(fab, cache) for _ in range(args.rounds))
        rows.append(dict(kind="fabric", name=fab, cold_s=cold, one_proc_s=one, warm_s=warm,
                         kernels=kernels))
    fabs = [r for r in rows if r["kind"] == "fabric"]
    ref = next((r for r in fabs if r["name"] == "analytic"), fabs[0])["warm_s"]
    numba_floor = next(r for r in rows if r["name"] == "numba + target")["warm_s"]
    for r in fabs:
        r |= dict(one_proc_over_cold=r["one_proc_s"] / r["cold_s"],
                  cold_over_warm=r["cold_s"] / r["warm_s"], warm_over_analytic=r["warm_s"] / ref,
                  warm_over_numba=r["warm_s"] / numba_floor)
    rows = [r | dict(rounds=args.rounds, commit=commit) for r in rows]
    print(f"{'fabric':<10} {'cold s':>8} {'1-proc s':>9} {'1-proc/cold':>12} {'warm s':>8}"
          f" {'cold/warm':>10} {'warm/analytic':>14} {'warm/numba':>11} {'kernels':>8}")
    for r in rows:
        if r["kind"] == "fabric":
            print(f"{r['name']:<10} {r['cold_s']:>8.2f} {r['one_proc_s']:>9.2f} "
                  f"{r['one_proc_over_cold']:>12.2f} {r['warm_s']:>8.2f} "
                  f"{r['cold_over_warm']:>10.1f} {r['warm_over_analytic']:>14.2f} "
                  f"{r['warm_over_numba']:>11.2f} {r['kernels']:>8}")
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(args.out, index=False)


def table(path: str) -> str:
    """The Markdown table of a run's rows (``--out``): per fabric the cold run with
    compile-ahead, the cold run in one process, the warm run (s, best of ``rounds``), their
    ratios and the kernels compiled; then the floors (s, best of ``rounds``) and the commit."""
    import pandas as pd

    df = pd.read_parquet(path)
    out = ["| fabric | cold s | 1-process cold s | warm s | cold/warm | warm/analytic "
           "| warm/numba floor | kernels |", "|---|---|---|---|---|---|---|---|"]
    for r in df[df["kind"] == "fabric"].itertuples():
        out.append(f"| {r.name} | {r.cold_s:.3g} | {r.one_proc_s:.3g} | {r.warm_s:.3g} | "
                   f"{r.cold_over_warm:.1f} | {r.warm_over_analytic:.2f} | "
                   f"{r.warm_over_numba:.2f} | {int(r.kernels)} |")
    floors = "; ".join(f"{r.name} {r.warm_s:.3g} s" for r in df[df["kind"] == "floor"].itertuples())
    out += ["", f"Floors, a fresh interpreter each: {floors}. Best of {df['rounds'].iloc[0]}; "
                f"commit `{df['commit'].iloc[0][:12]}`."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
