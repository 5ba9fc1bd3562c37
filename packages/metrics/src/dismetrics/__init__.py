"""dismetrics: disentanglement metrics on plain arrays (no torch required)."""

__version__ = "0.1.0"
