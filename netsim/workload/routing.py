"""Routing sources: which experts each GPU's tokens choose.

A routing source turns (GPUs, tokens per GPU, experts, top-k, RNG, layer, iteration) into a
GPU x expert matrix of token counts: ``counts[g, e]`` is the number of tokens on GPU ``g`` that
chose expert ``e`` among their top-k. Every row sums to ``tokens_per_gpu * top_k``.

Sources are selected by a spec string, ``NAME[:ARG[:ARG...]]``:

* ``uniform`` -- every token picks k distinct experts uniformly at random: what kernel benchmarks
  and "mock token" all-to-all tests use.
* ``zipf:S`` -- expert popularity p_e proportional to 1 / rank^S, ranks a random permutation
  of the experts (drawn from the run's seed, so the hot experts land on random GPUs); each token
  picks k distinct experts by sequential sampling without replacement (Plackett-Luce).
* ``counts:FILE`` -- a fixed GPU x expert count matrix (.npy or .csv), e.g. measured.

More sources register themselves with :func:`register` (see ``netsim.workload.synthetic``,
``netsim.workload.profiles`` and ``netsim.workload.traces`` where present).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from numba import njit

from netsim.errors import ConfigError, TraceError, UnknownNameError
from netsim.namespec import parse_name_spec


class RoutingSource(Protocol):
    """What the MoE layer needs from a routing source."""

    spec: str

    def counts(self, n_gpus: int, tokens_per_gpu: int, experts: int, top_k: int,
               rng: np.random.Generator, layer: int = 0, iteration: int = 0) -> np.ndarray:
        """GPU x expert token counts (int64); each row sums to tokens_per_gpu * top_k."""
        ...


_REGISTRY: dict[str, tuple[Callable[..., RoutingSource], str]] = {}


def register(name: str, help: str = "") -> Callable:
    """Decorator: register ``factory(*args: str) -> RoutingSource`` under ``name``."""

    def deco(factory):
        _REGISTRY[name] = (factory, help or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return deco


def _load_plugins() -> None:
    # optional modules that register more sources; absent ones are skipped
    import importlib

    for mod in ("netsim.workload.synthetic", "netsim.workload.profiles", "netsim.workload.traces"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def list_sources() -> dict[str, str]:
    """Registered routing source names with a one-line description."""
    _load_plugins()
    return {k: v[1] for k, v in sorted(_REGISTRY.items())}


def parse_routing(spec: str) -> RoutingSource:
    """Build the routing source named by ``spec`` (``NAME[:ARG...]``)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"routing={spec!r}; expected a string such as 'uniform' or 'zipf:1.2'")
    _load_plugins()
    ns = parse_name_spec(spec, "routing")
    if ns.name not in _REGISTRY:
        raise UnknownNameError(
            f"unknown routing source {ns.name!r} in {spec!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[ns.name][0](*ns.args)


@njit(cache=True)
def _draw_distinct(cdf, chosen, j):
    """One expert from popularity ``cdf`` not among ``chosen[:j]`` (rejection, then fallback)."""
    ne = len(cdf)
    for _ in range(64):
        u = np.random.random() * cdf[ne - 1]
        e = np.searchsorted(cdf, u, side="right")
        if e >= ne:
            e = ne - 1
        dup = False
        for q in range(j):
            if chosen[q] == e:
                dup = True
                break
        if not dup:
            return e
    best = -1.0
    e = 0
    for c in range(ne):
        used = False
        for q in range(j):
            if chosen[q] == c:
                used = True
        w = cdf[c] - (cdf[c - 1] if c > 0 else 0.0)
        if not used and w > best:
            best = w
            e = c
    return e


@njit(cache=True)
def sample_topk_counts(cdf, n_groups, tokens_per_group, k, seed):
    """Per-group expert counts when each token draws ``k`` distinct experts from popularity ``cdf``.

    Sequential sampling without replacement (draw, reject repeats): the Plackett-Luce model of a
    top-k choice with weights p. Returns int64 array (n_groups, n_experts).
    """
    np.random.seed(seed)
    ne = len(cdf)
    out = np.zeros((n_groups, ne), np.int64)
    chosen = np.empty(k, np.int64)
    for g in range(n_groups):
        for t in range(tokens_per_group):
            for j in range(k):
                e = _draw_distinct(cdf, chosen, j)
                chosen[j] = e
                out[g, e] += 1
    return out


def popularity_counts(p: np.ndarray, n_gpus: int, tokens_per_gpu: int, top_k: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Counts for tokens choosing ``top_k`` distinct experts with popularity ``p`` (any scale)."""
    p = np.asarray(p, np.float64)
    if top_k > len(p) or top_k < 1:
        raise ConfigError(f"top_k={top_k}; expected 1..{len(p)} (the number of experts)")
    if np.any(~np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ConfigError("expert popularity must be finite, non-negative and not all zero")
    if np.count_nonzero(p) < top_k:
        p = p + 1e-12 * p.max()  # keep k distinct choices possible
    seed = int(rng.integers(0, 2**31 - 1))
    return sample_topk_counts(np.cumsum(p), int(n_gpus), int(tokens_per_gpu), int(top_k), seed)


def gini(x: np.ndarray, axis: int | None = None):
    """Gini coefficient of non-negative values (0 = equal, -> 1 = concentrated).

    ``axis=None``: of all the values (a float); an int: along that axis, one coefficient per
    slice (an array, e.g. per row with ``axis=1``). No values or a zero sum: 0.
    """
    x = np.asarray(x, np.float64)
    if axis is None:
        x, axis = x.ravel(), -1
    x = np.moveaxis(np.sort(x, axis=axis), axis, -1)
    n = x.shape[-1]
    tot = x.sum(axis=-1)
    if n == 0:
        g = np.zeros(tot.shape)
    else:
        i = np.arange(1, n + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(tot == 0, 0.0, (2.0 * (i * x).sum(axis=-1)) / (n * tot) - (n + 1.0) / n)
    return float(g) if g.ndim == 0 else g


@dataclass
class Uniform:
    """Uniform random top-k routing (the mock-token benchmark)."""

    spec: str = "uniform"

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        return popularity_counts(np.ones(experts), n_gpus, tokens_per_gpu, top_k, rng)


@dataclass
class Zipf:
    """Zipf expert popularity p_e ~ 1/rank^s, ranks a random permutation of the experts."""

    s: float
    spec: str = ""

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        ranks = rng.permutation(experts) + 1
        return popularity_counts(ranks ** (-self.s), n_gpus, tokens_per_gpu, top_k, rng)


@dataclass
class FixedCounts:
    """A fixed GPU x expert token-count matrix read from a file."""

    path: str
    matrix: np.ndarray
    spec: str = ""

    def counts(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0, iteration=0):
        if self.matrix.shape != (n_gpus, experts):
            raise ConfigError(
                f"counts file {self.path!r} has shape {self.matrix.shape}; this run needs"
                f" (gpus={n_gpus}, experts={experts})")
        return self.matrix.copy()


def _float_arg(spec: str, value: str, what: str, lo: float = 0.0) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"routing {spec!r}: {what}={value!r} is not a number") from None
    if not np.isfinite(v) or v < lo:
        raise ConfigError(f"routing {spec!r}: {what}={value!r}; expected a number >= {lo}")
    return v


@register("uniform", "uniform random top-k (mock-token benchmark routing)")
def _uniform(*args: str) -> RoutingSource:
    if args:
        raise ConfigError(f"routing 'uniform' takes no argument, got {':'.join(args)!r}")
    return Uniform()


@register("zipf", "zipf:S -- expert popularity ~ 1/rank^S (random ranks)")
def _zipf(*args: str) -> RoutingSource:
    if len(args) != 1:
        raise ConfigError(f"routing 'zipf' takes one argument S (e.g. zipf:1.2), got {args!r}")
    s = _float_arg("zipf:" + args[0], args[0], "S")
    return Zipf(s, spec=f"zipf:{args[0]}")


@register("counts", "counts:FILE -- fixed GPU x expert token counts (.npy or .csv)")
def _counts(*args: str) -> RoutingSource:
    path = ":".join(args)
    if not path:
        raise ConfigError("routing 'counts' needs a file: counts:FILE.npy or counts:FILE.csv")
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"counts file {path!r} does not exist")
    try:
        m = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",", ndmin=2)
    except Exception as exc:  # noqa: BLE001 -- any parse failure is a bad file
        raise TraceError(f"counts file {path!r} cannot be read: {exc}") from None
    m = np.asarray(m)
    if m.ndim != 2 or not np.all(np.isfinite(m)) or np.any(m < 0) or np.any(m != np.round(m)):
        raise TraceError(
            f"counts file {path!r}: expected a 2-D matrix of non-negative integer token counts")
    return FixedCounts(path, m.astype(np.int64), spec=f"counts:{path}")
