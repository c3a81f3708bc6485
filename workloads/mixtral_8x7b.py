"""Mixtral-8x7B: 8 experts, top-2, hidden 4096, expert FFN 14336 (SwiGLU), 32 MoE layers.

Source: model card and config.json of mistralai/Mixtral-8x7B-v0.1 (num_local_experts=8, num_experts_per_tok=2, hidden_size=4096, intermediate_size=14336); Jiang et al., arXiv:2401.04088
"""
from netsim.workload.moe import MoELayer

PRESET = MoELayer(
    name="mixtral_8x7b", experts=8, top_k=2, hidden=4096, ffn_hidden=14336, shared_experts=0,
    source="model card and config.json of mistralai/Mixtral-8x7B-v0.1 (num_local_experts=8, num_experts_per_tok=2, hidden_size=4096, intermediate_size=14336); Jiang et al., arXiv:2401.04088",
)


def build(**params) -> MoELayer:
    """The mixtral_8x7b MoE layer; any MoELayer field (tokens_per_gpu, ep_size, placement, dtype_bytes...)
    can be overridden."""
    return PRESET.with_params(**params)
