#!/usr/bin/env python3
"""Plot the measured expert-FFN time and achieved TFLOP/s beside the roofline.

Reads a table written by ``benchmarks/gpu_expert_ffn.py`` (default: the committed
``workloads/calibration/h200.csv``) and draws, for a few presets, log-log:

* left: time of one expert's SwiGLU FFN versus tokens per expert -- measured medians
  (markers, min..max as error bars), the ``h200-measured`` model between and beyond the
  measured points, the ``h200-roofline`` and the least-squares fit ``overhead + flops/peak``;
* right: achieved TFLOP/s versus tokens per expert, measured and roofline.

It also prints (``--summary``) a markdown table of the fitted per-batch overhead and
asymptotic FLOP/s per preset, and the check of the measured grouped (loop) launches
against the sum of the single-expert model over the experts' batches.

``--write docs/compute_model.md`` (draws nothing) writes those tables, and the table of the
batches the cumulative max raises, into that page's ``<!-- compute_model NAME -->`` ...
``<!-- /compute_model -->`` blocks (``fit``, ``monotone``, ``grouped``) from the CSV's rows;
``--check FILE`` exits 1 when they differ from the rows.

Needs numpy, pandas and matplotlib (no torch).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netsim.tools.docblock import write_blocks  # noqa: E402
from netsim.workload.calibration import (  # noqa: E402
    CALIBRATION_DIR, MeasuredCompute, RooflineCompute, ffn_flops, fit_overhead,
)

DEFAULT_PRESETS = ["mixtral_8x7b", "deepseek_v3", "qwen3_30b_a3b"]
TAG = "compute_model"  # docs/compute_model.md: <!-- compute_model NAME --> ... <!-- /compute_model -->


def split_tokens(total: int, experts: int, routing: str, s: float = 1.2) -> list[int]:
    """Same deterministic split as benchmarks/gpu_expert_ffn.py (largest remainder)."""
    w = [1.0] * experts if routing == "uniform" else [(r + 1) ** -s for r in range(experts)]
    exact = [total * x / sum(w) for x in w]
    counts = [int(math.floor(e)) for e in exact]
    order = sorted(range(experts), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def single_table(df: pd.DataFrame, model: MeasuredCompute, roofline: RooflineCompute) -> str:
    """Per preset: the 1-token batch against the roofline's, the OLS and relative fits of
    ``overhead + flops / peak``, the best measured rate and where half of it is reached;
    then the fit pooled over all presets."""
    lines = [f"| preset | hidden x ffn_hidden | weights (MB) | t(1 token) | {roofline.name} "
             "t(1 token) | ratio | overhead (OLS fit) | peak (OLS fit) | overhead (relative fit) "
             "| best measured | half of best from |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    single = df[df.kind == "single"]
    for preset, g in single.groupby("preset", sort=False):
        h, f = int(g.hidden.iloc[0]), int(g.ffn_hidden.iloc[0])
        ols = fit_overhead(model, hidden=h, ffn_hidden=f)
        rel = fit_overhead(model, hidden=h, ffn_hidden=f, weighting="relative")
        t1, r1 = model.time_s(1, h, f), roofline.time_s(1, h, f)
        best = g.tflops_achieved.max()
        half = int(g[g.tflops_achieved >= best / 2].tokens.min())
        weights_mb = roofline.dtype_bytes * 3 * h * f / 1e6
        lines.append(
            f"| {preset} | {h} x {f} | {weights_mb:.0f} | {t1 * 1e6:.1f} us | {r1 * 1e6:.1f} us "
            f"| {t1 / r1:.1f} | {ols.overhead_s * 1e6:.1f} us | {ols.peak_flops / 1e12:.0f} TFLOP/s "
            f"| {rel.overhead_s * 1e6:.1f} us | {best:.0f} TFLOP/s | {half:,} tokens |")
    pooled = fit_overhead(model)
    lines.append(f"\nAll presets pooled (OLS): overhead {pooled.overhead_s * 1e6:.1f} us, "
                 f"peak {pooled.peak_flops / 1e12:.0f} TFLOP/s; {roofline.name}: "
                 f"{roofline.peak_flops / 1e12:.0f} TFLOP/s, "
                 f"{roofline.hbm_bandwidth / 1e12:.3g} TB/s. `ratio`: measured over roofline "
                 "time of a 1-token batch, whose roofline time is reading the weights.")
    return "\n".join(lines)


def monotone_table(model: MeasuredCompute) -> str:
    """Per shape whose medians are not monotone in tokens: the batches the cumulative max
    raises, the slow batch that sets them and by how much the largest is raised."""
    lines = ["| preset | slower than a larger batch (tokens) | raised batches up to | "
             "largest overstatement (cummax over measured) |", "| --- | --- | --- | --- |"]
    for (h, f), preset in model.presets.items():
        t = model.table(h, f)
        raw, mono, tok = t.median_s.to_numpy(), t.time_s.to_numpy(), t.tokens.to_numpy()
        raised = mono > raw
        if not raised.any():
            continue
        later_min = np.minimum.accumulate(raw[::-1])[::-1]
        slow = [int(n) for n, r, m in zip(tok[:-1], raw[:-1], later_min[1:]) if r > m]
        over = mono[raised] / raw[raised] - 1
        lines.append(f"| {preset} | {', '.join(map(str, slow))} | {int(tok[raised].max()):,} "
                     f"tokens | {100 * over.max():.0f} % |")
    return "\n".join(lines)


def grouped_table(df: pd.DataFrame, model: MeasuredCompute) -> str:
    """The grouped launches: measured loop and grouped_mm against the per-expert model."""
    lines = []
    padded = MeasuredCompute(df, monotone="padded")
    ratios, ratios_p, speedup = [], [], []
    lines.append("| preset | routing | experts | tokens | loop measured | sum of single model "
                 "(cummax) | ratio | sum (padded) | ratio | grouped_mm measured |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    grouped = df[df.kind != "single"]
    for (preset, kind, tokens), g in grouped.groupby(["preset", "kind", "tokens"], sort=False):
        h, f, e = int(g.hidden.iloc[0]), int(g.ffn_hidden.iloc[0]), int(g.experts.iloc[0])
        counts = np.array(split_tokens(int(tokens), e, kind.split("_")[1]))
        pred = float(np.sum(model.time_s(counts, h, f)))
        pred_p = float(np.sum(padded.time_s(counts, h, f)))
        loop = g[g.method == "loop"].median_s
        gmm = g[g.method == "grouped_mm"].median_s
        lt = float(loop.iloc[0]) if len(loop) else float("nan")
        gt = f"{float(gmm.iloc[0]) * 1e3:.3f} ms" if len(gmm) else "-"
        ratios.append(pred / lt)
        ratios_p.append(pred_p / lt)
        if len(gmm) and e >= 64:
            speedup.append(lt / float(gmm.iloc[0]))
        lines.append(f"| {preset} | {kind.split('_')[1]} | {e} | {tokens} | {lt * 1e3:.3f} ms "
                     f"| {pred * 1e3:.3f} ms | {pred / lt:.2f} | {pred_p * 1e3:.3f} ms "
                     f"| {pred_p / lt:.2f} | {gt} |")
    lines.append(f"\nThe sum of the per-expert model over the measured loop: "
                 f"{min(ratios_p):.2f}-{max(ratios_p):.2f} under `padded`, "
                 f"{min(ratios):.2f}-{max(ratios):.2f} under the default (`cummax`)."
                 + (f" The loop's time over grouped_mm's, presets of 64 experts or more: "
                    f"{min(speedup):.1f}-{max(speedup):.1f}." if speedup else ""))
    return "\n".join(lines)


def summary(df: pd.DataFrame, model: MeasuredCompute, roofline: RooflineCompute) -> str:
    return "\n\n".join([single_table(df, model, roofline), grouped_table(df, model)])


def doc_blocks(df: pd.DataFrame, model: MeasuredCompute,
               roofline: RooflineCompute) -> dict[str, str]:
    """docs/compute_model.md's generated blocks."""
    return {"fit": single_table(df, model, roofline), "monotone": monotone_table(model),
            "grouped": grouped_table(df, model)}


