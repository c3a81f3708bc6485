"""Workload presets: each module defines ``build(**params) -> netsim.MoELayer`` for one model."""
