"""Real versus mock routing: imbalance diagnosis and the four mitigation families (issue 4).

Four parts, told apart by their parameters (see :func:`part`):

* ``ep_scan`` -- per-expert versus per-rank max/mean tokens at EP degree 4..32 (crossbar, analytic
  fabric, a fixed global batch of 16384 tokens): the straggler expert is intrinsic to routing;
* ``gini`` -- Gini of per-expert counts under ``:mock`` versus ``:wikitext`` for every calibrated
  profile, and the real Mixtral trace versus ``uniform`` (the reference batch, 8 x 4096 tokens);
* ``batch`` -- dispatch time over ideal versus tokens per GPU, mock versus real routing (flow model
  on an oversubscribed leaf-spine);
* ``mitigation`` -- every mitigation and a combination, 4 iterations each, on the same leaf-spine
  (``hierarchical`` on the same fabric with NVLink servers, beside its own direct baseline).

A real per-token trace joins the study when the environment variable ``NETSIM_ROUTING_TRACE=FILE``
names one (the study's own is the Mixtral-8x7B HumanEval sample; ``netsim capture`` records others,
see docs/capture.md); without it those points are skipped. With a captured trace the run's expert
count and top-k (and hidden sizes, when the trace's ``meta`` has them) follow the trace, on the
netsim preset of its model family when there is one.

Every MoE layer of the trace is a point of its own (``trace:FILE:L`` for each L, from
:func:`netsim.workload.traces.layer_specs`) in every part, so each row is one layer;
:func:`layer_table` gives the distribution over layers (median, range, worst and best layer) of
each finding, and the figures draw the trace's median over layers with its min-max band.

``plots(df, outdir)`` draws the figures, ``table(df)`` the README's mitigation table (trace
layers apart), ``layer_table(df)`` the per-layer distribution; ``python
experiments/routing_study.py RESULTS/routing_study`` prints both. Small by design: ``netsim sweep
experiments/routing_study.py --jobs 2`` runs it in a few minutes.
"""
from __future__ import annotations

import os
from pathlib import Path

NAME = "routing_study"
SEEDS = [0]

ROOT = Path(__file__).resolve().parents[1]
# the real trace: a per-token routing trace named by NETSIM_ROUTING_TRACE (the study's own is the
# Mixtral-8x7B HumanEval sample; `netsim capture` records others); without it the trace points
# are left out
USER_TRACE = os.environ.get("NETSIM_ROUTING_TRACE", "")
TRACE = Path(USER_TRACE).resolve() if USER_TRACE else Path("")
HAVE_TRACE = bool(USER_TRACE) and TRACE.is_file()
if USER_TRACE and not HAVE_TRACE:
    from netsim.errors import ConfigError

    raise ConfigError(f"NETSIM_ROUTING_TRACE={USER_TRACE!r} is not a file; expected a routing"
                      f" trace (netsim capture ... --out FILE.parquet)")
TRACE_SPEC = f"trace:{TRACE}"
# netsim presets of the model families netsim capture records (config.model_type -> workload)
FAMILY_PRESETS = {"mixtral": "mixtral_8x7b", "olmoe": "olmoe_1b_7b", "qwen3_moe": "qwen3_30b_a3b",
                  "deepseek_v2": "deepseek_v2_lite", "deepseek_v3": "deepseek_v3"}


def _trace_setup():
    """(workload, MoE layer settings, layer specs, label) of the study's trace."""
    from netsim.workload.traces import layer_specs, read_trace

    if not HAVE_TRACE:
        return "mixtral_8x7b", {}, [], ""
    specs = layer_specs(TRACE)
    t = read_trace(TRACE)
    if t.meta is None or not isinstance(t.meta, dict) or not t.meta.get("model"):
        return "mixtral_8x7b", {}, specs, "Mixtral"
    model = t.meta.get("model", {}) if isinstance(t.meta, dict) else {}
    wl = FAMILY_PRESETS.get(model.get("model_type"), "mixtral_8x7b")
    over = {"experts": int(t.n_experts or t.max_expert + 1), "top_k": int(t.top_k or 1)}
    if model.get("hidden_size"):
        over["hidden"] = int(model["hidden_size"])
    if model.get("moe_intermediate_size"):
        over["ffn_hidden"] = int(model["moe_intermediate_size"])
    return wl, over, specs, Path(str(model.get("name") or TRACE.stem)).name


