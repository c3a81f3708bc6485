"""``netsim report DIR --out REPORT/``: standard figures of sweep datasets as PNG, and index.html.

For every dataset (``OUT/NAME``, or every dataset under ``OUT``) the report draws, for each
standard metric, the metric against the swept axis (the numeric parameter with the most values,
else a categorical one), one line per combination of the other swept parameters (scheduler,
mitigation, routing...), the mean across seeds with a min-max band. When there are too many lines
for one plot, the swept parameter with the fewest values splits the figure into panels.
``index.html`` shows every figure with the parameter table (swept values, fixed values) and the
counts of ok / error / timeout points.

An experiment module may add figures: ``def plots(df, outdir) -> list[Path]`` receives the rows
(a pandas DataFrame, every status, ``status`` a string column) and the folder to write to; the
returned files are shown after the standard ones. The module is the file recorded in the
dataset's metadata (``experiment_file``), or ``experiments/NAME.py``, or ``--experiment FILE``.
"""
from __future__ import annotations

import errno
import html
import math
import os
import re
import sys
import warnings
from pathlib import Path

from netsim.errors import ConfigError

STANDARD = ("layer_s", "ratio_to_serial_ideal", "dispatch_s", "combine_s", "compute_s", "imbalance")
NON_PARAMS = {"status", "error", "point_wall_s", "netsim_version", "point_key", "seed"}
# preferred line-grouping parameters, in order
HUE_FIRST = ("scheduler", "mitigation", "placement", "routing", "topology", "fabric", "workload")
MAX_LINES = 8
LABELS = {"layer_s": "MoE layer time", "ratio_to_serial_ideal": "layer time / non-overlapped ideal",
          "dispatch_s": "dispatch end", "combine_s": "combine tail", "compute_s": "longest compute",
          "imbalance": "max / mean tokens per expert"}


def plot_frame(df, outdir):
    """For an experiment's ``plots(df, outdir)``: headless matplotlib, ``outdir`` created, and a
    copy of the rows that ran (``status == "ok"``) with categorical columns (how Parquet gives
    back string parameters) as plain strings. Returns ``(ok_rows, Path(outdir))``."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if "status" in df:
        df = df[df["status"] == "ok"]
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df, outdir


def save_figure(fig, path, dpi: int = 110) -> Path:
    """For an experiment's ``plots``: lay ``fig`` out, write it as PNG to ``path``, close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


def _metric_scale(metric: str, units: dict) -> tuple[float, str]:
    unit = str(units.get(metric, ""))
    if metric.endswith("_s") or unit.startswith("s"):
        return 1e3, "ms"
    return 1.0, unit.split(" ")[0] if unit and unit.split(" ")[0] not in ("1",) else ""


def _params(df, units: dict, params: list | None = None) -> tuple[list[str], dict]:
    """(swept parameters, fixed parameter -> value) of the ok rows. ``params``: the parameter
    columns recorded in the dataset's metadata (else: every column that is not a metric)."""
    swept, fixed = [], {}
    for c in df.columns:
        if c in NON_PARAMS or c.endswith("_wall_s"):
            continue
        if (c not in params) if params else (c in units):
            continue
        vals = df[c].dropna().unique()
        if len(vals) > 1:
            swept.append(c)
        elif len(vals) == 1:
            fixed[c] = vals[0]
    return swept, fixed


