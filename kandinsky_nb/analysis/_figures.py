"""Figures that show themselves in a notebook.

The analysis builds its plots without pyplot, so nothing global changes. A plain matplotlib Figure built that way has
no display hook unless ``%matplotlib inline`` (or a pyplot import) has registered one, and JupyterLab then prints only
``<Figure size 600x400 with 1 Axes>``. This subclass renders itself as PNG either way.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure

__all__ = ["NotebookFigure"]


class NotebookFigure(Figure):
    """A matplotlib Figure with a ``_repr_png_``: Jupyter shows it as an image with or without ``%matplotlib``."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