TRACE_WORKLOAD, TRACE_MOE, TRACE_LAYERS, TRACE_MODEL = _trace_setup()

CHECKPOINTS = ("deepseek_moe_16b", "nemotron_30b", "qwen3_30b_a3b", "deepseek_v2_lite",
               "qwen3_5_35b")
SCAN_TOKENS = 16384      # global batch of the EP scan
GINI_BATCH = (8, 4096)   # the profiles' reference batch
LEAF = dict(topology="leaf_spine", gpus=32, gpus_per_server=4, servers_per_leaf=2, spines=2,
            oversubscription=2.0, pcie_gbps=400.0)  # PCIe = NIC rate: serial_ideal_s is exact
NVL = dict(LEAF, nvlink_gbps=3600.0)
MITIGATIONS = {
    "none": {},
    "predictive": {"sample_placement": "predictive"},
    "oracle_placement": {"sample_placement": "oracle"},
    "static": {"relayout": "static"},
    "eplb:2": {"relayout": "eplb:2"},
    "ep_aware": {"rank_mapping": "ep_aware"},
    "static+ep_aware": {"relayout": "static", "rank_mapping": "ep_aware"},
}


def _routings(real_model: str = "deepseek_v2_lite"):
    """(workload, routing, MoE layer settings): the profiles, and the trace's uniform baseline
    and every layer of the trace."""
    out = [("deepseek_v2_lite", "uniform", {}),
           ("deepseek_v2_lite", f"profile:{real_model}:wikitext", {}),
           ("deepseek_v2_lite", f"profile:{real_model}:mock", {}),
           ("deepseek_v2_lite", "drift:1.0:0.7", {})]
    if HAVE_TRACE:
        out.append((TRACE_WORKLOAD, "uniform", TRACE_MOE))
        out += [(TRACE_WORKLOAD, spec, TRACE_MOE) for spec in TRACE_LAYERS]
    return out


