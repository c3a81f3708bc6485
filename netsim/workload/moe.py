"""One MoE layer under expert parallelism: placement of experts on GPUs and the traffic it makes.

Model:

* ``n_gpus`` GPUs form ``n_gpus / ep_size`` expert-parallel (EP) groups; each group holds every
  routed expert once (or ``ep_size / experts`` replicas of each when there are fewer experts than
  ranks). Tokens only travel inside their EP group.
* Placement ``contiguous``: expert e on rank e // (experts / ep_size); ``round_robin``: rank
  e % ep_size. With replicas, source rank s sends expert e's tokens to replica s % replicas.
* Dispatch (``dispatcher=pairs``) sends every (token, chosen expert) pair's hidden state,
  :attr:`MoELayer.dispatch_bytes_per_token` bytes (``hidden * dtype_bytes`` by default), to the
  GPU holding that expert (no de-duplication of a token whose k experts share a GPU, as in
  an all-to-all of permuted tokens); a pair whose expert is on the token's own GPU stays local.
  Combine sends the same bytes back: the combine matrix is the transpose of the dispatch matrix.
* Shared experts (if any) run on every GPU's own tokens and move no data.

Dispatchers (``dispatcher``), computed exactly from each token's k experts (per-token routing,
:meth:`netsim.workload.routing.RoutingSource.choices`) except ``pairs``, which needs only counts:

* ``pairs`` (default): every (token, expert) pair sends the token, as Megatron's all-to-all token
  dispatcher does (it permutes the top-k copies and splits them by rank): the matrix above.
* ``rank``: a token goes once to each GPU holding at least one of its experts (DeepEP's
  intranode kernels; Megatron's DeepEP/"flex" dispatcher): ``D[i, j]`` = distinct tokens of GPU
  i with an expert on GPU j, times the bytes per token.
* ``node``: a token crosses the network once per destination *server* (to the GPU of its own
  local rank there, the relay) and is fanned out over NVLink to the GPUs of that server holding
  its experts (DeepEP's internode kernels). End to end it delivers the ``rank`` matrix; the
  network phase carries :meth:`MoELayer.dedup` ``node[i, B]`` distinct tokens. It needs a
  two-phase collective (``collective=hierarchical`` or ``deepep_normal``).

The combine mirrors the dispatch token for token (``rank``: one reduced result per token and
GPU; ``node``: the servers' GPUs reduce at the relay, which sends one result per token back), so
combine bytes are the dispatch's transpose times ``combine_bytes_per_token /
dispatch_bytes_per_token``. Expert compute is unchanged (every pair is computed).

Precision (``dispatch_dtype``, ``combine_dtype``): ``bf16`` (2 B an element), ``fp32`` (4 B),
``fp8`` (1 B an element plus one float32 scale per 128 elements, DeepSeek-V3's fine-grained
quantisation as DeepEP sends it: ``hidden + 4 * ceil(hidden / 128)`` bytes a token); empty: the
layer's ``dtype_bytes`` for that phase.

Node-limited routing (``max_nodes`` M > 0): a token's experts lie on at most M servers of its EP
group, chosen as DeepSeek-V3's router does (:mod:`netsim.workload.routing`); the servers are the
groups of ``gpus_per_server`` consecutive EP ranks holding each expert.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from numba import njit

from netsim.errors import ConfigError, TrafficError
from netsim.workload.routing import in_prefix

DISPATCHERS = ("pairs", "rank", "node")
DTYPES = ("", "bf16", "fp8", "fp32")
FP8_BLOCK = 128  # elements sharing one float32 scale (DeepSeek-V3 / DeepEP fine-grained FP8)


def token_bytes(dtype: str, hidden: int, dtype_bytes: int) -> int:
    """Bytes one token's hidden state takes in ``dtype`` (``""``: ``hidden * dtype_bytes``)."""
    if dtype == "bf16":
        return 2 * hidden
    if dtype == "fp32":
        return 4 * hidden
    if dtype == "fp8":
        return hidden + 4 * (-(-hidden // FP8_BLOCK))
    if dtype == "":
        return hidden * dtype_bytes
    raise ConfigError(f"dtype={dtype!r}; expected one of 'bf16', 'fp8', 'fp32' (or empty)")


#: DeepEP's alignment of its buffer sizes (``NUM_BUFFER_ALIGNMENT_BYTES``), bytes
DEEPEP_ALIGN = 128


def deepep_ll_buffer_bytes(max_tokens: int, hidden: int, experts: int) -> int:
    """Bytes of the RDMA buffer DeepEP's low-latency kernels need per GPU
    (``Buffer.get_low_latency_rdma_size_hint(num_max_dispatch_tokens_per_rank, hidden,
    num_ranks, num_experts)``, the ``LowLatencyLayout`` of its ``csrc/config.hpp``).

    A dispatch message is a 16-byte header plus the larger of a BF16 token (``2 hidden``) and an
    FP8 token with its scales (``hidden + 4 hidden / 128``), whatever the run sends; a combine
    message a BF16 token. Two (odd / even) copies each of: a send buffer (the larger of
    ``max_tokens`` dispatch messages and ``experts x max_tokens`` combine messages), a receive
    buffer (``experts x max_tokens`` of the larger message: a slot for every token of every
    rank that may pick a local expert) and a signalling buffer (one int32 an expert); the total
    rounded up to :data:`DEEPEP_ALIGN` as DeepEP rounds it. Later DeepEP versions add a few
    bytes a message (combine scales, wider counters); this is the released layout."""
    t, h, e = int(max_tokens), int(hidden), int(experts)
    disp = 16 + max(2 * h, h + 4 * (h // FP8_BLOCK))
    comb = 2 * h
    send = max(t * disp, e * t * comb)
    recv = e * t * max(disp, comb)
    total = 2 * (send + recv + 4 * e)
    return (total + DEEPEP_ALIGN) // DEEPEP_ALIGN * DEEPEP_ALIGN


@njit(cache=True)
def _dedup(choices, tokens_per_gpu, dst, srv, n_srv):
    """Distinct destinations per token: ``R[i, j]`` tokens of GPU i with >= 1 expert on GPU j,
    ``P[i, B]`` tokens of GPU i with >= 1 expert on server B (own GPU / server included)."""
    n = dst.shape[0]
    k = choices.shape[1]
    R = np.zeros((n, n), np.int64)
    P = np.zeros((n, n_srv), np.int64)
    g = np.empty(k, np.int64)
    b = np.empty(k, np.int64)
    for t in range(choices.shape[0]):
        i = t // tokens_per_gpu
        ng = 0
        nb = 0
        for q in range(k):
            j = dst[i, choices[t, q]]
            if not in_prefix(g, ng, j):
                g[ng] = j
                ng += 1
                R[i, j] += 1
                s = srv[j]
                if not in_prefix(b, nb, s):
                    b[nb] = s
                    nb += 1
                    P[i, s] += 1
    return R, P


@dataclass(frozen=True)
class MoELayer:
    """Hyperparameters of one MoE layer and its expert-parallel layout.

    ``hidden`` and ``ffn_hidden`` in elements, ``dtype_bytes`` bytes per element of the
    activations sent over the network, ``tokens_per_gpu`` tokens in the micro-batch of one GPU.
    ``ep_size`` 0 means "one EP group over all GPUs". ``dispatcher`` (pairs | rank | node),
    ``dispatch_dtype`` / ``combine_dtype`` (bf16 | fp8 | fp32 | empty = dtype_bytes) and
    ``max_nodes`` (servers a token's experts may span, 0 = any): see the module docstring.
    """

    name: str
    experts: int
    top_k: int
    hidden: int
    ffn_hidden: int
    dtype_bytes: int = 2
    tokens_per_gpu: int = 4096
    ep_size: int = 0
    placement: str = "contiguous"
    shared_experts: int = 0
    dispatcher: str = "pairs"
    dispatch_dtype: str = ""
    combine_dtype: str = ""
    max_nodes: int = 0
    source: str = field(default="", compare=False)

    def __post_init__(self):
        for f in ("experts", "top_k", "hidden", "ffn_hidden", "dtype_bytes", "tokens_per_gpu"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"MoE layer {self.name!r}: {f}={v!r}; expected a positive integer")
        if self.top_k > self.experts:
            raise ConfigError(f"MoE layer {self.name!r}: top_k={self.top_k} > experts={self.experts}")
        if self.ep_size < 0:
            raise ConfigError(f"ep_size={self.ep_size!r}; expected >= 0 (0 = all GPUs)")
        if self.placement not in ("contiguous", "round_robin"):
            raise ConfigError(
                f"placement={self.placement!r}; expected 'contiguous' or 'round_robin'")
        if self.dispatcher not in DISPATCHERS:
            raise ConfigError(f"dispatcher={self.dispatcher!r}; expected one of"
                              f" {', '.join(map(repr, DISPATCHERS))}")
        for f in ("dispatch_dtype", "combine_dtype"):
            if getattr(self, f) not in DTYPES:
                raise ConfigError(f"{f}={getattr(self, f)!r}; expected 'bf16', 'fp8' or 'fp32'"
                                  f" (empty: dtype_bytes={self.dtype_bytes})")
        if not isinstance(self.max_nodes, (int, np.integer)) or self.max_nodes < 0:
            raise ConfigError(f"max_nodes={self.max_nodes!r}; expected a non-negative integer"
                              f" (0 = no limit)")

    # ---- bytes per token ----------------------------------------------------------------------
    @property
    def dispatch_bytes_per_token(self) -> int:
        """Bytes one token's hidden state takes in the dispatch (scales included for fp8)."""
        return token_bytes(self.dispatch_dtype, self.hidden, self.dtype_bytes)

    @property
    def combine_bytes_per_token(self) -> int:
        """Bytes one token's result takes in the combine."""
        return token_bytes(self.combine_dtype, self.hidden, self.dtype_bytes)

    @property
    def combine_scale(self) -> float:
        """Combine bytes / dispatch bytes of the same tokens."""
        return self.combine_bytes_per_token / self.dispatch_bytes_per_token

    @property
    def per_token_routing(self) -> bool:
        """Whether the layer needs each token's experts (not only counts)."""
        return self.dispatcher != "pairs" or self.max_nodes > 0

    def with_params(self, **params) -> "MoELayer":
        """A copy with some fields replaced (unknown names raise :class:`ConfigError`)."""
        names = {f.name for f in fields(self)}
        for k in params:
            if k not in names:
                raise ConfigError(f"unknown MoE layer parameter {k!r}; expected one of {sorted(names)}")
        return replace(self, **params)

    def as_dict(self) -> dict:
        return asdict(self)

    # ---- layout --------------------------------------------------------------------------------
    def ep(self, n_gpus: int) -> int:
        """The EP group size on ``n_gpus`` GPUs (validated)."""
        ep = self.ep_size or n_gpus
        if n_gpus % ep:
            raise ConfigError(f"gpus={n_gpus} is not a multiple of ep_size={ep}")
        if not (self.experts % ep == 0 or ep % self.experts == 0):
            raise ConfigError(
                f"experts={self.experts} and ep_size={ep}: one must divide the other")
        return ep

    def expert_rank(self, n_gpus: int) -> np.ndarray:
        """``rank[s, e]``: EP rank that source rank ``s`` sends expert ``e``'s tokens to."""
        ep = self.ep(n_gpus)
        e = np.arange(self.experts)
        s = np.arange(ep)[:, None]
        if self.experts >= ep:
            per = self.experts // ep
            r = e // per if self.placement == "contiguous" else e % ep
            return np.broadcast_to(r, (ep, self.experts)).copy()
        reps = ep // self.experts
        if self.placement == "contiguous":
            return e[None, :] * reps + (s % reps)
        return e[None, :] + self.experts * (s % reps)

    def traffic(self, counts: np.ndarray, n_gpus: int):
        """Dispatch matrix and per-GPU expert batches from GPU x expert token ``counts``.

        Returns ``(dispatch_bytes[N, N], batches)`` where ``batches[g]`` is an int64 array of the
        token counts of the expert batches GPU ``g`` computes (one entry per expert copy it
        holds, possibly zero).
        """
        counts = np.asarray(counts)
        if counts.shape != (n_gpus, self.experts):
            raise TrafficError(
                f"token counts have shape {counts.shape}; expected (gpus={n_gpus}, experts={self.experts})")
        if np.any(counts < 0):
            raise TrafficError("token counts contain negative entries")
        dst, slot, slots = self.routes(n_gpus)
        per_tok = float(self.dispatch_bytes_per_token)
        src = np.arange(n_gpus)
        disp = np.zeros((n_gpus, n_gpus))
        np.add.at(disp, (np.repeat(src, self.experts), dst.ravel()), counts.ravel() * per_tok)
        batches = np.zeros((n_gpus, slots), np.int64)
        np.add.at(batches, (dst.ravel(), np.tile(slot, n_gpus)), counts.ravel())
        return disp, batches

    def routes(self, n_gpus: int):
        """Where tokens go: ``(dst[N, E], slot[E], slots)``.

        ``dst[s, e]`` is the GPU that source GPU ``s`` sends expert ``e``'s tokens to;
        ``slot[e]`` the index of expert ``e`` among the expert copies its GPU holds; ``slots``
        the number of expert copies per GPU.
        """
        ep = self.ep(n_gpus)
        rank = self.expert_rank(n_gpus)  # (ep, E)
        src = np.arange(n_gpus)
        group0 = (src // ep) * ep
        dst = group0[:, None] + rank[src % ep]
        slots = max(1, self.experts // ep)
        if self.experts < ep:
            slot = np.zeros(self.experts, np.int64)
        elif self.placement == "round_robin":
            slot = np.arange(self.experts) // ep
        else:
            slot = np.arange(self.experts) % slots
        return dst, slot, slots

    def tokens_to(self, counts: np.ndarray, n_gpus: int) -> np.ndarray:
        """``T[j, i, s]``: tokens GPU ``i`` sends to expert copy ``s`` of GPU ``j``."""
        dst, slot, slots = self.routes(n_gpus)
        T = np.zeros((n_gpus, n_gpus, slots))
        src = np.repeat(np.arange(n_gpus), self.experts)
        np.add.at(T, (dst.ravel(), src, np.tile(slot, n_gpus)), np.asarray(counts).ravel())
        return T

    # ---- per-token routing ----------------------------------------------------------------------
    def expert_servers(self, n_gpus: int, gpus_per_server: int) -> np.ndarray | None:
        """``server[e]``: the server (within its EP group) holding expert e, the groups of
        node-limited routing; None when experts are replicated (fewer experts than EP ranks)."""
        ep = self.ep(n_gpus)
        if self.experts < ep:
            return None
        return self.expert_rank(n_gpus)[0] // max(1, int(gpus_per_server))

    def dedup(self, choices: np.ndarray, n_gpus: int, gpus_per_server: int):
        """Exact de-duplicated token counts from per-token ``choices`` (token t on GPU
        t // tokens_per_gpu): ``(rank[N, N], node[N, S])`` -- tokens of GPU i with at least one
        expert on GPU j, and on server B (own GPU and server included; S = ceil(N / gps))."""
        c = np.ascontiguousarray(choices, dtype=np.int32)
        if c.ndim != 2 or c.shape != (n_gpus * self.tokens_per_gpu, self.top_k):
            raise TrafficError(f"per-token choices have shape {c.shape}; expected"
                               f" ({n_gpus * self.tokens_per_gpu}, top_k={self.top_k})")
        gps = max(1, int(gpus_per_server))
        dst, _, _ = self.routes(n_gpus)
        srv = np.arange(n_gpus, dtype=np.int64) // gps
        return _dedup(c, int(self.tokens_per_gpu), np.ascontiguousarray(dst, np.int64), srv,
                      int(-(-n_gpus // gps)))

    def dispatch_matrix(self, counts: np.ndarray, rank_tokens: np.ndarray | None,
                        n_gpus: int) -> np.ndarray:
        """The end-to-end dispatch bytes ``D[i, j]`` of the layer's dispatcher: the pairs
        matrix from ``counts``, or ``rank_tokens`` (from :meth:`dedup`) times the bytes a token."""
        if self.dispatcher == "pairs":
            return self.traffic(counts, n_gpus)[0]
        if rank_tokens is None:
            raise TrafficError(f"dispatcher={self.dispatcher!r} needs per-token routing")
        return np.asarray(rank_tokens, np.float64) * float(self.dispatch_bytes_per_token)
