"""Multi-iteration runs: routing per iteration, aggregation, bad options."""
import numpy as np
import pytest

from netsim.errors import ConfigError
from netsim.mitigation.runner import iterate
from netsim.prepare import prepare
from netsim.spec import RunSpec
from netsim.mitigation.runner import IterRouting
from netsim.scenario import run
from netsim.workload.routing import parse_routing

SMALL = dict(topology="crossbar", gpus=8, workload="olmoe_1b_7b", tokens_per_gpu=128)


def test_iteration_zero_is_the_classic_run():
    for spec in ("uniform", "zipf:1.2", "profile:deepseek_v2_lite:wikitext", "drift:1.0:0.5"):
        s = prepare(RunSpec.parse(SMALL | {"routing": spec, "seed": 3}))
        it = IterRouting(parse_routing(spec), 3)
        c0 = it.counts(8, 128, 64, 8, 0)
        assert np.array_equal(c0.sum(axis=0), s.expert_tokens)


def test_structure_persists_and_batches_change():
    it = IterRouting(parse_routing("profile:deepseek_v2_lite:mock"), 0)
    a, b = it.counts(8, 512, 64, 6, 1), it.counts(8, 512, 64, 6, 2)
    assert not np.array_equal(a, b)
    assert np.corrcoef(a.sum(0), b.sum(0))[0, 1] > 0.8  # the same hot experts
    it = IterRouting(parse_routing("drift:1.2:0.0"), 0)
    a, b = it.counts(8, 512, 64, 6, 1), it.counts(8, 512, 64, 6, 2)
    assert np.corrcoef(a.sum(0), b.sum(0))[0, 1] < 0.6  # reshuffled
    it = IterRouting(parse_routing("uniform"), 0)
    a, b = it.counts(8, 64, 64, 6, 1), it.counts(8, 64, 64, 6, 2)
    assert not np.array_equal(a, b) and a.sum() == b.sum() == 8 * 64 * 6


def test_row_aggregates_iterations_deterministically():
    p = SMALL | {"routing": "zipf:1.0", "iterations": 3, "seed": 2}
    rows = iterate(RunSpec.parse(p))
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    r = run(p)
    assert r["iterations_run"] == 3
    assert r["layer_s"] == pytest.approx(np.mean([x["layer_s"] for x in rows]))
    assert r["layer_s_max"] == pytest.approx(max(x["layer_s"] for x in rows))
    assert r["total_layer_s"] == pytest.approx(sum(x["layer_s"] for x in rows))
    assert r["bytes_total"] == pytest.approx(sum(x["bytes_total"] for x in rows))
    assert r["bytes_delivered"] == pytest.approx(r["bytes_total"])
    r2 = run(p)
    drop = {"sim_wall_s"}
    assert {k: v for k, v in r.items() if k not in drop} == \
        {k: v for k, v in r2.items() if k not in drop}


def test_eplb_period_and_static():
    p = SMALL | {"routing": "profile:deepseek_v2_lite:mock", "iterations": 5}
    s = run(p | {"relayout": "static"})
    b = run(p)
    assert s["relayouts"] == 0 and s["migration_bytes"] == 0
    assert s["rank_max_mean"] < b["rank_max_mean"]
    assert s["imbalance"] == pytest.approx(b["imbalance"])  # per-expert: routing, not placement


@pytest.mark.parametrize("bad", [
    {"relayout": "eplb:0"}, {"relayout": "eplb"}, {"relayout": "magic"},
    {"relayout": "static:0"}, {"sample_placement": "psychic"}, {"collective": "ring"},
    {"rank_mapping": "random"}, {"iterations": -1}, {"iterations": 1.5},
    {"iterations": 2, "scheduler": "greedy:4"}, {"relayout": "static:1", "gpus": 8},
])
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        run(SMALL | bad)


def _eplb_rows(routing, ffn_hidden=64, period=1, iterations=6):
    p = SMALL | {"routing": routing, "tokens_per_gpu": 512, "ffn_hidden": ffn_hidden,
                 "iterations": iterations, "relayout": f"eplb:{period}"}
    return iterate(RunSpec.parse(p))


