"""Every number of the README's circuit-scheduling sections, printed from the sweeps' Parquet.

    python docs/ocs_numbers.py [--quick results/ocs_scheduling_quick] [--hybrid results/hybrid_ocs]
                               [--write README.md | --check README.md]

Reads the rows of ``netsim sweep experiments/ocs_scheduling_quick.py`` and ``netsim sweep
experiments/hybrid_ocs.py`` and prints Markdown blocks: the study's tables (layer time over the
overlapped-layer bound per scheduler, batching rule and delay, mean and range over seeds), who
wins where, and the figures the prose quotes; the hybrid table. ``--write`` replaces the text
between the ``<!-- ocs-numbers:NAME:begin -->`` / ``<!-- ocs-numbers:NAME:end -->`` markers of a
file with them; ``--check`` exits 1 if the file's blocks differ (prose and rows cannot drift).
It also fails if any circuit row's layer is below its ``overlap_bound_s``: the bound is a bound.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "experiments"))

ROUTING_NAME = {"uniform": "uniform", "zipf:1.2": "Zipf 1.2"}
TABLE_SCHEDS = [("bvn", "merge"), ("bvn:any", "merge"), ("solstice", "merge"), ("rotor", "merge"),
                ("greedy:1", "merge"), ("greedy:4", "merge"), ("greedy:8", "merge"),
                ("greedy:N-1", "merge"), ("bvn", "per_matching"), ("bvn:any", "per_matching"),
                ("rotor", "per_matching"), ("greedy:N-1", "per_matching")]


def _read(path: str) -> pd.DataFrame:
    from netsim.experiment.dataset import read

    return read(path, ok_only=True)


def _us(d: float) -> str:
    return f"{d * 1e3:g} ns" if d < 1 else (f"{d:g} us" if d < 1000 else f"{d / 1e3:g} ms")


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %" if abs(x) < 0.1 else f"{x * 100:.0f} %"


def quick_blocks(df: pd.DataFrame) -> dict[str, str]:
    from ocs_scheduling import label_frame

    df = label_frame(df)
    circ = df[df["scheduler"] != "ideal"]
    bad = circ[circ["layer_s"] < circ["overlap_bound_s"] * (1 - 1e-12)]
    if len(bad):
        raise SystemExit(f"{len(bad)} rows have layer_s below overlap_bound_s: the bound is broken")
    delays = sorted(set(circ["reconfig_us"]))
    routings = [r for r in ROUTING_NAME if r in set(df["routing"])]
    n = int(df["gpus"].iloc[0])
    seeds = sorted(set(df["seed"]))
    key = ["routing", "sched", "batching", "reconfig_us"]
    g = circ.groupby(key)
    mean_layer = g["layer_s"].mean()
    rb = g["ratio_to_bound"]
    rb_mean, rb_min, rb_max = rb.mean(), rb.min(), rb.max()
    out: dict[str, str] = {}
    # greedy:K for the bounded K of the study (1, 2, 4, 8 below N - 1), apart from greedy:N-1
    small_k = [f"greedy:{k}" for k in (1, 2, 4, 8) if k < n - 1
               and f"greedy:{k}" in set(circ["sched"])]
    kname = ", ".join(k.split(":")[1] for k in small_k)

    # ---- set-up line
    one = df.iloc[0]
    out["setup"] = (
        f"{len(df)} points ({len(seeds)} seeds: {', '.join(map(str, seeds))}), {n} GPUs, "
        f"{one['workload']}, {int(one['tokens_per_gpu'])} tokens per GPU, one "
        f"{one['port_gbps']:g} Gbit/s OCS port per GPU, {one['gpu']} compute with "
        f"{one['batch_overhead_us']:g} us per expert batch, overlap on, `tolerance=0`.")

    # ---- main table
    lines = ["| layer time / overlapped-layer bound | batching | "
             + " | ".join(_us(d) for d in delays) + " |",
             "|---|---|" + "---|" * len(delays)]
    for r in routings:
        for s, b in TABLE_SCHEDS:
            if (r, s, b, delays[0]) not in rb_mean.index:
                continue
            cells = []
            for d in delays:
                k = (r, s, b, d)
                lo, hi = rb_min[k], rb_max[k]
                band = f" ({_f(lo)}-{_f(hi)})" if _f(lo) != _f(hi) else ""
                cells.append(f"{_f(rb_mean[k])}{band}")
            lab = "greedy:N-1" if s == "greedy:N-1" else s
            lines.append(f"| {ROUTING_NAME[r]}, `{lab}` | {b} | " + " | ".join(cells) + " |")
        bound = circ[circ["routing"] == r].groupby("reconfig_us")["overlap_bound_s"].mean() * 1e3
        lines.append(f"| {ROUTING_NAME[r]}: the bound itself (ms) | | "
                     + " | ".join(_f(bound[d]) for d in delays) + " |")
    out["table"] = "\n".join(lines)

    # ---- who wins where (mean layer over seeds; circuit schedulers)
    lines = ["| routing | batching | " + " | ".join(_us(d) for d in delays) + " |",
             "|---|---|" + "---|" * len(delays)]
    wins = {}
    for r in routings:
        for b in ("merge", "per_matching"):
            cells = []
            for d in delays:
                sub = mean_layer.xs((r, b, d), level=("routing", "batching", "reconfig_us"))
                order = sub.sort_values()
                best, second = order.index[0], order.index[1]
                margin = order.iloc[1] / order.iloc[0] - 1
                wins[(r, b, d)] = (best, second, margin)
                cells.append(f"`{best}` ({_pct(margin)} before `{second}`)")
            lines.append(f"| {ROUTING_NAME[r]} | {b} | " + " | ".join(cells) + " |")
    out["winners"] = "\n".join(lines)

    # ---- facts quoted by the prose
    facts = []
    facts.append(
        f"Every one of the {len(circ)} circuit rows has `ratio_to_bound` >= 1 (smallest "
        f"{_f(circ['ratio_to_bound'].min(), 4)}); `ratio_to_serial_ideal` is below 1 in "
        f"{int((df['ratio_to_serial_ideal'] < 1).sum())} of {len(df)} rows (down to "
        f"{_f(df['ratio_to_serial_ideal'].min())}): `serial_ideal_s` is the non-overlapped reference, not a bound.")
    dref = 10.0 if 10.0 in delays else delays[len(delays) // 2]  # the per-scheduler figures' delay
    at10 = circ[np.isclose(circ["reconfig_us"], dref) & (circ["batching"] == "merge")]
    m10 = at10.groupby(["routing", "sched"])[["n_matchings", "fallback_matchings", "batches",
                                              "mean_batch_tokens", "bubble_fraction",
                                              "idle_circuit_fraction", "pad_fraction"]].mean()
    tot = m10["n_matchings"] + m10["fallback_matchings"]
    parts = []
    for r in routings:
        parts.append(f"{ROUTING_NAME[r]}: {tot[(r, 'bvn')]:.0f} for `bvn` against "
                     f"{tot[(r, 'bvn:any')]:.0f} for `bvn:any` "
                     f"({tot[(r, 'bvn:any')] / tot[(r, 'bvn')]:.1f}x)")
    facts.append(f"Matchings per layer at {_us(dref)} (dispatch + combine, fallback included, merge "
                  "batching): " + "; ".join(parts) + ".")
    parts = []
    for r in routings:
        ks = small_k
        sub = at10[at10["routing"] == r].groupby("sched")["fallback_matchings"].mean()
        fb = [sub[k] for k in ks if k in sub.index]
        parts.append(f"{ROUTING_NAME[r]} {min(fb):.0f}-{max(fb):.0f}")
    facts.append(f"greedy:K for K = {kname} leaves a cleanup round of "
                 + ", ".join(parts) + f" matchings (`fallback_matchings`, {_us(dref)}); greedy:N-1 "
                 f"(K = {n - 1}) leaves " + ", ".join(
                     f"{ROUTING_NAME[r]} {m10.loc[(r, 'greedy:N-1'), 'fallback_matchings']:.1f}"
                     for r in routings) + " on average.")
    spread, gain = [], []
    for r in routings:
        for d in delays:
            sub = mean_layer.xs((r, "merge", d), level=("routing", "batching", "reconfig_us"))
            ks = sub[small_k]
            spread.append(ks.max() / ks.min() - 1)
            gain.append(ks.min() / sub["greedy:N-1"] - 1)
    facts.append(f"greedy:K for K = {kname} lie within {_pct(max(spread))} of each other at every "
                 f"delay and routing (merge batching); greedy:N-1 is {_pct(min(gain))} to "
                 f"{_pct(max(gain))} faster than the best of them.")
    parts = []
    for r in routings:
        for d in delays:
            sub = mean_layer.xs((r, "merge", d), level=("routing", "batching", "reconfig_us"))
            best_k = min(sub[k] for k in small_k)
            parts.append((r, d, sub["rotor"] / best_k, sub["rotor"] / sub["greedy:N-1"]))
    beats = [f"{ROUTING_NAME[r]} at " + ", ".join(_us(d) for rr, d, a, _ in parts if rr == r and a < 1)
             for r in routings if any(a < 1 for rr, _, a, _ in parts if rr == r)]
    facts.append(f"The traffic-oblivious rotor beats the best greedy:K (K = {kname}) " + (
        "; ".join(beats) if beats else "nowhere") + f"; against greedy:N-1 it is "
        f"{_pct(min(x for *_, x in parts) - 1)} to {_pct(max(x for *_, x in parts) - 1)} "
        "(negative: rotor faster).")
    parts = []
    for d in delays:
        f1 = [mean_layer[(r, "bvn", "merge", d)] / min(
            mean_layer[(r, k, "merge", d)] for k in small_k)
              for r in routings]
        fa = [mean_layer[(r, "bvn:any", "merge", d)] / mean_layer[(r, "bvn", "merge", d)]
              for r in routings]
        parts.append(f"{_us(d)}: {'/'.join(_f(x) for x in f1)} ({'/'.join(_f(x) for x in fa)})")
    facts.append(f"Layer time of `bvn` over the best greedy:K (K = {kname}), "
                 + "/".join(ROUTING_NAME[r] for r in routings)
                 + ", and in brackets `bvn:any` over `bvn`: " + "; ".join(parts) + ".")
    parts = []
    for s in ("bvn", "bvn:any", "greedy:N-1"):
        for r in routings:
            d = delays[0]
            pm = mean_layer[(r, s, "per_matching", d)] / mean_layer[(r, s, "merge", d)]
            bt = (circ[(circ["routing"] == r) & (circ["sched"] == s)
                       & np.isclose(circ["reconfig_us"], d)].groupby("batching")["batches"].mean())
            parts.append(f"`{s}` {ROUTING_NAME[r]} {_f(pm)}x ({bt['per_matching']:.0f} batches "
                         f"against {bt['merge']:.0f})")
    facts.append(f"Per-matching batching over merging at {_us(delays[0])}: " + "; ".join(parts) + ".")
    parts = []
    for r in routings:
        bub = m10.xs(r, level="routing")["bubble_fraction"]
        rng = (_pct(bub.min()) if _pct(bub.min()) == _pct(bub.max())
               else f"{_pct(bub.min())} to {_pct(bub.max())}")
        parts.append(f"{ROUTING_NAME[r]} {rng} "
                     f"(`bvn` padding {_pct(m10.loc[(r, 'bvn'), 'pad_fraction'])})")
    facts.append(f"Bubbles (`bubble_fraction`, {_us(dref)}, merge): " + "; ".join(parts) + ".")
    ideal = df[df["scheduler"] == "ideal"]
    parts = []
    for r in routings:
        x = ideal[ideal["routing"] == r]
        parts.append(f"{ROUTING_NAME[r]} {x['layer_s'].mean() * 1e3:.3g} ms "
                     f"({_f((x['layer_s'] / x['serial_ideal_s']).mean())}x `serial_ideal_s`)")
    facts.append("The max-min crossbar (`scheduler=ideal`, simulated, no overlap of a GPU's "
                 "batches): " + "; ".join(parts) + ".")
    out["facts"] = "\n".join(f"- {x}" for x in facts)
    return out


def hybrid_block(df: pd.DataFrame) -> str:
    z = df[df["routing"] == "zipf:1.2"]
    delays = sorted(set(z["reconfig_us"]))
    rows = [("hier_bvn:4", 0.0), ("greedy:4", 0.0), ("greedy:1:max:leftover", 0.0),
            ("greedy:1:max:leftover", 100.0), ("greedy:4:max:leftover", 400.0),
            ("greedy:1:max:leftover", 400.0), ("ideal", 400.0)]
    lines = ["| scheduler | electrical | " + " | ".join(_us(d) for d in delays) + " |",
             "|---|---|" + "---|" * len(delays)]
    m = z.groupby(["scheduler", "eps_gbps", "reconfig_us"])["layer_s"].mean() * 1e3
    for s, e in rows:
        if (s, e, delays[0]) not in m.index:
            continue
        lab = {"greedy:4": "`greedy:4` (cleanup)",
               "ideal": "`ideal` (max-min crossbar, no overlap)"}.get(s, f"`{s}`")
        el = "none" if e == 0 else f"{e:g} Gbit/s"
        lines.append(f"| {lab} | {el} | " + " | ".join(_f(m[(s, e, d)]) for d in delays) + " |")
    k1 = df[(df["scheduler"] == "greedy:1:max:leftover") & (df["eps_gbps"] == 400.0)
            & (df["routing"] == "zipf:1.2")]
    share = float((k1["eps_bytes"] / k1["bytes_total"]).mean())
    one = df.iloc[0]
    setup = (f"{int(one['servers'])} servers x {int(one['gpus_per_server'])} GPUs, "
             f"{one['workload']}, {int(one['tokens_per_gpu'])} tokens per GPU, NICs of "
             f"{one['nic_gbps']:g} Gbit/s, {one['batch_overhead_us']:g} us per expert batch, "
             f"overlap on")
    return (f"{setup}; {len(df)} points ({len(set(df['seed']))} seed(s)), layer time (ms), "
            "Zipf 1.2:\n\n"
            + "\n".join(lines) + f"\n\n`greedy:1:max:leftover` at 400 Gbit/s puts "
            f"{_pct(share)} of the bytes on the electrical network (mean over delays).")


def blocks(quick: str, hybrid: str | None) -> dict[str, str]:
    out = {f"quick-{k}": v for k, v in quick_blocks(_read(quick)).items()}
    if hybrid:
        out["hybrid"] = hybrid_block(_read(hybrid))
    return out


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- ocs-numbers:{re.escape(name)}:begin -->\n)(.*?)(<!-- ocs-numbers:"
                      rf"{re.escape(name)}:end -->)", re.S)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", default="results/ocs_scheduling_quick")
    ap.add_argument("--hybrid", default="results/hybrid_ocs")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    a = ap.parse_args()
    bl = blocks(a.quick, a.hybrid if Path(a.hybrid).exists() else None)
    target = a.write or a.check
    if not target:
        for k, v in bl.items():
            print(f"<!-- ocs-numbers:{k} -->\n{v}\n")
        return 0
    text = Path(target).read_text()
    new = text
    for k, v in bl.items():
        pat = _pattern(k)
        if not pat.search(new):
            print(f"{target}: no ocs-numbers:{k} markers", file=sys.stderr)
            return 1
        new = pat.sub(lambda mm: mm.group(1) + v + "\n" + mm.group(3), new)
    if a.check:
        if new != text:
            print(f"{target}: the OCS numbers differ from the rows; run --write", file=sys.stderr)
            return 1
        print(f"{target}: the OCS numbers match the rows")
        return 0
    Path(target).write_text(new)
    print(f"{target}: {len(bl)} blocks written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
