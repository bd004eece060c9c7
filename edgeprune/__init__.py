"""edgeprune: grouped structural pruning of vision transformers, export and held-out-domain benchmarks."""

__version__ = "0.1.0"
