"""Print (or write into the README) the routing study's tables from a sweep's Parquet.

    python docs/routing_numbers.py results/routing_study               # print the tables
    python docs/routing_numbers.py results/routing_study --write README.md
    python docs/routing_numbers.py results/routing_study --check README.md

``--write`` replaces the text between ``<!-- routing:NAME -->`` and ``<!-- /routing:NAME -->``
markers (NAME = ``mitigations``, ``layers``) with the tables of
``experiments/routing_study.py`` (``table(df)`` without the per-layer trace rows, and
``layer_table(df)``), so the README's routing numbers are never typed by hand; ``--check`` fails
(exit 1) when the README differs from what the rows give.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _study():
    from netsim.plugins import _import_file

    return _import_file(ROOT / "experiments" / "routing_study.py")


def _md(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        cells = []
        for v in r:
            if isinstance(v, float):
                cells.append("" if v != v else floatfmt.format(v))
            else:
                cells.append(str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def tables(dataset: str) -> dict[str, str]:
    """Markdown of each marked block, from the sweep's rows."""
    df = pd.read_parquet(dataset)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    df = df[df["status"] == "ok"] if "status" in df else df
    s = _study()
    t = s.table(df)
    t = t[t["trace_layer"].isna()].drop(columns=["trace_layer"])
    blocks = {"mitigations": _md(t), "layers": _md(s.layer_table(df))}
    blocks["findings"] = _findings(df, s)
    return blocks


def _pivot(d: pd.DataFrame, s, value: str, across: str, fmt: str) -> str:
    d = d.copy()
    d["routing"] = d["routing"].map(lambda r: s._label(r, layers=False))
    p = d.groupby(["routing", across])[value].median().unstack()
    p.columns = [f"{across}={c}" for c in p.columns]
    return _md(p.reset_index(), fmt)


def _findings(df: pd.DataFrame, s) -> str:
    """The study's three findings as the rows give them (medians over trace layers)."""
    part = s.part(df)
    out = []
    ep = df[part == "ep_scan"]
    if len(ep):
        out += ["Per-expert max/mean (`imbalance`) against the EP degree (`gpus`), fixed global batch:",
                "", _pivot(ep, s, "imbalance", "gpus", "{:.2f}"), "",
                "Per-rank max/mean (`rank_max_mean`) against the EP degree:", "",
                _pivot(ep, s, "rank_max_mean", "gpus", "{:.2f}"), ""]
    gi = df[part == "gini"]
    if len(gi):
        g = gi.copy()
        g["routing"] = g["routing"].map(lambda r: s._label(r, layers=False))
        t = g.groupby("routing")["gini"].median().reset_index()
        out += ["Gini of per-expert tokens (8 x 4096 tokens):", "", _md(t), ""]
    b = df[part == "batch"]
    if len(b):
        out += ["Dispatch over the balanced bound (`dispatch_over_balanced`) against tokens per GPU:",
                "", _pivot(b, s, "dispatch_over_balanced", "tokens_per_gpu", "{:.2f}")]
    return "\n".join(out)


def _replace(text: str, blocks: dict[str, str]) -> str:
    for name, body in blocks.items():
        pat = re.compile(rf"(<!-- routing:{name} -->\n)(.*?)(<!-- /routing:{name} -->)", re.S)
        if not pat.search(text):
            raise SystemExit(f"no <!-- routing:{name} --> block in the README")
        text = pat.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    a = ap.parse_args(argv)
    blocks = tables(a.dataset)
    if a.write or a.check:
        path = Path(a.write or a.check)
        old = path.read_text()
        new = _replace(old, blocks)
        if a.check:
            ok = new == old
            print(f"{path}: the routing tables {'match' if ok else 'differ from'} the rows")
            return 0 if ok else 1
        path.write_text(new)
        print(f"{path}: routing tables written")
        return 0
    for name, body in blocks.items():
        print(f"## {name}\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
