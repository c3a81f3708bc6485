"""The package version (one home; ``netsim.__version__`` re-exports it)."""
__version__ = "0.1.0"
