"""``netsim report DIR --out REPORT/``: the figures and tables of sweep datasets, and index.html.

For every dataset (``OUT/NAME``, or every dataset under ``OUT``) the report shows:

* **the parameter table**: a parameter is *fixed* only when every finished row has the same value;
  any other is *varying*, listed with its values (``n/a``: the parameter does not apply to some
  rows' model, e.g. a circuit scheduler on a packet fabric) and its role (x axis, lines, panels,
  or the parameter it follows);
* **one figure per standard metric** (:data:`STANDARD`), drawn from the rows that have the metric
  (a finite value): the metric against a numeric parameter (else a categorical one), one line per
  combination of the other parameters that vary there, the mean over seeds with a min-max band
  when there are several seeds. A line is a scan: rows whose parameters no other row shares at
  another x value (one point) are not drawn, and the figure's caption counts them; of the
  numeric parameters, the one whose lines draw the most rows is the x axis. A parameter that
  another one determines on the drawn rows (``experts`` following ``workload``) adds no line: it
  is named beside the one it follows. Panels keep workloads (models) apart first, then uniform
  and skewed routing (a grid of both when needed), else split by the parameter that fits; log y
  when the values span decades; coinciding lines stay visible (earlier lines wider). A figure is
  left out, with one line saying why, when its metric is absent from the dataset, NaN on every
  row, the same on every row, when no parameter varies among its rows, when no line has two
  points, or when its lines do not fit :data:`MAX_LINES` per panel in :data:`MAX_PANELS`
  panels: a figure that averaged parameters away would hide what it claims to show;
* **the EP scan** (rows at a fixed global batch, ``gpus * tokens_per_gpu``, seen at 3 or more
  GPU counts, when they are only part of the dataset): per-expert and per-rank max/mean against
  ``gpus``;
* **the mitigation table** (when rows vary a mitigation parameter of
  :data:`netsim.mitigation.shares.MITIGATION_DEFAULTS`): per point and mitigation the layer time,
  the share of the baseline's gap recovered on the whole layer (the mitigation's own migrations
  and moves included) and on the dispatch alone (:func:`netsim.mitigation.shares.recovered_shares`
  pairs each row with the same point without mitigation, seeds paired; ``no baseline`` where the
  dataset has none), the mitigation's cost (weights and samples moved, layer time over the
  baseline's) and the remaining gap to the balanced dispatch bound (``dispatch_s /
  ideal_balanced_dispatch_s``); with a figure of both shares, one row of panels per point
  (workloads apart), the routings side by side;
* **the routing Gini figure** (rows with a ``gini`` column and ``profile:`` routings at the
  profiles' reference batch): measured Gini per checkpoint and condition beside the values and
  bands the study publishes (:data:`netsim.workload.profiles.PUBLISHED_GINI`), with the layers
  of any per-token trace at the same batch as a box.

Every layer of one trace (``trace:FILE:L[:shuffle]`` routings, or a ``layer`` column) is one
routing source: figures and tables fold its layers into the median over layers (of the mean over
seeds) with the range over layers and seeds, and say so.

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
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from netsim.errors import ConfigError

STANDARD = ("layer_s", "ratio_to_serial_ideal", "dispatch_s", "combine_s", "compute_s", "imbalance",
            "dispatch_over_balanced")
NON_PARAMS = {"status", "error", "point_wall_s", "netsim_version", "point_key", "seed",
              "experiment"}
# preferred line-grouping parameters, in order
HUE_FIRST = ("scheduler", "mitigation", "placement", "routing", "topology", "fabric", "workload")
MAX_LINES = 10  # lines per panel
MAX_PANELS = 6  # panels per row (and rows) of a figure
NA = "n/a"      # how a parameter that does not apply to a row is shown
LABELS = {"layer_s": "MoE layer time", "ratio_to_serial_ideal": "layer time / non-overlapped ideal",
          "dispatch_s": "dispatch end", "combine_s": "combine tail", "compute_s": "longest compute",
          "imbalance": "max / mean tokens per expert",
          "rank_max_mean": "max / mean tokens per rank",
          "dispatch_over_balanced": "dispatch / balanced bound"}
_TRACE_LAYER = re.compile(r"^(trace:.*?):(\d+)((?::[A-Za-z_]+)*)$")  # trace:PATH:L[:shuffle]
LAYER_COLUMNS = ("layer", "trace_layer")  # a row's trace layer, when a column holds it


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

    if not fig.get_constrained_layout():
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


def _metric_scale(metric: str, units: dict) -> tuple[float, str]:
    unit = str(units.get(metric, ""))
    if metric.endswith("_s") or unit.startswith("s"):
        return 1e3, "ms"
    return 1.0, unit.split(" ")[0] if unit and unit.split(" ")[0] not in ("1",) else ""


def _is_na(v) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, pd.NA
    except (TypeError, ValueError):
        return False


def _fmt(v) -> str:
    if _is_na(v):
        return NA
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str) and v == "":
        return '""'
    return str(v)


def _sort_key(v):
    if _is_na(v):
        return (2, 0.0, "")
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _plain(df):
    """A copy of ``df`` whose categorical columns are object columns (missing values kept as
    None, not the string 'nan')."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            s = df[c].astype(object)
            df[c] = s.where(df[c].notna(), None)
    return df


def _param_columns(df, units: dict, params: list | None) -> list[str]:
    """The parameter columns: the metadata's list (else every column that is not a metric)."""
    out = []
    for c in df.columns:
        if c in NON_PARAMS or c.endswith("_wall_s"):
            continue
        if (c not in params) if params else (c in units):
            continue
        out.append(c)
    return out


def _distinct(s) -> list:
    """The distinct values of a column, a missing value (None / NaN) counted as one value
    (None), sorted."""
    vals, na = [], False
    for v in s.unique():
        if _is_na(v):
            na = True
        else:
            vals.append(v.item() if hasattr(v, "item") else v)
    vals = sorted(set(vals), key=_sort_key)
    return vals + [None] if na else vals


def parameter_table(rows, param_cols: list[str]) -> tuple[dict, dict]:
    """``(varying, fixed)`` over ``rows``: ``fixed`` maps a parameter to the one value every row
    has; ``varying`` maps every other parameter to its values (None: ``n/a`` on some rows). A
    parameter that applies to no row is in neither."""
    varying, fixed = {}, {}
    for c in param_cols:
        vals = _distinct(rows[c])
        if not vals or vals == [None]:
            continue
        if len(vals) == 1:
            fixed[c] = vals[0]
        else:
            varying[c] = vals
    return varying, fixed


