#!/usr/bin/env python3
"""Draw ``docs/nvlink_alltoall.png``: measured all-to-all times versus netsim.

Left: uniform all-to-all time versus bytes per pair for each world size (markers:
measured medians; lines: the fitted model ``c + a (n-1) + L / B``).
Right: the skewed (Zipf-routed Mixtral) matrices, measured versus netsim's flow model on a
crossbar with the parameters fitted on the uniform rows only (not refitted); the dashed
lines are +-20 %.

Usage: ``python benchmarks/plot_nvlink.py [--csv ...] [--graph-csv ...] [--out ...]``.
Also prints the fitted parameters and the error table (Markdown) that
``docs/nvlink_validation.md`` quotes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from netsim.workload.calibration import CALIBRATION_DIR  # noqa: E402
from netsim.tools.nvlink_fit import (  # noqa: E402
    error_summary, evaluate, fit, load_measurements,
)

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=CALIBRATION_DIR / "h200x4_alltoall.csv")
    ap.add_argument("--graph-csv", type=Path, default=CALIBRATION_DIR / "h200x4_alltoall_graph.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "nvlink_alltoall.png")
    args = ap.parse_args(argv)

    sets = [("eager", args.csv)]
    if args.graph_csv and args.graph_csv.is_file():
        sets.append(("CUDA graph", args.graph_csv))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    colors = {2: "tab:blue", 3: "tab:green", 4: "tab:red", 8: "tab:purple"}
    ax = axes[0]
    lines, allt = [], []
    for label, csv in sets:
        uni = load_measurements(csv, kind="uniform")
        res = fit(uni)
        p = res.params
        sk = evaluate(load_measurements(csv, kind="skewed"), p, with_netsim=True)
        su, ss = res.summary(), error_summary(sk, "netsim_rel_err")
        lines.append(f"| {label} | {p.bandwidth_Bps / 1e9:.1f} | {p.latency_s * 1e6:.2f} | "
                     f"{p.fixed_s * 1e6:.2f} | {su['median_abs_rel_err']:.1%} | "
                     f"{su['max_abs_rel_err']:.1%} | {ss['mean_rel_err']:+.1%} | "
                     f"{ss['mean_abs_rel_err']:.1%} | {ss['max_abs_rel_err']:.1%} |")
        print(f"{label} ({csv.name}): {p}")
        print(sk[["world_size", "matrix_id", "median_s", "model_s", "netsim_s",
                  "netsim_rel_err"]].to_string(index=False))
        eager = label == "eager"
        for n, g in uni.groupby("world_size"):
            g = g.sort_values("bytes_per_pair")
            x = g["bytes_per_pair"].to_numpy(float)
            y = g["median_s"].to_numpy(float)
            ax.plot(x, y * 1e6, "o" if eager else "s", ms=4, mfc=colors.get(n) if eager else "none",
                    color=colors.get(n), alpha=0.85, label=f"n={n} measured ({label})")
            allt.extend(sk["median_s"].tolist() + sk["netsim_s"].tolist())
            model = res.table[res.table.world_size == n].sort_values("bytes_per_pair")
            ax.plot(model["bytes_per_pair"], model["model_s"] * 1e6, "-" if eager else ":",
                    color=colors.get(n), lw=1.2, label=f"n={n} model ({label} fit)")
        ax2 = axes[1]
        for n, g in sk.groupby("world_size"):
            ax2.scatter(g["median_s"] * 1e6, g["netsim_s"] * 1e6, marker="o" if eager else "s",
                        facecolors=colors.get(n) if eager else "none", edgecolors=colors.get(n),
                        label=f"n={n} ({label})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("bytes per GPU pair")
    ax.set_ylabel("all_to_all_single time (us)")
    ax.set_title("Uniform all-to-all, 4x H200 (NVLink/NVSwitch), NCCL")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2)
    ax2 = axes[1]
    xs = np.geomspace(min(allt) * 1e6 * 0.7, max(allt) * 1e6 * 1.4, 50)
    ax2.plot(xs, xs, "k-", lw=0.8, label="simulated = measured")
    ax2.plot(xs, xs * 1.2, "k--", lw=0.5, label="+-20 %")
    ax2.plot(xs, xs * 0.8, "k--", lw=0.5)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("measured time (us)")
    ax2.set_ylabel("netsim flow model on crossbar (us)")
    ax2.set_title("Zipf(1.2) Mixtral-8x7B dispatch: not refitted")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")
    print("| timing | B (GB/s) | a (us) | c (us) | uniform median abs err | uniform max abs err |"
          " skewed mean err | skewed mean abs err | skewed max abs err |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
