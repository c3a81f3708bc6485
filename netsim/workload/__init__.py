"""MoE workloads: model presets, routing sources, expert placement, compute-time model."""