def _is_numeric(s) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _keys(rows, cols):
    """String keys of ``cols`` (missing values as ``n/a``): a frame to group and compare on."""
    import pandas as pd

    return pd.DataFrame({c: rows[c].map(_fmt) for c in cols}, index=rows.index)


def _determines(k, p: str, q: str) -> bool:
    """Whether ``p``'s value fixes ``q``'s on every row of key frame ``k``."""
    return bool((k.groupby(p, sort=False)[q].nunique() <= 1).all())


def reduce_determined(rows, cols: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Drop from ``cols`` each parameter that another remaining one determines on ``rows``
    (grouping by both is grouping by the determining one), the last in ``cols`` first. Returns
    ``(kept, follows)``: ``follows[p]`` lists the parameters dropped because ``p`` fixes them."""
    kept = list(cols)
    follows: dict[str, list[str]] = {}
    if not kept:
        return kept, follows
    k = _keys(rows, kept)
    for q in reversed(list(cols)):
        for p in kept:
            if p != q and _determines(k, p, q):
                kept.remove(q)
                follows.setdefault(p, []).extend([q] + follows.pop(q, []))
                break
    return kept, follows


@dataclass
class MetricPlan:
    """How one metric is drawn: its rows, x axis, line and panel parameters."""
    metric: str
    rows: object
    x: str
    hue: list[str]
    panel: str | None
    follows: dict = field(default_factory=dict)
    seeds: list = field(default_factory=list)
    panel_row: str | None = None  # with ``panel`` (columns): a grid of panels
    dropped: int = 0  # rows of lines with a single x value, not drawn
    traces: int = 0   # traces whose layers are folded into one line each


def _n_lines(k, hue: list[str]) -> int:
    return len(k[hue].drop_duplicates()) if hue else 1


def _fold_layers(rows):
    """``rows`` with every layer of a trace made one routing (``routing`` = ``trace:FILE``, the
    layer in ``_layer``; -1 for other rows), and the number of traces folded."""
    if "routing" not in rows:
        return rows.assign(_layer=-1), 0
    r = _with_sources(rows)
    folded = r["_layer"].ne(-1)
    if not folded.any():
        return rows.assign(_layer=-1), 0
    return (rows.assign(routing=r["_source"].where(folded, rows["routing"]), _layer=r["_layer"]),
            int(r.loc[folded, "_source"].nunique()))


def _fit(k, x, hue, rows, metric, follows, seeds):
    """A plan with at most MAX_LINES lines per panel, or None. Workloads (models) apart first,
    then uniform and skewed routing apart, then no panel, then any one parameter's panels."""
    first = [c for c in ("workload", "routing") if c in hue and k[c].nunique() <= MAX_PANELS]
    tries = [(c, None) for c in first]
    if "workload" in first and "routing" in first:
        tries.insert(1, ("routing", "workload"))
    for panel, prow in tries:
        if panel == "workload" and len(hue) == 1:
            continue  # the only line parameter: one line per panel would compare nothing
        rest = [c for c in hue if c not in (panel, prow)]
        by = [panel] + ([prow] if prow else [])
        per = max(_n_lines(g, rest) for _, g in k.groupby(by, sort=False))
        if per <= MAX_LINES:
            return MetricPlan(metric, rows, x, rest, panel, follows, seeds, panel_row=prow)
    if _n_lines(k, hue) <= MAX_LINES:
        return MetricPlan(metric, rows, x, hue, None, follows, seeds)
    best = None
    for panel in hue:
        if k[panel].nunique() > MAX_PANELS:
            continue
        rest = [c for c in hue if c != panel]
        per = max(_n_lines(g, rest) for _, g in k.groupby(panel, sort=False))
        if per <= MAX_LINES and (best is None or per < best[0]):
            best = (per, MetricPlan(metric, rows, x, rest, panel, follows, seeds))
    if best is not None:
        return best[1]
    for panel in first:  # e.g. routing as columns, another parameter as rows
        for prow in hue:
            if prow == panel or k[prow].nunique() > MAX_PANELS:
                continue
            rest = [c for c in hue if c not in (panel, prow)]
            per = max(_n_lines(g, rest) for _, g in k.groupby([panel, prow], sort=False))
            if per <= MAX_LINES:
                return MetricPlan(metric, rows, x, rest, panel, follows, seeds, panel_row=prow)
    return None


def _order(cols, param_cols):
    return sorted(cols, key=lambda c: (HUE_FIRST.index(c) if c in HUE_FIRST else len(HUE_FIRST),
                                       param_cols.index(c) if c in param_cols else 0))


def _scan(rows, x, kept, param_cols):
    """The rows of the lines (combinations of ``kept`` other than ``x``) with two or more ``x``
    values, and on them: the line parameters and what follows what. ``(None, [], {})`` when no
    line has two points or ``x`` itself follows another parameter there."""
    import pandas as pd

    k0 = _keys(rows, list(dict.fromkeys(list(kept) + [x])))
    # a line is every parameter but x, less those that move with x one to one (tokens per GPU
    # at a fixed global batch): those are x under another name
    hue0 = [c for c in kept if c != x
            and not (_determines(k0, x, c) and _determines(k0, c, x))]
    line = (k0[hue0].apply(lambda r: "\x1f".join(r), axis=1) if hue0
            else pd.Series("", index=rows.index))
    n_x = k0.groupby(line.values)[x].transform("nunique")
    sub = rows[(n_x >= 2).to_numpy()]
    if sub.empty:
        return None, [], {}
    # on the drawn rows, parameters may stop varying or follow others
    v2, _ = parameter_table(sub, param_cols)
    kept2, fol2 = reduce_determined(sub, [x] + [c for c in _order(v2, param_cols) if c != x])
    if x not in kept2:
        return None, [], {}
    return sub, [c for c in kept2 if c != x], fol2


def plan_metric(ok, metric: str, param_cols: list[str], units: dict):
    """``(MetricPlan, None)``, or ``(None, reason)``: why the metric gets no figure (one line).

    Lines of a single x value are not drawn (a line figure shows how the metric moves along x;
    such rows are points of other parts of a study): ``MetricPlan.dropped`` counts them. Every
    layer of one trace is one routing: its line is the median over layers, its band the range
    over layers and seeds."""
    import numpy as np
    import pandas as pd

    if metric not in ok.columns:
        return None, "not a column of this dataset"
    vals = pd.to_numeric(ok[metric], errors="coerce")
    rows = ok[np.isfinite(vals.to_numpy(dtype=float, na_value=np.nan))]
    if rows.empty:
        return None, "NaN on every finished row (no model of this dataset reports it)"
    v = pd.to_numeric(rows[metric]).to_numpy(dtype=float)
    if np.ptp(v) <= 1e-12 * max(abs(v).max(), 1e-300):
        scale, unit = _metric_scale(metric, units)
        return None, (f"the same value on every row that has it ({len(rows)} rows):"
                      f" {v[0] * scale:.6g}{' ' + unit if unit else ''}")
    rows, n_traces = _fold_layers(rows)
    param_cols = [c for c in param_cols if c not in NON_PARAMS and c not in LAYER_COLUMNS]

    def order_of(cols):
        return sorted(cols, key=lambda c: (HUE_FIRST.index(c) if c in HUE_FIRST
                                           else len(HUE_FIRST), param_cols.index(c)))

    varying, _ = parameter_table(rows, param_cols)
    kept, follows = reduce_determined(rows, order_of(varying))
    if not kept:
        return None, "no parameter varies among the rows that have it (only seeds)"
    numeric = [c for c in kept if _is_numeric(rows[c]) and rows[c].notna().all()]
    xs = sorted(numeric, key=lambda c: (-rows[c].nunique(), param_cols.index(c)))
    cats = sorted((c for c in kept if c not in numeric),
                  key=lambda c: (-rows[c].nunique(), param_cols.index(c)))
    seeds = sorted(rows["seed"].dropna().unique().tolist()) if "seed" in rows else []
    best, too_many = None, 0
    # a numeric axis when one gives a figure (the one drawing the most rows), else a category
    for x in xs + [None] + cats:
        if x is None:
            if best is not None:
                break
            continue
        sub, hue, fol2 = _scan(rows, x, _order(varying, param_cols), param_cols)
        if sub is None:
            continue
        plan = _fit(_keys(sub, hue), x, hue, sub, metric, fol2, seeds)
        if plan is None:
            too_many = max(too_many, _n_lines(_keys(sub, hue), hue))
            continue
        plan.dropped = len(rows) - len(sub)
        plan.traces = n_traces
        plan.seeds = sorted(sub["seed"].dropna().unique().tolist()) if "seed" in sub else []
        if best is None or len(sub) > len(best.rows):
            best = plan
        if plan.dropped == 0:
            break
    if best is not None:
        return best, None
    if too_many:
        return None, (f"{too_many} lines ({', '.join(kept)} vary among its rows): more than"
                      f" {MAX_LINES} per panel in {MAX_PANELS} panels (no figure averages"
                      " them away)")
    return None, "no line of two or more points: every parameter combination has one x value"


def _follow_label(p: str, follows: dict) -> str:
    f = follows.get(p)
    if not f:
        return p
    more = f" +{len(f) - 2} more" if len(f) > 2 else ""
    return f"{p} (with {', '.join(f[:2])}{more})"


def _colours(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def draw_metric(plan: MetricPlan, units: dict, title: str):
    """The figure of one planned metric (a matplotlib Figure, not yet saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, x, hue, panel, metric = plan.rows, plan.x, plan.hue, plan.panel, plan.metric
    prow = plan.panel_row
    scale, unit = _metric_scale(metric, units)
    k = _keys(rows, hue + [p for p in (panel, prow) if p])
    combos = (sorted({tuple(t) for t in k[hue].itertuples(index=False)},
                     key=lambda t: tuple(_sort_key(v) for v in t)) if hue else [()])
    colour = dict(zip(combos, _colours(len(combos))))
    markers = "osD^v<>p*h"
    panels = [None] if panel is None else sorted(k[panel].unique(), key=_sort_key)
    if prow:
        rvals = sorted(k[prow].unique(), key=_sort_key)
        ncol, nrow = len(panels), len(rvals)
        panels = [(rv, pv) for rv in rvals for pv in panels]
    else:
        ncol = min(3, len(panels))
        nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 3.5 * nrow + 0.6), squeeze=False,
                             layout="constrained")
    numeric_x = _is_numeric(rows[x]) and rows[x].notna().all()
    several = len(plan.seeds) > 1
    drawn: dict = {}  # combo -> (a line, its label): one legend entry per combination
    for i, pv in enumerate(panels):
        ax = axes[i // ncol][i % ncol]
        rv, pv = pv if prow else (None, pv)
        mask = np.ones(len(rows), bool) if pv is None else (k[panel] == pv).to_numpy(copy=True)
        if prow:
            mask &= (k[prow] == rv).to_numpy()
        sub, ksub = rows[mask], k[mask]
        if sub.empty:
            ax.set_visible(False)
            continue
        xcats = sorted(_distinct(sub[x]), key=_sort_key)
        for ci, combo in enumerate(combos):
            m = np.ones(len(sub), bool)
            for h, v in zip(hue, combo):
                m &= (ksub[h] == v).to_numpy()
            g = sub[m]
            if g.empty:
                continue
            xv = g[x].map(_fmt)
            lay = ["_layer"] if "_layer" in g else []
            per = (g.assign(_x=xv).groupby(["_x"] + lay, sort=False)[metric].mean()
                   .groupby(level=0, sort=False).median())  # median over layers of seed means
            span = g.assign(_x=xv).groupby("_x", sort=False)[metric].agg(["min", "max"])
            if not lay:
                per_seed = (g.assign(_x=xv).groupby(["_x"] + (["seed"] if "seed" in g else []),
                                                     sort=False)[metric].mean())
                span = per_seed.groupby(level=0, sort=False).agg(["min", "max"])
            agg = span.assign(mean=per)
            first = {_fmt(v): v for v in g[x]}
            order = sorted(agg.index, key=lambda s: _sort_key(first[s]))
            agg = agg.loc[order]
            pos = (np.asarray([float(first[s]) for s in order]) if numeric_x
                   else np.asarray([[_fmt(c) for c in xcats].index(s) for s in order]))
            shown = [_short_source(v) if h == "routing" else v for h, v in zip(hue, combo)]
            label = (str(shown[0]) if len(hue) == 1 else
                     ", ".join(f"{h}={v}" for h, v in zip(hue, shown))) or LABELS.get(metric,
                                                                                      metric)
            # coinciding lines stay visible: earlier lines wider, with larger markers
            f = ci / max(1, len(combos) - 1)
            kw = dict(color=colour[combo], marker=markers[ci % len(markers)], ms=7.5 - 4 * f,
                      lw=3.2 - 2.2 * f, ls=("-", "--", "-.", ":")[ci % 4], zorder=2 + ci,
                      mfc="none" if ci % 2 else colour[combo])
            line, = ax.plot(pos, agg["mean"] * scale, **kw)
            if combo not in drawn:
                drawn[combo] = (line, label)
            if (several or plan.traces) and (agg["max"] > agg["min"]).any():
                if len(pos) > 1:
                    ax.fill_between(pos, agg["min"] * scale, agg["max"] * scale, alpha=0.2,
                                    color=colour[combo], linewidth=0)
                else:
                    ax.errorbar(pos, agg["mean"] * scale,
                                yerr=[(agg["mean"] - agg["min"]) * scale,
                                      (agg["max"] - agg["mean"]) * scale],
                                color=colour[combo], capsize=3, ls="none")
        if numeric_x:
            xv = np.asarray(xcats, dtype=float)
            if len(xv) > 2 and xv.min() > 0 and xv.max() / xv.min() >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xticks(xv, [_fmt(v) for v in xcats], fontsize=8)
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(xcats)), [_fmt(v) for v in xcats], rotation=20, ha="right",
                          fontsize=8)
            ax.set_xlim(-0.5, len(xcats) - 0.5)
        ax.set_xlabel(_follow_label(x, plan.follows), fontsize=9)
        ax.set_ylabel(f"{LABELS.get(metric, metric)}" + (f" ({unit})" if unit else ""),
                      fontsize=9)
        if pv is not None:
            def show(p, v):
                return f"{p} = " + (_short_source(v) if p == "routing" else str(v))

            where = show(panel, pv) + (f", {show(prow, rv)}" if prow else "")
            ax.set_title(where, fontsize=9)
        vals = sub[metric].to_numpy(dtype=float)
        if vals.min() > 0 and vals.max() / vals.min() >= 50:  # decades apart: a log scale
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for j in range(len(panels), nrow * ncol):
        axes[j // ncol][j % ncol].set_visible(False)
    handles = [drawn[c][0] for c in combos if c in drawn]
    labels = [drawn[c][1] for c in combos if c in drawn]
    if hue and handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)),
                   fontsize=8, frameon=False,
                   title=", ".join(_follow_label(h, plan.follows) for h in hue),
                   title_fontsize=8)
    seeds = (f"mean over {len(plan.seeds)} seeds, band: min-max" if several
             else "one seed" if plan.seeds else "")
    if plan.traces:
        seeds += "; a trace: median over its layers, band: min-max over layers and seeds"
    fig.suptitle(f"{title}: {metric}" + (f" ({seeds})" if seeds else ""), fontsize=10)
    return fig


def ep_scan_plans(ok, param_cols: list[str]) -> tuple[list, list]:
    """The EP scan: rows at a fixed global batch (``gpus * tokens_per_gpu``) seen at 3 or more
    GPU counts, drawn against ``gpus`` (tokens per GPU = global batch / gpus), per-expert
    (``imbalance``) and per-rank (``rank_max_mean``) max/mean, one panel per global batch when
    there are several, when those rows are only part of the dataset (else the standard figures
    show them). ``(global batches, [MetricPlan, ...])``."""
    import numpy as np
    import pandas as pd

    if not {"gpus", "tokens_per_gpu"} <= set(ok.columns) or ok.empty:
        return [], []
    glob = pd.to_numeric(ok["gpus"], errors="coerce") * pd.to_numeric(ok["tokens_per_gpu"],
                                                                     errors="coerce")
    counts = ok["gpus"].groupby(glob).nunique()
    batches = sorted(int(g) for g in counts[counts >= 3].index)
    if not batches:
        return [], []
    sub = ok[glob.isin(batches).to_numpy()].assign(global_batch=glob.astype("Int64"))
    if len(sub) == len(ok):
        return [], []
    cols = [c for c in param_cols if c not in NON_PARAMS and c not in LAYER_COLUMNS
            and c != "tokens_per_gpu"] + ["global_batch"]
    plans = []
    for m in ("imbalance", "rank_max_mean"):
        if m not in sub:
            continue
        r = sub[np.isfinite(pd.to_numeric(sub[m], errors="coerce").to_numpy(float))]
        if r.empty or r["gpus"].nunique() < 3:
            continue
        r, n = _fold_layers(r)
        varying, _ = parameter_table(r, cols)
        kept, _ = reduce_determined(r, ["gpus"] + [c for c in _order(varying, cols)
                                                   if c != "gpus"])
        r, hue, follows = _scan(r, "gpus", kept, cols)
        if r is None:
            continue
        follows = dict(follows)
        follows["gpus"] = follows.get("gpus", []) + ["tokens_per_gpu"]
        seeds = sorted(r["seed"].dropna().unique().tolist()) if "seed" in r else []
        plan = _fit(_keys(r, hue), "gpus", hue, r, m, follows, seeds)
        if plan is not None:
            plan.traces = n
            plans.append(plan)
    return batches, plans


# ---------------------------------------------------------------------------------------------
# routing sources and their layers


def layer_of(row_routing, layer=None):
    """``(routing source, trace layer or None)`` of a row: ``trace:FILE:L`` is source
    ``trace:FILE`` at layer L; a ``layer`` column's value wins when given."""
    r = _fmt(row_routing)
    m = _TRACE_LAYER.match(r)
    src, L = (m.group(1) + m.group(3), int(m.group(2))) if m else (r, None)
    if layer is not None and not _is_na(layer):
        L = int(layer)
    return src, L


def _short_source(src: str) -> str:
    """A routing source for a label: a trace by its file's stem, a profile without its prefix."""
    if src.startswith("trace:"):
        path, opts = re.match(r"^(.*?)((?::[A-Za-z_]+)*)$", src[len("trace:"):]).groups()
        name = Path(path).name
        name = name.rsplit(".", 1)[0] if "." in name else name
        return f"trace {name}" + (f" ({opts[1:].replace(':', ', ')})" if opts else "")
    return src[len("profile:"):] if src.startswith("profile:") else src


def _with_sources(rows):
    """``rows`` with ``_source`` (routing with a trace's layer taken off) and ``_layer``."""
    lay_col = next((c for c in LAYER_COLUMNS if c in rows), None)
    rt = rows["routing"] if "routing" in rows else [""] * len(rows)
    lay = rows[lay_col] if lay_col else [None] * len(rows)
    pairs = [layer_of(r, L) for r, L in zip(rt, lay)]
    return rows.assign(_source=[p[0] for p in pairs],
                       _layer=[-1 if p[1] is None else p[1] for p in pairs])


# ---------------------------------------------------------------------------------------------
# mitigations


def mitigation_name(row: dict) -> str:
    """``none``, or the non-default mitigation parameters of a row (``relayout=static +
    rank_mapping=ep_aware``)."""
    from netsim.mitigation.shares import MITIGATION_DEFAULTS

    parts = [f"{c}={_fmt(row[c])}" for c, d in MITIGATION_DEFAULTS.items()
             if c in row and not _is_na(row[c]) and str(row[c]) != d]
    return " + ".join(parts) or "none"


def mitigation_rows(ok):
    """The rows with their recovered shares (``recovered_shares``), a ``mitigation`` name, the
    routing ``_source`` / ``_layer``, or None when no row varies a mitigation parameter."""
    from netsim.mitigation.shares import MITIGATION_DEFAULTS, recovered_shares

    present = [c for c in MITIGATION_DEFAULTS if c in ok]
    if ok.empty or not present:
        return None
    names = [mitigation_name(r) for r in ok[present].to_dict("records")]
    if all(n == "none" for n in names):
        return None
    d = recovered_shares(ok)
    # only the points that some mitigation row shares (a point's key: every parameter column
    # but the mitigations, as recovered_shares pairs them)
    from netsim.mitigation.shares import _key_columns

    keys = _keys(d, _key_columns(d)).apply(lambda r: "\x1f".join(r), axis=1)
    d = d.assign(mitigation=names)
    mitigated = set(keys[d["mitigation"] != "none"])
    return _with_sources(d[keys.isin(mitigated)])


#: the mitigation table's value columns: (name, source column or computed, scale, format)
_MIT_VALUES = (
    ("layer (ms)", "layer_s", 1e3, "{:.3f}"),
    ("recovered, whole layer", "layer_recovered_share", 100.0, "{:.0f} %"),
    ("recovered, dispatch only", "dispatch_recovered_share", 100.0, "{:.0f} %"),
    ("cost: layer over baseline", "_layer_cost", 100.0, "{:+.1f} %"),
    ("cost: weights moved (MB)", "migration_bytes", 1e-6, "{:.1f}"),
    ("cost: samples moved (MB)", "sample_move_bytes", 1e-6, "{:.1f}"),
    ("gap: dispatch / balanced bound", "_over_bound", 1.0, "{:.2f}"),
)


def mitigation_table(ok, param_cols: list[str]):
    """The mitigation table (a DataFrame, or None): one row per point and mitigation, the
    layers of one trace folded. Point columns: the parameters (other than seeds, mitigations and
    the trace layer) that vary among the rows, less those another one determines. For every
    value column ``V``: ``V`` (the median over trace layers of the mean over seeds; a point with
    no layers: the mean over seeds), ``V min`` and ``V max`` (over every row: seeds and layers),
    and ``rows``, ``layers``, ``seeds``."""
    import numpy as np
    import pandas as pd

    from netsim.mitigation.shares import MITIGATION_DEFAULTS

    d = mitigation_rows(ok)
    if d is None:
        return None
    d = d.assign(_layer_cost=d["layer_s"] / d["baseline_layer_s"] - 1.0
                 if "baseline_layer_s" in d else np.nan,
                 _over_bound=(d["dispatch_s"] / d["ideal_balanced_dispatch_s"])
                 if "ideal_balanced_dispatch_s" in d and "dispatch_s" in d else np.nan)
    skip = set(MITIGATION_DEFAULTS) | set(LAYER_COLUMNS) | {"routing"} | NON_PARAMS
    cand = [c for c in param_cols if c not in skip and c in d]
    varying, _ = parameter_table(d, cand)
    order = sorted(varying, key=lambda c: (c != "workload", cand.index(c)))
    if d["_source"].nunique() > 1:
        order.insert(1 if order[:1] == ["workload"] else 0, "_source")
    kept, follows = reduce_determined(d, order) if order else ([], {})
    point = kept
    kd = _keys(d, point) if point else pd.DataFrame(index=d.index)
    d = d.assign(**{f"_k_{c}": kd[c] for c in point})
    gcols = [f"_k_{c}" for c in point] + ["mitigation"]
    vals = [v for v in _MIT_VALUES if v[1] in d]
    out = []
    for key, g in d.groupby(gcols, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rec = dict(zip(point + ["mitigation"], key))
        layers = sorted(set(g["_layer"]) - {-1})
        seeds = sorted(g["seed"].dropna().unique()) if "seed" in g else []
        rec.update(rows=len(g), layers=len(layers), seeds=len(seeds),
                   baseline=bool(g["baseline_layer_s"].notna().any())
                   if "baseline_layer_s" in g else False)
        for name, col, _, _ in vals:
            s = pd.to_numeric(g[col], errors="coerce")
            per_layer = s.groupby(g["_layer"]).mean().dropna()
            rec[name] = float(per_layer.median()) if len(per_layer) else np.nan
            rec[f"{name} min"] = float(s.min()) if s.notna().any() else np.nan
            rec[f"{name} max"] = float(s.max()) if s.notna().any() else np.nan
        out.append(rec)
    t = pd.DataFrame(out)
    if t.empty:
        return None
    mits = [m for m in dict.fromkeys(t["mitigation"])]
    mits = ["none"] + sorted(m for m in mits if m != "none") if "none" in mits else sorted(mits)
    t["_o"] = t["mitigation"].map(mits.index)
    t = t.sort_values(point + ["_o"], kind="stable",
                      key=lambda s: s.map(_sort_key) if s.name != "_o" else s)
    t = t.drop(columns="_o").reset_index(drop=True)
    t.attrs.update(point=point, follows=follows, values=[v[0] for v in vals])
    return t


def _cell(rec, name: str, fmt: str, scale: float) -> str:
    import math as _m

    v = rec.get(name)
    if v is None or (isinstance(v, float) and _m.isnan(v)):
        return ""
    s = fmt.format(v * scale)
    lo, hi = rec.get(f"{name} min"), rec.get(f"{name} max")
    if lo is not None and hi is not None and not _m.isnan(lo) and hi > lo + 1e-12 * abs(hi):
        unit = " %" if fmt.endswith("%") else ""
        f0 = fmt.replace(" %", "").replace("+", "")
        s += f" [{f0.format(lo * scale)}..{f0.format(hi * scale)}{unit}]"
    return s


def _mitigation_html(t) -> list[str]:
    e = html.escape
    point = t.attrs["point"]
    follows = t.attrs["follows"]
    vals = [v for v in _MIT_VALUES if v[0] in t.attrs["values"]]
    head = [_follow_label(c, follows) if c != "_source" else "routing" for c in point]
    def nob(v):  # a share or cost needs the same point without mitigation
        return ("no baseline" if not rec["baseline"] and v[1] in (
            "layer_recovered_share", "dispatch_recovered_share", "_layer_cost") else "")

    out = ['<table class="mit"><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
           + "<th>mitigation</th><th>rows</th>"
           + "".join(f"<th>{e(v[0])}</th>" for v in vals) + "</tr>"]
    for rec in t.to_dict("records"):
        cells = [(_short_source(rec[c]) if c == "_source" else rec[c]) for c in point]
        n = f"{rec['rows']}" + (f" ({rec['layers']} layers)" if rec["layers"] else "")
        out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells)
                   + f"<td>{e(rec['mitigation'])}</td><td>{e(n)}</td>"
                   + "".join(f"<td>{e(_cell(rec, v[0], v[3], v[2]) or nob(v))}</td>"
                             for v in vals)
                   + "</tr>")
    out.append("</table>")
    return out


def draw_mitigations(t, title: str):
    """Both recovered shares per mitigation (bars; whiskers: min-max over seeds and trace
    layers), one row of panels per point of the table's point columns other than the routing,
    the routings side by side. A matplotlib Figure, or None when no mitigation has a share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    CLIP = (-100.0, 200.0)  # % drawn; a bar past it ends at the edge and prints its value
    t = t[t["mitigation"] != "none"]
    share_cols = [c for c in ("recovered, whole layer", "recovered, dispatch only") if c in t]
    if t.empty or not share_cols or t[share_cols].isna().all().all():
        return None
    point = t.attrs["point"]
    follows = t.attrs["follows"]
    bar_by = "_source" if "_source" in point else (point[-1] if point else None)
    rows_by = [c for c in point if c != bar_by]
    groups = list(t.groupby(rows_by, sort=False)) if rows_by else [((), t)]
    groups = [(k, g) for k, g in groups if g[share_cols].notna().any().any()]
    if not groups:
        return None
    bars = list(dict.fromkeys(t[bar_by])) if bar_by else [None]
    colour = dict(zip(bars, _colours(len(bars))))

    def present(g):
        return [b for b in bars if b is None or (g[bar_by] == b).any()]

    heights = [max(1, g["mitigation"].nunique()) * len(present(g)) * 0.2 + 0.9
               for _, g in groups]
    fig, axes = plt.subplots(len(groups), len(share_cols), squeeze=False, sharex=True,
                             figsize=(4.6 * len(share_cols) + 1.6, sum(heights) + 1.0),
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for r, (key, g) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        mits = list(dict.fromkeys(g["mitigation"]))
        here = present(g)
        w = 0.8 / len(here)
        where = ", ".join(f"{p}={v}" for p, v in zip(rows_by, key))
        for c, col in enumerate(share_cols):
            ax = axes[r][c]
            for b, bv in enumerate(here):
                gb = g if bv is None else g[g[bar_by] == bv]
                gb = gb[gb[col].notna()]
                y = np.asarray([mits.index(m) for m in gb["mitigation"]], float)
                y = y - 0.4 + w * (b + 0.5)
                v = 100 * gb[col].to_numpy(float)
                lo = 100 * gb[f"{col} min"].to_numpy(float)
                hi = 100 * gb[f"{col} max"].to_numpy(float)
                err = np.vstack([v - lo, hi - v]).clip(min=0)
                ax.barh(y, v.clip(*CLIP), height=w * 0.9, xerr=err, capsize=2,
                        color=colour[bv], error_kw={"lw": 0.8})
                for yy, vv in zip(y, v):  # past the axis: the bar ends at the edge, with its value
                    if vv < CLIP[0] or vv > CLIP[1]:
                        edge = CLIP[0] if vv < CLIP[0] else CLIP[1]
                        ax.text(edge, yy, f" {vv:.0f} % ", va="center", fontsize=6,
                                ha="left" if vv < CLIP[0] else "right", color="w",
                                fontweight="bold", clip_on=True)
            ax.set_xlim(CLIP[0] - 5, CLIP[1] + 5)
            ax.axvline(0, color="k", lw=0.6)
            ax.axvline(100, color="grey", lw=0.6, ls=":")
            ax.set_yticks(range(len(mits)), mits if c == 0 else [""] * len(mits), fontsize=7)
            ax.set_ylim(len(mits) - 0.5, -0.5)
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=7)
            head = "\n".join(textwrap.wrap(where, 70)) if c == 0 and where else ""
            ax.set_title(f"{head}\n{col}" if where else col, fontsize=8, loc="left")
            if r == len(groups) - 1:
                ax.set_xlabel("share of the baseline's gap to the balanced reference (%)",
                              fontsize=8)
    if bar_by is not None:
        from matplotlib.patches import Patch

        handles = [Patch(color=colour[b], label=_short_source(str(b)) if bar_by == "_source"
                         else f"{bar_by}={b}") for b in bars]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)),
                   fontsize=8, frameon=False,
                   title="routing" if bar_by == "_source" else bar_by, title_fontsize=8)
    fig.suptitle(f"{title}: gap recovered by each mitigation\n(bars: median over trace layers"
                 " of the mean over seeds; whiskers: min-max over seeds and layers; axis cut at"
                 f" {CLIP[0]:.0f}..{CLIP[1]:.0f} %)", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# routing Gini against the published values


def draw_gini(ok, title: str):
    """Measured Gini of per-expert tokens per profile checkpoint and condition at the profiles'
    reference batch, beside the study's published values and bands
    (:data:`netsim.workload.profiles.PUBLISHED_GINI`); a per-token trace's layers at the same
    batch as a box (median, quartiles, range over layers). One panel per workload.
    ``(Figure, None)`` or ``(None, reason)``."""
    import numpy as np
    import pandas as pd

    from netsim.workload.profiles import CHECKPOINTS, CONDITIONS, PUBLISHED_GINI, REFERENCE_BATCH

    need = {"gini", "routing", "gpus", "tokens_per_gpu"}
    if not need <= set(ok.columns):
        return None, None
    g = pd.to_numeric(ok["gini"], errors="coerce")
    rt = ok["routing"].map(_fmt)
    prof = rt.str.startswith("profile:")
    if not (prof & g.notna()).any():
        return None, None
    ref = (ok["gpus"] == REFERENCE_BATCH[0]) & (ok["tokens_per_gpu"] == REFERENCE_BATCH[1])
    rows = _with_sources(ok[ref & g.notna()])
    if rows.empty or not rows["_source"].astype(str).str.startswith("profile:").any():
        return None, ("routing Gini: no profile row at the reference batch"
                      f" {REFERENCE_BATCH[0]} x {REFERENCE_BATCH[1]}, where the published values"
                      " apply")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    wls = sorted(rows["workload"].map(_fmt).unique()) if "workload" in rows else [""]
    # a trace's rows are drawn in every panel: its own workload is its model's
    prof_wls = [w for w in wls if "workload" not in rows
                or rows[(rows["workload"].map(_fmt) == w)
                        & rows["_source"].str.startswith("profile:")].shape[0]]
    fig, axes = plt.subplots(len(prof_wls), 1, squeeze=False, layout="constrained",
                             figsize=(8.0, 3.6 * len(prof_wls) + 0.8))
    conds = list(CONDITIONS)
    colour = dict(zip(conds, _colours(len(conds))))
    w = 0.8 / len(conds)
    drawn: set = set()  # the conditions and kinds of published figure drawn: the legend's
    for r, wl in enumerate(prof_wls):
        ax = axes[r][0]
        sub = rows[rows["workload"].map(_fmt) == wl] if "workload" in rows else rows
        cks = [ck for ck in CHECKPOINTS
               if sub["_source"].str.startswith(f"profile:{ck}:").any()]
        traces = sorted({s for s in rows["_source"] if s.startswith("trace:")})
        labels = [f"{ck}\n({CHECKPOINTS[ck]['mixer']})" for ck in cks]
        top = max(0.45, 1.25 * float(np.nanmax(rows["gini"])))
        for i, ck in enumerate(cks):
            for j, cond in enumerate(conds):
                s = sub[sub["_source"] == f"profile:{ck}:{cond}"]
                if s.empty:
                    continue
                per_seed = s.groupby("seed")["gini"].mean() if "seed" in s else s["gini"]
                x = i - 0.4 + w * (j + 0.5)
                m = float(per_seed.mean())
                err = ([[m - per_seed.min()], [per_seed.max() - m]] if len(per_seed) > 1
                       else None)
                ax.bar(x, m, w * 0.9, yerr=err, capsize=2, color=colour[cond])
                drawn.add(cond)
                band = PUBLISHED_GINI.get((ck, cond))
                if band is None:
                    continue
                lo, hi = band
                x0, x1 = x - w * 0.5, x + w * 0.5
                if hi is not None and hi == lo:
                    ax.hlines(lo, x0 - 0.02, x1 + 0.02, color="k", lw=2.2, zorder=5)
                    drawn.add("value")
                else:
                    up = hi if hi is not None else top
                    ax.fill_between([x0, x1], [lo, lo], [up, up], facecolor="none",
                                    edgecolor="k", hatch="///", lw=0.8, zorder=4)
                    drawn.add("band")
        for ti, tr in enumerate(traces):
            s = rows[rows["_source"] == tr]
            per_layer = s.groupby("_layer")["gini"].mean()
            pos = len(cks) + ti
            ax.boxplot([per_layer.to_numpy()], positions=[pos - 0.4 + w * 0.5], widths=w * 0.9,
                       patch_artist=True, boxprops={"facecolor": colour["wikitext"]},
                       medianprops={"color": "k"}, whis=(0, 100), manage_ticks=False)
            drawn.add("wikitext")
            tw = _fmt(s["workload"].iloc[0]) if "workload" in s else ""
            name = _short_source(tr)
            name = name if len(name) <= 34 else name[:33] + "\u2026"
            labels.append(f"{textwrap.fill(name, 17)}\n({tw}, {len(per_layer)} layers)")
            for j, cond in enumerate(conds[1:], start=1):
                u = rows[(rows["_source"] == cond) & (rows["workload"].map(_fmt) == tw)] \
                    if "workload" in rows else rows[rows["_source"] == cond]
                if not u.empty:
                    ax.bar(pos - 0.4 + w * (j + 0.5), float(u["gini"].mean()), w * 0.9,
                           color=colour[cond])
                    drawn.add(cond)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_ylim(0, top)
        ax.set_ylabel("Gini of per-expert tokens", fontsize=9)
        ax.set_title(f"profiles on workload={wl} (re-solved for its experts and top-k);"
                     f" batch {REFERENCE_BATCH[0]} GPUs x {REFERENCE_BATCH[1]} tokens", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Patch(color=colour[c], label={"wikitext": "real text (wikitext; trace: box over"
                                                          " layers)",
                                              "mock": "mock tokens (random ids)",
                                              "uniform": "uniform random top-k"}[c])
               for c in conds if c in drawn]
    if "value" in drawn:
        handles.append(Line2D([], [], color="k", lw=2.2, label="published value"))
    if "band" in drawn:
        handles.append(Patch(facecolor="none", edgecolor="k", hatch="///",
                             label="published band (open above: '> x')"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"{title}: routing Gini, measured versus published (DODOCO)", fontsize=10)
    return fig, None


# ---------------------------------------------------------------------------------------------
# the report


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


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def report_dataset(ddir: Path, outdir: Path, metrics: list[str] | None = None,
                   experiment_file: str | None = None) -> dict:
    """Draw one dataset's figures into ``outdir``; returns what index.html shows of it."""
    from netsim.experiment import dataset

    UNITS = dataset.run_tables()[0]
    meta = dataset.metadata(ddir)
    name = str(meta.get("experiment") or ddir.name)
    units = dict(UNITS) | dict(meta.get("units") or {})
    df = _plain(dataset.read(ddir))
    ok = df[df["status"] == "ok"] if "status" in df else df
    counts = df["status"].value_counts().to_dict() if "status" in df else {"ok": len(df)}
    param_cols = _param_columns(df, units, meta.get("params"))
    varying, fixed = parameter_table(ok if len(ok) else df, param_cols)
    _, follows = reduce_determined(ok if len(ok) else df,
                                   sorted(varying, key=lambda c: (HUE_FIRST.index(c)
                                                                  if c in HUE_FIRST else
                                                                  len(HUE_FIRST),
                                                                  param_cols.index(c))))
    followed = {q: p for p, qs in follows.items() for q in qs}
    want = list(metrics) if metrics else list(STANDARD)
    if metrics:
        for m in want:
            if m not in df.columns:
                raise ConfigError(f"--metric {m!r}: dataset {name!r} has no such column; it has"
                                  f" {sorted(c for c in df.columns if c in units)}")
    figs, left_out, roles, captions = [], [], {}, {}
    for m in want:
        plan, why = plan_metric(ok, m, param_cols, units) if len(ok) else (None, "no finished"
                                                                            " point")
        if plan is None:
            left_out.append((m, why))
            continue
        fig = draw_metric(plan, units, name)
        figs.append(_save(fig, outdir / f"{_slug(name)}__{_slug(m)}.png"))
        if plan.dropped:
            captions[figs[-1]] = (f"{plan.dropped} of the {len(plan.rows) + plan.dropped} rows"
                                  f" with {m} are not drawn: no other row shares their"
                                  f" parameters at another {plan.x} (a line of one point)")
        roles.setdefault(plan.x, "x axis")
        for h in plan.hue:
            roles.setdefault(h, "lines")
        if plan.panel:
            roles.setdefault(plan.panel, "panels")
        if plan.panel_row:
            roles.setdefault(plan.panel_row, "panel rows")
    mit = None
    if not metrics and len(ok):
        g, plans = ep_scan_plans(ok, param_cols)
        for plan in plans:
            fig = draw_metric(plan, units, f"{name}, EP scan at a fixed global batch"
                              f" ({', '.join(map(str, g))} tokens)")
            figs.append(_save(fig, outdir / f"{_slug(name)}__ep_scan_{_slug(plan.metric)}.png"))
        mit = mitigation_table(ok, param_cols)
        if mit is not None:
            fig = draw_mitigations(mit, name)
            if fig is None:
                left_out.append(("mitigations", "no mitigation row has a baseline with a gap"
                                                " to recover"))
            else:
                figs.append(_save(fig, outdir / f"{_slug(name)}__mitigations.png"))
        fig, why = draw_gini(ok, name)
        if fig is not None:
            figs.append(_save(fig, outdir / f"{_slug(name)}__gini.png"))
        elif why:
            left_out.append(("gini", why))
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
    return {"name": name, "dir": ddir, "meta": meta, "counts": counts, "varying": varying,
            "fixed": fixed, "roles": roles, "followed": followed, "figures": figs + extra,
            "left_out": left_out, "mitigations": mit, "seeds": seeds, "captions": captions,
            "errors": df[df["status"] != "ok"] if "status" in df else df[:0]}


def _fold_values(vals) -> list[str]:
    """Routing values for the parameter table: every layer of one trace on one line
    (``trace:FILE:L0..L1 (N layers)``)."""
    layers: dict[str, list[int]] = {}
    out = []
    for v in vals:
        src, L = layer_of(v)
        if L is None:
            out.append(_fmt(v))
        else:
            if src not in layers:
                out.append(src)
            layers.setdefault(src, []).append(L)
    return [f"{o}:{min(layers[o])}..{max(layers[o])} ({len(layers[o])} layers)" if o in layers
            else o for o in out]


def _html(sections: list[dict], outdir: Path) -> str:
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>netsim report</title>", "<style>",
           "body{font-family:sans-serif;margin:1.5em;max-width:1200px}",
           "table{border-collapse:collapse;margin:.5em 0}"
           "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}",
           "table.mit td{font-size:80%;white-space:nowrap}",
           "td.role{white-space:nowrap}", ".wide{overflow-x:auto;max-width:100%}",
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
        for p, vals in s["varying"].items():
            shown = ", ".join(_fold_values(vals)) if p == "routing" else \
                ", ".join(_fmt(v) for v in vals)
            role = s["roles"].get(p, "")
            if not role and p in s["followed"]:
                role = f"follows {s['followed'][p]}"
            role = f"varying ({role})" if role else "varying"
            out.append(f"<tr><td>{e(p)}</td><td>{e(shown)}</td>"
                       f'<td class="role">{e(role)}</td></tr>')
        if s["seeds"]:
            band = "min-max band" if len(s["seeds"]) > 1 else "one seed"
            out.append(f"<tr><td>seed</td><td>{e(', '.join(map(str, s['seeds'])))}</td>"
                       f"<td>{band}</td></tr>")
        for p, v in sorted(s["fixed"].items()):
            out.append(f"<tr><td>{e(p)}</td><td>{e(_fmt(v))}</td>"
                       '<td class="role">fixed (every row)</td></tr>')
        out.append("</table>")
        if s["mitigations"] is not None:
            out.append("<h3>Mitigations</h3><p class=\"meta\">Recovered: share of the baseline's"
                       " gap (the same point and seed without mitigation) to the balanced"
                       " reference; whole layer includes the mitigation's own migrations and"
                       " moves. Cells: median over trace layers of the mean over seeds"
                       " [min..max over seeds and layers].</p>")
            out.append('<div class="wide">')
            out.extend(_mitigation_html(s["mitigations"]))
            out.append("</div>")
        if not s["figures"]:
            out.append("<p>No figure.</p>")
        for f in s["figures"]:
            rel = f.relative_to(outdir).as_posix()
            cap = s["captions"].get(f)
            cap = f'<figcaption class="meta">{e(cap)}</figcaption>' if cap else ""
            out.append(f'<figure><img src="{e(rel)}" alt="{e(f.stem)}">{cap}</figure>')
        if s["left_out"]:
            out.append("<h3>Figures left out</h3><ul>")
            for metric, why in s["left_out"]:
                out.append(f'<li class="leftout"><b>{e(metric)}</b>: {e(why)}</li>')
            out.append("</ul>")
        errs = s["errors"]
        if len(errs):
            out.append(f"<details><summary>{len(errs)} failed points</summary><table>"
                       "<tr><th>status</th><th>parameters</th><th>error</th></tr>")
            for _, r in errs.head(50).iterrows():
                ps = ", ".join(f"{p}={_fmt(r[p])}" for p in list(s["varying"]) + ["seed"]
                               if p in r)
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
