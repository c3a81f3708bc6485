"""OLMoE-1B-7B: 64 experts, top-8, hidden 2048, expert FFN 1024, 16 MoE layers.

Source: config.json of allenai/OLMoE-1B-7B-0924 (num_experts=64, num_experts_per_tok=8, hidden_size=2048, intermediate_size=1024); Muennighoff et al., arXiv:2409.02060
"""
from netsim.workload.moe import MoELayer

PRESET = MoELayer(
    name="olmoe_1b_7b", experts=64, top_k=8, hidden=2048, ffn_hidden=1024, shared_experts=0,
    source="config.json of allenai/OLMoE-1B-7B-0924 (num_experts=64, num_experts_per_tok=8, hidden_size=2048, intermediate_size=1024); Muennighoff et al., arXiv:2409.02060",
)


def build(**params) -> MoELayer:
    """The olmoe_1b_7b MoE layer; any MoELayer field (tokens_per_gpu, ep_size, placement, dtype_bytes...)
    can be overridden."""
    return PRESET.with_params(**params)
