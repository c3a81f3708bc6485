"""DeepSeek-V3: 256 routed experts + 1 shared, top-8, hidden 7168, expert FFN 2048, 58 MoE layers.

Source: config.json of deepseek-ai/DeepSeek-V3 (n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, hidden_size=7168, moe_intermediate_size=2048); DeepSeek-AI, arXiv:2412.19437
"""
from netsim.workload.moe import MoELayer

PRESET = MoELayer(
    name="deepseek_v3", experts=256, top_k=8, hidden=7168, ffn_hidden=2048, shared_experts=1,
    source="config.json of deepseek-ai/DeepSeek-V3 (n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, hidden_size=7168, moe_intermediate_size=2048); DeepSeek-AI, arXiv:2412.19437",
)


def build(**params) -> MoELayer:
    """The deepseek_v3 MoE layer; any MoELayer field (tokens_per_gpu, ep_size, placement, dtype_bytes...)
    can be overridden."""
    return PRESET.with_params(**params)
