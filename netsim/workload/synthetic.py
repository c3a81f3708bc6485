"""Synthetic routing sources that imitate what real MoE routers do, beside ``uniform`` and ``zipf``.

==================================  ==============================================================
spec                                imitates
==================================  ==============================================================
``dirichlet:ALPHA``                 a random, unordered popularity per layer; ALPHA sets the skew
``hot:FRACTION:SHARE``              a few "hot" experts that take most of the traffic
``layerskew:S0:S1[:LAYERS]``        skew that changes with depth (Zipf exponent S0 -> S1)
``drift:S:RHO``                     popularity that moves from iteration to iteration
``locality:S:SEQLEN:P``             tokens of one sequence routed to the same experts
==================================  ==============================================================

Random streams (the same convention in every source here and in ``netsim.workload.profiles``).
Each call of ``counts(..., rng, layer, iteration)`` draws one 63-bit ``key`` from the ``rng`` it is
given and derives everything else from it, never from a global RNG:

* the layer's *structure* (its popularity vector: which experts are hot, the Dirichlet draw, the
  Zipf ranks, the drift's starting point) from ``np.random.default_rng([key, 1, layer])``;
* the *batch* (the tokens' draws) from ``np.random.default_rng([key, 2, layer, iteration])``;
* drift innovations of iteration t from ``np.random.default_rng([key, 3, layer, t])``.

So a layer's structure is a function of (rng state, layer) and the batch of (rng state, layer,
iteration). A caller that passes, for every iteration of a run, an rng in the same state (e.g.
``default_rng(SeedSequence(seed))`` made afresh, or a child spawned per layer) gets layers whose
hot experts stay put while the batches differ (and ``drift`` moves them with the set
correlation); a caller whose rng advances between calls gets independent structure per call (as
``zipf`` does). Same rng state, layer and iteration -> the same counts, bit for bit.

Tokens choose k distinct experts by Plackett-Luce sampling from the popularity (the numba kernel
behind :func:`netsim.workload.routing.popularity_counts`); no Python loop runs per token.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from netsim.errors import ConfigError
from netsim.workload.routing import (MT_DOUBLES, PopularitySource, _float_arg, _heaviest_free,
                                     _search, check_groups, guide_table, in_prefix, mt_block,
                                     mt_state, register)

__all__ = ["Dirichlet", "Hot", "LayerSkew", "Drift", "Locality", "streams", "zipf_weights"]


def streams(rng: np.random.Generator, layer: int, iteration: int, spec: str = ""):
    """(key, structure rng, batch rng) for one call; see the module docstring."""
    layer, iteration = int(layer), int(iteration)
    if layer < 0 or iteration < 0:
        raise ConfigError(f"routing {spec!r}: layer={layer}, iteration={iteration}; expected"
                          f" non-negative integers")
    key = int(rng.integers(0, 2**63 - 1))
    return (key, np.random.default_rng([key, 1, layer]),
            np.random.default_rng([key, 2, layer, iteration]))


def zipf_weights(ranks: np.ndarray, s: float) -> np.ndarray:
    """Popularity 1 / rank^s for 1-based ranks."""
    return np.asarray(ranks, np.float64) ** (-float(s))


def _check_shape(spec, n_gpus, tokens_per_gpu, experts, top_k):
    for name, v in (("gpus", n_gpus), ("tokens_per_gpu", tokens_per_gpu), ("experts", experts),
                    ("top_k", top_k)):
        if int(v) < 1:
            raise ConfigError(f"routing {spec!r}: {name}={v}; expected a positive integer")
    if top_k > experts:
        raise ConfigError(f"routing {spec!r}: top_k={top_k} > experts={experts}; expected"
                          f" top_k <= experts")


def _nargs(name: str, args, n: tuple[int, ...], usage: str):
    if len(args) not in n:
        raise ConfigError(f"routing {name!r} takes {usage}, got {':'.join(args)!r}")


# ---------------------------------------------------------------------------------------------


@dataclass
class Dirichlet(PopularitySource):
    """``dirichlet:ALPHA`` -- per-layer popularity p ~ Dirichlet(ALPHA, ..., ALPHA), redrawn per layer.

    Imitates: a trained router's popularity that has no particular shape or order and differs from
    layer to layer. Small ALPHA (< 1) concentrates the traffic on a few experts (ALPHA = 0.1 on 64
    experts: a handful take most tokens); large ALPHA (>= 100) approaches ``uniform``. The mean
    Gini of p for E experts is roughly 1 / (1 + 2 sqrt(ALPHA)) for ALPHA of order one.
    """

    alpha: float
    spec: str = ""

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        _check_shape(self.spec, n_gpus, tokens_per_gpu, experts, top_k)
        _, srng, brng = streams(rng, layer, iteration, self.spec)
        p = srng.dirichlet(np.full(experts, self.alpha))
        p = np.nan_to_num(p, nan=0.0)
        if p.sum() <= 0:
            p = np.ones(experts)
        return p, brng


@dataclass
class Hot(PopularitySource):
    """``hot:FRACTION:SHARE`` -- ``round(FRACTION * E)`` hot experts (at least one) carry SHARE of the weight.

    Imitates: the "straggler expert" of real routing, a few experts that most tokens want (e.g.
    generic-syntax experts), which makes one rank the bottleneck whatever the EP degree. The hot
    set is drawn per layer. Each hot expert has weight SHARE / n_hot, each cold one
    (1 - SHARE) / (E - n_hot). SHARE is the share of the popularity; since a token picks k
    *distinct* experts, no expert can receive more than 1/k of all choices, so when
    SHARE / n_hot > 1/k the realised hot share is lower than SHARE.
    """

    fraction: float
    share: float
    spec: str = ""

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        _check_shape(self.spec, n_gpus, tokens_per_gpu, experts, top_k)
        _, srng, brng = streams(rng, layer, iteration, self.spec)
        n_hot = int(min(experts, max(1, round(self.fraction * experts))))
        hot = srng.permutation(experts)[:n_hot]
        if n_hot == experts:
            p = np.ones(experts)
        else:
            p = np.full(experts, (1.0 - self.share) / (experts - n_hot))
            p[hot] = self.share / n_hot
        return p, brng


@dataclass
class LayerSkew(PopularitySource):
    """``layerskew:S0:S1[:LAYERS]`` -- Zipf popularity whose exponent varies linearly with depth.

    Layer l (taken modulo LAYERS, default 32) has Zipf exponent
    ``s = S0 + (S1 - S0) * (l mod LAYERS) / (LAYERS - 1)`` over a random per-layer ranking of the
    experts. Imitates: the imbalance of real models differs strongly between layers (per-layer Gini
    of a Mixtral-8x7B HumanEval routing trace ranges 0.077..0.256 over its 32 layers), so
    a mitigation tuned on one layer may fail on another.
    """

    s0: float
    s1: float
    layers: int = 32
    spec: str = ""

    def exponent(self, layer: int) -> float:
        if self.layers <= 1:
            return self.s0
        return self.s0 + (self.s1 - self.s0) * (int(layer) % self.layers) / (self.layers - 1)

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        _check_shape(self.spec, n_gpus, tokens_per_gpu, experts, top_k)
        _, srng, brng = streams(rng, layer, iteration, self.spec)
        ranks = srng.permutation(experts) + 1
        return zipf_weights(ranks, self.exponent(layer)), brng


_DRIFT_STEP = 256  # iterations one _drift_latent call may recurse through


@lru_cache(maxsize=4096)
def _drift_latent(iteration: int, key: int, layer: int, experts: int, rho: float) -> np.ndarray:
    """z_t of :class:`Drift` (read-only), from the cached z_{t-1}: consecutive iterations cost
    O(experts) each."""
    if iteration == 0:
        z = np.random.default_rng([key, 1, layer]).standard_normal(experts)
    else:
        prev = _drift_latent(iteration - 1, key, layer, experts, rho)
        c = float(np.sqrt(max(0.0, 1.0 - rho * rho)))
        eps = np.random.default_rng([key, 3, layer, iteration]).standard_normal(experts)
        z = rho * prev + c * eps
    z.flags.writeable = False
    return z


@dataclass
class Drift(PopularitySource):
    """``drift:S:RHO`` -- Zipf(S) popularity whose ranking drifts over iterations with correlation RHO.

    Each expert of a layer has a latent score following a stationary Gaussian AR(1) over
    iterations: ``z_0 ~ N(0, 1)`` (from the layer's structure stream),
    ``z_t = RHO z_{t-1} + sqrt(1 - RHO^2) eps_t`` with ``eps_t ~ N(0, 1)`` drawn from
    ``default_rng([key, 3, layer, t])``; at iteration t the experts are ranked by z_t (highest =
    rank 1) and get Zipf weights 1 / rank^S. So the log-weights ``-S log(rank)`` move as the
    AR(1) does, the skew (the sorted popularity, hence its Gini) is the same at every iteration,
    and only *which* experts are hot changes: RHO = 1 never moves, RHO = 0 reshuffles each
    iteration. The state at iteration t is a pure function of (key, layer, t), so iterations may
    be computed in any order (an LRU cache makes consecutive iterations O(experts)).

    Imitates: popularity that shifts as training proceeds or the serving mix changes, which makes
    placement and relayout decided from the previous iteration's routing stale.
    """

    s: float
    rho: float
    spec: str = ""

    def latent(self, key: int, layer: int, iteration: int, experts: int) -> np.ndarray:
        """The latent scores z_t of one layer (pure function of its arguments; read-only)."""
        args = (int(key), int(layer), int(experts), float(self.rho))
        for t in range(0, int(iteration), _DRIFT_STEP):  # a cold start: bounded recursion
            _drift_latent(t, *args)
        return _drift_latent(int(iteration), *args)

    def popularity(self, key: int, layer: int, iteration: int, experts: int) -> np.ndarray:
        z = self.latent(key, layer, iteration, experts)
        ranks = np.empty(experts, np.int64)
        ranks[np.argsort(-z, kind="stable")] = np.arange(1, experts + 1)
        return zipf_weights(ranks, self.s)

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        _check_shape(self.spec, n_gpus, tokens_per_gpu, experts, top_k)
        key, _, brng = streams(rng, layer, iteration, self.spec)
        return self.popularity(key, int(layer), int(iteration), experts), brng


@njit(cache=True)
def _locality_draw(cdf, guide, tokens_per_gpu, seqlen, p_share, mt, out, tok):
    """GPU x expert counts into ``out`` (int64 zeros (gpus, E)) or each token's experts into
    ``tok`` (int32 (gpus * tokens_per_gpu, k)), the other empty (``out`` (0, E) or ``tok`` (0, k)),
    where tokens of one sequence reuse the sequence's experts.

    Global token t (GPU t // tokens_per_gpu) belongs to sequence t // seqlen. Each sequence draws
    a preferred top-k set from ``cdf``; each of a token's k slots takes the sequence's expert for
    that slot with probability ``p_share`` (if not already chosen by the token), otherwise a fresh
    draw; the k choices stay distinct. Both outputs come from the same draws: the uniforms of
    numba's ``np.random`` seeded with the seed (``mt``: its state, advanced in place), a block
    at a time
    (:func:`netsim.workload.routing.mt_block`), each searched (``guide``: the cdf's guide table) as
    :func:`netsim.workload.routing._sample_topk` searches (64 tries, then the heaviest expert not
    chosen); a sequence's "already chosen" is a stamp.
    """
    per_token = tok.shape[0] > 0
    k = tok.shape[1]
    n_gpus = tok.shape[0] // tokens_per_gpu if per_token else out.shape[0]
    ne = len(cdf)
    n = n_gpus * tokens_per_gpu
    pref = np.empty(k, np.int64)
    chosen = np.empty(k, np.int64)
    mark = np.empty(ne, np.int64)  # mark[e] == s: sequence s prefers e
    for c in range(ne):
        mark[c] = -1
    total = cdf[ne - 1]
    scale = len(guide) / total
    buf = np.empty(MT_DOUBLES)
    pos = MT_DOUBLES
    for t in range(n):
        if t % seqlen == 0:
            st = t // seqlen
            for j in range(k):
                e = -1
                for _ in range(64):
                    if pos == MT_DOUBLES:
                        mt_block(mt, buf)
                        pos = 0
                    c = _search(cdf, guide, scale, buf[pos] * total)
                    pos += 1
                    if mark[c] != st:
                        e = c
                        break
                if e < 0:
                    e = _heaviest_free(cdf, 0, ne, pref, j)
                pref[j] = e
                mark[e] = st
        g = t // tokens_per_gpu
        for j in range(k):
            e = -1
            if pos == MT_DOUBLES:
                mt_block(mt, buf)
                pos = 0
            pos += 1
            if buf[pos - 1] < p_share:
                e = pref[j]
                if in_prefix(chosen, j, e):
                    e = -1
            if e < 0:
                for _ in range(64):
                    if pos == MT_DOUBLES:
                        mt_block(mt, buf)
                        pos = 0
                    c = _search(cdf, guide, scale, buf[pos] * total)
                    pos += 1
                    if not in_prefix(chosen, j, c):
                        e = c
                        break
                if e < 0:
                    e = _heaviest_free(cdf, 0, ne, chosen, j)
            chosen[j] = e
            if per_token:
                tok[t, j] = e
            else:
                out[g, e] += 1


def locality_counts(cdf, n_gpus, tokens_per_gpu, k, seqlen, p_share, seed):
    """GPU x expert counts of :func:`_locality_draw`."""
    cdf = np.asarray(cdf, np.float64)
    out = np.zeros((int(n_gpus), len(cdf)), np.int64)
    _locality_draw(cdf, guide_table(cdf), int(tokens_per_gpu), int(seqlen), float(p_share),
                   mt_state(seed), out, np.empty((0, int(k)), np.int32))
    return out


@dataclass
class Locality:
    """``locality:S:SEQLEN:P`` -- Zipf(S) popularity; tokens of a sequence share experts with probability P.

    Tokens are laid out in sequences of SEQLEN consecutive tokens (global token t is in sequence
    t // SEQLEN and on GPU t // tokens_per_gpu, so a sequence lives on one GPU when SEQLEN divides
    tokens_per_gpu). Each sequence draws a preferred set of k experts from the popularity; each of
    a token's k slots reuses the sequence's expert for that slot with probability P, else draws
    afresh (choices stay distinct). The global per-expert load keeps roughly the Zipf(S) shape,
    but each GPU's load is far burstier than independent tokens would make it: P = 0 is plain
    ``zipf:S``, P = 1 routes a whole sequence to one expert set.

    Imitates: routing correlated within a sequence -- consecutive tokens picking the same experts
    and domain / topic specialisation (code, maths, a language) that real routers show -- which
    helps predictive sample placement and hurts per-rank balance.
    """

    s: float
    seqlen: int
    p: float
    spec: str = ""

    def _draw(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer, iteration, per_token):
        _check_shape(self.spec, n_gpus, tokens_per_gpu, experts, top_k)
        _, srng, brng = streams(rng, layer, iteration, self.spec)
        ranks = srng.permutation(experts) + 1
        cdf = np.cumsum(zipf_weights(ranks, self.s))
        seed = int(brng.integers(0, 2**31 - 1))
        if not per_token:
            return locality_counts(cdf, n_gpus, tokens_per_gpu, top_k, self.seqlen, self.p, seed)
        tok = np.empty((int(n_gpus) * int(tokens_per_gpu), int(top_k)), np.int32)
        _locality_draw(cdf, guide_table(cdf), int(tokens_per_gpu), int(self.seqlen),
                       float(self.p), mt_state(seed), np.empty((0, experts), np.int64), tok)
        return tok

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        return self._draw(n_gpus, tokens_per_gpu, experts, top_k, rng, layer, iteration, False)

    def choices(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0,
                groups=None, max_groups=0):
        if check_groups(groups, experts, top_k, max_groups, self.spec) is not None:
            raise ConfigError(f"routing {self.spec!r}: max_nodes={max_groups} is not supported"
                              f" by locality (its sequences reuse experts slot by slot); use"
                              f" max_nodes=0 or another synthetic source")
        return self._draw(n_gpus, tokens_per_gpu, experts, top_k, rng, layer, iteration, True)


# ---------------------------------------------------------------------------------------------
# spec parsing


@register("dirichlet", "dirichlet:ALPHA -- per-layer popularity ~ Dirichlet(ALPHA)")
def _dirichlet(*args: str):
    _nargs("dirichlet", args, (1,), "one argument ALPHA > 0 (e.g. dirichlet:0.5)")
    spec = "dirichlet:" + args[0]
    a = _float_arg(spec, args[0], "ALPHA")
    if a <= 0:
        raise ConfigError(f"routing {spec!r}: ALPHA={args[0]!r}; expected a number > 0")
    return Dirichlet(a, spec=spec)


@register("hot", "hot:FRACTION:SHARE -- FRACTION of the experts get SHARE of the traffic")
def _hot(*args: str):
    _nargs("hot", args, (2,), "FRACTION:SHARE, both in (0, 1] (e.g. hot:0.05:0.5)")
    spec = "hot:" + ":".join(args)
    f = _float_arg(spec, args[0], "FRACTION")
    s = _float_arg(spec, args[1], "SHARE")
    if not 0 < f <= 1:
        raise ConfigError(f"routing {spec!r}: FRACTION={args[0]!r}; expected 0 < FRACTION <= 1")
    if not 0 <= s <= 1:
        raise ConfigError(f"routing {spec!r}: SHARE={args[1]!r}; expected 0 <= SHARE <= 1")
    return Hot(f, s, spec=spec)


@register("layerskew", "layerskew:S0:S1[:LAYERS] -- Zipf exponent S0 -> S1 across layers")
def _layerskew(*args: str):
    _nargs("layerskew", args, (2, 3), "S0:S1[:LAYERS] (e.g. layerskew:0.5:1.5:32)")
    spec = "layerskew:" + ":".join(args)
    s0 = _float_arg(spec, args[0], "S0")
    s1 = _float_arg(spec, args[1], "S1")
    n = 32
    if len(args) == 3:
        if not args[2].isdigit() or int(args[2]) < 1:
            raise ConfigError(f"routing {spec!r}: LAYERS={args[2]!r}; expected a positive"
                              f" integer")
        n = int(args[2])
    return LayerSkew(s0, s1, n, spec=spec)


@register("drift", "drift:S:RHO -- Zipf(S) whose hot experts drift, AR(1) correlation RHO")
def _drift(*args: str):
    _nargs("drift", args, (2,), "S:RHO with RHO in [0, 1] (e.g. drift:1.0:0.9)")
    spec = "drift:" + ":".join(args)
    s = _float_arg(spec, args[0], "S")
    rho = _float_arg(spec, args[1], "RHO")
    if rho > 1:
        raise ConfigError(f"routing {spec!r}: RHO={args[1]!r}; expected 0 <= RHO <= 1")
    return Drift(s, rho, spec=spec)


@register("locality", "locality:S:SEQLEN:P -- Zipf(S); a sequence's tokens share experts w.p. P")
def _locality(*args: str):
    _nargs("locality", args, (3,), "S:SEQLEN:P (e.g. locality:1.0:512:0.5)")
    spec = "locality:" + ":".join(args)
    s = _float_arg(spec, args[0], "S")
    if not args[1].isdigit() or int(args[1]) < 1:
        raise ConfigError(f"routing {spec!r}: SEQLEN={args[1]!r}; expected a positive integer")
    p = _float_arg(spec, args[2], "P")
    if p > 1:
        raise ConfigError(f"routing {spec!r}: P={args[2]!r}; expected 0 <= P <= 1")
    return Locality(s, int(args[1]), p, spec=spec)
