"""A few-minute subset of the circuit-scheduling study (``ocs_scheduling.py``): 16 and 32 GPUs,
delays 10 ns to 10 ms, uniform versus Zipf routing, one seed."""
from ocs_scheduling import BASE, DELAYS_US, plots  # noqa: F401  (siblings import)

NAME = "ocs_scheduling_quick"
SEEDS = [0]
GRID = {
    "gpus": [16, 32],
    "reconfig_us": DELAYS_US,
    "routing": ["uniform", "zipf:1.2"],
    "tokens_per_gpu": [1024],
    "batch_overhead_us": [20.0],
    "scheduler": ["ideal", "bvn", "solstice", "rotor", "greedy:1", "greedy:2", "greedy:4", "greedy:8"],
}
