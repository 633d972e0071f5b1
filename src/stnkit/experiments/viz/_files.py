"""Atomic file writes (shared with the rest of ``stnkit``)."""

from ..._io import atomic_write

__all__ = ["atomic_write"]
