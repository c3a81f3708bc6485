"""Circuit scheduling of MoE all-to-all on an optical circuit switch (the study of issues 3 and 14).

Sweeps the GPU count, the OCS reconfiguration delay from 10 ns to 10 ms (silicon photonics ~10 ns,
fast piezo/PLZT switches ~1-10 us, MEMS ~1-10 ms), the routing (uniform mock routing, Zipf
popularity and a profile calibrated to a real checkpoint), tokens per GPU, the per-batch compute
overhead, the batching rule and the schedulers, all with dispatch-compute-combine overlap on an
``ocs_direct`` fabric (one 400 Gbit/s port per GPU):

* ``bvn`` (BvN with the bottleneck matching rule, its strong form) and ``bvn:any`` (the naive
  any-perfect-matching BvN, named so), ``solstice``, ``rotor`` (traffic-oblivious);
* ``greedy:K`` for K = 1, 2, 4, 8 and K = N - 1 (enough matchings for a dense all-to-all);
* ``ideal``: the max-min crossbar (the circuits replaced by a non-blocking switch of the same
  port rate), simulated, for reference;
* ``batching``: ``merge`` (batches that arrive while a GPU is busy are one kernel launch, what a
  runtime may do) for every scheduler, ``per_matching`` (every matching's batch is its own launch,
  paying the fixed cost) for the schedulers with many matchings and for greedy's extremes.

Every row carries ``overlap_bound_s`` (a lower bound no schedule beats) and ``ratio_to_bound``;
``ratio_to_serial_ideal`` divides by the non-overlapped reference ``serial_ideal_s`` and can fall below 1.

The full grid is large (hours on 2 cores); ``ocs_scheduling_quick.py`` runs a subset in minutes.
``plots(df, outdir)`` draws the study's figures; ``netsim report`` calls it. The README's numbers
come from ``docs/ocs_numbers.py`` reading the sweep's Parquet.
"""
from __future__ import annotations

NAME = "ocs_scheduling"
SEEDS = [0, 1, 2]
BASE = {"topology": "ocs_direct", "workload": "qwen3_30b_a3b", "gpu": "h100-roofline",
        "overlap": True, "ocs_mode": "all_stop", "port_gbps": 400.0, "tolerance": 0.0}
DELAYS_US = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
TECH = {0.01: "silicon photonics", 1.0: "fast piezo/PLZT", 10.0: "fast piezo/PLZT",
        1000.0: "MEMS", 10000.0: "MEMS"}
GPUS = [8, 16, 32, 64, 128]
ROUTINGS = ["uniform", "zipf:1.2", "profile:qwen3_30b_a3b:wikitext"]
KS = [1, 2, 4, 8]


def schedulers(n: int) -> list[str]:
    """The schedulers of an N-GPU point: greedy:K for K in KS and K = N - 1."""
    ks = sorted(set(k for k in KS if k < n) | {n - 1})
    return ["ideal", "bvn", "bvn:any", "solstice", "rotor"] + [f"greedy:{k}" for k in ks]


def per_matching(n: int) -> list[str]:
    """Schedulers also run with batching=per_matching."""
    return ["bvn", "bvn:any", "solstice", "rotor", "greedy:1", f"greedy:{n - 1}"]


def grid_points(gpus, delays, routings, extra: dict):
    """Every (N, delay, routing, extra..., scheduler, batching) point."""
    import itertools

    keys = list(extra)
    for n, d, r, *vals in itertools.product(gpus, delays, routings, *(extra[k] for k in keys)):
        p = {"gpus": n, "reconfig_us": d, "routing": r, **dict(zip(keys, vals))}
        for s in schedulers(n):
            yield p | {"scheduler": s}
            if s in per_matching(n):
                yield p | {"scheduler": s, "batching": "per_matching"}


def points():
    yield from grid_points(GPUS, DELAYS_US, ROUTINGS,
                           {"tokens_per_gpu": [512, 4096], "batch_overhead_us": [10.0, 40.0]})


