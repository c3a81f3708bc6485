"""DeepEP's published normal-kernel bandwidths beside netsim's ``collective=deepep_normal``.

DeepEP's README (github.com/deepseek-ai/DeepEP, "Normal kernels with NVLink and RDMA
forwarding"; the figures and their source are in ``docs/deepep_published.csv``) measures, on
H800s (~160 GB/s NVLink) with one ConnectX-7 400 Gb/s NIC per GPU, in DeepSeek-V3's
pretraining setting (4096 tokens a GPU, hidden 7168, top-8 of 256 experts, top-4 groups, FP8
dispatch, BF16 combine), the *bottleneck bandwidth* of each kernel: the bytes of the bottleneck
domain divided by the kernel's time. Its test (``tests/test_internode.py``) counts

* intranode (EP 8, NVLink): the bytes a GPU receives, ``recv tokens x bytes a token`` (its own
  tokens included);
* internode (RDMA): the bytes a GPU sends "over RDMA", ``(sum over its tokens of the distinct
  servers they go to, its own server included) x bytes a token``,

with FP8 bytes ``hidden x (1 + 4/128)`` and BF16 ``2 x hidden``. Scores there are i.i.d. random
(every expert equally popular) with group-limited top-k (``max_nodes = min(servers, 4)``).

This script builds the same layer in netsim (``rail_optimized`` with ``hardware=h800,
nic=cx7``, ``workload=deepseek_v3``, ``routing=uniform``, ``dispatcher=node``, FP8 / BF16,
``collective=deepep_normal``), simulates dispatch and combine on the flow model with zero
expert compute, each kernel timed alone as DeepEP's test times it (every GPU starts the combine
at the same instant, after the last dispatch byte: :func:`_simulate`), counts the bytes
DeepEP's way from the same per-token routing, and prints netsim's bandwidth beside each
published one with the relative error.

One cost is fitted, on two cells: the fraction of the NVLink rate DeepEP's SM-driven NVLink
copies achieve (``DEEPEP_NVLINK_EFFICIENCY`` of :mod:`netsim.mitigation.runner`). The script
simulates EP 8 with efficiency 1 (NVLink-bound, so the bandwidth is linear in it), takes the
geometric mean of published / simulated over its dispatch and combine cells, and predicts the
six internode cells with it; it prints the fit beside the library's constant.

``--ablation`` also runs the internode cells under the former timing (the combine measured
while it overlapped the dispatch's tail) and the former model (a GPU's own-server share sent
whole, ahead of the chunks), at the same fitted efficiency.

Run: ``python benchmarks/deepep_validation.py [--ablation] [--out rows.parquet]``.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from netsim.engines import engine
from netsim.layer import PreparedLayer
from netsim.mitigation.runner import IterRouting, collective_hook
from netsim.prepare import context, route_layer
from netsim.spec import RunSpec

DOCS = Path(__file__).resolve().parent.parent / "docs"
PUBLISHED = DOCS / "deepep_published.csv"
PUBLISHED_LL = DOCS / "deepep_ll_published.csv"


def published(path: Path = PUBLISHED) -> list[dict]:
    with open(path) as f:
        return [r for r in csv.DictReader(f)]


def params(ep: int, seed: int = 0) -> dict:
    servers = max(1, ep // 8)
    return dict(topology="rail_optimized", servers=servers, gpus_per_server=min(8, ep),
                hardware="h800", nic="cx7", workload="deepseek_v3", tokens_per_gpu=4096,
                routing="uniform", dispatcher="node", dispatch_dtype="fp8",
                combine_dtype="bf16", max_nodes=min(servers, 4) if servers > 1 else 0,
                collective="deepep_normal", seed=seed)


#: seconds of "compute" that hold the combine back in the first run (far longer than the
#: dispatch, so no combine flow meets a dispatch flow)
KERNEL_GAP_S = 1.0


def _simulate(spec, nvlink_efficiency=None, message_s=None, alone=True, own_chunked=True):
    """One layer of ``spec`` (routing iteration 1, as the runner draws it) on the flow model,
    each kernel timed alone as DeepEP's benchmark times it (``bench(buffer.dispatch)``, then
    ``bench(buffer.combine)``: every rank starts a kernel together, nothing else on the
    wires). Run 1 holds every GPU's compute for :data:`KERNEL_GAP_S`, so the dispatch runs
    undisturbed (its ``dispatch_end``); run 2 sets GPU g's compute to ``max(dispatch_end) -
    dispatch_end[g]``, so every GPU starts its combine at the same instant, the last dispatch
    byte's arrival (the combine's events at the times a plain run has them: the flow model's
    ``tolerance`` is relative to the clock). ``alone=False``: the former timing, one run with
    zero compute, every GPU combining as soon as its own dispatch data are in (the combine
    overlaps the dispatch's tail), timed from the last GPU's. ``own_chunked=False``: a GPU's own
    server's share sent whole instead of in the chunk classes (the former model). Returns
    (dispatch seconds, combine seconds, routing's counts, rank tokens, node tokens, simulation
    wall seconds)."""
    ctx = context(spec)
    ft, n = ctx.topo, ctx.topo.n_gpus
    lay = spec.layer
    gps = int(ft.gpus_per_server)
    routing = IterRouting(spec.routing_source, spec.seed)
    counts, rank, node = route_layer(
        lay, spec.routing_source, n, gps, None,
        draw=lambda kind, **kw: routing.draw(kind, n, lay.tokens_per_gpu, lay.experts,
                                             lay.top_k, 1, **kw))
    D = lay.dispatch_matrix(counts, rank, n)
    t0 = time.perf_counter()
    comp = np.full(n, KERNEL_GAP_S if alone else 0.0)
    for run in range(2 if alone else 1):
        _, hook = collective_hook(spec, D, node, gps, nvlink_efficiency=nvlink_efficiency,
                                  message_s=message_s)
        if hook is not None:
            hook.own_chunked = own_chunked  # read when the layer starts
        setup = PreparedLayer(spec, ft, D, comp, counts.sum(axis=0), hook=hook,
                              ecmp_seed=ctx.ecmp_seed)
        res = engine("flow")(setup)
        if run == 0:
            t_disp = float(res.dispatch_end.max())
            comp = t_disp - res.dispatch_end
    wall = time.perf_counter() - t0
    if not alone:
        return (t_disp, float(res.layer_s - res.compute_end.max()), counts, rank, node, wall)
    assert np.allclose(res.dispatch_end.max(), t_disp, rtol=1e-9, atol=0.0)
    return t_disp, float(res.layer_s) - t_disp, counts, rank, node, wall


def ll_params(ep: int, seed: int = 0) -> dict:
    return dict(topology="rail_optimized", servers=max(1, ep // 8), gpus_per_server=min(8, ep),
                hardware="h800", nic="cx7", workload="deepseek_v3", experts=256,
                tokens_per_gpu=128, routing="uniform", dispatch_dtype="fp8",
                combine_dtype="bf16", collective="deepep_ll", seed=seed)


def ll_cell(ep: int, seed: int = 0, message_s: float | None = None) -> dict:
    """DeepEP's low-latency setting on ``ep`` GPUs: dispatch and combine latencies."""
    t_disp, t_comb, *_, wall = _simulate(RunSpec.parse(ll_params(ep, seed)),
                                         message_s=message_s)
    return dict(ep=ep, dispatch_us=1e6 * t_disp, combine_us=1e6 * t_comb, sim_wall_s=wall)


def cell(ep: int, seed: int = 0, nvlink_efficiency: float | None = None, alone: bool = True,
         own_chunked: bool = True) -> dict:
    """Simulate one EP size; netsim's bandwidths counted DeepEP's way. ``nvlink_efficiency``:
    deepep_normal's NVLink efficiency (None: the library's); ``alone``, ``own_chunked``: see
    :func:`_simulate`."""
    spec = RunSpec.parse(params(ep, seed))
    t_disp, t_comb, counts, rank, node, wall = _simulate(
        spec, nvlink_efficiency=nvlink_efficiency, alone=alone, own_chunked=own_chunked)
    lay = spec.layer
    h = lay.hidden
    fp8, bf16 = h * (1 + 4 / 128), 2.0 * h  # DeepEP's test's byte counts
    if ep <= 8:
        tok = rank.sum(axis=0)  # tokens each GPU receives, own included
        domain = "NVLink"
    else:
        tok = node.sum(axis=1)  # distinct servers of each GPU's tokens, own included
        domain = "RDMA"
    tok = tok.astype(np.float64)
    return dict(ep=ep, domain=domain, dispatch_GBps=float(tok.mean() * fp8 / t_disp / 1e9),
                combine_GBps=float(tok.mean() * bf16 / t_comb / 1e9), dispatch_s=t_disp,
                combine_s=t_comb, tokens_counted=float(tok.mean()), sim_wall_s=wall)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="", help="write the rows to this Parquet file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ll", action="store_true", help="skip the low-latency table")
    ap.add_argument("--ablation", action="store_true",
                    help="also run the internode cells with the former timing and model")
    a = ap.parse_args(argv)
    from netsim.mitigation import runner

    pubs = published()
    ep8 = [p for p in pubs if int(p["ep"]) == 8][0]
    raw = cell(8, a.seed, nvlink_efficiency=1.0)
    eff = float(np.sqrt(float(ep8["dispatch_GBps"]) / raw["dispatch_GBps"]
                        * float(ep8["combine_GBps"]) / raw["combine_GBps"]))
    print(f"fitted on EP 8 dispatch + combine: NVLink efficiency {eff:.4f} (library constant"
          f" {runner.DEEPEP_NVLINK_EFFICIENCY:.4f}); the other cells are predicted")
    rows = []
    print(f"{'EP':>3} {'domain':>7} {'phase':>8} {'DeepEP GB/s':>12} {'netsim GB/s':>12}"
          f" {'rel. err':>9}")
    for pub in pubs:
        ep = int(pub["ep"])
        r = cell(ep, a.seed, nvlink_efficiency=eff)
        for phase in ("dispatch", "combine"):
            ref = float(pub[f"{phase}_GBps"])
            got = r[f"{phase}_GBps"]
            err = got / ref - 1.0
            rows.append(dict(r, phase=phase, published_GBps=ref, netsim_GBps=got,
                             rel_error=err, nvlink_efficiency=eff, fitted=(ep == 8)))
            print(f"{ep:>3} {r['domain']:>7} {phase:>8} {ref:>12.1f} {got:>12.1f}"
                  f" {100 * err:>+8.1f}%{'  (fitted)' if ep == 8 else ''}")
    worst = max(abs(r["rel_error"]) for r in rows if not r["fitted"])
    print(f"largest error on a predicted cell: {100 * worst:.1f}%")
    if a.ablation:
        rows += ablation(pubs, eff, a.seed)
    if not a.no_ll:
        rows += low_latency(a.seed)
    if a.out:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(a.out)
    return rows


