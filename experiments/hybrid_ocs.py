"""Circuit schedules on a two-tier fabric, with and without an electrical network for the leftover.

A ``hybrid`` fabric: 8 servers of 4 GPUs, NVLink inside a server, every NIC (400 Gbit/s) on an
optical circuit switch that a scheduler drives between servers (all rails at once), and beside it
an electrical packet switch of ``eps_gbps`` per NIC (0: none). Compared, over the OCS
reconfiguration delay (10 ns to 10 ms):

* ``hier_bvn:4`` (hierarchical BvN, Wu et al. arXiv:2602.22756: balance inside a server, BvN
  between servers);
* ``greedy:K`` with its cleanup round (every byte on circuits);
* ``greedy:K:max:leftover``: what K matchings leave goes over the electrical network from time 0
  (c-Through / Helios), or, without one, through further greedy rounds;
* ``ideal``: the circuits replaced by one non-blocking switch of the same bandwidth per server.

``plots(df, outdir)`` draws the layer time versus delay per electrical bandwidth and the bytes the
electrical network carried. ``netsim report`` calls it.
"""
from __future__ import annotations

NAME = "hybrid_ocs"
SEEDS = [0]
BASE = {"topology": "hybrid", "servers": 8, "gpus_per_server": 4, "scale_out": "ocs",
        "nic_gbps": 400.0, "workload": "qwen3_30b_a3b", "tokens_per_gpu": 1024,
        "gpu": "h100-roofline", "overlap": True, "ocs_mode": "all_stop", "tolerance": 0.0,
        "batch_overhead_us": 20.0}
DELAYS_US = [0.01, 1.0, 10.0, 100.0, 1000.0, 10000.0]
SCHEDULERS = ["ideal", "hier_bvn:4", "greedy:1", "greedy:4", "greedy:1:max:leftover",
              "greedy:2:max:leftover", "greedy:4:max:leftover"]
GRID = {
    "reconfig_us": DELAYS_US,
    "eps_gbps": [0.0, 100.0, 400.0],
    "routing": ["uniform", "zipf:1.2"],
    "scheduler": SCHEDULERS,
}


def plots(df, outdir) -> list:
    """Layer time vs delay, one panel per electrical bandwidth; electrical share of the bytes."""
    from netsim.report import plot_frame, save_figure

    df, outdir = plot_frame(df, outdir)
    import matplotlib.pyplot as plt

    paths = []
    scheds = [s for s in SCHEDULERS if s in set(df["scheduler"])]
    for routing, data in df.groupby("routing"):
        eps = sorted(set(data["eps_gbps"]))
        fig, axes = plt.subplots(1, len(eps), figsize=(4.4 * len(eps), 3.9), squeeze=False,
                                 sharey=True)
        for ax, e in zip(axes[0], eps):
            sub = data[data["eps_gbps"] == e]
            for i, s in enumerate(scheds):
                m = sub[sub["scheduler"] == s].groupby("reconfig_us")["layer_s"].mean() * 1e3
                ax.plot(m.index, m.values, "o-" if "leftover" in s else "s--", color=f"C{i}",
                        label=s, ms=4)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("OCS reconfiguration delay (us)")
            ax.set_title(f"electrical {e:g} Gbit/s per NIC" if e else "no electrical network",
                         fontsize=9)
        axes[0][0].set_ylabel("MoE layer time (ms)")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"hybrid, {int(df['servers'].iloc[0])} servers x "
                     f"{int(df['gpus_per_server'].iloc[0])} GPUs, routing {routing}", fontsize=9)
        paths.append(save_figure(fig, outdir / f"hybrid_layer_vs_delay_{str(routing).replace(':', '')}.png"))
    lo = df[df["scheduler"].str.contains("leftover") & (df["eps_gbps"] > 0)]
    if not lo.empty:
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        share = lo.assign(share=lo["eps_bytes"] / lo["bytes_total"])
        m = share.groupby(["routing", "scheduler"])["share"].mean().unstack(0)
        m.plot.bar(ax=ax)
        ax.set_ylabel("share of bytes on the electrical network")
        ax.tick_params(axis="x", rotation=20, labelsize=7)
        paths.append(save_figure(fig, outdir / "hybrid_electrical_share.png"))
    return paths