def _is_numeric(s) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _choose_axes(df, swept: list[str]):
    """(x parameter, hue parameters, panel parameter or None)."""
    if not swept:
        return None, [], None
    numeric = [c for c in swept if _is_numeric(df[c])]
    pool = numeric or swept
    x = max(pool, key=lambda c: (df[c].nunique(), -swept.index(c)))
    rest = sorted((c for c in swept if c != x),
                  key=lambda c: (HUE_FIRST.index(c) if c in HUE_FIRST else len(HUE_FIRST),
                                 swept.index(c)))
    panel = None
    n_lines = 1
    for c in rest:
        n_lines *= df[c].nunique()
    if n_lines > MAX_LINES and len(rest) > 1:
        panel = min(rest[1:], key=lambda c: df[c].nunique())
        rest = [c for c in rest if c != panel]
    return x, rest, panel


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _plot_metric(ok, metric: str, x: str, hue: list[str], panel: str | None, units: dict,
                 title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scale, unit = _metric_scale(metric, units)
    panels = [None] if panel is None else sorted(ok[panel].dropna().unique(), key=_sort_key)
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False,
                             sharey=True)
    numeric_x = _is_numeric(ok[x])
    xcats = sorted(ok[x].dropna().unique(), key=_sort_key)
    for i, pv in enumerate(panels):
        ax = axes[i // ncol][i % ncol]
        sub = ok if pv is None else ok[ok[panel] == pv]
        groups = [((), sub)] if not hue else sub.groupby(hue, observed=True, sort=True)
        for gkey, g in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            agg = g.groupby(x, observed=True)[metric].agg(["mean", "min", "max"]).dropna()
            if agg.empty:
                continue
            order = sorted(agg.index, key=_sort_key)
            agg = agg.loc[order]
            xs = np.asarray(order, dtype=float) if numeric_x else [xcats.index(v) for v in order]
            label = ", ".join(f"{h}={_fmt(v)}" for h, v in zip(hue, gkey)) or metric
            line, = ax.plot(xs, agg["mean"] * scale, marker="o", label=label)
            ax.fill_between(xs, agg["min"] * scale, agg["max"] * scale, alpha=0.2,
                            color=line.get_color(), linewidth=0)
        if numeric_x:
            xv = np.asarray(xcats, dtype=float)
            if len(xv) > 2 and xv.min() > 0 and xv.max() / xv.min() >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xticks(xv, [_fmt(v) for v in xcats])
        else:
            ax.set_xticks(range(len(xcats)), [_fmt(v) for v in xcats], rotation=20, ha="right")
        ax.set_xlabel(x)
        if i % ncol == 0:
            ax.set_ylabel(f"{LABELS.get(metric, metric)}" + (f" ({unit})" if unit else ""))
        if pv is not None:
            ax.set_title(f"{panel}={_fmt(pv)}", fontsize=10)
        ax.grid(alpha=0.3)
    for j in range(len(panels), nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if hue and handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(3, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{title}: {metric} (mean, min-max band over seeds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _experiment_module(meta: dict, name: str, override: str | None):
    from netsim.plugins import _import_file, available

    candidates = []
    if override:
        candidates.append(Path(override))
    if meta.get("experiment_file"):
        candidates.append(Path(meta["experiment_file"]))
    found = available("experiments").get(name)
    if found:
        candidates.append(found)
    for p in candidates:
        if p.is_file():
            return _import_file(p)
    if override:
        raise ConfigError(f"--experiment {override!r} does not exist")
    return None


def report_dataset(ddir: Path, outdir: Path, metrics: list[str] | None = None,
                   experiment_file: str | None = None) -> dict:
    """Draw one dataset's figures into ``outdir``; returns what index.html shows of it."""
    from netsim.experiment import dataset

    UNITS = dataset.run_tables()[0]
    meta = dataset.metadata(ddir)
    name = str(meta.get("experiment") or ddir.name)
    units = dict(UNITS) | dict(meta.get("units") or {})
    df = dataset.read(ddir)
    ok = df[df["status"] == "ok"] if "status" in df else df
    counts = df["status"].value_counts().to_dict() if "status" in df else {"ok": len(df)}
    swept, fixed = _params(ok if len(ok) else df, units, meta.get("params"))
    x, hue, panel = _choose_axes(ok, swept)
    figs = []
    want = list(metrics) if metrics else [m for m in STANDARD if m in ok.columns]
    for m in want:
        if m not in df.columns:
            raise ConfigError(f"--metric {m!r}: dataset {name!r} has no such column; it has"
                              f" {sorted(c for c in df.columns if c in units)}")
    if x is not None and len(ok):
        for m in want:
            if ok[m].notna().any():
                figs.append(_plot_metric(ok, m, x, hue, panel, units, name,
                                         outdir / f"{_slug(name)}__{_slug(m)}.png"))
    mod = _experiment_module(meta, name, experiment_file)
    extra = []
    if mod is not None and callable(getattr(mod, "plots", None)):
        sub = outdir / _slug(name)
        sub.mkdir(parents=True, exist_ok=True)
        for p in mod.plots(df.copy(), sub) or []:
            p = Path(p)
            if not p.is_absolute():  # a name in ``sub``, or a path from the current folder
                p = sub / p if (sub / p).is_file() or not p.is_file() else p.resolve()
            if not p.is_file():
                raise ConfigError(f"experiment {name!r}: plots() returned {str(p)!r}, which does"
                                  " not exist")
            extra.append(p)
    seeds = sorted(ok["seed"].dropna().unique().tolist()) if "seed" in ok else []
    return {"name": name, "dir": ddir, "meta": meta, "counts": counts, "swept": swept,
            "values": {c: sorted(ok[c].dropna().unique().tolist(), key=_sort_key) for c in swept},
            "fixed": fixed, "x": x, "hue": hue, "panel": panel, "figures": figs + extra,
            "seeds": seeds, "errors": df[df["status"] != "ok"] if "status" in df else df[:0]}


def _html(sections: list[dict], outdir: Path) -> str:
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>netsim report</title>", "<style>",
           "body{font-family:sans-serif;margin:1.5em;max-width:1200px}",
           "table{border-collapse:collapse;margin:.5em 0}"
           "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}",
           "img{max-width:100%;border:1px solid #eee;margin:.5em 0}",
           ".meta{color:#555;font-size:85%}", "</style></head><body>", "<h1>netsim report</h1>"]
    for s in sections:
        m = s["meta"]
        c = s["counts"]
        out.append(f'<h2 id="{e(_slug(s["name"]))}">{e(s["name"])}</h2>')
        out.append(f'<p class="meta">{e(str(s["dir"]))} &middot; netsim'
                   f' {e(str(m.get("netsim_version", "?")))}'
                   f' &middot; commit {e(str(m.get("git_commit", "?"))[:12])} &middot; '
                   + ", ".join(f"{e(str(k))}: {v}" for k, v in sorted(c.items())) + " points</p>")
        out.append("<table><tr><th>parameter</th><th>values</th><th>role</th></tr>")
        for p in s["swept"]:
            role = ("x axis" if p == s["x"] else "lines" if p in s["hue"]
                    else "panels" if p == s["panel"] else "")
            vals = ", ".join(_fmt(v) for v in s["values"][p])
            out.append(f"<tr><td>{e(p)}</td><td>{e(vals)}</td><td>{role}</td></tr>")
        if s["seeds"]:
            out.append(f"<tr><td>seed</td><td>{e(', '.join(map(str, s['seeds'])))}</td>"
                       "<td>min-max band</td></tr>")
        for p, v in sorted(s["fixed"].items()):
            out.append(f"<tr><td>{e(p)}</td><td>{e(_fmt(v))}</td><td>fixed</td></tr>")
        out.append("</table>")
        if not s["figures"]:
            out.append("<p>No figure: no finished point, or no swept parameter.</p>")
        for f in s["figures"]:
            rel = f.relative_to(outdir).as_posix()
            out.append(f'<figure><img src="{e(rel)}" alt="{e(f.stem)}"></figure>')
        errs = s["errors"]
        if len(errs):
            out.append(f"<details><summary>{len(errs)} failed points</summary><table>"
                       "<tr><th>status</th><th>parameters</th><th>error</th></tr>")
            for _, r in errs.head(50).iterrows():
                ps = ", ".join(f"{p}={_fmt(r[p])}" for p in s["swept"] + ["seed"] if p in r)
                msg = str(r.get("error", "")).splitlines()[0] if str(r.get("error", "")) else ""
                out.append(f"<tr><td>{e(str(r['status']))}</td><td>{e(ps)}</td>"
                           f"<td>{e(msg)}</td></tr>")
            out.append("</table></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def make_report(path: str | Path, out: str | Path, metrics: list[str] | None = None,
                experiment_file: str | None = None) -> Path:
    """Report every dataset at or under ``path`` into ``out``; returns ``out/index.html``."""
    from netsim.experiment import dataset

    # absolute: an experiment's plots() builds its paths from the folder it is given, and
    # returns them; a relative one would be joined to that folder a second time
    path, outdir = Path(path), Path(out).resolve()
    ddirs = dataset.find_datasets(path)
    if not ddirs:
        raise ConfigError(f"{str(path)!r} holds no sweep dataset (expected OUT/NAME/status=*/"
                          "*.parquet, as written by netsim sweep)")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {str(outdir)!r} is not writable: {exc.strerror or exc}") from None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", dataset.DatasetWarning)
        try:
            sections = [report_dataset(d, outdir, metrics, experiment_file) for d in ddirs]
            index = outdir / "index.html"
            tmp = outdir / ".index.html.tmp"
            tmp.write_text(_html(sections, outdir), encoding="utf-8")
            tmp.replace(index)
        except OSError as exc:
            where = getattr(exc, "filename", None) or str(outdir)
            why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise ConfigError(f"report: cannot write {str(where)!r}: {why}") from None
    for w in seen:
        if issubclass(w.category, dataset.DatasetWarning):
            print(f"netsim: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return index