# ---- figures -------------------------------------------------------------------------------------

MAIN = ["bvn", "bvn:any", "solstice", "rotor", "greedy:1", "greedy:4", "greedy:N-1", "ideal"]
# colour, line style, marker, width: lines the rows put on one another stay visible (rotor is
# drawn wide under greedy:N-1; greedy:1 and greedy:4 have their own markers)
STYLE = {"bvn": ("C0", "-", "o", 1.5), "bvn:any": ("C0", ":", "o", 1.5),
         "solstice": ("C1", "-", "^", 1.5), "rotor": ("C2", "-", "s", 4.0),
         "greedy:1": ("C3", "--", "v", 1.5), "greedy:4": ("C3", "-.", "x", 1.5),
         "greedy:N-1": ("C3", "-", "o", 1.5), "ideal": ("k", "-", "", 1.5)}


def label_frame(df):
    """``sched``: the scheduler with greedy:N-1 named so, ``batching`` filled (the max-min
    crossbar has none)."""
    import numpy as np

    df = df.copy()
    n1 = "greedy:" + (df["gpus"].astype(int) - 1).astype(str)
    df["sched"] = np.where(df["scheduler"] == n1, "greedy:N-1", df["scheduler"])
    if "batching" not in df:
        df["batching"] = "merge"
    df["batching"] = df["batching"].fillna("merge")
    df.loc[df["scheduler"] == "ideal", "batching"] = "merge"
    return df