def ablation(pubs: list[dict], eff: float, seed: int = 0) -> list[dict]:
    """The internode cells under the former choices, at the same NVLink efficiency: the
    combine timed while it overlaps the dispatch's tail (``alone=False``), and the kernels
    timed alone with a GPU's own-server share sent whole (``own_chunked=False``); beside the
    current (alone, chunked) figures. Rows with ``kind="ablation"``."""
    variants = [("overlapped, own share whole", False, False),
                ("alone, own share whole", True, False), ("alone, own share chunked", True, True)]
    print(f"\nablation (NVLink efficiency {eff:.4f}): {'variant':>28} {'EP':>3} {'phase':>8}"
          f" {'DeepEP':>7} {'netsim':>7} {'err':>7}")
    rows = []
    for pub in pubs:
        ep = int(pub["ep"])
        if ep <= 8:
            continue
        for name, alone, chunked in variants:
            r = cell(ep, seed, nvlink_efficiency=eff, alone=alone, own_chunked=chunked)
            for phase in ("dispatch", "combine"):
                ref = float(pub[f"{phase}_GBps"])
                got = r[f"{phase}_GBps"]
                rows.append(dict(ep=ep, domain=r["domain"], phase=phase, variant=name,
                                 published_GBps=ref, netsim_GBps=got, rel_error=got / ref - 1,
                                 nvlink_efficiency=eff, fitted=False, kind="ablation"))
                print(f"{'':>43}{name:>28} {ep:>3} {phase:>8} {ref:>7.1f} {got:>7.1f}"
                      f" {100 * (got / ref - 1):>+6.1f}%", flush=True)
    return rows


