"""disentangle: structured representations with optimal transport (models, data, training)."""

__version__ = "0.1.0"
