"""Write the DeepEP validation table into docs/deepep.md and README.md from a run's Parquet.

    python benchmarks/deepep_validation.py --out deepep.parquet
    python docs/deepep_table.py deepep.parquet

The table sits between ``<!-- deepep-table -->`` and ``<!-- /deepep-table -->`` in both files.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def table(df: pd.DataFrame) -> str:
    eff = float(df["nvlink_efficiency"].iloc[0])
    lines = ["| EP | domain | phase | DeepEP (GB/s) | netsim (GB/s) | error |",
             "|---:|:---|:---|---:|---:|---:|"]
    for r in df.itertuples():
        tag = " (fitted)" if r.fitted else ""
        lines.append(f"| {r.ep} | {r.domain} | {r.phase} | {r.published_GBps:.0f} |"
                     f" {r.netsim_GBps:.1f} | {100 * r.rel_error:+.1f} %{tag} |")
    pred = df[~df["fitted"]]
    worst = pred.loc[pred["rel_error"].abs().idxmax()]
    lines.append("")
    lines.append(f"NVLink efficiency fitted on the two EP 8 cells: {eff:.3f}. Largest error on a"
                 f" predicted cell: {100 * abs(worst.rel_error):.1f} % (EP {worst.ep}"
                 f" {worst.phase}).")
    return "\n".join(lines)


def main(path: str) -> None:
    text = table(pd.read_parquet(path))
    pat = re.compile(r"(<!-- deepep-table -->\n)(?:.*?\n)?(<!-- /deepep-table -->)", re.S)
    for f in (ROOT / "docs" / "deepep.md", ROOT / "README.md"):
        s = f.read_text()
        if not pat.search(s):
            raise SystemExit(f"{f}: no <!-- deepep-table --> markers")
        f.write_text(pat.sub(lambda m: m.group(1) + text + "\n" + m.group(2), s))
        print(f"updated {f}")


if __name__ == "__main__":
    main(sys.argv[1])
