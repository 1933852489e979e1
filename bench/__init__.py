"""DisCo-Bench: a reproducibility suite for DisCo-Diff (Xu et al., ICML 2024)."""

__version__ = "0.1.0"
