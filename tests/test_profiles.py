"""Routing profiles: calibrated Gini, metadata, mock versus uniform, mismatched runs."""
from __future__ import annotations

import numpy as np
import pytest

from netsim.errors import ConfigError, UnknownNameError
from netsim.workload.profiles import (CHECKPOINTS, PROFILES, REFERENCE_BATCH, profile_info,
                                      solve_sigma)
from netsim.workload.routing import gini, parse_routing

CALIBRATED = [n for n, m in PROFILES.items() if m["target_gini"] is not None]
SEEDS = (1, 2, 3)


def batch_gini(spec, experts, top_k, seed, layer=0, n_gpus=REFERENCE_BATCH[0],
               tokens=REFERENCE_BATCH[1]):
    c = parse_routing(spec).counts(n_gpus, tokens, experts, top_k,
                                   np.random.default_rng(seed), layer=layer)
    assert c.shape == (n_gpus, experts)
    np.testing.assert_array_equal(c.sum(axis=1), tokens * top_k)
    return gini(c.sum(axis=0))


@pytest.mark.parametrize("name", CALIBRATED)
def test_profile_hits_target_gini(name):
    m = PROFILES[name]
    g = [batch_gini(f"profile:{name}", m["experts"], m["top_k"], s, layer=s) for s in SEEDS]
    assert abs(np.mean(g) - m["target_gini"]) < 0.01, (name, g, m["target_gini"])
    assert max(abs(x - m["target_gini"]) for x in g) < 0.02


def test_published_values_and_bands():
    assert PROFILES["deepseek_moe_16b:wikitext"]["target_gini"] == 0.105
    assert PROFILES["nemotron_30b:wikitext"]["target_gini"] == 0.150
    assert PROFILES["deepseek_v2_lite:mock"]["target_gini"] == pytest.approx(0.33)
    for ck in ("deepseek_v2_lite", "qwen3_5_35b"):
        assert PROFILES[f"{ck}:wikitext"]["target_gini"] > 0.24
        assert 0.29 <= PROFILES[f"{ck}:mock"]["target_gini"] <= 0.38
    q = PROFILES["qwen3_30b_a3b:wikitext"]["target_gini"]
    assert 0.150 < q < 0.24
    for ck in CHECKPOINTS:
        real = PROFILES[f"{ck}:wikitext"]["target_gini"]
        mock = PROFILES[f"{ck}:mock"]["target_gini"]
        assert real < mock <= 2.35 * real + 1e-9


def test_model_shapes():
    want = {"deepseek_moe_16b": (64, 6), "deepseek_v2_lite": (64, 6), "qwen3_30b_a3b": (128, 8),
            "nemotron_30b": (128, 6), "qwen3_5_35b": (256, 8)}
    for ck, (e, k) in want.items():
        info = profile_info(f"profile:{ck}:mock")
        assert (info["experts"], info["top_k"]) == (e, k)
        assert info["sigma"] > 0 and info["source"]


def test_uniform_is_not_mock():
    """The two meanings of "mock": uniform top-k is far more balanced than mock tokens."""
    g_uni = batch_gini("profile:deepseek_v2_lite:uniform", 64, 6, 1)
    g_mock = batch_gini("profile:deepseek_v2_lite:mock", 64, 6, 1)
    assert g_uni < 0.03 < 0.3 < g_mock
    assert profile_info("deepseek_v2_lite:uniform")["sigma"] is None


def test_layers_differ_iterations_keep_structure():
    src = parse_routing("profile:deepseek_moe_16b:mock")
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    l0 = src.counts(4, 2048, 64, 6, rng(), layer=0).sum(0)
    l1 = src.counts(4, 2048, 64, 6, rng(), layer=1).sum(0)
    i1 = src.counts(4, 2048, 64, 6, rng(), layer=0, iteration=1).sum(0)
    assert np.argmax(l0) != np.argmax(l1) or np.argmin(l0) != np.argmin(l1)
    assert np.corrcoef(l0, i1)[0, 1] > 0.9      # same hot experts, new batch
    assert not np.array_equal(l0, i1)
    np.testing.assert_array_equal(l0, src.counts(4, 2048, 64, 6, rng(), layer=0).sum(0))


def test_other_expert_count_recalibrates():
    target = PROFILES["deepseek_v2_lite:mock"]["target_gini"]
    g = np.mean([batch_gini("profile:deepseek_v2_lite:mock", 32, 4, s) for s in SEEDS])
    assert abs(g - target) < 0.01
    assert solve_sigma(target, 32, 4) != solve_sigma(target, 64, 6)


def test_bad_profiles():
    with pytest.raises(UnknownNameError, match="llama"):
        parse_routing("profile:llama:wikitext")
    with pytest.raises(UnknownNameError, match="bogus"):
        parse_routing("profile:deepseek_v2_lite:bogus")
    with pytest.raises(ConfigError, match="CHECKPOINT:CONDITION"):
        parse_routing("profile:deepseek_v2_lite")
    with pytest.raises(ConfigError, match="cannot be reached"):
        parse_routing("profile:deepseek_v2_lite:mock").counts(2, 8, 4, 4,
                                                              np.random.default_rng(0))
    # spelling variants of the checkpoint name are accepted
    assert parse_routing("profile:DeepSeek-V2-Lite:mock").spec == "profile:deepseek_v2_lite:mock"


def test_profile_source_says_published_or_assumed():
    from netsim.workload.profiles import PROFILE_SOURCES
    from netsim.workload.routing import list_sources

    published = {n for n, m in PROFILES.items() if m["profile_source"] == "published"}
    assert published == {"deepseek_moe_16b:wikitext", "nemotron_30b:wikitext"}
    for n, m in PROFILES.items():
        assert m["profile_source"] in PROFILE_SOURCES
        assert (m["profile_source"] == "uncalibrated") == (m["target_gini"] is None)
        assert bool(m["citation"]) == (m["target_gini"] is not None)
    assert profile_info("qwen3_30b_a3b:mock")["profile_source"] == "assumed"
    assert profile_info("deepseek_v2_lite:mock")["profile_source"] == "assumed_in_band"
    listing = list_sources()["profile"]
    assert "nemotron_30b:wikitext" in listing and "assumed_in_band" in listing


def test_profile_rows_carry_their_source():
    from netsim.scenario import run

    p = dict(topology="crossbar", gpus=4, workload="olmoe_1b_7b", tokens_per_gpu=32,
             fabric="analytic")
    r = run(p | {"routing": "profile:nemotron_30b:wikitext"})
    assert r["profile_source"] == "published" and r["profile_target_gini"] == 0.150
    r = run(p | {"routing": "profile:qwen3_30b_a3b:wikitext", "iterations": 1})
    assert r["profile_source"] == "assumed"
    r = run(p | {"routing": "profile:deepseek_v2_lite:uniform"})
    assert r["profile_source"] == "uncalibrated" and np.isnan(r["profile_target_gini"])
    assert "profile_source" not in run(p | {"routing": "zipf:1.0"})
