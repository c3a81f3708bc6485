"""Circuit scheduling of MoE all-to-all on an optical circuit switch (the first study, issue 3).

Sweeps the GPU count, the OCS reconfiguration delay from 10 ns to 10 ms (silicon photonics ~10 ns,
fast piezo/PLZT switches ~1-10 us, MEMS ~1-10 ms), the routing (uniform mock routing, Zipf
popularity and a profile calibrated to a real checkpoint), tokens per GPU, the per-batch compute
overhead and the schedulers: BvN, greedy:K for K = 1..8, Solstice, rotor and the congestion-free
``ideal`` crossbar, all with dispatch-compute-combine overlap on an ``ocs_direct`` fabric.

The full grid is large (several thousand points, hours on 2 cores); ``ocs_scheduling_quick.py``
runs a subset in minutes. ``plots(df, outdir)`` draws the study's figures; ``netsim report``
calls it.
"""
from __future__ import annotations

NAME = "ocs_scheduling"
SEEDS = [0, 1]
BASE = {"topology": "ocs_direct", "workload": "qwen3_30b_a3b", "gpu": "h100-roofline",
        "overlap": True, "ocs_mode": "all_stop", "port_gbps": 400.0, "tolerance": 0.0}
DELAYS_US = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
TECH = {0.01: "silicon photonics", 1.0: "fast piezo/PLZT", 10.0: "fast piezo/PLZT",
        1000.0: "MEMS", 10000.0: "MEMS"}
SCHEDULERS = ["ideal", "bvn", "solstice", "rotor"] + [f"greedy:{k}" for k in range(1, 9)]
GRID = {
    "gpus": [8, 16, 32, 64, 128],
    "reconfig_us": DELAYS_US,
    "routing": ["uniform", "zipf:1.2", "profile:qwen3_30b_a3b:wikitext"],
    "tokens_per_gpu": [512, 4096],
    "batch_overhead_us": [10.0, 40.0],
    "scheduler": SCHEDULERS,
}


def plots(df, outdir) -> list:
    """Layer time over ideal vs delay; bubble fraction; matchings and batch size; best K."""
    from netsim.report import plot_frame, save_figure

    df, outdir = plot_frame(df, outdir)
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    main = ["bvn", "solstice", "rotor", "greedy:1", "greedy:2", "greedy:4", "greedy:8", "ideal"]
    big = df[df["gpus"] == df["gpus"].max()]

    def per_sched(ax, metric, data, ylabel, logy=False):
        for i, s in enumerate([s for s in main if s in set(data["scheduler"])]):
            g = data[data["scheduler"] == s].groupby("reconfig_us")[metric]
            m = g.mean()
            ax.plot(m.index, m.values, "o-", color=f"C{i}", label=s)
            ax.fill_between(m.index, g.min().values, g.max().values, color=f"C{i}", alpha=0.15)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("OCS reconfiguration delay (us)")
        ax.set_ylabel(ylabel)
        for x, name in ((0.01, "Si photonics"), (10.0, "PLZT"), (10000.0, "MEMS")):
            if data["reconfig_us"].min() <= x <= data["reconfig_us"].max():
                ax.axvline(x, color="grey", lw=0.5, ls=":")
                ax.text(x, ax.get_ylim()[1], name, fontsize=6, rotation=90, va="top")

    for metric, ylabel, fname, logy in (
            ("ratio_to_ideal", "MoE layer time / ideal crossbar layer", "ocs_ratio_vs_delay.png", True),
            ("bubble_fraction", "circuit time carrying no data", "ocs_bubble_vs_delay.png", False)):
        routings = sorted(set(big["routing"]))
        fig, axes = plt.subplots(1, len(routings), figsize=(4.6 * len(routings), 4), squeeze=False)
        for ax, r in zip(axes[0], routings):
            per_sched(ax, metric, big[big["routing"] == r], ylabel, logy)
            ax.set_title(f"{r}, {int(big['gpus'].max())} GPUs", fontsize=9)
        axes[0][0].legend(fontsize=7)
        paths.append(save_figure(fig, outdir / fname))

    # matchings and batch size per scheduler (largest N, 10 us)
    sub = big[np.isclose(big["reconfig_us"], 10.0)] if (np.isclose(big["reconfig_us"], 10.0)).any() else big
    sub = sub[sub["scheduler"] != "ideal"]
    if not sub.empty:
        agg = sub.groupby("scheduler")[["n_matchings", "fallback_matchings", "mean_batch_tokens"]].mean()
        agg = agg.reindex([s for s in main if s in agg.index])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, 3.8))
        a1.bar(agg.index, agg["n_matchings"], label="scheduler's own")
        a1.bar(agg.index, agg["fallback_matchings"], bottom=agg["n_matchings"], label="fallback")
        a1.set_yscale("log")
        a1.set_ylabel("matchings per layer (dispatch + combine)")
        a1.legend(fontsize=7)
        a2.bar(agg.index, agg["mean_batch_tokens"], color="C2")
        a2.set_yscale("log")
        a2.set_ylabel("mean expert batch (tokens)")
        for a in (a1, a2):
            a.tick_params(axis="x", rotation=45, labelsize=7)
        fig.suptitle(f"{int(big['gpus'].max())} GPUs, reconfiguration 10 us", fontsize=9)
        paths.append(save_figure(fig, outdir / "ocs_matchings_batches.png"))

    # best K versus delay
    gk = df[df["scheduler"].str.startswith("greedy:")].copy()
    if not gk.empty:
        gk["K"] = gk["scheduler"].str.split(":").str[1].astype(int)
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for i, (n, g) in enumerate(gk.groupby("gpus")):
            m = g.groupby(["reconfig_us", "K"])["ratio_to_ideal"].mean().reset_index()
            best = m.loc[m.groupby("reconfig_us")["ratio_to_ideal"].idxmin()]
            ax.plot(best["reconfig_us"], best["K"], "o-", color=f"C{i}", label=f"{n} GPUs")
        ax.set_xscale("log")
        ax.set_xlabel("OCS reconfiguration delay (us)")
        ax.set_ylabel("best K for greedy:K")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, outdir / "ocs_best_k.png"))
    return paths
