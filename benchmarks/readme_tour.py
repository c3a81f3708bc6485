"""The README tour's headline run, regenerated from the run's Parquet (never typed by hand).

Runs ``netsim run --topology leaf_spine --set gpus=64 --workload deepseek_v3 --routing zipf:1.2
--seed 1 --out ROW.parquet`` (and the same run with ``--set pcie_gbps=400`` and with
``--tolerance 0``), reads the rows back with pandas and prints the README's block and the
numbers its sentences quote::

    python benchmarks/readme_tour.py [--workdir DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

CMD = ["run", "--topology", "leaf_spine", "--set", "gpus=64", "--workload", "deepseek_v3",
       "--routing", "zipf:1.2", "--seed", "1"]
SHOWN = ("layer_s", "dispatch_s", "compute_s", "combine_s", "serial_ideal_s", "ratio_to_serial_ideal",
         "bytes_total", "max_gpu_recv_bytes", "mean_gpu_recv_bytes", "imbalance", "gini", "flows",
         "events", "sim_wall_s")


def _row(out: Path, *extra: str) -> pd.Series:
    subprocess.run([sys.executable, "-m", "netsim.cli", *CMD, *extra, "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return pd.read_parquet(out).iloc[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    wd = Path(args.workdir or tempfile.mkdtemp())
    r = _row(wd / "tour.parquet")
    print("netsim " + " ".join(CMD))
    for k in SHOWN:
        print(f"{k:>20}  {float(r[k]):g}")
    p = _row(wd / "pcie400.parquet", "--set", "pcie_gbps=400")
    x = _row(wd / "exact.parquet", "--tolerance", "0")
    print(f"busiest GPU receives {r.max_gpu_recv_bytes / r.mean_gpu_recv_bytes:.1f}x the mean")
    print(f"layer / congestion-free ideal: {r.ratio_to_serial_ideal:.2f}x"
          f" (pcie_gbps=400: {p.ratio_to_serial_ideal:.2f}x, layer_s {p.layer_s:g} vs {r.layer_s:g})")
    print(f"--tolerance 0 (exact): layer_s {x.layer_s:g}")


if __name__ == "__main__":
    main()