def plot(df: pd.DataFrame, model: MeasuredCompute, presets: list[str], out: Path,
         roofline: RooflineCompute) -> None:
    single = df[df.kind == "single"]
    fig, (ax_t, ax_f) = plt.subplots(1, 2, figsize=(13, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n_dense = np.unique(np.round(np.logspace(0, math.log10(65536), 300)))
    gpu = str(single.gpu_name.iloc[0]) if "gpu_name" in single else "GPU"
    for i, preset in enumerate(presets):
        g = single[single.preset == preset].sort_values("tokens")
        if g.empty:
            raise SystemExit(f"preset {preset!r} not in the table")
        c = colors[i % len(colors)]
        h, f = int(g.hidden.iloc[0]), int(g.ffn_hidden.iloc[0])
        n = g.tokens.to_numpy()
        t = g.median_s.to_numpy()
        err = [t - g.min_s.to_numpy(), g.max_s.to_numpy() - t]
        label = f"{preset} ({h}x{f})"
        fit = fit_overhead(model, hidden=h, ffn_hidden=f)
        ax_t.errorbar(n, t * 1e6, yerr=np.array(err) * 1e6, fmt="o", ms=3.5, color=c,
                      label=f"{label}; fit {fit.overhead_s * 1e6:.0f} us + "
                            f"flops / {fit.peak_flops / 1e12:.0f} TFLOP/s")
        ax_t.plot(n_dense, model.time_s(n_dense, h, f) * 1e6, "-", color=c, lw=1.2)
        ax_t.plot(n_dense, roofline.time_s(n_dense, h, f) * 1e6, "--", color=c, lw=1)
        ax_t.plot(n_dense, (fit.overhead_s + ffn_flops(n_dense, h, f) / fit.peak_flops) * 1e6,
                  ":", color=c, lw=1)
        ax_f.plot(n, g.tflops_achieved, "o", ms=3.5, color=c, label=f"{label}: measured")
        ax_f.plot(n_dense, ffn_flops(n_dense, h, f) / model.time_s(n_dense, h, f) / 1e12,
                  "-", color=c, lw=1.2)
        ax_f.plot(n_dense, ffn_flops(n_dense, h, f) / roofline.time_s(n_dense, h, f) / 1e12,
                  "--", color=c, lw=1)
    style = [plt.Line2D([], [], color="k", ls="-", lw=1.2, label=f"{model.name} model"),
             plt.Line2D([], [], color="k", ls="--", lw=1, label=roofline.name),
             plt.Line2D([], [], color="k", ls=":", lw=1, label="OLS fit overhead + flops/peak")]
    ax_f.axhline(roofline.peak_flops / 1e12, color="grey", lw=0.8)
    ax_f.text(1.2, roofline.peak_flops / 1e12 * 1.08,
              f"{roofline.name} peak {roofline.peak_flops / 1e12:.0f} TFLOP/s (dense bf16)",
              fontsize=8, color="grey")
    for ax in (ax_t, ax_f):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens per expert (batch)")
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax_t.set_ylabel("time of one expert SwiGLU FFN [us]")
    ax_f.set_ylabel("achieved TFLOP/s")
    ax_f.set_ylim(0.1, 2000)
    h_t, _ = ax_t.get_legend_handles_labels()
    ax_t.legend(handles=h_t + style, fontsize=7, loc="upper left")
    h_f, _ = ax_f.get_legend_handles_labels()
    ax_f.legend(handles=h_f + style[:2], fontsize=7, loc="lower right")
    fig.suptitle(f"Expert FFN (bf16, CUDA-graph replay) on {gpu} vs roofline", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", default=str(CALIBRATION_DIR / "h200.csv"))
    p.add_argument("--out", default=str(ROOT / "docs" / "compute_model.png"))
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    p.add_argument("--roofline", default="h200", choices=["h100", "h200", "b200"])
    p.add_argument("--summary", action="store_true", help="print the markdown tables")
    p.add_argument("--write", type=Path, help="write the tables into this Markdown file's "
                   "blocks (nothing drawn)")
    p.add_argument("--check", type=Path, help="exit 1 if this file's blocks differ from the rows")
    args = p.parse_args(argv)
    df = pd.read_csv(args.csv)
    model = MeasuredCompute.from_csv(args.csv)
    roofline = RooflineCompute.for_gpu(args.roofline)
    if args.write or args.check:
        blocks = doc_blocks(df, model, roofline)
        return write_blocks(args.write or args.check, TAG, blocks.__getitem__, bool(args.check),
                            "the compute-model tables")
    plot(df, model, [s.strip() for s in args.presets.split(",") if s.strip()], Path(args.out),
         roofline)
    print(f"wrote {args.out}")
    if args.summary:
        print(summary(df, model, roofline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
