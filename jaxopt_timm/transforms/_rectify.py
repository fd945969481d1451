"""Placeholder being written in this change."""
__all__ = []