def points():
    # 1. EP scan (analytic: the statistics need no simulation)
    for wl, routing, over in _routings():
        if routing.startswith("drift"):
            continue
        for ep in (4, 8, 16, 32):
            yield dict(topology="crossbar", gpus=ep, fabric="analytic", workload=wl,
                       routing=routing, tokens_per_gpu=SCAN_TOKENS // ep, **over)
    # 2. Gini, mock versus real, per profile (and trace versus uniform)
    for ck in CHECKPOINTS:
        for cond in ("wikitext", "mock", "uniform"):
            yield dict(topology="crossbar", gpus=GINI_BATCH[0], fabric="analytic",
                       workload="deepseek_v2_lite", routing=f"profile:{ck}:{cond}",
                       tokens_per_gpu=GINI_BATCH[1])
    if HAVE_TRACE:
        for routing in ["uniform"] + TRACE_LAYERS:
            yield dict(topology="crossbar", gpus=GINI_BATCH[0], fabric="analytic",
                       workload=TRACE_WORKLOAD, routing=routing, tokens_per_gpu=GINI_BATCH[1],
                       **TRACE_MOE)
    # 3. dispatch over ideal versus batch size
    for wl, routing, over in _routings():
        if routing.startswith("drift"):
            continue
        for tpg in (64, 256, 1024, 4096):
            yield dict(LEAF, workload=wl, routing=routing, tokens_per_gpu=tpg, tolerance=1e-3,
                       **over)
    # 4. mitigations (4 iterations after a warm-up)
    for wl, routing, over in _routings():
        for mit, extra in MITIGATIONS.items():
            yield dict(LEAF, workload=wl, routing=routing, tokens_per_gpu=512, iterations=4,
                       tolerance=1e-3, **over, **extra)
        for coll in ("direct", "hierarchical"):
            yield dict(NVL, workload=wl, routing=routing, tokens_per_gpu=512, iterations=4,
                       tolerance=1e-3, collective=coll, **over)


# ---------------------------------------------------------------------------------------------
# analysis


def part(df):
    """Which part of the study each row belongs to (a pandas Series)."""
    import numpy as np
    import pandas as pd

    def col(name, default):
        return df[name] if name in df else pd.Series(default, index=df.index)

    it = pd.to_numeric(col("iterations", 0), errors="coerce").fillna(0)
    tot = pd.to_numeric(col("gpus", 0), errors="coerce") * pd.to_numeric(
        col("tokens_per_gpu", 0), errors="coerce")
    analytic = col("fabric", "flow") == "analytic"
    out = np.where(it > 0, "mitigation",
                   np.where(analytic & (tot == SCAN_TOKENS), "ep_scan",
                            np.where(analytic, "gini", "batch")))
    return pd.Series(out, index=df.index)


def trace_layer(routing) -> int | None:
    """The trace layer of a ``trace:FILE:L`` routing, None for other routings (or no layer)."""
    r = str(routing)
    if not r.startswith("trace:"):
        return None
    tail = r.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and r.count(":") >= 2 else None


def _label(routing: str, layers: bool = True) -> str:
    """Display name of a routing; a trace's layer is kept (``layers``) or folded away."""
    r = str(routing)
    if r.startswith("trace:"):
        L = trace_layer(r)
        who = TRACE_MODEL or "real"
        if layers and L is not None:
            return f"trace L{L} ({who}, real)"
        return f"trace ({who}, real; median of layers)" if L is not None else f"trace ({who})"
    return r.replace("profile:", "")


def mitigation_name(row) -> str:
    import pandas as pd

    def get(k, d):
        v = row.get(k, d)
        return d if v is None or (isinstance(v, float) and pd.isna(v)) else v

    names = []
    if get("sample_placement", "none") != "none":
        names.append({"predictive": "predictive", "oracle": "oracle_placement"}[
            get("sample_placement", "none")])
    if get("relayout", "none") != "none":
        names.append(get("relayout", "none"))
    if get("rank_mapping", "identity") != "identity":
        names.append("ep_aware")
    if get("collective", "direct") != "direct":
        names.append(get("collective", "direct"))
    nv = float(get("nvlink_gbps", 0.0) or 0.0) > 0
    name = "+".join(names) or "none"
    return f"{name} (NVLink)" if nv else name


def table(df):
    """Mitigation table: per (workload, routing, mitigation): dispatch ms, over ideal, over the
    balanced bound, fraction of the baseline's gap to the bound recovered, layer ms. Each trace
    layer is a routing of its own (``trace L14 (...)``); :func:`layer_table` folds them."""
    import pandas as pd

    d = df[(part(df) == "mitigation") & (df.get("status", "ok") == "ok")].copy()
    if d.empty:
        return pd.DataFrame()
    d["mitigation"] = [mitigation_name(r) for r in d.to_dict("records")]
    d["trace_layer"] = [trace_layer(r) for r in d["routing"]]
    d["routing"] = d["routing"].map(_label)
    d["nvl"] = d["mitigation"].str.endswith("(NVLink)")
    g = d.groupby(["workload", "routing", "nvl", "mitigation"], sort=False, dropna=False).agg(
        trace_layer=("trace_layer", "first"),
        dispatch_ms=("dispatch_s", lambda s: 1e3 * s.mean()),
        bound_ms=("ideal_balanced_dispatch_s", lambda s: 1e3 * s.mean()),
        over_ideal=("dispatch_over_ideal", "mean"),
        over_bound=("dispatch_over_balanced", "mean"),
        layer_ms=("layer_s", lambda s: 1e3 * s.mean()),
        rank_max_mean=("rank_max_mean", "mean"),
        migration_GB=("migration_bytes", lambda s: s.mean() / 1e9)).reset_index()
    rec = []
    for _, r in g.iterrows():
        base = g[(g.workload == r.workload) & (g.routing == r.routing) & (g.nvl == r.nvl)
                 & g.mitigation.isin(["none", "none (NVLink)", "direct (NVLink)"])]
        if base.empty:
            rec.append(float("nan"))
            continue
        b = base.iloc[0]
        gap = b.dispatch_ms - b.bound_ms
        rec.append((b.dispatch_ms - r.dispatch_ms) / gap if gap > 0 else float("nan"))
    g["recovered"] = rec
    g["_order"] = [_mitigation_order(m) for m in g["mitigation"]]
    g = g.sort_values(["workload", "routing", "_order"], kind="stable")
    return g.drop(columns=["nvl", "_order"]).reset_index(drop=True)


def _mitigation_order(name: str):
    """Sort key: the MITIGATIONS order, NVLink rows after, others last by name."""
    names = list(MITIGATIONS) + ["none (NVLink)", "hierarchical (NVLink)"]
    return (names.index(name) if name in names else len(names), name)


def _per_layer(d, value, by=()):
    """Mean of ``value`` per (trace layer, *by) over the trace rows of ``d``: a Series."""
    import pandas as pd

    if d.empty or value not in d or any(b not in d for b in by):
        return pd.Series(dtype=float)
    d = d.assign(trace_layer=[trace_layer(r) for r in d["routing"]])
    d = d[d["trace_layer"].notna()]
    return d.groupby(["trace_layer", *by])[value].mean()


def _dist(metric: str, s, worst: str = "max", unit: str = "") -> dict:
    """Median, range and the worst / best layer of one per-layer Series (index: layer)."""
    import numpy as np

    s = s.dropna()
    if s.empty:
        return {}
    hi, lo = int(s.idxmax()), int(s.idxmin())
    worst_l, best_l = (hi, lo) if worst == "max" else (lo, hi)
    return {"metric": metric, "unit": unit, "layers": int(len(s)),
            "median": float(np.median(s.values)), "min": float(s.min()),
            "max": float(s.max()), "worst_layer": worst_l, "worst": float(s[worst_l]),
            "best_layer": best_l, "best": float(s[best_l])}


def layer_table(df):
    """The distribution over the trace's layers (one row per layer and point) of each finding:
    per metric its median, min, max, worst layer and best layer ("worst": the highest Gini,
    imbalance, EP change, batch trend, distance from the bound or layer-time ratio; the lowest
    recovered share).

    * ``gini`` -- Gini of per-expert tokens (reference batch 8 x 4096);
    * ``ep_change_pct`` -- per-expert max/mean at EP 32 over EP 4, minus 1 (%);
    * ``rank_max_mean@32`` -- per-rank max/mean at EP 32;
    * ``batch_trend_pct`` -- dispatch over the balanced bound at 4096 tokens/GPU over 64 (%);
    * ``over_bound[M]`` -- dispatch over the balanced bound with mitigation M (4 iterations);
    * ``recovered[M]`` -- share of the no-mitigation gap to the bound that M recovers;
    * ``layer_vs_none[M]`` -- layer time with M over layer time without (1 = no change)."""
    import pandas as pd

    if "routing" not in df:
        return pd.DataFrame()
    df = df[df["status"] == "ok"] if "status" in df else df
    df = df.assign(routing=df["routing"].astype(str))
    p = part(df)
    out = [_dist("gini", _per_layer(df[p == "gini"], "gini"))]
    es = _per_layer(df[p == "ep_scan"], "imbalance", ["gpus"])
    es = es.unstack() if not es.empty else es
    if not es.empty and {4, 32} <= set(es.columns):
        out.append(_dist("ep_change_pct", 100 * (es[32] / es[4] - 1), unit="%"))
        rk = _per_layer(df[p == "ep_scan"], "rank_max_mean", ["gpus"]).unstack()
        out.append(_dist("rank_max_mean@32", rk[32]))
    bt = _per_layer(df[p == "batch"], "dispatch_over_balanced", ["tokens_per_gpu"])
    bt = bt.unstack() if not bt.empty else bt
    if not bt.empty and {64, 4096} <= set(bt.columns):
        out.append(_dist("batch_trend_pct", 100 * (bt[4096] / bt[64] - 1), unit="%"))
    t = table(df)
    if not t.empty:
        t = t[t["trace_layer"].notna()]
        none = t[t.mitigation == "none"].set_index("trace_layer")
        for m in sorted(t.mitigation.unique(), key=_mitigation_order):
            g = t[t.mitigation == m].set_index("trace_layer")
            out.append(_dist(f"over_bound[{m}]", g["over_bound"]))
            if m == "none" or "(NVLink)" in m:
                continue
            out.append(_dist(f"recovered[{m}]", g["recovered"], worst="min"))
            out.append(_dist(f"layer_vs_none[{m}]", g["layer_ms"] / none["layer_ms"]))
    return pd.DataFrame([r for r in out if r])


def _fold(d, value, x):
    """Per (workload, routing label with trace layers folded, x): median, min and max of the
    per-layer means of ``value`` (a non-trace routing is one "layer": all three equal)."""
    d = d.assign(layer=[trace_layer(r) for r in d["routing"]],
                 label=[_label(r, layers=False) for r in d["routing"]])
    d["layer"] = d["layer"].fillna(-1)
    per = d.groupby(["workload", "label", x, "layer"])[value].mean().reset_index()
    return per.groupby(["workload", "label", x])[value].agg(["median", "min", "max"])


def plots(df, outdir) -> list:
    """The study's figures (PNG) in ``outdir``; returns their paths. A trace is drawn as the
    median over its layers with a min-max band (``routing_trace_layers.png``: layer by layer)."""
    from netsim.report import plot_frame, save_figure

    df, outdir = plot_frame(df, outdir)
    import matplotlib.pyplot as plt
    import numpy as np

    p = part(df)
    paths = []

    d = df[p == "ep_scan"]
    if not d.empty:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for value, style, what in (("imbalance", "o-", "expert"),
                                   ("rank_max_mean", "s--", "rank")):
            f = _fold(d, value, "gpus")
            for i, ((wl, lab), g) in enumerate(f.groupby(level=[0, 1])):
                g = g.droplevel([0, 1]).sort_index()
                c = f"C{i}"
                ax.plot(g.index, g["median"], style, color=c,
                        alpha=1 if what == "expert" else 0.7, label=f"{wl}: {lab}: {what}")
                if (g["max"] > g["min"]).any():
                    ax.fill_between(g.index, g["min"], g["max"], color=c, alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("EP degree (ranks); global batch fixed")
        ax.set_ylabel("max / mean tokens")
        ax.set_title("Per-expert (solid) vs per-rank (dashed) imbalance")
        ax.legend(fontsize=6)
        paths.append(save_figure(fig, outdir / "routing_ep_scan.png", dpi=120))

    d = df[p == "gini"]
    if not d.empty:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        labels, real, mock, unif, err = [], [], [], [], None
        for ck in CHECKPOINTS:
            rows = {c: d[d["routing"] == f"profile:{ck}:{c}"]["gini"].mean()
                    for c in ("wikitext", "mock", "uniform")}
            labels.append(ck)
            real.append(rows["wikitext"])
            mock.append(rows["mock"])
            unif.append(rows["uniform"])
        per = _per_layer(d, "gini")
        if not per.empty:
            labels.append(f"{TRACE_MODEL or 'trace'} (trace, {len(per)} layers)")
            med = float(np.median(per.values))
            real.append(med)
            mock.append(np.nan)
            unif.append(d[(d["routing"] == "uniform") & (d["workload"] == TRACE_WORKLOAD)]
                        ["gini"].mean())
            err = np.zeros((2, len(labels)))
            err[:, -1] = (med - per.min(), per.max() - med)
        x = np.arange(len(labels))
        ax.bar(x - 0.27, real, 0.27, yerr=err, capsize=3,
               label="real text (wikitext / trace: median, min-max of layers)")
        ax.bar(x, mock, 0.27, label="mock tokens (:mock)")
        ax.bar(x + 0.27, unif, 0.27, label="uniform random top-k")
        ax.set_xticks(x, labels, rotation=20, fontsize=7)
        ax.set_ylabel("Gini of per-expert tokens")
        ax.set_title("Routing Gini: mock vs real (reference batch 8 x 4096)")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, outdir / "routing_gini.png", dpi=120))

    d = df[p == "batch"]
    if not d.empty:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        f = _fold(d, "dispatch_over_balanced", "tokens_per_gpu")
        for i, ((wl, lab), g) in enumerate(f.groupby(level=[0, 1])):
            g = g.droplevel([0, 1]).sort_index()
            ax.plot(g.index, g["median"], "o-", color=f"C{i}", label=f"{wl}: {lab}")
            if (g["max"] > g["min"]).any():
                ax.fill_between(g.index, g["min"], g["max"], color=f"C{i}", alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens per GPU")
        ax.set_ylabel("dispatch time / balanced ideal")
        ax.set_title("Dispatch over the bound vs batch size, mock vs real")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, outdir / "routing_batch.png", dpi=120))

    t = table(df)
    if not t.empty:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        folded = t.assign(routing=[_label("trace:x:0", layers=False) if L == L and L is not None
                                   else r for r, L in zip(t["routing"], t["trace_layer"])])
        piv = folded.pivot_table(index="mitigation", columns="routing", values="over_bound",
                                 aggfunc="median", sort=False)
        piv.plot.barh(ax=ax)
        ax.set_xlabel("dispatch time / balanced ideal (4 iterations, mean; trace: median of"
                      " layers)")
        ax.set_title("Mitigations: distance from the bound")
        ax.legend(fontsize=6)
        paths.append(save_figure(fig, outdir / "routing_mitigations.png", dpi=120))

        t = t[t["trace_layer"].notna() & ~t["mitigation"].str.endswith("(NVLink)")]
    if not t.empty:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
        base = t[t.mitigation == "none"].set_index("trace_layer")["over_bound"].sort_index()
        a1.plot(base.index, base.values, "o-", color="C0",
                label="dispatch / bound, no mitigation")
        a1.axhline(float(np.median(base.values)), color="C0", ls=":", lw=1)
        a1.set_ylabel("dispatch / balanced bound")
        gi = _per_layer(df[p == "gini"], "gini")
        if not gi.empty:
            a1b = a1.twinx()
            a1b.plot(gi.index, gi.values, "s--", color="C3", alpha=0.7, label="Gini (8 x 4096)")
            a1b.set_ylabel("Gini", color="C3")
            a1b.legend(fontsize=7, loc="upper right")
        a1.legend(fontsize=7, loc="upper left")
        a1.set_title(f"Every layer of the trace ({TRACE_MODEL or 'real'}); dotted: median")
        for i, (m, g) in enumerate(t[t.mitigation != "none"].groupby("mitigation", sort=False)):
            g = g.set_index("trace_layer")["recovered"].sort_index()
            a2.plot(g.index, 100 * g.values, "o-", ms=3, color=f"C{i + 1}", label=m)
            a2.axhline(100 * float(np.median(g.dropna().values)), color=f"C{i + 1}", ls=":",
                       lw=1)
        a2.axhline(0, color="k", lw=0.5)
        a2.set_xlabel("MoE layer of the trace")
        a2.set_ylabel("gap to the bound recovered (%)")
        a2.legend(fontsize=6, ncol=3)
        paths.append(save_figure(fig, outdir / "routing_trace_layers.png", dpi=120))
    return paths


def _main(argv=None) -> None:
    """``python experiments/routing_study.py RESULTS/routing_study``: print the mitigation
    table (trace layers apart) and the per-layer distribution, read from the sweep's Parquet."""
    import sys

    import pandas as pd

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python experiments/routing_study.py RESULTS/routing_study")
    df = pd.read_parquet(args[0])
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    df = df[df["status"] == "ok"] if "status" in df else df
    with pd.option_context("display.width", 200, "display.max_rows", 500,
                           "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        t = table(df)
        if not t.empty:
            print(t[t["trace_layer"].isna()].drop(columns=["trace_layer"]).to_string(index=False))
            print()
        print(layer_table(df).to_string(index=False))


if __name__ == "__main__":
    _main()
