"""Print (or write into the README) the routing study's tables from a sweep's Parquet.

    python docs/routing_numbers.py results/routing_study               # print the tables
    python docs/routing_numbers.py results/routing_study --write README.md
    python docs/routing_numbers.py results/routing_study --check README.md

with ``NETSIM_ROUTING_TRACE`` set to the sweep's trace, as for the sweep: the study reads the
trace's model from it (without it the trace rows are labelled ``real`` and the verdict on the
trace model's Gini band is left out, so ``--check`` fails on a README written with it).

``--write`` replaces the text between ``<!-- routing:NAME -->`` and ``<!-- /routing:NAME -->``
markers with what ``experiments/routing_study.py`` computes from the rows: ``verdicts``
(``findings(df)``: per finding of the paper reproduced / partly / not, with its rows),
``mitigations`` (``summary_table(df)``: trace layers folded to their median), ``fabrics``
(``fabric_table(df)``: what each network-side mitigation wins on each fabric), ``findings`` (the
EP scan, the Gini and the batch trend behind the verdicts) and ``layers`` (``layer_table(df)``),
so the README's routing numbers are never typed by hand; ``--check`` fails (exit 1) when the
README differs from what the rows give.
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
    return {"verdicts": _verdicts(df, s), "mitigations": _md(s.summary_table(df)),
            "fabrics": _md(s.fabric_table(df)), "findings": _findings(df, s),
            "layers": _md(s.layer_table(df))}


def _verdicts(df: pd.DataFrame, s) -> str:
    """The study's verdict per finding (``findings(df)``), one paragraph each."""
    f = s.findings(df)
    out = []
    for r in f.itertuples(index=False):
        out.append(f"- **{r.finding}** -- *{r.verdict}*. Paper: {r.paper}. Rows: {r.rows}."
                   f" Measured: {r.measured}.")
    return "\n".join(out)


def _pivot(d: pd.DataFrame, index, across: str, value: str, fmt: str) -> str:
    p = d.pivot_table(index=index, columns=across, values=value, aggfunc="first", sort=False)
    p.columns = [f"{across}={c}" for c in p.columns]
    return _md(p.reset_index(), fmt)


def _findings(df: pd.DataFrame, s) -> str:
    """The measurements behind the verdicts: the EP scan, the Gini, the batch trend."""
    part = s.part(df)
    out = []
    ep = s.ep_table(df)
    if len(ep):
        ep = ep.assign(cell=[f"{a:.2f} ({b})" for a, b in zip(ep["expert_max_mean"],
                                                            ep["expert_max_mean_seeds"])],
                       dcell=[f"{a:.2f} ({b})" for a, b in zip(ep["dispatch_over_bound"],
                                                             ep["dispatch_over_bound_seeds"])])
        out += ["Per-expert max/mean (`imbalance`) against the EP degree, fixed global batch, each"
                " degree its own draws (mean over rows; in brackets the seeds' range):", "",
                _pivot(ep, ["workload", "routing"], "ep", "cell", "{}"), "",
                "Simulated dispatch over its balanced bound against the EP degree:", "",
                _pivot(ep, ["workload", "routing"], "ep", "dcell", "{}"), "",
                "Change from EP 4 to 32 (`ep_changes`; per-rank max/mean and dispatch/bound"
                " beside the per-expert value):", "", _md(s.ep_changes(df)), ""]
    gi = df[part == "gini"]
    if len(gi):
        g = gi.copy()
        g["routing"] = g["routing"].map(lambda r: s._label(r, layers=False))
        cols = ["routing", "profile_source"] if "profile_source" in g else ["routing"]
        g["profile_source"] = g.get("profile_source", pd.Series("", index=g.index)).fillna("")
        t = g.groupby(cols)["gini"].median().reset_index()
        out += ["Gini of per-expert tokens (8 x 4096 tokens; `profile_source`: how the profile's"
                " target was chosen):", "", _md(t), ""]
    b = s.batch_table(df)
    if len(b):
        b = b.assign(cell=[f"{a:.2f} ({c})" for a, c in zip(b["over_bound"], b["seeds"])])
        out += ["Dispatch over the balanced bound against the global batch (tokens, 8 GPUs;"
                " mean over rows, in brackets the seeds' range):", "",
                _pivot(b, ["workload", "routing"], "batch", "cell", "{}"), "",
                "The trend from the smallest to the largest common batch (`batch_trends`):", "",
                _md(s.batch_trends(df))]
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
