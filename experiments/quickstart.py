"""Quickstart: uniform (mock) versus Zipf routing of Mixtral-8x7B on a crossbar and a leaf-spine."""
NAME = "quickstart"
BASE = {"workload": "mixtral_8x7b", "tokens_per_gpu": 1024, "fabric": "flow"}
GRID = {
    "topology": ["crossbar", "leaf_spine"],
    "gpus": [16, 32],
    "routing": ["uniform", "zipf:1.2"],
}
SEEDS = [0, 1]
