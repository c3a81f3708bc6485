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

The Mixtral-8x7B HumanEval trace (``../shared/data/routing/``, beside the repository) joins the
study when it is present; without it those points are skipped. ``plots(df, outdir)`` draws the
figures, ``table(df)`` the README's mitigation table. Small by design: ``netsim sweep
experiments/routing_study.py --jobs 2`` runs it in a few minutes.
"""
from __future__ import annotations

from pathlib import Path

NAME = "routing_study"
SEEDS = [0]

ROOT = Path(__file__).resolve().parents[1]
TRACE = (ROOT.parent / "shared" / "data" / "routing" / "mixtral8x7b_humaneval_2problems.jsonl")
HAVE_TRACE = TRACE.is_file()
TRACE_SPEC = f"trace:{TRACE}"

CHECKPOINTS = ("deepseek_moe_16b", "nemotron_30b", "qwen3_30b_a3b", "deepseek_v2_lite",
               "qwen3_5_35b")
SCAN_TOKENS = 16384      # global batch of the EP scan
GINI_BATCH = (8, 4096)   # the profiles' reference batch
LEAF = dict(topology="leaf_spine", gpus=32, gpus_per_server=4, servers_per_leaf=2, spines=2,
            oversubscription=2.0, pcie_gbps=400.0)  # PCIe = NIC rate: ideal_s is exact
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
    out = [("deepseek_v2_lite", "uniform"),
           ("deepseek_v2_lite", f"profile:{real_model}:wikitext"),
           ("deepseek_v2_lite", f"profile:{real_model}:mock"),
           ("deepseek_v2_lite", "drift:1.0:0.7")]
    if HAVE_TRACE:
        out += [("mixtral_8x7b", "uniform"), ("mixtral_8x7b", TRACE_SPEC)]
    return out


def points():
    # 1. EP scan (analytic: the statistics need no simulation)
    for wl, routing in _routings():
        if routing.startswith("drift"):
            continue
        for ep in (4, 8, 16, 32):
            yield dict(topology="crossbar", gpus=ep, fabric="analytic", workload=wl,
                       routing=routing, tokens_per_gpu=SCAN_TOKENS // ep)
    # 2. Gini, mock versus real, per profile (and trace versus uniform)
    for ck in CHECKPOINTS:
        for cond in ("wikitext", "mock", "uniform"):
            yield dict(topology="crossbar", gpus=GINI_BATCH[0], fabric="analytic",
                       workload="deepseek_v2_lite", routing=f"profile:{ck}:{cond}",
                       tokens_per_gpu=GINI_BATCH[1])
    if HAVE_TRACE:
        for routing in ("uniform", TRACE_SPEC):
            yield dict(topology="crossbar", gpus=GINI_BATCH[0], fabric="analytic",
                       workload="mixtral_8x7b", routing=routing, tokens_per_gpu=GINI_BATCH[1])
    # 3. dispatch over ideal versus batch size
    for wl, routing in _routings():
        if routing.startswith("drift"):
            continue
        for tpg in (64, 256, 1024, 4096):
            yield dict(LEAF, workload=wl, routing=routing, tokens_per_gpu=tpg, tolerance=1e-3)
    # 4. mitigations (4 iterations after a warm-up)
    for wl, routing in _routings():
        for mit, extra in MITIGATIONS.items():
            yield dict(LEAF, workload=wl, routing=routing, tokens_per_gpu=512, iterations=4,
                       tolerance=1e-3, **extra)
        for coll in ("direct", "hierarchical"):
            yield dict(NVL, workload=wl, routing=routing, tokens_per_gpu=512, iterations=4,
                       tolerance=1e-3, collective=coll)


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


def _label(routing: str) -> str:
    if routing.startswith("trace:"):
        return "trace (Mixtral, real)"
    return routing.replace("profile:", "")


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
    balanced bound, fraction of the baseline's gap to the bound recovered, layer ms."""
    import pandas as pd

    d = df[(part(df) == "mitigation") & (df.get("status", "ok") == "ok")].copy()
    if d.empty:
        return pd.DataFrame()
    d["mitigation"] = [mitigation_name(r) for r in d.to_dict("records")]
    d["routing"] = d["routing"].map(_label)
    d["nvl"] = d["mitigation"].str.endswith("(NVLink)")
    g = d.groupby(["workload", "routing", "nvl", "mitigation"], sort=False).agg(
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
    return g.drop(columns=["nvl"])


def plots(df, outdir) -> list:
    """The study's figures (PNG) in ``outdir``; returns their paths."""
    from netsim.report import plot_frame, save_figure

    df, outdir = plot_frame(df, outdir)
    import matplotlib.pyplot as plt
    import numpy as np

    p = part(df)
    paths = []

    d = df[p == "ep_scan"]
    if not d.empty:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (routing, g) in enumerate(sorted(d.groupby("routing"), key=lambda x: x[0])):
            g = g.sort_values("gpus")
            c = f"C{i}"
            ax.plot(g["gpus"], g["imbalance"], "o-", color=c, label=f"{_label(routing)}: expert")
            ax.plot(g["gpus"], g["rank_max_mean"], "s--", color=c, alpha=0.7,
                    label=f"{_label(routing)}: rank")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("EP degree (ranks); global batch fixed")
        ax.set_ylabel("max / mean tokens")
        ax.set_title("Per-expert (solid) vs per-rank (dashed) imbalance")
        ax.legend(fontsize=6)
        paths.append(save_figure(fig, outdir / "routing_ep_scan.png", dpi=120))

    d = df[p == "gini"]
    if not d.empty:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        labels, real, mock, unif = [], [], [], []
        for ck in CHECKPOINTS:
            rows = {c: d[d["routing"] == f"profile:{ck}:{c}"]["gini"].mean()
                    for c in ("wikitext", "mock", "uniform")}
            labels.append(ck)
            real.append(rows["wikitext"])
            mock.append(rows["mock"])
            unif.append(rows["uniform"])
        tr = d[d["routing"].astype(str).str.startswith("trace:")]
        if not tr.empty:
            labels.append("mixtral (trace)")
            real.append(tr["gini"].mean())
            mock.append(np.nan)
            unif.append(d[(d["routing"] == "uniform")]["gini"].mean())
        x = np.arange(len(labels))
        ax.bar(x - 0.27, real, 0.27, label="real text (wikitext / trace)")
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
        for (wl, routing), g in sorted(d.groupby(["workload", "routing"]), key=lambda x: x[0]):
            g = g.groupby("tokens_per_gpu")["dispatch_over_balanced"].mean()
            ax.plot(g.index, g.values, "o-", label=f"{wl}: {_label(routing)}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens per GPU")
        ax.set_ylabel("dispatch time / balanced ideal")
        ax.set_title("Dispatch over the bound vs batch size, mock vs real")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, outdir / "routing_batch.png", dpi=120))

    t = table(df)
    if not t.empty:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        piv = t.pivot_table(index="mitigation", columns="routing", values="over_bound",
                            sort=False)
        piv.plot.barh(ax=ax)
        ax.set_xlabel("dispatch time / balanced ideal (4 iterations, mean)")
        ax.set_title("Mitigations: distance from the bound")
        ax.legend(fontsize=6)
        paths.append(save_figure(fig, outdir / "routing_mitigations.png", dpi=120))
    return paths
