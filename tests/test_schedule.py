"""Tests of the circuit schedulers (netsim.schedule): validity, conservation, exact cases, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from netsim.errors import ConfigError, NetsimError, TrafficError, UnknownNameError
from netsim.schedule._kernels import pad_kernel
from netsim.schedule.base import quantize
from netsim.schedule import (
    Schedule,
    bvn,
    check_schedule,
    get_scheduler,
    greedy,
    hier_bvn,
    ideal,
    list_schedulers,
    lower_bound_s,
    spectra,
    validate_traffic,
)

RATE = 50e9  # bytes/s
DELTA = 1e-6  # s

ALL_SPECS = [
    "bvn",
    "bvn:max",
    "bvn:any",
    "greedy:1",
    "greedy:4",
    "greedy:4:max",
    "greedy:3:min",
    "greedy:8:opt",
    "greedy:2:q50",
    "greedy:2:q90:leftover",
    "solstice",
    "eclipse",
    "eclipse:20us",
    "rotor",
    "rotor:uniform",
    "static",
    "ideal",
    "spectra:1",
    "spectra:3",
    "spectra:2:bvn",
]


def skewed(n: int, seed: int, integer: bool = True, density: float = 0.7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.5, size=n).astype(float)
    t = rng.random((n, n)) * pop[None, :] * 1e6
    t[rng.random((n, n)) > density] = 0.0
    if integer:
        t = np.floor(t)
    np.fill_diagonal(t, 0.0)
    return t


def doubly_stochastic_int(n: int, k: int, seed: int) -> np.ndarray:
    """Sum of k random permutation matrices with integer weights: equal line sums, zero diagonal
    not guaranteed, so use derangements."""
    rng = np.random.default_rng(seed)
    t = np.zeros((n, n))
    for _ in range(k):
        shift = int(rng.integers(1, n))
        perm = (np.arange(n) + shift) % n
        t[np.arange(n), perm] += int(rng.integers(1, 1000))
    return t


# ------------------------------------------------------------------------------------------------
# every scheduler: valid matchings, rate limit, conservation


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("integer", [True, False])
def test_valid_and_conserving(spec: str, integer: bool) -> None:
    t = skewed(12, seed=3, integer=integer)
    s = get_scheduler(spec)(t, RATE, DELTA)
    assert isinstance(s, Schedule)
    check_schedule(s, t, RATE)  # raises ScheduleError on any violation
    assert all(p.dtype == np.int64 for p in s.matchings)
    assert s.total_time_s >= s.meta["ideal_s"] * (1 - 1e-12) or s.leftover_bytes.sum() > 0 or "per_switch" in s.meta
    assert 0.0 <= s.bubble_fraction <= 1.0


matrices = st.builds(
    skewed,
    n=st.integers(2, 32),
    seed=st.integers(0, 10_000),
    integer=st.booleans(),
    density=st.floats(0.05, 1.0),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=matrices, spec=st.sampled_from(ALL_SPECS), delta=st.sampled_from([0.0, 1e-8, 1e-5]))
def test_property_every_byte_delivered(t: np.ndarray, spec: str, delta: float) -> None:
    s = get_scheduler(spec)(t, RATE, delta)
    check_schedule(s, t, RATE)
    if not s.meta.get("crossbar"):
        fallback = s.meta.get("fallback", "cleanup")
        if spec.startswith(("static", "eclipse:")) or fallback == "leftover":
            return
        assert s.leftover_bytes.sum() == pytest.approx(0.0, abs=1e-6 * max(t.sum(), 1.0))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 32), k=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_property_bvn_doubly_stochastic_sums_back_exactly(n: int, k: int, seed: int) -> None:
    t = doubly_stochastic_int(n, k, seed)
    s = bvn(t, RATE, DELTA)
    assert np.array_equal(s.served_matrix(), t)
    assert s.meta["padded_fraction"] == 0.0
    assert s.total_time_s == pytest.approx(t.sum(axis=1)[0] / RATE + s.n_matchings * DELTA, rel=1e-12)


@settings(max_examples=15, deadline=None)
@given(t=matrices)
def test_property_bvn_duration_is_line_sum(t: np.ndarray) -> None:
    s = bvn(t, RATE, DELTA)
    check_schedule(s, t, RATE)
    big_l = max(t.sum(axis=1).max(), t.sum(axis=0).max())
    assert s.circuit_time_s == pytest.approx(big_l / RATE, rel=1e-9, abs=1e-15)
    n = t.shape[0]
    assert s.n_matchings <= max(1, n * n - 2 * n + 2)


# ------------------------------------------------------------------------------------------------
# a sum of k edge-disjoint weighted permutations: the papers' rules peel them one by one


def permutation_sum(n: int, weights: list[int], seed: int) -> np.ndarray:
    """sum_k weights[k] * P_k for edge-disjoint permutations P_k without fixed points: shifts
    i -> i + s_k (distinct s_k in 1..n-1), relabelled by one random permutation of the ports."""
    rng = np.random.default_rng(seed)
    shifts = rng.choice(np.arange(1, n), size=len(weights), replace=False)
    lab = rng.permutation(n)
    t = np.zeros((n, n))
    for w, sh in zip(weights, shifts):
        t[lab, lab[(np.arange(n) + sh) % n]] += float(w)
    return t


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 24), data=st.data(), seed=st.integers(0, 10_000))
def test_property_strong_bvn_peels_k_weighted_permutations(n: int, data, seed: int) -> None:
    k = data.draw(st.integers(1, n - 1), label="k")
    weights = data.draw(st.lists(st.integers(1, 10**9), min_size=k, max_size=k, unique=True),
                        label="weights")
    t = permutation_sum(n, weights, seed)
    for spec in ("bvn", "bvn:max", "bvn:bottleneck"):
        s = get_scheduler(spec)(t, RATE, DELTA)
        check_schedule(s, t, RATE)
        assert s.n_matchings == k, spec
        # the matchings are the permutations, largest weight first
        assert sorted(s.durations_s, reverse=True) == pytest.approx(
            sorted(np.array(weights) / RATE, reverse=True), rel=1e-12)
        if spec != "bvn:max":
            assert list(s.durations_s) == sorted(s.durations_s, reverse=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 24), data=st.data(), seed=st.integers(0, 10_000))
def test_property_solstice_eclipse_peel_k_permutations_by_their_rules(n: int, data, seed: int) -> None:
    """Solstice's rule (a perfect matching among entries >= r, r = 2^j halving) peels a sum of
    permutations whose weights are distinct powers of two in k slices; Eclipse's (the matching and
    duration maximising bytes per (duration + reconfiguration)) peels any distinct weights in k
    steps once the reconfiguration dominates the durations (the largest weight's matching at its
    full weight is then the best ratio)."""
    k = data.draw(st.integers(1, n - 1), label="k")
    exps = data.draw(st.lists(st.integers(0, 40), min_size=k, max_size=k, unique=True), label="e")
    t = permutation_sum(n, [2**e for e in exps], seed)
    s = get_scheduler("solstice")(t, RATE, DELTA)
    check_schedule(s, t, RATE)
    assert s.n_matchings == k
    assert s.meta["padded_fraction"] == 0.0
    weights = data.draw(st.lists(st.integers(1, 10**6), min_size=k, max_size=k, unique=True),
                        label="w")
    t = permutation_sum(n, weights, seed)
    s = get_scheduler("eclipse")(t, RATE, 1.0)  # 1 s reconfiguration >> 20 us of data
    check_schedule(s, t, RATE)
    assert s.n_matchings == k
    assert s.meta["cleanup_matchings"] == 0


def test_naive_bvn_is_named_and_weaker() -> None:
    """bvn:any is the naive variant: same exact decomposition, many more matchings."""
    t = permutation_sum(32, [5, 9, 13, 21, 34], 3)
    strong, naive = bvn(t, RATE, DELTA), bvn(t, RATE, DELTA, rule="any")
    assert strong.name == "bvn:bottleneck" and naive.name == "bvn:any"
    assert np.array_equal(naive.served_matrix(), t)
    assert strong.n_matchings == 5 < naive.n_matchings
    with pytest.raises(ConfigError, match="RULE = 'best'"):
        bvn(t, RATE, DELTA, rule="best")


# ------------------------------------------------------------------------------------------------
# DESIGN.md exact cases


@pytest.mark.parametrize("n,k,seed", [(4, 3, 0), (16, 6, 1), (32, 20, 2)])
def test_bvn_doubly_stochastic_exact(n: int, k: int, seed: int) -> None:
    t = doubly_stochastic_int(n, k, seed)
    big_l = t.sum(axis=1)[0]
    assert np.all(t.sum(axis=1) == big_l) and np.all(t.sum(axis=0) == big_l)
    s = bvn(t, RATE, DELTA)
    assert s.meta["padded_fraction"] == 0.0
    assert np.array_equal(s.served_matrix(), t)  # sums back exactly (integer matrix)
    assert s.leftover_bytes.sum() == 0.0
    m = s.n_matchings
    assert s.total_time_s == pytest.approx(big_l / RATE + m * DELTA, rel=1e-12)
    assert s.bubble_fraction == pytest.approx(0.0, abs=1e-12)
    for perm in s.matchings:  # a doubly stochastic matrix with zero diagonal: full permutations
        assert np.all(perm >= 0)


def test_permutation_takes_one_matching() -> None:
    n = 9
    perm = (np.arange(n) + 4) % n
    t = np.zeros((n, n))
    t[np.arange(n), perm] = 1000.0
    for spec in ["bvn", "greedy:4", "solstice", "eclipse", "static", "spectra:1"]:
        s = get_scheduler(spec)(t, RATE, DELTA)
        assert s.n_matchings == 1, spec
        assert np.array_equal(s.matchings[0], perm), spec
        assert s.total_time_s == pytest.approx(1000.0 / RATE + DELTA), spec


def test_total_time_is_sum_plus_reconfig() -> None:
    t = skewed(10, seed=5)
    for spec in ["bvn", "greedy:3", "solstice", "rotor", "eclipse"]:
        s = get_scheduler(spec)(t, RATE, 3e-6)
        assert s.total_time_s == pytest.approx(math.fsum(s.durations_s) + s.n_matchings * 3e-6, rel=1e-12)
        assert s.reconfig_total_s == pytest.approx(s.n_matchings * 3e-6)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("rule", ["max", "min", "opt", "q50"])
def test_greedy_at_most_k_before_cleanup(k: int, rule: str) -> None:
    t = skewed(16, seed=k)
    s = greedy(t, RATE, DELTA, k=k, rule=rule)
    assert s.meta["own_matchings"] <= k
    assert s.n_matchings == s.meta["own_matchings"] + s.meta["cleanup_matchings"]
    assert s.leftover_bytes.sum() == 0.0
    lo = greedy(t, RATE, DELTA, k=k, rule=rule, fallback="leftover")
    assert lo.n_matchings <= k and lo.meta["cleanup_matchings"] == 0
    check_schedule(lo, t, RATE)
    assert lo.leftover_bytes.sum() == pytest.approx(s.meta["leftover_bytes_before_fallback"])


def test_greedy_rule_durations() -> None:
    t = np.zeros((3, 3))
    t[0, 1], t[1, 2], t[2, 0] = 100.0, 300.0, 200.0
    assert greedy(t, 1.0, 0.0, k=1, rule="max").durations_s[0] == 300.0
    assert greedy(t, 1.0, 0.0, k=1, rule="min").durations_s[0] == 100.0
    assert greedy(t, 1.0, 0.0, k=1, rule="q50").durations_s[0] == 200.0
    # opt: served/(c + delta): c=100 -> 300/110, c=200 -> 500/210, c=300 -> 600/310 with delta=10
    assert greedy(t, 1.0, 10.0, k=1, rule="opt").durations_s[0] == 100.0
    # with a large delta the longest hold wins
    assert greedy(t, 1.0, 1e6, k=1, rule="opt").durations_s[0] == 300.0


def test_ideal_is_crossbar_bound() -> None:
    t = skewed(20, seed=7)
    s = ideal(t, RATE, DELTA)
    bound = max(t.sum(axis=1).max(), t.sum(axis=0).max()) / RATE
    assert s.n_matchings == 0
    assert s.meta["crossbar"] is True
    assert s.meta["ideal_s"] == pytest.approx(bound, rel=1e-15)
    assert s.total_time_s == pytest.approx(bound, rel=1e-15)
    assert s.bubble_fraction == 0.0


def test_bvn_matching_bound_n64() -> None:
    rng = np.random.default_rng(11)
    n = 64
    t = rng.random((n, n)) * 1e6  # generic real entries: the worst case for the count
    np.fill_diagonal(t, 0.0)
    s = bvn(t, RATE, DELTA)
    check_schedule(s, t, RATE)
    assert s.n_matchings <= n * n - 2 * n + 2
    assert 0.0 <= s.meta["padded_fraction"] < 1.0
    assert s.circuit_time_s == pytest.approx(max(t.sum(1).max(), t.sum(0).max()) / RATE, rel=1e-9)


def test_bvn_padding_fraction() -> None:
    t = np.array([[0.0, 4.0], [0.0, 0.0]])
    s = bvn(t, 1.0, 0.0)
    # line sum 4, real 4 of 2*4 = 8
    assert s.meta["padded_fraction"] == pytest.approx(0.5)
    assert s.circuit_time_s == pytest.approx(4.0)
    check_schedule(s, t, 1.0)


def test_solstice_big_slices_first() -> None:
    t = skewed(16, seed=9)
    s = get_scheduler("solstice")(t, RATE, DELTA)
    check_schedule(s, t, RATE)
    d = np.asarray(s.durations_s) * RATE  # bytes (integer matrix: exact)
    r = s.meta["thresholds_bytes"]
    assert np.all(np.diff(r) <= 0)  # thresholds only go down
    assert np.all(np.log2(r) == np.round(np.log2(r)))  # powers of two
    assert np.all(d >= r * (1 - 1e-12))  # each slice is at least its threshold
    # r starts at the largest power of two <= the largest entry of the *padded* matrix and halves
    # until the entries >= r hold a perfect matching: the first slice's r is the largest power of
    # two with one (reference: scipy's bipartite matching on the padded matrix)
    q, scale = quantize(t)
    padded, _ = pad_kernel(q.copy(), True)
    ref = 1 << (int(padded.max()).bit_length() - 1)
    while np.any(maximum_bipartite_matching(csr_matrix(padded >= ref), perm_type="column") < 0):
        ref //= 2
    assert r[0] == ref / scale
    assert s.circuit_time_s == pytest.approx(max(t.sum(1).max(), t.sum(0).max()) / RATE, rel=1e-9)


def test_rotor_is_fixed_cycle() -> None:
    n = 7
    t = skewed(n, seed=2)
    s = get_scheduler("rotor")(t, RATE, DELTA)
    assert s.n_matchings == n - 1
    for k, perm in enumerate(s.matchings, start=1):
        assert np.array_equal(perm, (np.arange(n) + k) % n)
    u = get_scheduler("rotor:uniform")(t, RATE, DELTA)
    assert np.allclose(u.durations_s, t.max() / RATE)


def test_static_one_matching() -> None:
    t = skewed(10, seed=4)
    s = get_scheduler("static")(t, RATE, DELTA)
    assert s.n_matchings == 1
    assert s.leftover_bytes.sum() > 0
    check_schedule(s, t, RATE)


def test_eclipse_budget() -> None:
    t = skewed(16, seed=8)
    budget = 20e-6
    s = get_scheduler("eclipse:20us")(t, RATE, DELTA)
    assert s.total_time_s <= budget * (1 + 1e-12)
    assert s.meta["fallback"] == "leftover"
    check_schedule(s, t, RATE)


@pytest.mark.parametrize("s_count", [1, 2, 4])
@pytest.mark.parametrize("decomp", ["greedy", "bvn"])
def test_spectra_parallel(s_count: int, decomp: str) -> None:
    t = skewed(16, seed=s_count)
    sch = spectra(t, RATE, DELTA, s=s_count, decomp=decomp)
    check_schedule(sch, t, RATE)
    per = sch.meta["per_switch"]
    assert len(per) == s_count
    assert sch.total_time_s == pytest.approx(max(p.total_time_s for p in per))
    assert sum(p.n_matchings for p in per) == sch.n_matchings
    lb = sch.meta["lower_bound_s"]
    assert lb == pytest.approx(lower_bound_s(t, RATE, DELTA, s_count))
    assert lb <= sch.total_time_s * (1 + 1e-9)
    if s_count == 1:
        one = get_scheduler("greedy:8" if decomp == "greedy" else "bvn")(t, RATE, DELTA)
        assert sch.total_time_s == pytest.approx(one.total_time_s)


def test_spectra_more_switches_not_slower() -> None:
    t = skewed(24, seed=12)
    times = [spectra(t, RATE, DELTA, s=k).total_time_s for k in (1, 2, 4)]
    assert times[1] <= times[0] * (1 + 1e-9) and times[2] <= times[1] * (1 + 1e-9)


def test_hier_bvn() -> None:
    g = 4
    t = skewed(16, seed=6)
    s = hier_bvn(t, RATE, DELTA, gpus_per_server=g)
    check_schedule(s, t, RATE)  # validity and rate limit (conservation is per server pair)
    ns = 16 // g
    server = t.reshape(ns, g, ns, g).sum(axis=(1, 3))
    np.fill_diagonal(server, 0.0)
    assert np.allclose(s.meta["server_served_bytes"], server, rtol=1e-9)
    # circuits within a server pair carry, over all matchings, the server pair's bytes
    got = np.zeros((ns, ns))
    for perm, sv in zip(s.matchings, s.served_bytes):
        act = perm >= 0
        np.add.at(got, (np.nonzero(act)[0] // g, perm[act] // g), sv[act])
    assert np.allclose(got, server, rtol=1e-9)
    assert s.n_matchings <= ns * ns - 2 * ns + 2
    intra = sum(t[a * g:(a + 1) * g, a * g:(a + 1) * g].sum() for a in range(ns))
    assert s.leftover_bytes.sum() == pytest.approx(intra)


def test_zero_and_tiny_matrices() -> None:
    for spec in ALL_SPECS:
        z = get_scheduler(spec)(np.zeros((5, 5)), RATE, DELTA)
        assert z.leftover_bytes.sum() == 0.0
        assert z.total_time_s == 0.0 or spec.startswith("rotor"), spec
        one = get_scheduler(spec)(np.zeros((1, 1)), RATE, DELTA)
        assert one.leftover_bytes.sum() == 0.0


def test_diagonal_ignored() -> None:
    t = skewed(6, seed=1)
    t2 = t.copy()
    np.fill_diagonal(t2, 1e9)
    a, b = bvn(t, RATE, DELTA), bvn(t2, RATE, DELTA)
    assert a.n_matchings == b.n_matchings and a.total_time_s == b.total_time_s


def test_deterministic() -> None:
    t = skewed(20, seed=13, integer=False)
    for spec in ["bvn", "greedy:4:opt", "solstice", "eclipse", "spectra:3"]:
        a = get_scheduler(spec)(t, RATE, DELTA)
        b = get_scheduler(spec)(t, RATE, DELTA)
        assert a.n_matchings == b.n_matchings
        assert np.array_equal(a.perm_array(), b.perm_array())
        assert a.durations_s == b.durations_s


# ------------------------------------------------------------------------------------------------
# registry and bad input


def test_registry_lists_everything() -> None:
    names = list_schedulers()
    for n in ["bvn", "greedy", "solstice", "eclipse", "rotor", "static", "ideal", "spectra", "hier_bvn"]:
        assert n in names and names[n]
    assert get_scheduler("greedy:4").spec == "greedy:4:max"
    assert get_scheduler("GREEDY:8:opt")(skewed(4, 0), RATE, DELTA).name == "greedy:8:opt"


@pytest.mark.parametrize(
    "spec,exc,fragment",
    [
        ("nope", UnknownNameError, "'nope'"),
        ("", UnknownNameError, "expected"),
        ("greedy:0", ConfigError, "K = '0'"),
        ("greedy:x", ConfigError, "K = 'x'"),
        ("greedy:4:median", ConfigError, "RULE = 'median'"),
        ("greedy:4:q150", ConfigError, "RULE = 'q150'"),
        ("greedy:4:max:packet", ConfigError, "FALLBACK = 'packet'"),
        ("greedy:4:max:cleanup:9", ConfigError, "expected greedy:K"),
        ("bvn:3", ConfigError, "RULE = '3'"),
        ("bvn:1:2", ConfigError, "expected bvn[:RULE]"),
        ("rotor:fast", ConfigError, "MODE = 'fast'"),
        ("eclipse:-3us", ConfigError, "BUDGET"),
        ("eclipse:soon", ConfigError, "BUDGET"),
        ("spectra:0", ConfigError, "S = '0'"),
        ("spectra:2:magic", ConfigError, "DECOMP = 'magic'"),
        ("hier_bvn", ConfigError, "hier_bvn:G"),
    ],
)
def test_bad_specs(spec: str, exc: type, fragment: str) -> None:
    with pytest.raises(exc) as info:
        get_scheduler(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, NetsimError)


@pytest.mark.parametrize(
    "bad,fragment",
    [
        (np.array([[0.0, np.nan], [1.0, 0.0]]), "nan"),
        (np.array([[0.0, np.inf], [1.0, 0.0]]), "inf"),
        (np.array([[0.0, -1.0], [1.0, 0.0]]), "-1.0"),
        (np.zeros((2, 3)), "(2, 3)"),
        (np.zeros(4), "(4,)"),
        (np.zeros((0, 0)), "(0, 0)"),
        ([["a", "b"], ["c", "d"]], "numbers"),
    ],
)
@pytest.mark.parametrize("spec", ["bvn", "greedy:2", "solstice", "eclipse", "rotor", "static", "ideal", "spectra:2"])
def test_bad_traffic(bad, fragment: str, spec: str) -> None:
    with pytest.raises(TrafficError) as info:
        get_scheduler(spec)(bad, RATE, DELTA)
    assert fragment in str(info.value)


def test_validate_traffic_names_entry() -> None:
    t = np.zeros((3, 3))
    t[1, 2] = -5
    with pytest.raises(TrafficError, match=r"traffic\[1, 2\] = -5.0"):
        validate_traffic(t)
    out = validate_traffic(np.ones((3, 3)))
    assert np.all(np.diag(out) == 0) and out.dtype == np.float64


@pytest.mark.parametrize("rate,delta", [(0.0, 1e-6), (-1.0, 0.0), (float("nan"), 0.0), (1e9, -1.0), (1e9, float("inf"))])
def test_bad_link(rate: float, delta: float) -> None:
    with pytest.raises(ConfigError):
        bvn(np.ones((3, 3)), rate, delta)


def test_hier_bvn_bad_group() -> None:
    with pytest.raises(ConfigError, match="gpus_per_server = 5"):
        get_scheduler("hier_bvn:5")(np.ones((8, 8)), RATE, DELTA)
