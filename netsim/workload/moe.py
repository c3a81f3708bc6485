"""One MoE layer under expert parallelism: placement of experts on GPUs and the traffic it makes.

Model:

* ``n_gpus`` GPUs form ``n_gpus / ep_size`` expert-parallel (EP) groups; each group holds every
  routed expert once (or ``ep_size / experts`` replicas of each when there are fewer experts than
  ranks). Tokens only travel inside their EP group.
* Placement ``contiguous``: expert e on rank e // (experts / ep_size); ``round_robin``: rank
  e % ep_size. With replicas, source rank s sends expert e's tokens to replica s % replicas.
* Dispatch sends every (token, chosen expert) pair's hidden state, ``hidden * dtype_bytes`` bytes,
  to the GPU holding that expert (no de-duplication of a token whose k experts share a GPU, as in
  an all-to-all of permuted tokens); a pair whose expert is on the token's own GPU stays local.
  Combine sends the same bytes back: the combine matrix is the transpose of the dispatch matrix.
* Shared experts (if any) run on every GPU's own tokens and move no data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from netsim.errors import ConfigError, TrafficError


@dataclass(frozen=True)
class MoELayer:
    """Hyperparameters of one MoE layer and its expert-parallel layout.

    ``hidden`` and ``ffn_hidden`` in elements, ``dtype_bytes`` bytes per element of the
    activations sent over the network, ``tokens_per_gpu`` tokens in the micro-batch of one GPU.
    ``ep_size`` 0 means "one EP group over all GPUs".
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
        per_tok = float(self.hidden * self.dtype_bytes)
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
