"""Routing traces: round trips, validation errors, the trace: source, the shared Mixtral sample."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netsim.errors import ConfigError, NetsimError, TraceError
from netsim.workload.routing import gini, parse_routing
from netsim.workload.traces import (Trace, clear_cache, layer_specs, read_trace, trace_layers,
                                    write_trace)

MIXTRAL = (Path(__file__).resolve().parents[1].parent
           / "shared/data/routing/mixtral8x7b_humaneval_2problems.jsonl")


def token_trace(layers=3, tokens=60, k=2, experts=8, seed=0, gates=True, seq=True,
                iterations=None, n_experts=None) -> Trace:
    rng = np.random.default_rng(seed)
    n_it = iterations or 1
    L, I, T = np.meshgrid(np.arange(layers), np.arange(n_it), np.arange(tokens), indexing="ij")
    L, I, T = L.ravel(), I.ravel(), T.ravel()
    ids = np.argsort(rng.random((len(L), experts)), axis=1)[:, :k]
    g = rng.random((len(L), k)).astype(np.float32) if gates else None
    return Trace(layer=L, token=T, expert_ids=ids, gate_weights=g,
                 sequence=(T // 20) if seq else None,
                 iteration=I if iterations else None, n_experts=n_experts)


def count_trace(layers=2, iterations=2, experts=8, seed=0) -> Trace:
    rng = np.random.default_rng(seed)
    I, L, E = np.meshgrid(np.arange(iterations), np.arange(layers), np.arange(experts),
                          indexing="ij")
    return Trace(iteration=I.ravel(), layer=L.ravel(), expert=E.ravel(),
                 tokens=rng.integers(0, 500, I.size))


def same_tokens(a: Trace, b: Trace):
    for name in ("layer", "token", "expert_ids", "sequence", "iteration"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    if a.gate_weights is not None:
        np.testing.assert_array_equal(a.gate_weights, b.gate_weights)
    assert a.has_iteration == b.has_iteration


@pytest.mark.parametrize("suffix", [".parquet", ".npz", ".jsonl"])
@pytest.mark.parametrize("iterations", [None, 3])
def test_token_round_trip(tmp_path, suffix, iterations):
    t = token_trace(iterations=iterations)
    path = write_trace(t, tmp_path / f"t{suffix}")
    back = read_trace(path, cache=False)
    assert back.kind == "tokens" and back.top_k == 2
    same_tokens(t, back)
    for layer in t.layers:
        np.testing.assert_array_equal(t.expert_counts(layer), back.expert_counts(layer))


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_declared_expert_count_round_trip(tmp_path, suffix):
    t = token_trace(n_experts=8)
    back = read_trace(write_trace(t, tmp_path / f"t{suffix}"), cache=False)
    assert back.n_experts == 8


@pytest.mark.parametrize("suffix", [".parquet", ".npz", ".csv"])
def test_count_round_trip(tmp_path, suffix):
    t = count_trace()
    back = read_trace(write_trace(t, tmp_path / f"c{suffix}"), cache=False)
    assert back.kind == "counts" and back.top_k is None
    for name in ("iteration", "layer", "expert", "tokens"):
        np.testing.assert_array_equal(getattr(t, name), getattr(back, name))


def test_writer_refuses_wrong_format(tmp_path):
    with pytest.raises(ConfigError, match="CSV"):
        write_trace(token_trace(), tmp_path / "t.csv")
    with pytest.raises(ConfigError, match="JSON"):
        write_trace(count_trace(), tmp_path / "c.jsonl")


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".npz", ".jsonl"])
def test_truncated_file(tmp_path, suffix):
    path = write_trace(token_trace(), tmp_path / f"t{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 7])
    with pytest.raises(TraceError, match="t" + suffix.replace(".", r"\.")) as ei:
        read_trace(path, cache=False)
    if suffix == ".jsonl":
        assert "line" in str(ei.value)


def test_truncated_csv_row(tmp_path):
    path = write_trace(count_trace(), tmp_path / "c.csv")
    text = path.read_text().rstrip("\n")
    path.write_text(text[: text.rfind(",")] + "\n")  # last row loses its token count
    with pytest.raises(TraceError, match="missing"):
        read_trace(path, cache=False)


def test_wrong_column_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tab = pa.table({"layer": [0, 0], "token": [0, 1], "experts_idx": [[0, 1], [2, 3]]})
    pq.write_table(tab, tmp_path / "w.parquet")
    with pytest.raises(TraceError, match="expert_ids"):
        read_trace(tmp_path / "w.parquet", cache=False)


def test_missing_column_npz(tmp_path):
    np.savez(tmp_path / "m.npz", layer=np.zeros(3, int), expert_ids=np.zeros((3, 1), int))
    with pytest.raises(TraceError, match=r"\['token'\]"):
        read_trace(tmp_path / "m.npz", cache=False)


def test_wrong_column_csv(tmp_path):
    pd.DataFrame({"iteration": [0], "layer": [0], "expert": [1], "count": [5]}).to_csv(
        tmp_path / "w.csv", index=False)
    with pytest.raises(TraceError, match="tokens"):
        read_trace(tmp_path / "w.csv", cache=False)


def test_negative_count(tmp_path):
    pd.DataFrame({"iteration": [0, 0, 0], "layer": [0, 3, 3], "expert": [0, 1, 2],
                  "tokens": [5, 4, -3]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(TraceError, match=r"negative token count -3 in row 2 \(layer 3\)"):
        read_trace(tmp_path / "n.csv", cache=False)


def test_fractional_and_missing_counts_name_row_and_layer(tmp_path):
    pd.DataFrame({"iteration": [0, 0], "layer": [2, 5], "expert": [0, 1],
                  "tokens": [5, 2.5]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(TraceError, match=r"token count in row 1 \(layer 5\) is 2\.5"):
        read_trace(tmp_path / "f.csv", cache=False)
    pd.DataFrame({"iteration": [0, 0], "layer": [2, 5], "expert": [0, 1],
                  "tokens": [None, 2]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(TraceError, match=r"token count in row 0 \(layer 2\) is missing"):
        read_trace(tmp_path / "m.csv", cache=False)


def test_negative_expert_id(tmp_path):
    # the value reported is the one in the first bad row (-1), not the smallest (-5)
    np.savez(tmp_path / "n.npz", layer=np.array([0, 4, 4]), token=np.arange(3),
             expert_ids=np.array([[0, 1], [-1, 2], [-5, 3]]))
    with pytest.raises(TraceError, match=r"negative expert_ids -1 in row 1 \(layer 4\)"):
        read_trace(tmp_path / "n.npz", cache=False)


def test_expert_id_above_declared_count(tmp_path):
    np.savez(tmp_path / "o.npz", layer=np.array([1, 6, 6]), token=np.arange(3),
             expert_ids=np.array([[0, 1], [2, 9], [12, 3]]), n_experts=np.array(8))
    with pytest.raises(TraceError, match=r"expert_ids 9 in row 1 \(layer 6\) is out of range"):
        read_trace(tmp_path / "o.npz", cache=False)


def test_count_expert_above_declared_count(tmp_path):
    pd.DataFrame({"iteration": [0, 0], "layer": [2, 7], "expert": [3, 11],
                  "tokens": [1, 1]}).to_parquet(tmp_path / "c.parquet")
    with pytest.raises(TraceError, match=r"expert 11 in row 1 \(layer 7\) is out of range"):
        Trace(iteration=[0, 0], layer=[2, 7], expert=[3, 11], tokens=[1, 1], n_experts=8)


def test_expert_id_out_of_range_for_run(tmp_path):
    t = token_trace(experts=8)
    ids = t.expert_ids.copy()
    r = 70  # layer 1, token 10
    ids[r, 1] = 99 if ids[r, 0] != 99 else 98
    t = Trace(layer=t.layer, token=t.token, expert_ids=ids, gate_weights=t.gate_weights)
    path = write_trace(t, tmp_path / "t.npz")
    src = parse_routing(f"trace:{path}")
    with pytest.raises(ConfigError, match=r"expert id 99 in row 70 \(layer 1, token 10;"
                                          r" largest id 99\).*experts=8"):
        src.counts(2, 30, 8, 2, np.random.default_rng(0))
    ct = count_trace(experts=12)
    path = write_trace(ct, tmp_path / "c.parquet")
    r = int(np.flatnonzero(ct.expert >= 8)[0])
    with pytest.raises(ConfigError, match=rf"expert id 8 in row {r} \(layer"
                                          rf" {int(ct.layer[r])}; largest id 11\)"):
        parse_routing(f"trace:{path}").counts(2, 30, 8, 2, np.random.default_rng(0))


def test_top_k_mismatch(tmp_path):
    path = write_trace(token_trace(k=2), tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match="top_k=2.*top_k=4"):
        parse_routing(f"trace:{path}").counts(2, 30, 8, 4, np.random.default_rng(0))


def test_repeated_expert_in_row(tmp_path):
    np.savez(tmp_path / "d.npz", layer=np.zeros(2, int), token=np.arange(2),
             expert_ids=np.array([[0, 1], [3, 3]]))
    with pytest.raises(TraceError, match="twice"):
        read_trace(tmp_path / "d.npz", cache=False)


def test_ragged_jsonl(tmp_path):
    rows = [{"layer": 0, "token_idx": 0, "experts": [1, 2]},
            {"layer": 0, "token_idx": 1, "experts": [3]}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TraceError, match="row 1"):
        read_trace(tmp_path / "r.jsonl", cache=False)


def test_bad_paths(tmp_path):
    with pytest.raises(TraceError, match="does not exist"):
        read_trace(tmp_path / "nope.parquet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(TraceError, match="suffix"):
        read_trace(tmp_path / "x.txt")
    with pytest.raises(ConfigError):
        parse_routing("trace")


def test_errors_are_netsim_errors():
    assert issubclass(TraceError, NetsimError)


# --- the trace: source ----------------------------------------------------------------------


def test_source_maps_tokens_in_order(tmp_path):
    t = token_trace(layers=2, tokens=64, k=2, experts=8, gates=False)
    path = write_trace(t, tmp_path / "t.npz")
    src = parse_routing(f"trace:{path}")
    # exactly as many tokens as the run needs: every record used once
    c = src.counts(4, 16, 8, 2, np.random.default_rng(3), layer=1)
    assert c.shape == (4, 8) and c.dtype == np.int64
    np.testing.assert_array_equal(c.sum(axis=1), 32)
    np.testing.assert_array_equal(c.sum(axis=0), t.expert_counts(1))
    # same seed, same counts; a cyclic window keeps GPU blocks of consecutive records
    np.testing.assert_array_equal(c, src.counts(4, 16, 8, 2, np.random.default_rng(3), layer=1))
    c0 = src.counts(1, 16, 8, 2, np.random.default_rng(5), layer=0)
    start = int(np.random.default_rng(5).integers(0, 64))
    ids = t.expert_ids[t.rows(0)][(start + np.arange(16)) % 64]
    np.testing.assert_array_equal(c0[0], np.bincount(ids.ravel(), minlength=8))


def test_source_cycles_short_traces(tmp_path):
    t = token_trace(layers=1, tokens=10, gates=False)
    src = parse_routing(f"trace:{write_trace(t, tmp_path / 't.parquet')}")
    c = src.counts(3, 20, 8, 2, np.random.default_rng(0))  # 60 tokens from 10 records
    np.testing.assert_array_equal(c.sum(axis=0), 6 * t.expert_counts(0))


def test_source_layer_choice(tmp_path):
    t = token_trace(layers=3, tokens=40)
    path = write_trace(t, tmp_path / "t.npz")
    fixed = parse_routing(f"trace:{path}:2")
    default = parse_routing(f"trace:{path}")
    rng = lambda: np.random.default_rng(1)  # noqa: E731
    a = fixed.counts(2, 20, 8, 2, rng(), layer=0)
    np.testing.assert_array_equal(a.sum(0), t.expert_counts(2))
    np.testing.assert_array_equal(default.counts(2, 20, 8, 2, rng(), layer=5), a)  # 5 % 3 = 2
    with pytest.raises(ConfigError, match="layer 7"):
        parse_routing(f"trace:{path}:7")


def test_source_iterations(tmp_path):
    t = token_trace(layers=1, tokens=30, iterations=2)
    src = parse_routing(f"trace:{write_trace(t, tmp_path / 't.parquet')}")
    for it in (0, 1, 2):
        c = src.counts(1, 30, 8, 2, np.random.default_rng(0), iteration=it)
        np.testing.assert_array_equal(c[0], t.expert_counts(0, iteration=it % 2))


def test_count_trace_source(tmp_path):
    experts, n_gpus, tpg, k = 8, 4, 50, 2
    tot = np.array([100, 60, 40, 0, 80, 40, 50, 30])  # sums to 400 = 4 * 50 * 2
    df = pd.DataFrame({"iteration": 0, "layer": 0, "expert": np.arange(8), "tokens": tot})
    df.to_csv(tmp_path / "c.csv", index=False)
    src = parse_routing(f"trace:{tmp_path / 'c.csv'}")
    c = src.counts(n_gpus, tpg, experts, k, np.random.default_rng(0))
    np.testing.assert_array_equal(c.sum(axis=1), tpg * k)
    np.testing.assert_array_equal(c.sum(axis=0), tot)
    np.testing.assert_array_equal(c, src.counts(n_gpus, tpg, experts, k,
                                                 np.random.default_rng(0)))
    # other batch size: totals rescaled, rows still exact
    c2 = src.counts(2, 10, experts, k, np.random.default_rng(1))
    np.testing.assert_array_equal(c2.sum(axis=1), 20)
    assert abs(c2.sum(axis=0) - tot / 10).max() <= 1


def test_cache(tmp_path):
    clear_cache()
    path = write_trace(token_trace(), tmp_path / "t.npz")
    a = read_trace(path)
    assert read_trace(path) is a
    assert not a.expert_ids.flags.writeable
    write_trace(token_trace(tokens=10), path)
    assert read_trace(path).n_rows == 30


# --- the shared real sample -----------------------------------------------------------------


@pytest.mark.skipif(not MIXTRAL.is_file(), reason="shared Mixtral routing sample absent")
def test_mixtral_sample_gini():
    t = read_trace(MIXTRAL)
    assert t.kind == "tokens" and t.top_k == 2 and t.n_rows == 10779
    assert len(t.layers) == 32 and t.max_expert == 7
    assert set(np.unique(t.sequence).tolist()) == {0, 1}
    g = np.array([gini(t.expert_counts(layer, experts=8)) for layer in t.layers])
    assert g.min() >= 0.077 - 1e-3 and g.max() <= 0.256 + 1e-3
    assert abs(np.median(g) - 0.142) < 0.002
    src = parse_routing(f"trace:{MIXTRAL}")
    c = src.counts(2, 200, 8, 2, np.random.default_rng(0), layer=3)
    np.testing.assert_array_equal(c.sum(axis=1), 400)


def test_source_pickles_as_spec(tmp_path):
    import pickle

    path = write_trace(token_trace(), tmp_path / "t.npz")
    src = parse_routing(f"trace:{path}:1")
    back = pickle.loads(pickle.dumps(src))
    assert back.spec == src.spec and back.layer == 1
    np.testing.assert_array_equal(back.counts(2, 30, 8, 2, np.random.default_rng(0)),
                                  src.counts(2, 30, 8, 2, np.random.default_rng(0)))


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_meta_round_trip(tmp_path, suffix):
    meta = {"model": {"name": "m", "moe_layers": [1, 3]}, "source": {"kind": "mock", "seed": 2}}
    t = token_trace()
    t = Trace(layer=t.layer, token=t.token, expert_ids=t.expert_ids, sequence=t.sequence,
              n_experts=8, meta=meta)
    back = read_trace(write_trace(t, tmp_path / ("m" + suffix)), cache=False)
    assert back.meta == meta and back.n_experts == 8
    assert read_trace(write_trace(token_trace(), tmp_path / ("p" + suffix)), cache=False).meta == {}


def test_trace_layers_and_layer_axis(tmp_path):
    t = token_trace(layers=3)
    t = Trace(layer=t.layer * 2 + 1, token=t.token, expert_ids=t.expert_ids)  # layers 1, 3, 5
    path = write_trace(t, tmp_path / "t.parquet")
    assert trace_layers(path) == [1, 3, 5]
    specs = layer_specs(path)
    assert specs == [f"trace:{path}:{L}" for L in (1, 3, 5)]
    for spec, L in zip(specs, (1, 3, 5)):
        src = parse_routing(spec)
        assert src.layer == L
        c = src.counts(1, 60, 8, 2, np.random.default_rng(0))
        np.testing.assert_array_equal(c[0], t.expert_counts(L, experts=8))  # the whole layer


# --- every layer of a trace in the routing study ---------------------------------------------


def _load_study(name="routing_study_under_test"):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / "routing_study.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not MIXTRAL.is_file(), reason="shared Mixtral routing sample absent")
def test_study_runs_every_layer_of_the_shared_trace(monkeypatch):
    monkeypatch.setenv("NETSIM_ROUTING_TRACE", str(MIXTRAL))
    rs = _load_study()
    import pandas as pd

    pts = pd.DataFrame(list(rs.points()))
    pts["part"] = rs.part(pts)
    tr = pts[pts["routing"].str.startswith("trace:")]
    want = set(trace_layers(MIXTRAL))
    for name, g in tr.groupby("part"):
        got = {rs.trace_layer(r) for r in g["routing"]}
        assert got == want, name
        # every layer gets the same points: the parts' other parameters do not depend on L
        sizes = g.groupby("routing").size()
        assert sizes.nunique() == 1, name
    assert set(tr["part"]) == {"ep_scan", "gini", "batch", "mitigation"}


def _study_rows(rs, layers, gini, none_ms, static_ms, bound_ms):
    rows = []
    for L, gi, a, b in zip(layers, gini, none_ms, static_ms):
        r = f"trace:/x/t.parquet:{L}"
        rows.append(dict(topology="crossbar", gpus=8, fabric="analytic", tokens_per_gpu=4096,
                         iterations=0, routing=r, workload="mixtral_8x7b", gini=gi,
                         status="ok"))
        for relayout, ms in (("none", a), ("static", b)):
            rows.append(dict(rs.LEAF, fabric="flow", tokens_per_gpu=512, iterations=4,
                             routing=r, workload="mixtral_8x7b", relayout=relayout,
                             dispatch_s=ms / 1e3, ideal_balanced_dispatch_s=bound_ms / 1e3,
                             dispatch_over_ideal=1.0, dispatch_over_balanced=ms / bound_ms,
                             layer_s=2 * ms / 1e3, rank_max_mean=1.0, migration_bytes=0.0,
                             status="ok"))
    return pd.DataFrame(rows)


def test_study_layer_table_median_and_worst_layer(monkeypatch):
    monkeypatch.delenv("NETSIM_ROUTING_TRACE", raising=False)
    rs = _load_study()
    df = _study_rows(rs, layers=[0, 3, 5, 9], gini=[0.10, 0.30, 0.20, 0.15],
                     none_ms=[2.0, 3.0, 2.5, 2.2], static_ms=[1.5, 2.8, 1.5, 1.6], bound_ms=1.0)
    t = rs.layer_table(df).set_index("metric")
    g = t.loc["gini"]
    assert g["layers"] == 4 and g["median"] == pytest.approx(0.175)
    assert (g["worst_layer"], g["best_layer"]) == (3, 0)
    rec = t.loc["recovered[static]"]  # (none - static) / (none - bound) per layer
    want = {0: 0.5, 3: 0.1, 5: 1 / 1.5, 9: 0.6 / 1.2}
    assert rec["median"] == pytest.approx(np.median(list(want.values())))
    assert (rec["worst_layer"], rec["worst"]) == (3, pytest.approx(0.1))
    assert rec["best_layer"] == 5
    ob = t.loc["over_bound[none]"]
    assert (ob["worst_layer"], ob["worst"], ob["min"]) == (3, 3.0, 2.0)
    assert t.loc["layer_vs_none[static]"]["median"] == pytest.approx(
        np.median([1.5 / 2, 2.8 / 3, 1.5 / 2.5, 1.6 / 2.2]))


def test_study_on_a_captured_trace(tmp_path, monkeypatch):
    """NETSIM_ROUTING_TRACE: the study runs every layer of a user's trace, its expert count,
    top-k and hidden sizes taken from the trace."""
    from netsim.scenario import run

    rng = np.random.default_rng(0)
    n, layers = 300, [1, 2, 4]
    L = np.repeat(layers, n)
    ids = np.argsort(rng.random((len(L), 16)), axis=1)[:, :4]
    meta = {"model": {"name": "/ckpt/OLMoE-1B-7B", "model_type": "olmoe", "hidden_size": 1024,
                      "moe_intermediate_size": 512}}
    path = write_trace(Trace(layer=L, token=np.tile(np.arange(n), 3), expert_ids=ids,
                             n_experts=16, meta=meta), tmp_path / "mine.parquet")
    monkeypatch.setenv("NETSIM_ROUTING_TRACE", str(path))
    rs = _load_study("routing_study_user_trace")
    assert rs.TRACE_LAYERS == [f"trace:{path.resolve()}:{x}" for x in layers]
    pts = [p for p in rs.points() if str(p["routing"]).startswith("trace:")]
    assert {rs.trace_layer(p["routing"]) for p in pts} == set(layers)
    assert all((p["workload"], p["experts"], p["top_k"], p["hidden"], p["ffn_hidden"])
               == ("olmoe_1b_7b", 16, 4, 1024, 512) for p in pts)
    gini_pt = next(p for p in pts if rs.part(pd.DataFrame([p])).iloc[0] == "gini")
    row = run(gini_pt)
    assert row["experts"] == 16 and 0 <= row["gini"] < 1
    monkeypatch.setenv("NETSIM_ROUTING_TRACE", str(tmp_path / "absent.parquet"))
    with pytest.raises(ConfigError, match="absent.parquet"):
        _load_study("routing_study_bad_trace")


# --- counts: FILE (a fixed GPU x expert matrix) -----------------------------------------------


@pytest.mark.parametrize("cell, msg", [
    ("-3", r"-3\.0 at row 1 \(GPU 1\), column 2 \(expert 2\); expected a non-negative count"),
    ("2.5", r"2\.5 at row 1 \(GPU 1\), column 2 \(expert 2\); expected an integer count"),
    ("nan", r"nan at row 1 \(GPU 1\), column 2 \(expert 2\); expected a token count"),
])
def test_counts_csv_names_the_value_row_and_column(tmp_path, cell, msg):
    p = tmp_path / "c.csv"
    p.write_text(f"4,4,4,4\n4,4,{cell},4\n-1,4,4,4\n")  # row 2's -1 comes after: row 1 named
    with pytest.raises(TraceError, match=msg):
        parse_routing(f"counts:{p}")


def test_counts_file_shape_and_good_file(tmp_path):
    np.save(tmp_path / "c3.npy", np.zeros((2, 2, 2)))
    with pytest.raises(TraceError, match=r"shape \(2, 2, 2\); expected a 2-D GPU x expert"):
        parse_routing(f"counts:{tmp_path / 'c3.npy'}")
    p = tmp_path / "ok.csv"
    p.write_text("1,2,3\n4,5,6\n")
    src = parse_routing(f"counts:{p}")
    np.testing.assert_array_equal(src.counts(2, 3, 3, 3, np.random.default_rng(0)),
                                  [[1, 2, 3], [4, 5, 6]])


def test_choices_name_the_out_of_range_record(tmp_path):
    t = token_trace(experts=8)
    ids = t.expert_ids.copy()
    ids[130, 0] = 99 if ids[130, 1] != 99 else 98  # layer 2, token 10
    path = write_trace(Trace(layer=t.layer, token=t.token, expert_ids=ids), tmp_path / "t.npz")
    src = parse_routing(f"trace:{path}")
    with pytest.raises(ConfigError, match=r"expert id 99 in row 130 \(layer 2, token 10"):
        src.choices(2, 30, 8, 2, np.random.default_rng(0))


def test_counts_npy_that_is_text_or_a_directory_is_named_plainly(tmp_path):
    p = tmp_path / "c.npy"
    p.write_text("1,2\n3,4\n")  # a CSV saved under a .npy name: not 'pickled data'
    with pytest.raises(TraceError, match=r"is not a numeric \.npy array") as e:
        parse_routing(f"counts:{p}")
    assert "pickle" not in str(e.value)
    with pytest.raises(TraceError, match="is a directory"):
        parse_routing(f"counts:{tmp_path}")
