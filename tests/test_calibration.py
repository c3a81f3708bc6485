"""Tests of the expert compute models (netsim.workload.calibration) and the GPU benchmark."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netsim.errors import ConfigError, UnknownNameError
from netsim.workload.calibration import (
    CALIBRATION_DIR,
    MeasuredCompute,
    RooflineCompute,
    ffn_flops,
    fit_overhead,
    get_compute_model,
)

ROOT = Path(__file__).resolve().parents[1]
H200_CSV = ROOT / "workloads" / "calibration" / "h200.csv"
PRESET_SHAPES = {
    "mixtral_8x7b": (4096, 14336),
    "deepseek_v3": (7168, 2048),
    "qwen3_30b_a3b": (2048, 768),
    "olmoe_1b_7b": (2048, 1024),
    "deepseek_v2_lite": (2048, 1408),
    "switch_base": (768, 3072),
}
COLUMNS = ["gpu_name", "preset", "hidden", "ffn_hidden", "kind", "experts", "tokens",
           "median_s", "min_s", "max_s", "repeats", "flops", "tflops_achieved"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(H200_CSV)


@pytest.fixture(scope="module")
def model() -> MeasuredCompute:
    return get_compute_model("h200-measured")


# --------------------------------------------------------------------------- committed table


def test_committed_table_and_sidecar(table):
    assert CALIBRATION_DIR == H200_CSV.parent
    assert set(COLUMNS) <= set(table.columns)
    assert set(table.kind) == {"single", "grouped_uniform", "grouped_zipf"}
    assert (table.gpu_name == "NVIDIA H200").all()
    single = table[table.kind == "single"]
    for preset, (h, f) in PRESET_SHAPES.items():
        g = single[single.preset == preset]
        assert set(zip(g.hidden, g.ffn_hidden)) == {(h, f)}
        assert g.tokens.min() == 1 and g.tokens.max() == 16384
    assert (table.min_s <= table.median_s).all() and (table.median_s <= table.max_s).all()
    np.testing.assert_allclose(table.flops[table.kind == "single"],
                               6 * single.tokens * single.hidden * single.ffn_hidden)
    meta = json.loads(H200_CSV.with_suffix(".json").read_text())
    for key in ("date_utc", "gpu_name", "torch_version", "cuda_version", "driver_version"):
        assert meta[key], key
    assert meta["gpu_name"] == "NVIDIA H200"


def test_exact_at_measured_points(model, table):
    single = table[table.kind == "single"]
    for preset, (h, f) in PRESET_SHAPES.items():
        g = single[single.preset == preset].sort_values("tokens")
        raw = g.median_s.to_numpy()
        mono = np.maximum.accumulate(raw)
        got = model.time_s(g.tokens.to_numpy(), h, f)
        np.testing.assert_allclose(got, mono, rtol=1e-12)
        # where the raw median is the running max, the model returns it exactly
        keep = raw >= mono
        assert keep[0] and keep[-1]
        np.testing.assert_allclose(got[keep], raw[keep], rtol=1e-12)
        # and the monotone table never departs from the raw medians by more than the
        # small-batch wobble: at most 65 % (olmoe's slow cuBLAS kernel at 1..6 tokens)
        assert np.all(got <= raw * 1.65)
        # scalar calls too
        n0, t0 = int(g.tokens.iloc[-1]), float(mono[-1])
        assert model.time_s(n0, h, f) == pytest.approx(t0, rel=1e-12)
        assert isinstance(model.time_s(n0, h, f), float)


@pytest.mark.parametrize("monotone", ["cummax", "padded"])
def test_monotone_in_tokens(monotone):
    m = MeasuredCompute.from_csv(H200_CSV, monotone=monotone)
    n = np.arange(0, 40000)
    for h, f in list(PRESET_SHAPES.values()) + [(4096, 11008), (1024, 512), (8192, 28672)]:
        t = m.time_s(n, h, f)
        assert np.all(np.diff(t) >= 0), (h, f)
        assert t[0] == 0.0 and np.all(t[1:] > 0)


def test_padded_envelope_is_below_cummax(table):
    a = MeasuredCompute(table, monotone="cummax")
    b = MeasuredCompute(table, monotone="padded")
    for h, f in PRESET_SHAPES.values():
        tab = a.table(h, f)
        ta, tb = a.time_s(tab.tokens.to_numpy(), h, f), b.time_s(tab.tokens.to_numpy(), h, f)
        assert np.all(tb <= ta + 1e-15)
        assert np.all(tb <= tab.median_s.to_numpy() + 1e-15)
        assert np.all(ta >= tab.median_s.to_numpy() - 1e-15)
        assert tb[-1] == ta[-1]


def test_linear_interpolation_between_points(model):
    h, f = PRESET_SHAPES["mixtral_8x7b"]
    tab = model.table(h, f)
    for (n0, t0), (n1, t1) in zip(tab[["tokens", "time_s"]].values[:-1],
                                  tab[["tokens", "time_s"]].values[1:]):
        mid = (n0 + n1) / 2
        assert model.time_s(mid, h, f) == pytest.approx((t0 + t1) / 2, rel=1e-12)


def test_zero_and_fractional_tokens(model):
    h, f = PRESET_SHAPES["deepseek_v3"]
    assert model.time_s(0, h, f) == 0.0
    t1 = model.time_s(1, h, f)
    assert model.time_s(0.5, h, f) == pytest.approx(t1)
    with pytest.raises(ConfigError):
        model.time_s(-1, h, f)
    with pytest.raises(ConfigError):
        model.time_s(np.array([1.0, np.nan]), h, f)
    with pytest.raises(ConfigError):
        model.time_s(1, 0, f)


def test_extrapolation_beyond_largest_point(model):
    for h, f in PRESET_SHAPES.values():
        tab = model.table(h, f)
        n_max, t_max = int(tab.tokens.iloc[-1]), float(tab.time_s.iloc[-1])
        assert n_max == 16384
        for k in (1.5, 2, 4, 100):
            assert model.time_s(k * n_max, h, f) == pytest.approx(k * t_max, rel=1e-12)
        # continuous at n_max, same throughput (tokens/s) as the largest point beyond it
        assert model.time_s(n_max + 1, h, f) == pytest.approx(t_max * (n_max + 1) / n_max)
        tput = np.array([2, 3, 10]) * n_max / model.time_s(np.array([2, 3, 10]) * n_max, h, f)
        np.testing.assert_allclose(tput, n_max / t_max)


def test_unmeasured_shape_scaled_by_flops(model):
    # llama-like 4096 x 11008: nearest measured shape is mixtral's 4096 x 14336
    assert model.nearest_shape(4096, 11008) == (4096, 14336)
    n = np.array([1, 64, 1000, 16384, 50000])
    np.testing.assert_allclose(model.time_s(n, 4096, 11008),
                               model.time_s(n, 4096, 14336) * 11008 / 14336)
    # a measured shape is its own reference
    for hf in PRESET_SHAPES.values():
        assert model.nearest_shape(*hf) == hf
    assert model.nearest_shape(2048, 1100) == (2048, 1024)


def test_array_and_scalar_agree(model):
    h, f = PRESET_SHAPES["olmoe_1b_7b"]
    n = np.array([[0, 1, 5], [100, 16384, 20000]])
    t = model.time_s(n, h, f)
    assert t.shape == n.shape
    for idx in np.ndindex(n.shape):
        assert t[idx] == model.time_s(int(n[idx]), h, f)


def test_grouped_rows_are_close_to_sum_of_single_expert_model(table):
    # the grouped loop launches are not used by the model; they check it: the sum of the
    # single-expert times over the experts' batches is within a factor 2 of the measured
    # loop (back-to-back launches overlap a little, so the sum tends to be above)
    m = MeasuredCompute(table, monotone="padded")
    loop = table[(table.kind != "single") & (table.method == "loop")]
    assert len(loop) >= 12
    for _, r in loop.iterrows():
        e, total = int(r.experts), int(r.tokens)
        if r.kind == "grouped_uniform":
            counts = np.full(e, total // e) + (np.arange(e) < total % e)
        else:
            continue
        pred = float(np.sum(m.time_s(counts, int(r.hidden), int(r.ffn_hidden))))
        assert 0.75 < pred / r.median_s < 1.5, (r.preset, total, pred, r.median_s)


# --------------------------------------------------------------------------- fit


def test_fit_overhead_positive(model, table):
    fit = fit_overhead(model)
    o, peak = fit  # unpacks as a tuple
    assert 5e-6 < o < 2e-4
    assert 100e12 < peak < 989e12
    for h, f in PRESET_SHAPES.values():
        for weighting in ("absolute", "relative"):
            fh = fit_overhead(table, hidden=h, ffn_hidden=f, weighting=weighting)
            assert fh.overhead_s > 0, (h, f, weighting)
            assert fh.peak_flops > 0
        # the OLS asymptote is a rate the GPU reaches on big batches: not above datasheet peak
        assert fit_overhead(table, hidden=h, ffn_hidden=f).peak_flops < 989e12
    assert fit_overhead(H200_CSV, preset="qwen3_30b_a3b") == fit_overhead(model, hidden=2048,
                                                                          ffn_hidden=768)


def test_fit_recovers_synthetic_parameters():
    n = np.array([1, 2, 4, 8, 64, 512, 4096, 16384])
    h, f, o, peak = 1024, 4096, 15e-6, 600e12
    df = pd.DataFrame({"kind": "single", "hidden": h, "ffn_hidden": f, "tokens": n,
                       "median_s": o + ffn_flops(n, h, f) / peak})
    for weighting in ("absolute", "relative"):
        fit = fit_overhead(df, weighting=weighting)
        assert fit.overhead_s == pytest.approx(o, rel=1e-6)
        assert fit.peak_flops == pytest.approx(peak, rel=1e-6)
    with pytest.raises(ConfigError):
        fit_overhead(df, weighting="nope")
    with pytest.raises(ConfigError):
        fit_overhead(df.iloc[:1])


# --------------------------------------------------------------------------- roofline


def test_roofline_specs_and_sanity():
    h100, h200, b200 = (get_compute_model(f"{g}-roofline") for g in ("h100", "h200", "b200"))
    assert (h100.peak_flops, h100.hbm_bandwidth) == (989e12, 3.35e12)
    assert (h200.peak_flops, h200.hbm_bandwidth) == (989e12, 4.8e12)
    assert (b200.peak_flops, b200.hbm_bandwidth) == (2250e12, 8e12)
    h, f = PRESET_SHAPES["mixtral_8x7b"]
    # small batch: memory bound (weights), time = weight bytes / bandwidth
    wbytes = 2 * 3 * h * f
    assert h200.time_s(1, h, f) == pytest.approx((wbytes + 2 * 2 * h) / 4.8e12)
    assert h100.time_s(1, h, f) > h200.time_s(1, h, f) > b200.time_s(1, h, f)
    # large batch: compute bound, h100 and h200 equal
    n = 16384
    assert h200.time_s(n, h, f) == pytest.approx(ffn_flops(n, h, f) / 989e12)
    assert h100.time_s(n, h, f) == pytest.approx(h200.time_s(n, h, f))
    assert h200.time_s(0, h, f) == 0.0
    t = h200.time_s(np.arange(0, 20000), h, f)
    assert np.all(np.diff(t) >= 0)
    # overhead and efficiency
    r = RooflineCompute.h200(efficiency=0.5, overhead_s=10e-6)
    assert r.time_s(n, h, f) == pytest.approx(10e-6 + ffn_flops(n, h, f) / (0.5 * 989e12))
    with pytest.raises(ConfigError):
        RooflineCompute.h200(efficiency=1.5)


def test_measured_is_slower_than_roofline(model):
    roof = get_compute_model("h200-roofline")
    for h, f in PRESET_SHAPES.values():
        n = np.array([1, 16, 256, 4096, 16384, 65536])
        assert np.all(model.time_s(n, h, f) > roof.time_s(n, h, f))


# --------------------------------------------------------------------------- registry


def test_get_compute_model_names(tmp_path, monkeypatch):
    assert isinstance(get_compute_model("h200-measured"), MeasuredCompute)
    assert isinstance(get_compute_model(" H100-Roofline "), RooflineCompute)
    with pytest.raises(UnknownNameError):
        get_compute_model("tpu-roofline")
    with pytest.raises(UnknownNameError):
        get_compute_model("h200")
    with pytest.raises(ConfigError, match="missing"):
        get_compute_model("h100-measured")  # no h100.csv committed (no H100 was lent)
    import netsim.workload.calibration as cal
    monkeypatch.setattr(cal, "CALIBRATION_DIR", tmp_path)
    with pytest.raises(ConfigError, match="h200.csv"):
        cal.get_compute_model("h200-measured")


def test_bad_tables(tmp_path):
    with pytest.raises(ConfigError):
        MeasuredCompute(pd.DataFrame({"kind": ["single"], "hidden": [1]}))
    df = pd.read_csv(H200_CSV)
    mixed = pd.concat([df, df.assign(gpu_name="Other GPU")])
    with pytest.raises(ConfigError, match="mixes"):
        MeasuredCompute(mixed)
    assert MeasuredCompute(mixed, gpu_name="NVIDIA H200").shapes
    with pytest.raises(ConfigError):
        MeasuredCompute(df, monotone="spline")
    p = tmp_path / "x.csv"
    p.write_text("kind,hidden,ffn_hidden,tokens,median_s\nsingle,8,8,1,-1\n")
    with pytest.raises(ConfigError):
        MeasuredCompute.from_csv(p)


# --------------------------------------------------------------------------- benchmark script


def test_benchmark_script_runs_on_cpu(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "cpu.csv"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_expert_ffn.py"), "--device", "cpu",
         "--quick", "--shape", "tiny=32,64,4", "--max-tokens", "16", "--grouped-totals", "64",
         "--min-repeats", "3", "--max-repeats", "5", "--warmup", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert set(COLUMNS) <= set(df.columns)
    single = df[df.kind == "single"]
    assert list(single.tokens) == [1, 4, 16]
    assert set(df.kind) == {"single", "grouped_uniform", "grouped_zipf"}
    assert (df.median_s > 0).all() and (df.repeats >= 3).all()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["device"] == "cpu" and meta["complete"] is True and meta["torch_version"]
    # the model loads a table made by the script (CPU-made: never committed as a GPU table)
    m = MeasuredCompute.from_csv(out)
    assert m.time_s(16, 32, 64) == pytest.approx(single.median_s.cummax().iloc[-1])
