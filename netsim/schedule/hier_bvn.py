"""Hierarchical BvN for two-tier fabrics: balance inside each server, decompose server-to-server demand.

Jiayi Wu, Cheng-Shang Chang, Duan-Shin Lee, H. Jonathan Chao (arXiv:2602.22756, 2026): with G GPUs
per server, each GPU holding one OCS port, the server-to-server demand B[a, b] (sum over the GPUs of
server a to those of server b) is spread evenly over the G ports of each server (moved inside the
server over its scale-up fabric, e.g. NVLink) and decomposed at server level by BvN; a server
permutation sigma held for w bytes becomes the GPU matching (a, k) -> (sigma(a), k), k = 0..G-1, with
G circuits in parallel each carrying w / G.

Consequences: at most (N/G)^2 - 2(N/G) + 2 matchings instead of N^2 - 2N + 2; the time is
(largest server line sum) / (G * line_rate) + m * reconfig_s. Bytes on a circuit are relayed (they
belong to several GPU pairs of the two servers), so ``served_bytes`` is per circuit and conservation
holds per server pair (``meta["relayed"] = True``, ``meta["server_served_bytes"]``). Intra-server
traffic (a == b) does not use the OCS: it is in ``leftover_bytes`` (for the scale-up fabric), and the
bytes moved inside servers to balance the ports before (``intra_pre_bytes``) and after
(``intra_post_bytes``) the OCS are reported; their time is not included.

Approximate: the paper's intra-server balancing and decomposition details may differ; the balancing
here is the even split, and the server-level step is :mod:`netsim.schedule.bvn`.
"""
from __future__ import annotations

import numpy as np

from netsim.errors import ConfigError

from .base import Schedule, from_arrays, validate_link, validate_traffic, is_count
from .bvn import bvn

__all__ = ["hier_bvn"]


def hier_bvn(traffic: np.ndarray, line_rate: float, reconfig_s: float, gpus_per_server: int = 8) -> Schedule:
    """hier_bvn:G: hierarchical BvN (arXiv:2602.22756) for servers of G GPUs: balance inside servers, BvN between them."""
    t = validate_traffic(traffic)
    rate, delta = validate_link(line_rate, reconfig_s)
    g = gpus_per_server
    n = t.shape[0]
    if not is_count(g) or n % g:
        raise ConfigError(f"hier_bvn: gpus_per_server = {g!r}; expected a positive integer dividing N = {n}")
    g = int(g)
    ns = n // g
    blocks = t.reshape(ns, g, ns, g)  # [a, k, b, j]
    server = blocks.sum(axis=(1, 3))
    intra = np.zeros_like(t)
    for a in range(ns):
        sl = slice(a * g, (a + 1) * g)
        intra[sl, sl] = t[sl, sl]
    np.fill_diagonal(server, 0.0)
    per_port_out = blocks.sum(axis=3)  # [a, k, b]: GPU (a,k) -> server b
    per_port_in = blocks.sum(axis=1)  # [a, b, j]: server a -> GPU (b,j)
    share = server / g
    pre = float(np.maximum(per_port_out - share[:, None, :], 0.0).sum())
    post = float(np.maximum(per_port_in - share[:, :, None], 0.0).sum())
    # remove the a == b terms (not on the OCS)
    pre -= float(sum(np.maximum(per_port_out[a, :, a], 0.0).sum() for a in range(ns)))
    post -= float(sum(np.maximum(per_port_in[a, a, :], 0.0).sum() for a in range(ns)))
    sb = bvn(server, rate * g, delta)
    m = sb.n_matchings
    perms = np.full((m, n), -1, dtype=np.int64)
    served = np.zeros((m, n))
    ks = np.arange(g)
    for idx, (sp, ss) in enumerate(zip(sb.matchings, sb.served_bytes)):
        for a in range(ns):
            if sp[a] >= 0:
                perms[idx, a * g + ks] = sp[a] * g + ks
                served[idx, a * g + ks] = ss[a] / g
    return from_arrays(
        perms, np.asarray(sb.durations_s), served, intra,
        reconfig_s=delta, name=f"hier_bvn:{g}", line_rate=rate, traffic=t,
        meta={
            "relayed": True,
            "gpus_per_server": g,
            "servers": ns,
            "padded_fraction": sb.meta.get("padded_fraction", 0.0),
            "server_served_bytes": sb.served_matrix(),
            "intra_server_traffic_bytes": float(intra.sum()),
            "intra_pre_bytes": pre,
            "intra_post_bytes": post,
        },
    )
