"""Placeholder being written in this change."""
__all__ = []
OPTIMIZERS = ()
