"""A few-minute subset of the circuit-scheduling study (``ocs_scheduling.py``): 32 GPUs, delays
10 ns to 10 ms, uniform versus Zipf routing, three seeds; every scheduler of the study (greedy:K
for K = 1, 2, 4, 8 and N - 1), merge batching for all, per-matching batching for the schedulers
with many matchings and greedy's extremes. The README's OCS numbers come from this sweep
(``docs/ocs_numbers.py``)."""
from ocs_scheduling import BASE, grid_points, label_frame, plots  # noqa: F401  (siblings import)

NAME = "ocs_scheduling_quick"
SEEDS = [0, 1, 2]
DELAYS_US = [0.01, 1.0, 10.0, 100.0, 10000.0]


def points():
    yield from grid_points([32], DELAYS_US, ["uniform", "zipf:1.2"],
                           {"tokens_per_gpu": [1024], "batch_overhead_us": [20.0]})