def plots(df, outdir) -> list:
    """Layer time and the overlapped-layer bound versus delay (one panel per routing, merge and
    per-matching batching); bubbles; matchings and batch size per routing; best K."""
    from netsim.report import plot_frame, save_figure

    df, outdir = plot_frame(df, outdir)
    import matplotlib.pyplot as plt
    import numpy as np

    df = label_frame(df)
    paths = []
    big = df[df["gpus"] == df["gpus"].max()]
    nbig = int(big["gpus"].max())
    routings = sorted(set(big["routing"]))

    def per_sched(ax, data, metric, batching, scale=1.0):
        for s in MAIN:
            sub = data[(data["sched"] == s) & (data["batching"] == ("merge" if s == "ideal" else batching))]
            if sub.empty or sub[metric].isna().all():
                continue
            g = sub.groupby("reconfig_us")[metric]
            m = g.mean() * scale
            c, ls, mk, lw = STYLE[s]
            lab = "max-min crossbar (scheduler=ideal)" if s == "ideal" else s
            ax.plot(m.index, m.values, marker=mk, ms=4 if lw < 3 else 7, color=c, ls=ls, lw=lw,
                    alpha=0.55 if lw >= 3 else 1.0, label=lab)
            ax.fill_between(m.index, g.min().values * scale, g.max().values * scale, color=c,
                            alpha=0.12)
        if metric == "layer_s":
            circ = data[data["scheduler"] != "ideal"]
            b = circ.groupby("reconfig_us")["overlap_bound_s"].mean() * scale
            ax.plot(b.index, b.values, color="0.4", ls="--", lw=2.5, alpha=0.6,
                    label="overlapped-layer lower bound")
        ax.set_xscale("log")
        ax.set_xlabel("OCS reconfiguration delay (us)", fontsize=8)
        for x, name in ((0.01, "Si photonics"), (10.0, "PLZT"), (10000.0, "MEMS")):
            if data["reconfig_us"].min() <= x <= data["reconfig_us"].max():
                ax.axvline(x, color="grey", lw=0.5, ls=":")
                ax.annotate(name, (x, 0.97), xycoords=("data", "axes fraction"), fontsize=6,
                            rotation=90, va="top", ha="right")

    for metric, ylabel, fname, logy, scale in (
            ("layer_s", "MoE layer time (ms)", "ocs_layer_vs_delay.png", True, 1e3),
            ("bubble_fraction", "port time of held circuits carrying no data",
             "ocs_bubble_vs_delay.png", False, 1.0)):
        bats = ["merge", "per_matching"] if metric == "layer_s" else ["merge"]
        fig = plt.figure(figsize=(4.6 * len(routings), 3.4 * len(bats) + 0.8))
        gs = fig.add_gridspec(len(bats) + 1, len(routings), height_ratios=[1.0] * len(bats) + [0.2])
        axes = [[fig.add_subplot(gs[i, j]) for j in range(len(routings))] for i in range(len(bats))]
        for bi, b in enumerate(bats):
            for ax, r in zip(axes[bi], routings):
                per_sched(ax, big[big["routing"] == r], metric, b, scale)
                if logy:
                    ax.set_yscale("log")
                ax.set_title(f"{r}, {nbig} GPUs, batching={b}; bands: seeds' range", fontsize=8)
            axes[bi][0].set_ylabel(ylabel, fontsize=8)
        h, lab = axes[0][0].get_legend_handles_labels()
        lax = fig.add_subplot(gs[-1, :])  # the legend's own row: inside the frame, over nothing
        lax.axis("off")
        lax.legend(h, lab, loc="center", ncol=5, fontsize=7, frameon=False)
        paths.append(save_figure(fig, outdir / fname))

    # matchings and batch size per scheduler, one panel pair per routing (largest N, 10 us)
    sub = big[np.isclose(big["reconfig_us"], 10.0)] if np.isclose(big["reconfig_us"], 10.0).any() else big
    sub = sub[(sub["scheduler"] != "ideal") & (sub["batching"] == "merge")]
    if not sub.empty:
        fig, axes = plt.subplots(2, len(routings), figsize=(4.6 * len(routings), 6.4), squeeze=False)
        for ci, r in enumerate(routings):
            agg = sub[sub["routing"] == r].groupby("sched")[
                ["n_matchings", "fallback_matchings", "mean_batch_tokens"]].mean()
            agg = agg.reindex([s for s in MAIN if s in agg.index])
            a1, a2 = axes[0][ci], axes[1][ci]
            a1.bar(agg.index, agg["n_matchings"], label="scheduler's own")
            a1.bar(agg.index, agg["fallback_matchings"], bottom=agg["n_matchings"], label="fallback")
            a1.set_yscale("log")
            a1.set_title(f"{r}, {nbig} GPUs, 10 us, mean over seeds", fontsize=8)
            a2.bar(agg.index, agg["mean_batch_tokens"], color="C2")
            a2.set_yscale("log")
            for a in (a1, a2):
                a.tick_params(axis="x", rotation=45, labelsize=7)
        axes[0][0].set_ylabel("matchings per layer (dispatch + combine)", fontsize=8)
        axes[1][0].set_ylabel("mean expert batch (tokens)", fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, outdir / "ocs_matchings_batches.png"))

    # best K versus delay, per routing and batching
    gk = df[df["scheduler"].str.startswith("greedy:")].copy()
    if not gk.empty:
        gk["K"] = gk["scheduler"].str.split(":").str[1].astype(int)
        fig, axes = plt.subplots(1, len(routings), figsize=(4.4 * len(routings), 3.6), squeeze=False,
                                 sharey=True)
        for ax, r in zip(axes[0], routings):
            for i, (n, g) in enumerate(gk[(gk["routing"] == r) & (gk["batching"] == "merge")].groupby("gpus")):
                m = g.groupby(["reconfig_us", "K"])["layer_s"].mean().reset_index()
                best = m.loc[m.groupby("reconfig_us")["layer_s"].idxmin()]
                ax.plot(best["reconfig_us"], best["K"], "o-", color=f"C{i}", label=f"{n} GPUs")
            ax.set_xscale("log")
            ax.set_yscale("log", base=2)
            ax.set_ylim(0.7, 1.5 * gk["K"].max())
            ax.set_xlabel("OCS reconfiguration delay (us)")
            ax.set_title(f"{r}, batching=merge", fontsize=8)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("best K for greedy:K (mean layer time)")
        fig.tight_layout()
        paths.append(save_figure(fig, outdir / "ocs_best_k.png"))
    return paths
