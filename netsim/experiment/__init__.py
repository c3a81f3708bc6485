"""Experiment sweeps: grid of parameters, executors, Parquet datasets."""
