"""The metric columns of a row and their units (one home: datasets, reports and the CLI read it).

Time metrics (seconds, from the start of the layer):

* ``dispatch_s``: when the last GPU has received all its dispatch data;
* ``compute_s``: the longest per-GPU expert compute time (sum of its batch times);
* ``combine_s``: from the last GPU finishing compute to the end of the layer (combine tail);
* ``layer_s``: when the last GPU has all its combined results back;
* ``serial_ideal_s``: the *non-overlapped* congestion-free reference (:mod:`netsim.reference`): ideal
  dispatch, the longest compute, ideal combine, one after another; ``ratio_to_serial_ideal = layer_s /
  serial_ideal_s``. Overlap of one GPU's combine with another's compute can make the ratio fall below
  1: it is a reference, not a lower bound. Circuit-scheduled rows also carry
  ``overlap_bound_s``, a true lower bound for the overlapped layer.
"""
from __future__ import annotations

from netsim.workload.diagnosis import DIAGNOSIS_UNITS

__all__ = ["UNITS", "MAX_KEYS", "MITIGATION_UNITS", "LABEL_COLUMNS"]

#: metrics of a multi-iteration run that also get an ``X_max`` column (max over iterations)
MAX_KEYS = ("layer_s", "dispatch_s", "ratio_to_serial_ideal", "dispatch_over_ideal",
            "dispatch_over_balanced", "rank_max_mean")

#: columns of multi-iteration and mitigated runs (netsim.mitigation.runner)
MITIGATION_UNITS = {
    "iterations_run": "count (iterations simulated; metrics are means over them)",
    "total_layer_s": "s (sum of layer_s over iterations)",
    "relayouts": "count (expert relayouts performed)",
    "migration_bytes": "B (expert weights moved, all iterations)",
    "sample_move_bytes": "B (hidden states of the samples -- sequence fragments or micro-batches"
                         " -- moved by sample placement, all iterations)",
    "network_bytes": "B (bytes carried by all flows: relay hops, migrations, moves)",
    # dispatchers and precisions (netsim.workload.moe), per phase, GPU to other GPUs
    "dispatch_bytes": "B (dispatch delivered end to end, after the dispatcher's de-duplication)",
    "combine_bytes": "B (combine delivered end to end, in combine_dtype)",
    "dispatch_scaleout_bytes": "B (dispatch bytes crossing servers: relay messages when two-phase)",
    "combine_scaleout_bytes": "B (combine bytes crossing servers)",
    "dispatch_flow_bytes": "B (bytes every dispatch flow carried, relay hops included)",
    "combine_flow_bytes": "B (bytes every combine flow carried, relay hops included)",
    "recv_tokens_max": "tokens (max over GPUs of tokens delivered from other GPUs)",
    "recv_tokens_mean": "tokens (mean over GPUs of tokens delivered from other GPUs)",
    "ll_buffer_bytes": "B (deepep_ll RDMA buffer per GPU for ll_max_tokens tokens a rank,"
                       " DeepEP's layout)",
    "samples_moved": "count (samples -- sequences, or micro-batches without sequence ids -- that"
                     " sample placement moved to another GPU, all iterations; 0: nothing to"
                     " gain was found)",
    **{f"{k}_max": "max over iterations" for k in MAX_KEYS},
}

UNITS = {
    "layer_s": "s", "dispatch_s": "s", "compute_s": "s", "combine_s": "s", "serial_ideal_s": "s",
    "ideal_dispatch_s": "s", "ideal_combine_s": "s", "ratio_to_serial_ideal": "1",
    "bytes_total": "B (bytes the layer must move: dispatch + combine, local pairs excluded)",
    "bytes_delivered": "B (bytes the engine saw arrive, summed from its own completions)",
    "max_gpu_recv_bytes": "B", "mean_gpu_recv_bytes": "B",
    "imbalance": "1 (max/mean tokens per expert)",
    "gini": "1 (Gini of per-expert tokens)", "flows": "count",
    "events": "count (flow-model completion events; 0 on the analytic and packet fabrics)",
    "rate_recomputes": "count (flow-model max-min computations; 0 on analytic and packet)",
    "sim_wall_s": "s (host wall clock)", "n_gpus": "count",
    # circuit-scheduled (OCS) runs; NaN otherwise
    "n_matchings": "count", "fallback_matchings": "count", "reconfig_total_s": "s",
    "bubble_fraction": "1 (port time of held circuits carrying no data: every port of every plane"
                       " x each matching's duration, reconfiguration excluded; = Schedule.bubble_fraction)",
    "idle_circuit_fraction": "1 (established circuits' time carrying no data / their time)",
    "overlap_bound_s": "s (lower bound on the layer under any schedule, overlapped or not:"
                       " per port, reconfigurations to its peers + its bytes at line rate;"
                       " per GPU, its compute; docs/ocs_study.md)",
    "ratio_to_bound": "1 (layer_s / overlap_bound_s, >= 1)",
    "combine_start_s": "s (overlap=False: when the combine schedule starts, after the barrier;"
                       " NaN with overlap)",
    "pad_fraction": "1 (BvN padding / padded volume)", "leftover_bytes": "B (before fallback)",
    "batches": "count", "mean_batch_tokens": "tokens", "min_batch_tokens": "tokens",
    "compute_overhead_s": "s (max over GPUs: batched - unbatched compute)",
    "lower_bound_s": "s (spectra makespan lower bound; NaN for other schedulers)",
    "eps_bytes": "B (over the electrical packet network: a schedule's leftover)",
    "nvlink_bytes": "B (inside servers on a circuit-scheduled hybrid fabric)",
    # packet model
    "packets": "count", "packet_hops": "count", "max_queue_bytes": "B (peak over links)",
    "pause_s": "s (PFC pause summed over links)", "drops": "count",
    "packet_passes": "count (dispatch + combine passes to the compute-start fixed point)",
    **DIAGNOSIS_UNITS,
    **MITIGATION_UNITS,
    # recovered shares (netsim.mitigation.shares.recovered_shares: added to a frame of rows)
    "baseline_dispatch_s": "s (dispatch_s of the same point without mitigation)",
    "baseline_layer_s": "s (layer_s of the same point without mitigation)",
    "dispatch_recovered_share": "1 (share of the baseline's dispatch gap to the balanced bound"
                                " that the row recovers; 0: none, 1: all, < 0: slower)",
    "layer_recovered_share": "1 (the same on the whole layer, the mitigation's own migrations"
                             " and moves included, against the baseline's balanced reference)",
    # routing profiles (netsim.workload.profiles)
    "profile_target_gini": "1 (the profile's target Gini at its reference batch; NaN: uniform)",
}

#: text columns some rows carry (not in UNITS, whose metrics are numbers): what they hold
LABEL_COLUMNS = {
    "profile_source": "where a routing profile's target Gini comes from: published |"
                      " assumed_in_band | assumed | uncalibrated (netsim.workload.profiles)",
}
