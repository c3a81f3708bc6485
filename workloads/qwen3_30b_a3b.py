"""Qwen3-30B-A3B: 128 experts, top-8, hidden 2048, expert FFN 768, 48 MoE layers.

Source: config.json of Qwen/Qwen3-30B-A3B (num_experts=128, num_experts_per_tok=8, hidden_size=2048, moe_intermediate_size=768); Qwen3 technical report, arXiv:2505.09388
"""
from netsim.workload.moe import MoELayer

PRESET = MoELayer(
    name="qwen3_30b_a3b", experts=128, top_k=8, hidden=2048, ffn_hidden=768, shared_experts=0,
    source="config.json of Qwen/Qwen3-30B-A3B (num_experts=128, num_experts_per_tok=8, hidden_size=2048, moe_intermediate_size=768); Qwen3 technical report, arXiv:2505.09388",
)


def build(**params) -> MoELayer:
    """The qwen3_30b_a3b MoE layer; any MoELayer field (tokens_per_gpu, ep_size, placement, dtype_bytes...)
    can be overridden."""
    return PRESET.with_params(**params)
