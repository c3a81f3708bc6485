"""Switch Transformer (switch-base-128): 128 experts, top-1, d_model 768, d_ff 3072 (ReLU FFN).

Source: config.json of google/switch-base-128 (num_experts=128, d_model=768, d_ff=3072, router top-1); Fedus, Zoph, Shazeer, arXiv:2101.03961
"""
from netsim.workload.moe import MoELayer

PRESET = MoELayer(
    name="switch_base_128", experts=128, top_k=1, hidden=768, ffn_hidden=3072, shared_experts=0,
    source="config.json of google/switch-base-128 (num_experts=128, d_model=768, d_ff=3072, router top-1); Fedus, Zoph, Shazeer, arXiv:2101.03961",
)


def build(**params) -> MoELayer:
    """The switch_base_128 MoE layer; any MoELayer field (tokens_per_gpu, ep_size, placement, dtype_bytes...)
    can be overridden."""
    return PRESET.with_params(**params)
