"""Synthetic routing sources: conservation, determinism, the behaviour each one imitates."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.errors import ConfigError
from netsim.workload.routing import gini, list_sources, parse_routing

SPECS = ["dirichlet:0.3", "dirichlet:5", "hot:0.1:0.6", "hot:0.5:0.9", "layerskew:0.2:1.5",
         "layerskew:1.0:0.0:4", "drift:1.0:0.8", "drift:0.5:0", "locality:1.0:16:0.7",
         "locality:0.5:5:1"]


def test_registered():
    names = list_sources()
    for n in ("dirichlet", "hot", "layerskew", "drift", "locality", "profile", "trace"):
        assert n in names and names[n]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(SPECS), n_gpus=st.integers(1, 5), tokens=st.integers(1, 40),
       experts=st.integers(1, 24), k=st.integers(1, 6), layer=st.integers(0, 40),
       iteration=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_rows_sum_and_determinism(spec, n_gpus, tokens, experts, k, layer, iteration, seed):
    k = min(k, experts)
    src = parse_routing(spec)
    c = src.counts(n_gpus, tokens, experts, k, np.random.default_rng(seed), layer, iteration)
    assert c.shape == (n_gpus, experts) and c.dtype == np.int64
    assert (c >= 0).all() and (c <= tokens).all()  # k distinct experts per token
    np.testing.assert_array_equal(c.sum(axis=1), tokens * k)
    again = parse_routing(spec).counts(n_gpus, tokens, experts, k, np.random.default_rng(seed),
                                       layer, iteration)
    np.testing.assert_array_equal(c, again)


def totals(spec, seed=0, layer=0, iteration=0, n_gpus=4, tokens=1024, experts=32, k=4):
    return parse_routing(spec).counts(n_gpus, tokens, experts, k, np.random.default_rng(seed),
                                      layer, iteration)


def test_seed_matters():
    for spec in SPECS:
        assert not np.array_equal(totals(spec, seed=1), totals(spec, seed=2)), spec


def test_dirichlet_alpha_sets_skew():
    lo = np.mean([gini(totals("dirichlet:0.2", s).sum(0)) for s in range(3)])
    hi = np.mean([gini(totals("dirichlet:50", s).sum(0)) for s in range(3)])
    assert lo > 0.4 > 0.1 > hi
    a = totals("dirichlet:0.2", 0, layer=0).sum(0)
    b = totals("dirichlet:0.2", 0, layer=1).sum(0)
    assert np.argmax(a) != np.argmax(b) or not np.array_equal(np.argsort(a), np.argsort(b))


def test_hot_share():
    # k = 1: the realised share equals SHARE; 4 of 32 experts hot
    c = totals("hot:0.125:0.6", k=1).sum(0)
    top = np.sort(c)[::-1]
    assert abs(top[:4].sum() / c.sum() - 0.6) < 0.02
    assert top[4] < 0.5 * top[3]


def test_layerskew_increases_with_depth():
    g = [np.mean([gini(totals("layerskew:0.0:1.5:8", s, layer=layer).sum(0)) for s in (0, 1)])
         for layer in (0, 4, 7)]
    assert g[0] < 0.05 < g[1] < g[2]
    assert gini(totals("layerskew:0.0:1.5:8", 0, layer=8).sum(0)) < 0.05  # wraps at LAYERS


def _drift_popularity(spec, iteration, seed=4, experts=32):
    from netsim.workload.synthetic import streams

    src = parse_routing(spec)
    key, _, _ = streams(np.random.default_rng(seed), 0, iteration)
    return src.popularity(key, 0, iteration, experts)


def test_drift_correlation():
    frozen = [_drift_popularity("drift:1.0:1", t) for t in range(4)]
    assert all(np.array_equal(frozen[0], p) for p in frozen)
    for rho, lo, hi in ((0.95, 0.6, 1.0), (0.0, -0.6, 0.6)):
        p = [np.log(_drift_popularity(f"drift:1.0:{rho}", t)) for t in range(12)]
        r = np.mean([np.corrcoef(p[t], p[t + 1])[0, 1] for t in range(11)])
        assert lo < r < hi, (rho, r)
    # skew constant over iterations: same sorted weights
    p = [_drift_popularity("drift:1.0:0.5", t) for t in (0, 5)]
    np.testing.assert_array_equal(np.sort(p[0]), np.sort(p[1]))


def test_drift_order_independent():
    spec = "drift:1.0:0.7"
    src = parse_routing(spec)
    rng = lambda: np.random.default_rng(11)  # noqa: E731
    late = src.counts(2, 64, 16, 2, rng(), layer=1, iteration=9)
    early = src.counts(2, 64, 16, 2, rng(), layer=1, iteration=3)
    fresh = parse_routing(spec)
    np.testing.assert_array_equal(early, fresh.counts(2, 64, 16, 2, rng(), layer=1, iteration=3))
    np.testing.assert_array_equal(late, fresh.counts(2, 64, 16, 2, rng(), layer=1, iteration=9))


def test_locality_makes_ranks_bursty():
    per_gpu = {}
    for p in ("0", "1"):
        c = totals(f"locality:1.0:64:{p}", 0, n_gpus=8, tokens=256)
        per_gpu[p] = np.mean([gini(row) for row in c])
        glob = gini(c.sum(0))
        assert 0.3 < glob < 0.75
    assert per_gpu["1"] > per_gpu["0"] + 0.1


@pytest.mark.parametrize("spec", ["dirichlet:0", "dirichlet:x", "dirichlet", "hot:0:0.5",
                                  "hot:0.1:1.5", "hot:0.1", "layerskew:1", "layerskew:1:2:0",
                                  "drift:1:1.5", "drift:-1:0.5", "locality:1:0:0.5",
                                  "locality:1:8:2", "locality:1:8"])
def test_bad_specs(spec):
    with pytest.raises(ConfigError):
        parse_routing(spec)


def test_bad_call():
    with pytest.raises(ConfigError, match="top_k"):
        parse_routing("hot:0.1:0.5").counts(2, 4, 4, 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="layer"):
        parse_routing("dirichlet:1").counts(2, 4, 4, 2, np.random.default_rng(0), layer=-1)


def _reference_topk(cdf, n_tokens, k, seed):
    """The top-k sampler's stream in plain Python: numba's generator seeded with ``seed`` is
    NumPy's legacy MT19937 (``RandomState(seed)``); each draw ``u * total`` is searched with
    ``searchsorted(..., "right")`` and a repeat is drawn again (64 tries, then the heaviest
    expert not chosen)."""
    rs = np.random.RandomState(seed)
    w = np.diff(np.concatenate(([0.0], cdf)))
    out = np.empty((n_tokens, k), np.int32)
    for t in range(n_tokens):
        chosen: list[int] = []
        for _ in range(k):
            for _try in range(64):
                e = min(int(np.searchsorted(cdf, rs.random_sample() * cdf[-1], "right")),
                        len(cdf) - 1)
                if e not in chosen:
                    break
            else:
                e = max((c for c in range(len(cdf)) if c not in chosen), key=lambda c: (w[c], -c))
            chosen.append(e)
        out[t] = chosen
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(experts=st.integers(1, 40), k=st.integers(1, 8), skew=st.sampled_from([0.0, 1.2, 4.0]),
       hot=st.booleans(), seed=st.integers(0, 2**31 - 2))
def test_topk_sampler_draws_the_reference_stream(experts, k, skew, hot, seed):
    """The guide-table, stamp-based kernel makes exactly the plain sampler's draws (so runs keep
    their rows when the kernel is sped up), the fallback included (``hot``: one expert with
    almost all the weight, so repeats exhaust the 64 tries)."""
    from netsim.workload.routing import sample_topk_choices, sample_topk_counts

    k = min(k, experts)
    p = (np.random.default_rng(seed).permutation(experts) + 1.0) ** -skew
    if hot:
        p[0] = 1e9
    cdf = np.cumsum(p)
    ref = _reference_topk(cdf, 3 * 7, k, seed)
    np.testing.assert_array_equal(sample_topk_choices(cdf, 3, 7, k, seed), ref)
    counts = np.zeros((3, experts), np.int64)
    np.add.at(counts, (np.repeat(np.arange(3), 7 * k), ref.ravel()), 1)
    np.testing.assert_array_equal(sample_topk_counts(cdf, 3, 7, k, seed), counts)