def low_latency(seed: int = 0) -> list[dict]:
    """DeepEP's low-latency table (``docs/deepep_ll_published.csv``) beside ``deepep_ll``.

    One cost, the per-message issue time ``LL_MESSAGE_S``, is fitted on the two EP 8 cells: the
    latency is linear in it (every GPU issues its messages before its flows start), so it is
    the mean over dispatch and combine of (published - simulated at 0) / messages a GPU issues.
    """
    from netsim.mitigation import runner

    pubs = published(PUBLISHED_LL)
    ep8 = [p for p in pubs if int(p["ep"]) == 8][0]
    raw = ll_cell(8, seed, message_s=0.0)
    msgs = 128 * 8 * 7 / 8  # messages a GPU issues to other GPUs, on average (uniform routing)
    m = float(np.mean([(float(ep8["dispatch_us"]) - raw["dispatch_us"]) * 1e-6 / msgs,
                       (float(ep8["combine_us"]) - raw["combine_us"]) * 1e-6 / msgs]))
    m = max(0.0, m)
    print(f"\nlow-latency kernels: per-message cost fitted on EP 8 dispatch + combine:"
          f" {m * 1e9:.1f} ns (library constant {runner.LL_MESSAGE_S * 1e9:.1f} ns)")
    print(f"{'EP':>3} {'phase':>8} {'DeepEP us':>10} {'netsim us':>10} {'rel. err':>9}")
    rows = []
    for pub in pubs:
        ep = int(pub["ep"])
        r = ll_cell(ep, seed, message_s=m)
        for phase in ("dispatch", "combine"):
            ref = float(pub[f"{phase}_us"])
            got = r[f"{phase}_us"]
            err = got / ref - 1.0
            rows.append(dict(ep=ep, domain="LL", phase=phase, published_us=ref, netsim_us=got,
                             rel_error=err, message_s=m, fitted=(ep == 8), kind="low_latency",
                             sim_wall_s=r["sim_wall_s"]))
            print(f"{ep:>3} {phase:>8} {ref:>10.0f} {got:>10.1f} {100 * err:>+8.1f}%"
                  f"{'  (fitted)' if ep == 8 else ''}")
    worst = max(abs(r["rel_error"]) for r in rows if not r["fitted"])
    print(f"largest error on a predicted low-latency cell: {100 * worst:.1f}%")
    return rows


if __name__ == "__main__":
    main()
