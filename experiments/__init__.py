"""Experiment modules: each defines ``NAME``, ``BASE``, ``GRID`` (and optionally ``SEEDS``, ``plots``)."""