def test_eplb_keeps_experts_under_constant_popularity():
    # cheap weights (ffn_hidden=64): the first relayout, from the contiguous layout, pays
    rows = _eplb_rows("profile:deepseek_v2_lite:mock")
    assert rows[0]["relayout_done"] and rows[0]["migration_bytes"] > 0
    # the popularity does not change (fresh batches of the same profile): nothing moves again
    assert not any(r["relayout_done"] for r in rows[1:])
    assert all(r["migration_bytes"] == 0 for r in rows[1:])
    # and the migrated bytes are whole experts' weights, only for experts a rank did not hold
    w = 3 * 2048 * 64 * 2  # olmoe hidden=2048, ffn_hidden=64, bf16
    assert rows[0]["migration_bytes"] % w == 0
    assert rows[0]["migration_bytes"] < 64 * w


def test_eplb_moves_when_popularity_drifts_and_not_when_weights_are_dear():
    rows = _eplb_rows("drift:1.2:0.0")
    assert sum(r["relayout_done"] for r in rows) >= 3
    # real weights (ffn_hidden=1024: 12.6 MB an expert) on 128-token batches: moving never pays
    dear = _eplb_rows("profile:deepseek_v2_lite:mock", ffn_hidden=1024, period=2, iterations=4)
    assert not any(r["relayout_done"] for r in dear)
    assert all(r["migration_bytes"] == 0 for r in dear)


def test_trace_shuffle_takes_the_same_tokens_at_random(tmp_path):
    """``trace:FILE:L:shuffle``: the layer's own records, without replacement up to the layer's
    size and each N // m or N // m + 1 times beyond it, in random order (not a window); the
    sequence ids the placement sees follow the same records."""
    import pickle

    from netsim.errors import NetsimError
    from netsim.workload.traces import Trace, write_trace

    m, E = 50, 100
    rec = np.arange(m)
    ids = np.stack([rec, (rec + 1) % m + m], axis=1)  # record r's first expert is r
    t = Trace(layer=np.repeat([0, 1], m), token=np.tile(rec, 2), expert_ids=np.tile(ids, (2, 1)),
              sequence=np.tile(rec // 10, 2), n_experts=E)
    path = write_trace(t, tmp_path / "t.parquet")
    inorder, shuf = parse_routing(f"trace:{path}:1"), parse_routing(f"trace:{path}:1:shuffle")
    assert shuf.shuffle and shuf.spec.endswith(":1:shuffle")
    assert pickle.loads(pickle.dumps(shuf)).shuffle
    for n in (20, 50, 120):
        rows = shuf.choices(1, n, E, 2, np.random.default_rng(3))[:, 0]
        per = np.bincount(rows, minlength=m)
        assert per.max() - per.min() <= 1 and per.sum() == n  # each record N // m (+1) times
        if n <= m:
            assert len(set(rows.tolist())) == n  # without replacement
        # a window is consecutive records; the shuffled draw is not
        wrows = inorder.choices(1, n, E, 2, np.random.default_rng(3))[:, 0]
        assert np.all(np.diff(wrows) % m == 1)
        assert not np.all(np.diff(rows) % m == 1)
        # counts are the choices' counts for the same random state
        c = shuf.choices(1, n, E, 2, np.random.default_rng(3))
        np.testing.assert_array_equal(shuf.counts(1, n, E, 2, np.random.default_rng(3))[0],
                                      np.bincount(c.ravel(), minlength=E))
    it = IterRouting(shuf, 5)
    rows = it.draw("choices", 2, 10, E, 2, 0)[:, 0]
    np.testing.assert_array_equal(it.sequences(2, 10, E, 2, 0), rec[rows] // 10)
    cpath = tmp_path / "c.csv"
    cpath.write_text("layer,expert,tokens\n0,0,5\n0,1,3\n")
    with pytest.raises(NetsimError, match="shuffle"):
        parse_routing(f"trace:{cpath}:shuffle")
