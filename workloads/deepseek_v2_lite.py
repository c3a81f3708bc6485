"""DeepSeek-V2-Lite: 64 routed experts + 2 shared, top-6, hidden 2048, expert FFN 1408, 26 MoE layers.

Source: config.json of deepseek-ai/DeepSeek-V2-Lite (n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6, hidden_size=2048, moe_intermediate_size=1408); DeepSeek-AI, arXiv:2405.04434
"""
from netsim.workload.moe import MoELayer

PRESET = MoELayer(
    name="deepseek_v2_lite", experts=64, top_k=6, hidden=2048, ffn_hidden=1408, shared_experts=2,
    source="config.json of deepseek-ai/DeepSeek-V2-Lite (n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6, hidden_size=2048, moe_intermediate_size=1408); DeepSeek-AI, arXiv:2405.04434",
)


def build(**params) -> MoELayer:
    """The deepseek_v2_lite MoE layer; any MoELayer field (tokens_per_gpu, ep_size, placement, dtype_bytes...)
    can be overridden."""
    return PRESET.with_params(**params)
