"""The Python code that reproduces a logged run, for the sidebar's "insert code" action and ``%knb code``.

The builder itself is pure and lives in :mod:`kandinsky_nb.planning.code`, below the panels, which offer the same code
in their run viewer without importing jupyter_server."""

from __future__ import annotations

from ..planning.code import reproduce_code

__all__ = ["reproduce_code"]
