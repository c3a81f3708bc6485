"""Routing profiles calibrated to published imbalance: ``profile:CHECKPOINT:CONDITION``.

For users without traces: each profile generates routing with a named checkpoint's expert count
and top-k whose per-expert token counts have the Gini coefficient that the DODOCO study
(arXiv:2605.20982) reports for that checkpoint.

Checkpoints: ``deepseek_moe_16b``, ``nemotron_30b``, ``qwen3_30b_a3b``, ``deepseek_v2_lite``,
``qwen3_5_35b``. Conditions -- two meanings of "mock" kept apart:

* ``wikitext`` -- real text through the real model;
* ``mock``     -- *random token ids* through the real model (the study's "mock tokens"): more
  concentrated than real text;
* ``uniform``  -- uniform random top-k (what kernel benchmarks call mock routing; the same as
  ``routing=uniform`` with the checkpoint's expert count and top-k); no calibration.

Target Gini per profile (``PROFILES[...]["target_gini"]``). The study publishes two values and
bands; where it gives only a band or a direction, the value below is our choice inside it:

===================  ========  ===========================================================  =====
checkpoint           wikitext  how chosen                                                   mock
===================  ========  ===========================================================  =====
deepseek_moe_16b     0.105     published                                                    0.210
nemotron_30b         0.150     published                                                    0.300
qwen3_30b_a3b        0.195     "between the bands": midpoint of 0.150 and 0.24              0.310
deepseek_v2_lite     0.260     "> 0.24 on every real-text condition": just above the floor  0.330
qwen3_5_35b          0.260     as deepseek_v2_lite (same band)                              0.330
===================  ========  ===========================================================  =====

Mock values: the concentrated checkpoints' mock band is published (0.29..0.38); 0.33 sits in it.
For the others the study says only "higher, up to 2.35x real": we assume 2x real for the two
data-resilient checkpoints and 1.6x (0.31) for Qwen3-30B. These are assumptions, not data.

Each profile says which: ``PROFILES[...]["profile_source"]`` (and the ``profile_source`` column
of every row whose routing is a profile, :meth:`Profile.row_columns`) is ``published`` (2 of 10:
DeepSeek-MoE-16B and Nemotron-30B on wikitext), ``assumed_in_band`` (4: a value chosen inside a
published band), ``assumed`` (4: the study gives a direction only) or ``uncalibrated``
(``uniform``); ``citation`` says where (:data:`CITATION`).

Model hyperparameters (routed experts, top-k, MoE layers):

* DeepSeek-MoE-16B 64 / 6 / 27, DeepSeek-V2-Lite 64 / 6 / 26, Qwen3-30B-A3B 128 / 8 / 48: the
  table of arXiv:2605.20982 (from the public model cards).
* Nemotron-30B: taken to be NVIDIA-Nemotron-3-Nano-30B-A3B (the hybrid Mamba-2 MoE of that
  size): 128 routed experts + 1 shared, 6 active per token, 23 MoE layers -- NVIDIA NeMo
  Customizer docs ("128 routed experts, 6 activated per token") and the Megatron-Bridge page
  (23 Mamba-2/MoE layers). That Megatron-Bridge page says "5 experts activated"; we follow the
  6 of the other sources (an assumption to re-check against the Hugging Face config).
* Qwen3.5-35B: Qwen/Qwen3.5-35B-A3B, 256 routed experts + 1 shared, 8 routed active per token
  (Hugging Face transformers ``qwen3_5_moe`` docs); 40 layers, all MoE (from a third-party
  write-up of the architecture: an assumption).

Popularity model. Layer l's expert popularity is lognormal-shaped: ``p_e = exp(sigma *
q_{pi(e)})`` with ``q_r = Phi^-1((r + 1/2) / E)`` the standard-normal quantiles and ``pi`` a
random permutation of the experts drawn per layer (so every layer has its own hot experts but
the same skew). ``sigma`` is solved (Brent's method) so that the Gini of the per-expert counts,
summed over GPUs, of the reference batch (8 GPUs x 4096 tokens, tokens choosing k distinct
experts by Plackett-Luce sampling) equals the target: first on a fast approximation (Rosen's
inclusion probabilities for successive sampling, 1 - exp(-w_e t), plus binomial noise), then
corrected once against simulated batches with fixed calibration seeds. The solved sigma depends
only on (target, experts, top_k) and is cached. At other batch sizes the count Gini differs
(sampling noise adds to it at small batches), as it does for real routing.

Runs whose ``experts`` / ``top_k`` differ from the checkpoint's: the profile's *target Gini* is
kept and sigma is re-solved for the run's (experts, top_k), so ``profile:deepseek_v2_lite:mock``
on a 256-expert model still has count Gini 0.33 at the reference batch (a ConfigError if the
target cannot be reached, e.g. top_k == experts). Random streams follow the convention of
``netsim.workload.synthetic``: the permutation comes from the layer's structure stream, the
tokens from the batch stream.

Simplification: every layer of a profile has the same Gini (real per-layer Gini spreads, e.g.
0.077..0.256 on Mixtral); use ``layerskew`` or a trace for depth-varying skew.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from netsim.errors import ConfigError, UnknownNameError
from netsim.workload.routing import PopularitySource, gini, popularity_counts, register
from netsim.workload.synthetic import _check_shape, streams

__all__ = ["PROFILES", "CHECKPOINTS", "CONDITIONS", "REFERENCE_BATCH", "PROFILE_SOURCES",
           "CITATION", "PUBLISHED_GINI", "profile_info",
           "solve_sigma", "expected_gini", "Profile"]

REFERENCE_BATCH = (8, 4096)  # GPUs, tokens per GPU at which a profile's Gini is calibrated
CONDITIONS = ("wikitext", "mock", "uniform")
_CAL_SEEDS = (90210, 90211, 90212, 90213)
_XTOL, _RTOL = 1e-15, 4 * np.finfo(float).eps  # root finding to round-off (brentq's floor rtol)

CHECKPOINTS: dict[str, dict] = {
    "deepseek_moe_16b": dict(model="DeepSeek-MoE-16B", mixer="MHA", band="data-resilient",
                             experts=64, shared_experts=2, top_k=6, moe_layers=27,
                             source="routing README table (model card)"),
    "nemotron_30b": dict(model="NVIDIA-Nemotron-3-Nano-30B-A3B", mixer="Mamba-2",
                         band="data-resilient", experts=128, shared_experts=1, top_k=6,
                         moe_layers=23,
                         source="NVIDIA NeMo docs (128 routed, 6 active; 23 MoE layers); "
                                "top-k 6 is an assumption: one NVIDIA page says 5"),
    "qwen3_30b_a3b": dict(model="Qwen3-30B-A3B", mixer="GQA", band="intermediate",
                          experts=128, shared_experts=0, top_k=8, moe_layers=48,
                          source="routing README table (model card)"),
    "deepseek_v2_lite": dict(model="DeepSeek-V2-Lite", mixer="MLA",
                             band="persistently concentrated", experts=64, shared_experts=2,
                             top_k=6, moe_layers=26,
                             source="routing README table (model card)"),
    "qwen3_5_35b": dict(model="Qwen3.5-35B-A3B", mixer="GDN", band="persistently concentrated",
                        experts=256, shared_experts=1, top_k=8, moe_layers=40,
                        source="HF transformers qwen3_5_moe docs (256 routed, 8 active, 1 "
                               "shared); 40 layers is an assumption from a third-party write-up"),
}

#: where the published figures are: the DODOCO study's checkpoint table (reproduced with its
#: citation in the routing data README next to the repository, ``data/routing/README.md``)
CITATION = "DODOCO, arXiv:2605.20982, checkpoint table (Gini per checkpoint and condition)"

#: ``profile_source`` values: how a profile's target Gini was obtained
PROFILE_SOURCES = {
    "published": "the study prints this value for this checkpoint and condition",
    "assumed_in_band": "the study prints only a band; the value is our choice inside it",
    "assumed": "the study prints only a direction (e.g. 'higher'); the value is our assumption",
    "uncalibrated": "uniform random top-k: no target",
}

#: what the study prints for each (checkpoint, condition), as a Gini interval ``(low, high)`` at
#: the reference batch: a printed value has ``low == high`` (MHA 0.105, Mamba-2 0.150), a band
#: open above has ``high = None`` (MLA / GDN "> 0.24"), GQA's "between the bands" spans its
#: neighbours, and the concentrated checkpoints' mock band is 0.29..0.38. Pairs the study gives
#: no number for (the other mock conditions) are absent. The targets below lie in these.
PUBLISHED_GINI: dict[tuple[str, str], tuple[float, float | None]] = {
    ("deepseek_moe_16b", "wikitext"): (0.105, 0.105),
    ("nemotron_30b", "wikitext"): (0.150, 0.150),
    ("qwen3_30b_a3b", "wikitext"): (0.150, 0.24),
    ("deepseek_v2_lite", "wikitext"): (0.24, None),
    ("qwen3_5_35b", "wikitext"): (0.24, None),
    ("deepseek_v2_lite", "mock"): (0.29, 0.38),
    ("qwen3_5_35b", "mock"): (0.29, 0.38),
}

# (target Gini, profile_source, how it was chosen)
_TARGETS: dict[tuple[str, str], tuple[float, str, str]] = {
    ("deepseek_moe_16b", "wikitext"): (0.105, "published", "published (DODOCO): 0.105"),
    ("deepseek_moe_16b", "mock"): (0.210, "assumed",
                                   "assumption: 2.0x real; study: higher, up to 2.35x"),
    ("nemotron_30b", "wikitext"): (0.150, "published", "published (DODOCO): 0.150"),
    ("nemotron_30b", "mock"): (0.300, "assumed",
                               "assumption: 2.0x real; study: higher, up to 2.35x"),
    ("qwen3_30b_a3b", "wikitext"): (0.195, "assumed",
                                    "assumption: midpoint between the bands (0.150, 0.24)"),
    ("qwen3_30b_a3b", "mock"): (0.310, "assumed", "assumption: 1.6x real; study: higher"),
    ("deepseek_v2_lite", "wikitext"): (0.260, "assumed_in_band",
                                       "assumption inside published band: > 0.24"),
    ("deepseek_v2_lite", "mock"): (0.330, "assumed_in_band", "inside published band 0.29..0.38"),
    ("qwen3_5_35b", "wikitext"): (0.260, "assumed_in_band",
                                  "assumption inside published band: > 0.24"),
    ("qwen3_5_35b", "mock"): (0.330, "assumed_in_band", "inside published band 0.29..0.38"),
}

PROFILES: dict[str, dict] = {}
for _ck, _meta in CHECKPOINTS.items():
    for _cond in CONDITIONS:
        _t, _src, _why = _TARGETS.get((_ck, _cond), (None, "uncalibrated",
                                                     "uniform random top-k: no calibration"))
        PROFILES[f"{_ck}:{_cond}"] = dict(_meta, checkpoint=_ck, condition=_cond,
                                          target_gini=_t, target_source=_why,
                                          profile_source=_src,
                                          citation=CITATION if _src != "uncalibrated" else "")


def _norm_name(s: str) -> str:
    return s.strip().lower().replace("-", "_").replace(".", "_")


def _lookup(name: str) -> dict:
    n = name[len("profile:"):] if name.startswith("profile:") else name
    ck, _, cond = n.partition(":")
    ck, cond = _norm_name(ck), _norm_name(cond or "wikitext")
    if ck not in CHECKPOINTS:
        raise UnknownNameError(f"unknown routing profile checkpoint {ck!r} in {name!r}; expected"
                               f" one of {sorted(CHECKPOINTS)}")
    if cond not in CONDITIONS:
        raise UnknownNameError(f"unknown routing profile condition {cond!r} in {name!r};"
                               f" expected one of {list(CONDITIONS)}")
    return PROFILES[f"{ck}:{cond}"]


def profile_info(name: str) -> dict:
    """Metadata of a profile (``"deepseek_v2_lite:mock"`` or ``"profile:deepseek_v2_lite:mock"``).

    Keys: checkpoint, condition, model, mixer, band, experts, shared_experts, top_k, moe_layers,
    source, target_gini, target_source, profile_source (a key of :data:`PROFILE_SOURCES`:
    ``published``, ``assumed_in_band``, ``assumed`` or ``uncalibrated``), citation (where the
    published value or band is printed; empty for ``uncalibrated``), and sigma (the solved lognormal spread at the
    checkpoint's own experts / top-k; None for ``uniform``).
    """
    info = dict(_lookup(name))
    info["sigma"] = (None if info["target_gini"] is None
                     else solve_sigma(info["target_gini"], info["experts"], info["top_k"]))
    return info


# ---------------------------------------------------------------------------------------------
# calibration


@lru_cache(maxsize=None)
def _shape(experts: int) -> np.ndarray:
    from scipy.special import ndtri

    q = ndtri((np.arange(experts) + 0.5) / experts)
    q.flags.writeable = False
    return q


def _inclusion(w: np.ndarray, k: int) -> np.ndarray:
    """Rosen's approximation of top-k inclusion probabilities for successive sampling:
    ``1 - exp(-w_e t)`` with ``t`` solved (Brent) so that they sum to ``k``."""
    w = w / w.sum()

    def excess(t):
        return float(np.sum(-np.expm1(-w * t))) - k

    hi = 1.0
    while excess(hi) < 0.0:
        hi *= 2.0
    from scipy.optimize import brentq  # scipy.optimize: 0.3-0.5 s, only when calibrating

    t = brentq(excess, 0.0, hi, xtol=_XTOL, rtol=_RTOL)
    return np.minimum(1.0, -np.expm1(-w * t))


@lru_cache(maxsize=None)
def _noise(experts: int) -> np.ndarray:
    return np.random.default_rng(12345).standard_normal((64, experts))


def _approx_gini(sigma: float, experts: int, top_k: int, n_tokens: int) -> float:
    pi = _inclusion(np.exp(sigma * _shape(experts)), top_k)
    mu = n_tokens * pi
    sd = np.sqrt(n_tokens * pi * (1.0 - pi))
    return float(gini(mu + sd * _noise(experts), axis=1).mean())


def expected_gini(sigma: float, experts: int, top_k: int, n_gpus: int = REFERENCE_BATCH[0],
                  tokens_per_gpu: int = REFERENCE_BATCH[1], seeds=_CAL_SEEDS) -> float:
    """Mean Gini of per-expert counts (summed over GPUs), simulated with the given seeds."""
    p = np.exp(sigma * _shape(experts))
    return float(np.mean([gini(popularity_counts(p, n_gpus, tokens_per_gpu, top_k,
                                                 np.random.default_rng(s)).sum(axis=0))
                          for s in seeds]))


def _solve_approx(target: float, experts: int, top_k: int, n_tokens: int) -> float:
    """The sigma in [0, 12] at which :func:`_approx_gini` equals ``target`` (Brent's method; 0 if
    even sigma = 0, whose Gini is the binomial noise alone, is above the target)."""
    lo, hi = 0.0, 12.0

    def excess(sigma):
        return _approx_gini(sigma, experts, top_k, n_tokens) - target

    if excess(hi) < 0.0:
        raise ConfigError(f"routing profile: target Gini {target} cannot be reached with"
                          f" experts={experts}, top_k={top_k}; expected a model where k distinct"
                          f" choices among the experts can be that concentrated")
    if excess(lo) >= 0.0:
        return lo
    from scipy.optimize import brentq

    return brentq(excess, lo, hi, xtol=_XTOL, rtol=_RTOL)


@lru_cache(maxsize=None)
def solve_sigma(target: float, experts: int, top_k: int) -> float:
    """Lognormal spread whose reference-batch count Gini equals ``target`` (see module doc)."""
    experts, top_k = int(experts), int(top_k)
    if not 1 <= top_k <= experts:
        raise ConfigError(f"routing profile: top_k={top_k}, experts={experts}; expected"
                          f" 1 <= top_k <= experts")
    n_tokens = REFERENCE_BATCH[0] * REFERENCE_BATCH[1]
    sigma = _solve_approx(target, experts, top_k, n_tokens)
    # one correction of the approximation's bias against simulated batches
    bias = expected_gini(sigma, experts, top_k) - target
    if abs(bias) > 1e-3:
        try:
            sigma = _solve_approx(target - bias, experts, top_k, n_tokens)
        except ConfigError:
            pass
    return float(sigma)


# ---------------------------------------------------------------------------------------------
# the source


@dataclass
class Profile(PopularitySource):
    """A calibrated routing profile (see the module docstring)."""

    checkpoint: str
    condition: str
    spec: str = ""

    @property
    def info(self) -> dict:
        return PROFILES[f"{self.checkpoint}:{self.condition}"]

    def row_columns(self) -> dict:
        """Columns a run's row carries for this routing: ``profile_source`` and
        ``profile_target_gini`` (NaN for ``uniform``)."""
        t = self.info["target_gini"]
        return {"profile_source": self.info["profile_source"],
                "profile_target_gini": float("nan") if t is None else float(t)}

    def popularity(self, experts: int, top_k: int, structure_rng: np.random.Generator):
        """One layer's popularity vector for a run with ``experts`` and ``top_k``."""
        target = self.info["target_gini"]
        if target is None:
            return np.ones(experts)
        sigma = solve_sigma(target, int(experts), int(top_k))
        perm = structure_rng.permutation(experts)
        return np.exp(sigma * _shape(int(experts))[perm])

    def batch_popularity(self, n_gpus, tokens_per_gpu, experts, top_k, rng, layer=0,
                         iteration=0):
        _check_shape(self.spec, n_gpus, tokens_per_gpu, experts, top_k)
        _, srng, brng = streams(rng, layer, iteration, self.spec)
        return self.popularity(int(experts), int(top_k), srng), brng


def _listing() -> str:
    """``netsim list routing``'s entry: one line, then one per calibrated profile."""
    lines = ["profile:CHECKPOINT:CONDITION -- calibrated to a target Gini (wikitext, mock,"
             " uniform); profile_source says whether the target is published or assumed"
             f" ({CITATION})"]
    for name, m in PROFILES.items():
        if m["target_gini"] is not None:
            lines.append(f"    {name:<26} Gini {m['target_gini']:.3f}  {m['profile_source']:<16}"
                         f" {m['target_source']}")
    return "\n".join(lines)


@register("profile", _listing())
def _profile(*args: str) -> Profile:
    if len(args) != 2:
        raise ConfigError(f"routing 'profile' takes CHECKPOINT:CONDITION (e.g."
                          f" profile:deepseek_v2_lite:mock), got {':'.join(args)!r}; checkpoints"
                          f" {sorted(CHECKPOINTS)}, conditions {list(CONDITIONS)}")
    info = _lookup(f"profile:{args[0]}:{args[1]}")
    return Profile(info["checkpoint"], info["condition"],
                   spec=f"profile:{info['checkpoint']}:{info['condition']}")
