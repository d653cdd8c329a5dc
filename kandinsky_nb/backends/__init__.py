"""Engines: one async-first protocol, several implementations that return the same :class:`Generation`.

Backends never log runs: the :class:`~kandinsky_nb.Session` does, once, for every engine.
"""

from .base import Backend

__all__ = ["Backend"]
