"""Fabric models (numba): analytic crossbar bound and flow-level max-min fair model."""
