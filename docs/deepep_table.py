"""Write the DeepEP validation table into docs/deepep.md and README.md from a run's Parquet.

    python benchmarks/deepep_validation.py --ablation --out deepep.parquet
    python docs/deepep_table.py deepep.parquet

The normal-kernel table sits between ``<!-- deepep-table -->`` and ``<!-- /deepep-table -->``
in both files, the low-latency table between ``<!-- deepep-ll-table -->`` markers and the
ablation (``--ablation`` rows) between ``<!-- deepep-ablation -->`` markers in the docs.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def ll_table(df: pd.DataFrame) -> str:
    m = float(df["message_s"].iloc[0])
    lines = ["| EP | phase | DeepEP (us) | netsim (us) | error |",
             "|---:|:---|---:|---:|---:|"]
    for r in df.itertuples():
        tag = " (fitted)" if r.fitted else ""
        lines.append(f"| {r.ep} | {r.phase} | {r.published_us:.0f} | {r.netsim_us:.1f} |"
                     f" {100 * r.rel_error:+.1f} %{tag} |")
    pred = df[~df["fitted"]]
    ok = pred[pred["ep"] != 16]
    lines.append("")
    lines.append(f"Per-message cost fitted on the two EP 8 cells: {m * 1e9:.1f} ns. Largest error"
                 f" on a predicted cell: {100 * pred['rel_error'].abs().max():.1f} %; without"
                 f" EP 16: {100 * ok['rel_error'].abs().max():.1f} %.")
    return "\n".join(lines)


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


def ablation_table(df: pd.DataFrame) -> str:
    lines = ["| EP | phase | DeepEP (GB/s) | "
             + " | ".join(df["variant"].drop_duplicates()) + " |",
             "|---:|:---|---:|" + "---:|" * df["variant"].nunique()]
    for (ep, phase), g in df.groupby(["ep", "phase"], sort=False):
        cells = " | ".join(f"{r.netsim_GBps:.1f} ({100 * r.rel_error:+.1f} %)"
                           for r in g.itertuples())
        lines.append(f"| {ep} | {phase} | {g['published_GBps'].iloc[0]:.0f} | {cells} |")
    lines.append("")
    lines.append(f"All at the fitted NVLink efficiency"
                 f" {float(df['nvlink_efficiency'].iloc[0]):.3f}.")
    return "\n".join(lines)


def _put(f: Path, marker: str, text: str) -> None:
    pat = re.compile(rf"(<!-- {marker} -->\n)(?:.*?\n)?(<!-- /{marker} -->)", re.S)
    s = f.read_text()
    if not pat.search(s):
        raise SystemExit(f"{f}: no <!-- {marker} --> markers")
    f.write_text(pat.sub(lambda m: m.group(1) + text + "\n" + m.group(2), s))
    print(f"updated {f} ({marker})")


def main(path: str) -> None:
    df = pd.read_parquet(path)
    kind = df["kind"].fillna("normal") if "kind" in df else pd.Series("normal", index=df.index)
    ll, abl = kind.eq("low_latency"), kind.eq("ablation")
    normal = table(df[~ll & ~abl].reset_index(drop=True))
    for f in (ROOT / "docs" / "deepep.md", ROOT / "README.md"):
        _put(f, "deepep-table", normal)
    if abl.any():
        _put(ROOT / "docs" / "deepep.md", "deepep-ablation",
             ablation_table(df[abl].reset_index(drop=True)))
    if ll.any():
        _put(ROOT / "docs" / "deepep.md", "deepep-ll-table",
             ll_table(df[ll].reset_index(drop=True)))


if __name__ == "__main__":
    main(sys.argv[1])
