#!/usr/bin/env python3
"""Draw ``docs/nvlink_alltoall.png``: measured all-to-all times versus netsim.

Left: uniform all-to-all time versus bytes per pair for each world size (markers:
measured medians; lines: the fitted model ``c + a (n-1) + L / B``).
Right: the skewed (Zipf-routed Mixtral) matrices, measured versus netsim's flow model on a
crossbar with the parameters fitted on the uniform rows only (not refitted); the dashed
lines are +-20 %.

Usage: ``python benchmarks/plot_nvlink.py [--csv ...] [--graph-csv ...] [--out ...]``.
Also prints the fitted parameters and the error table (Markdown).

``--write docs/nvlink_validation.md`` (draws nothing) writes that page's generated blocks from
the CSVs' rows instead: ``<!-- nvlink_fit fit -->`` (the fitted parameters and their errors),
``<!-- nvlink_fit ramp -->`` (time, bandwidth and model error per size of the uniform rows) and
``<!-- nvlink_fit skewed -->`` (each skewed matrix, measured against netsim), each up to its
``<!-- /nvlink_fit -->``; ``--check FILE`` exits 1 when they differ from the rows.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from netsim.workload.calibration import CALIBRATION_DIR  # noqa: E402
from netsim.tools.docblock import write_blocks  # noqa: E402
from netsim.tools.nvlink_fit import (  # noqa: E402
    error_summary, evaluate, fit, load_measurements,
)

ROOT = Path(__file__).resolve().parents[1]
TAG = "nvlink_fit"  # docs/nvlink_validation.md: <!-- nvlink_fit NAME --> ... <!-- /nvlink_fit -->
NVLINK4_GBPS = 450.0  # NVLink 4 datasheet bandwidth per GPU and direction, GB/s


def _size(b: float) -> str:
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= k:
            return f"{b / k:g} {unit}"
    return f"{b:g} B"


def _span(values, fmt: str = "{:.0f}", sep: str = "-") -> str:
    """``lo-hi`` of the values (one value when they are equal once formatted)."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _pct_span(values) -> str:
    return _span([int(round(100 * v)) for v in values], "{:+d} %", " to ")


def _us(values) -> str:
    """``lo-hi`` of times in us: three digits below 100 us, whole microseconds above."""
    lo, hi = min(values), max(values)
    f = [f"{x:.3g}" if x < 100 else f"{x:,.0f}" for x in (lo, hi)]
    return f[0] if f[0] == f[1] else f"{f[0]}-{f[1]}"


def _fit_line(label: str, p, su: dict, ss: dict) -> str:
    return (f"| {label} | {p.bandwidth_Bps / 1e9:.1f} | {p.latency_s * 1e6:.2f} | "
            f"{p.fixed_s * 1e6:.2f} | {su['median_abs_rel_err']:.1%} | "
            f"{su['max_abs_rel_err']:.1%} | {ss['mean_rel_err']:+.1%} | "
            f"{ss['mean_abs_rel_err']:.1%} | {ss['max_abs_rel_err']:.1%} |")


FIT_HEAD = ("| timing | B (GB/s) | a (us) | c (us) | uniform median abs err | uniform max abs err |"
            " skewed mean err | skewed mean abs err | skewed max abs err |\n"
            "|---|---|---|---|---|---|---|---|---|")


