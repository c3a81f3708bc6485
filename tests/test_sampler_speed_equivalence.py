"""The fast per-token samplers make exactly the draws of straightforward references.

The kernels of :mod:`netsim.workload.routing` and :mod:`netsim.workload.synthetic` draw their
uniforms a Mersenne Twister block at a time, search a guide table and mark chosen experts with
stamps; the references here draw one ``RandomState`` number at a time (NumPy's legacy MT19937,
which is what numba's ``np.random.seed(seed)`` sets up), search with ``np.searchsorted`` and test
"already chosen" with a list, so a faster kernel that changed a single draw fails them.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.workload import routing as R
from netsim.workload import synthetic as S

SLOW_OK = settings(max_examples=30, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


def _ref_draw(rs, cdf, chosen):
    """One expert not in ``chosen``: searchsorted of ``u * total`` (clipped), 64 tries, then the
    heaviest expert not chosen (the first of equal weights)."""
    w = np.diff(np.concatenate(([0.0], cdf)))
    for _ in range(64):
        e = min(int(np.searchsorted(cdf, rs.random_sample() * cdf[-1], "right")), len(cdf) - 1)
        if e not in chosen:
            return e
    return max((c for c in range(len(cdf)) if c not in chosen), key=lambda c: (w[c], -c))


def _ref_topk(cdf, n_tokens, k, seed):
    rs = np.random.RandomState(seed)
    out = np.empty((n_tokens, k), np.int32)
    for t in range(n_tokens):
        chosen: list[int] = []
        for _ in range(k):
            chosen.append(_ref_draw(rs, cdf, chosen))
        out[t] = chosen
    return out


def _popularity(experts, skew, hot, zeros, seed):
    p = (np.random.default_rng(seed).permutation(experts) + 1.0) ** -skew
    if hot:
        p[0] = 1e9  # repeats of expert 0 exhaust the 64 tries: the fallback runs
    if zeros:
        p[1::3] = 0.0  # zero-weight experts: flat cdf steps the search must skip
        p[0] = max(p[0], 1.0)
    return p


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 2000))
def test_mt_blocks_are_numpys_mersenne_twister(seed, n):
    """Block-drawn uniforms are RandomState(seed).random_sample's, across block boundaries."""
    mt = R.mt_state(seed)
    buf = np.empty(R.MT_DOUBLES)
    blocks = []
    for _ in range(-(-n // R.MT_DOUBLES)):
        R.mt_block(mt, buf)
        blocks.append(buf.copy())
    got = np.concatenate(blocks)[:n]
    np.testing.assert_array_equal(got, np.random.RandomState(seed).random_sample(n))


@SLOW_OK
@given(experts=st.integers(1, 40), k=st.integers(1, 8), groups=st.integers(1, 4),
       tokens=st.integers(1, 9), skew=st.sampled_from([0.0, 1.2, 4.0]), hot=st.booleans(),
       zeros=st.booleans(), seed=st.integers(0, 2**31 - 2))
def test_topk_sampler_is_the_reference(experts, k, groups, tokens, skew, hot, zeros, seed):
    """Choices and counts (several groups, any tokens per group) equal the reference's draws."""
    k = min(k, experts)
    p = _popularity(experts, skew, hot, zeros, seed)
    if np.count_nonzero(p) < k:
        p = p + 1e-12 * p.max()  # as _check_popularity does
    cdf = np.cumsum(p)
    ref = _ref_topk(cdf, groups * tokens, k, seed)
    np.testing.assert_array_equal(R.sample_topk_choices(cdf, groups, tokens, k, seed), ref)
    counts = np.zeros((groups, experts), np.int64)
    np.add.at(counts, (np.repeat(np.arange(groups), tokens * k), ref.ravel()), 1)
    np.testing.assert_array_equal(R.sample_topk_counts(cdf, groups, tokens, k, seed), counts)


def _ref_locality(cdf, n_gpus, tokens_per_gpu, k, seqlen, p_share, seed):
    rs = np.random.RandomState(seed)
    out = np.empty((n_gpus * tokens_per_gpu, k), np.int32)
    pref: list[int] = []
    for t in range(n_gpus * tokens_per_gpu):
        if t % seqlen == 0:
            pref = []
            for _ in range(k):
                pref.append(_ref_draw(rs, cdf, pref))
        chosen: list[int] = []
        for j in range(k):
            e = pref[j] if rs.random_sample() < p_share else -1
            if e in chosen:
                e = -1
            chosen.append(e if e >= 0 else _ref_draw(rs, cdf, chosen))
        out[t] = chosen
    return out


@SLOW_OK
@given(experts=st.integers(1, 30), k=st.integers(1, 6), gpus=st.integers(1, 3),
       tokens=st.integers(1, 12), seqlen=st.integers(1, 7),
       p_share=st.sampled_from([0.0, 0.5, 1.0]), hot=st.booleans(),
       seed=st.integers(0, 2**31 - 2))
def test_locality_sampler_is_the_reference(experts, k, gpus, tokens, seqlen, p_share, hot, seed):
    k = min(k, experts)
    cdf = np.cumsum(_popularity(experts, 1.0, hot, False, seed))
    ref = _ref_locality(cdf, gpus, tokens, k, seqlen, p_share, seed)
    tok = np.empty((gpus * tokens, k), np.int32)
    S._locality_draw(cdf, R.guide_table(cdf), tokens, seqlen, p_share, R.mt_state(seed),
                     np.empty((0, experts), np.int64), tok)
    np.testing.assert_array_equal(tok, ref)
    counts = np.zeros((gpus, experts), np.int64)
    np.add.at(counts, (np.repeat(np.arange(gpus), tokens * k), ref.ravel()), 1)
    np.testing.assert_array_equal(
        S.locality_counts(cdf, gpus, tokens, k, seqlen, p_share, seed), counts)


# --- node-limited routing: a new, faster stream that keeps the rule (its law) exact ---------


def _limited(p, groups, m, k, n_tokens, seed, best=R.GROUP_BEST):
    """The kernel on popularity ``p`` and expert -> group map ``groups`` (as popularity_choices
    calls it, with ``best`` settable)."""
    p = np.asarray(p, np.float64)
    order = np.argsort(groups, kind="stable")
    n_grp = int(groups.max()) + 1
    ptr = np.concatenate(([0], np.cumsum(np.bincount(groups, minlength=n_grp))))
    tok = np.empty((n_tokens, k), np.int32)
    cdf = np.cumsum(p[order])
    R.sample_limited_choices(cdf, R.guide_table(cdf), ptr, order, m, best, R.mt_state(seed), tok)
    return tok


def _reference_limited(p, groups, m, k, n_tokens, seed, best=R.GROUP_BEST):
    """DeepSeek-V3's rule with Gumbel scores, every expert scored: ``s_e = log p_e + G_e``, a
    group's score the sum of its ``best`` top scores (all of them in a smaller group), the ``m``
    best groups kept, then the ``k`` best experts among theirs, best first."""
    rng = np.random.default_rng(seed)
    s = np.log(p) + rng.gumbel(size=(n_tokens, len(p)))
    n_grp = int(groups.max()) + 1
    gs = np.full((n_tokens, n_grp), -np.inf)
    for g in range(n_grp):
        sg = -np.sort(-s[:, groups == g], axis=1)
        if sg.shape[1]:
            gs[:, g] = sg[:, :best].sum(axis=1)
    keep = np.argsort(-gs, axis=1, kind="stable")[:, :m]
    ok = (groups[None, :] == keep[:, :, None]).any(axis=1)
    return np.argsort(-np.where(ok, s, -np.inf), axis=1, kind="stable")[:, :k].astype(np.int32)


def _outcome_freq(ch):
    keys, n = np.unique(ch, axis=0, return_counts=True)
    return {tuple(r): c for r, c in zip(keys.tolist(), n.tolist())}


@pytest.mark.parametrize("case", [
    # p, groups, max groups, k, best
    ([3.0, 1.0, 0.5, 2.0, 2.0, 0.2, 1.5, 1.0, 0.7, 4.0], [0, 0, 0, 1, 1, 2, 2, 2, 2, 3], 2, 3, 2),
    ([1.0, 5.0, 1.0, 1.0, 0.3, 0.3, 2.5, 0.1], [0, 0, 1, 1, 2, 2, 3, 3], 1, 2, 2),
    ([1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 8.0], [0, 0, 0, 1, 1, 2, 2], 2, 4, 3),
    ([2.0, 1.0, 1.0, 1.0, 0.5, 0.5], [0, 1, 1, 2, 2, 2], 2, 2, 1),
])
def test_limited_sampler_has_the_rules_law(case):
    """The ordered top-k of the kernel and of the brute-force rule have one distribution: a
    chi-square test of the two samples' outcome counts (fixed seeds; a group score of one best
    expert instead of two, or any wrong conditional in the races, fails it by far)."""
    from scipy.stats import chi2_contingency

    p, groups, m, k, best = case
    p, groups = np.array(p), np.array(groups)
    n = 60_000
    a = _outcome_freq(_limited(p, groups, m, k, n, 11, best))
    b = _outcome_freq(_reference_limited(p, groups, m, k, n, 12, best))
    keys = sorted(set(a) | set(b), key=lambda x: -(a.get(x, 0) + b.get(x, 0)))
    big = [x for x in keys if a.get(x, 0) + b.get(x, 0) >= 40]
    table = np.array([[a.get(x, 0) for x in big] + [sum(a.get(x, 0) for x in keys
                                                       if x not in big)],
                      [b.get(x, 0) for x in big] + [sum(b.get(x, 0) for x in keys
                                                       if x not in big)]])
    table = table[:, table.sum(axis=0) > 0]
    assert chi2_contingency(table)[1] > 1e-4


def test_the_law_test_can_fail():
    """The chi-square check above rejects a rule that differs only in the group score (one best
    expert instead of two)."""
    from scipy.stats import chi2_contingency

    p = np.array([3.0, 1.0, 0.5, 2.0, 2.0, 0.2, 1.5, 1.0, 0.7, 4.0])
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    a = _outcome_freq(_limited(p, groups, 2, 3, 60_000, 11, 2))
    b = _outcome_freq(_reference_limited(p, groups, 2, 3, 60_000, 12, 1))
    keys = [x for x in set(a) | set(b) if a.get(x, 0) + b.get(x, 0) >= 40]
    assert chi2_contingency(np.array([[a.get(x, 0) for x in keys],
                                      [b.get(x, 0) for x in keys]]))[1] < 1e-6


@SLOW_OK
@given(sizes=st.lists(st.integers(0, 6), min_size=2, max_size=7), m=st.integers(1, 4),
       k=st.integers(1, 8), best=st.integers(1, 3), skew=st.sampled_from([0.0, 1.0, 6.0]),
       seed=st.integers(0, 2**31 - 2))
def test_limited_sampler_invariants(sizes, m, k, best, skew, seed):
    """Any group sizes (empty groups and one-expert groups included), any skew (heavy experts make
    the races' repeats exhaust their 64 tries): k distinct experts on at most m groups."""
    groups = np.repeat(np.arange(len(sizes)), sizes)
    if len(groups) == 0:
        return
    rng = np.random.default_rng(seed)
    groups = rng.permutation(groups)
    live = sorted(s for s in sizes if s)
    m = min(m, len(live))
    k = min(k, sum(live[:m]))
    p = (rng.permutation(len(groups)) + 1.0) ** -skew
    ch = _limited(p, groups, m, k, 300, seed, best)
    assert ch.min() >= 0 and ch.max() < len(groups)
    assert all(len(set(r)) == k for r in ch.tolist())
    assert max(len(set(groups[r].tolist())) for r in ch) <= m
