"""SimPy processes: GPUs (phases) and, later, OCS reconfiguration."""
