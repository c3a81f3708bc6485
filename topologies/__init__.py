"""Topology modules: each defines ``build(**params) -> netsim.Topology``; parameters carry units."""