def doc_blocks(sets: list[tuple[str, Path]], repeat_csv: Path | None) -> dict[str, str]:
    """The Markdown blocks of docs/nvlink_validation.md, from the measured rows: ``fit``,
    ``ramp`` and ``skewed``."""
    fits = []
    for label, csv in sets:
        uni = load_measurements(csv, kind="uniform")
        res = fit(uni)
        sk = evaluate(load_measurements(csv, kind="skewed"), res.params, with_netsim=True)
        fits.append((label, uni, res, sk))
    lines = [FIT_HEAD]
    for label, uni, res, sk in fits:
        lines.append(_fit_line(label, res.params, res.summary(),
                               error_summary(sk, "netsim_rel_err")))
    label, uni, _, sk = fits[0]
    ab = fit(uni, weights="absolute")
    lines.append("")
    lines.append(f"Errors are `(model - measured) / measured`; "
                 + "; ".join(f"{lb}: {len(u)} uniform and {len(s)} skewed points"
                             for lb, u, _, s in fits) + ". "
                 f"The same {label} rows fitted on absolute rather than relative error: "
                 f"B = {ab.params.bandwidth_Bps / 1e9:.0f} GB/s, "
                 f"c = {ab.params.fixed_s * 1e6:.0f} us, "
                 f"median abs error {ab.summary()['median_abs_rel_err']:.0%}.")
    fit_block = "\n".join(lines)

    rep = None
    if repeat_csv is not None and Path(repeat_csv).is_file():
        rep = load_measurements(repeat_csv, kind="uniform")
    head = "| bytes per pair |"
    rule = "|---:|"
    for label, *_ in fits:
        head += f" {label}: time (us) | {label}: GB/s per GPU | {label}: model error |"
        rule += "---:|---:|---:|"
        if label == "eager" and rep is not None:
            ns = ",".join(str(n) for n in sorted(rep["world_size"].unique()))
            head += f" eager again, n={ns} (us) |"
            rule += "---:|"
    lines = [head, rule]
    sizes = sorted(fits[0][1]["bytes_per_pair"].unique())
    for b in sizes:
        cells = [_size(b)]
        for label, uni, res, _ in fits:
            g = res.table[res.table["bytes_per_pair"] == b]
            cells.append(_us(g["median_s"] * 1e6))
            cells.append(_span(g["max_row_offdiag_bytes"] / g["median_s"] / 1e9))
            cells.append(_pct_span(g["rel_err"]))
            if label == "eager" and rep is not None:
                r = rep[rep["bytes_per_pair"] == b]
                cells.append(_us(r["median_s"] * 1e6) if len(r) else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    ns = sorted(fits[0][1]["world_size"].unique())
    lines.append(f"Ranges are over the world sizes {', '.join(map(str, ns))}; GB/s per GPU is a "
                 "GPU's off-diagonal bytes sent over the measured time; the model is each "
                 "timing's own fit above.")
    big = [b for b in sizes if b >= 128 * 2**20]
    if len(big) >= 2:
        for label, uni, _, _ in fits:
            inc = []
            for n, g in uni.groupby("world_size"):
                g = g.set_index("bytes_per_pair")
                lo, hi = g.loc[big[0]], g.loc[big[-1]]
                inc.append((hi["max_row_offdiag_bytes"] - lo["max_row_offdiag_bytes"])
                           / (hi["median_s"] - lo["median_s"]) / 1e9)
            lines.append(f"{label}: incremental bandwidth from {_size(big[0])} to "
                         f"{_size(big[-1])} per pair {_span(inc)} GB/s per GPU "
                         f"({_span([100 * x / NVLINK4_GBPS for x in inc])} % of NVLink 4's "
                         f"{NVLINK4_GBPS:.0f} GB/s).")
    ramp_block = "\n".join(lines)

    head = "| n | tokens per GPU | seed |"
    rule = "|---:|---:|---:|"
    for label, *_ in fits:
        head += f" {label}: measured (us) | {label}: netsim (us) | {label}: error |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    keyed = []
    for label, _, _, sk in fits:
        keyed.append(sk.set_index("matrix_id"))
    ids = sorted(keyed[0].index, key=lambda m: (int(keyed[0].loc[m, "world_size"]),
                                               int(m.split("_T")[1].split("_")[0]),
                                               m.split("_s")[-1]))
    for m in ids:
        tok = int(m.split("_T")[1].split("_")[0])
        seed = m.rsplit("_s", 1)[1]
        cells = [str(int(keyed[0].loc[m, "world_size"])), f"{tok:,}", seed]
        for k in keyed:
            r = k.loc[m]
            cells += [f"{r['median_s'] * 1e6:.1f}", f"{r['netsim_s'] * 1e6:.1f}",
                      f"{100 * r['netsim_rel_err']:+.1f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("netsim: the flow model on the crossbar with each timing's uniform fit, not "
                 "refitted; the matrices are Mixtral-8x7B dispatches with Zipf(1.2) routing.")
    skewed_block = "\n".join(lines)
    return {"fit": fit_block, "ramp": ramp_block, "skewed": skewed_block}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=CALIBRATION_DIR / "h200x4_alltoall.csv")
    ap.add_argument("--graph-csv", type=Path, default=CALIBRATION_DIR / "h200x4_alltoall_graph.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "nvlink_alltoall.png")
    ap.add_argument("--repeat-csv", type=Path,
                    default=CALIBRATION_DIR / "h200x4_alltoall_repeat.csv",
                    help="a second eager run of some uniform rows (the ramp table's last column)")
    ap.add_argument("--write", type=Path, help="write the generated blocks into this Markdown "
                    "file (nothing drawn)")
    ap.add_argument("--check", type=Path, help="exit 1 if this file's blocks differ from the rows")
    args = ap.parse_args(argv)

    sets = [("eager", args.csv)]
    if args.graph_csv and args.graph_csv.is_file():
        sets.append(("CUDA graph", args.graph_csv))
    if args.write or args.check:
        blocks = doc_blocks(sets, args.repeat_csv)
        return write_blocks(args.write or args.check, TAG, blocks.__getitem__, bool(args.check),
                            "the NVLink fit blocks")
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
        lines.append(_fit_line(label, p, su, ss))
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
    print(FIT_HEAD)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
