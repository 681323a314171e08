"""ferlib: a reproducibility study of identity-aware facial-expression recognition."""

__version__ = "0.1.0"
