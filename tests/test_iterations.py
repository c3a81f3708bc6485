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
    e = run(p | {"relayout": "eplb:2"})
    assert e["relayouts"] == 3 and e["migration_bytes"] > 0
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
