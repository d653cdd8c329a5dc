"""Thin ``show_*`` wrappers that hand the pure builders of :mod:`kandinsky_nb.html` to IPython's display."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ..html import STYLE, THUMBNAIL_SIDE, html_from_image

if TYPE_CHECKING:
    from ..types import Generation

__all__ = ["show_generation", "show_image"]


def show_generation(generation: Generation, *, max_side: int = THUMBNAIL_SIDE) -> None:
    """Display a Generation's thumbnails with their seed, cost and latency in the notebook."""
    from IPython.display import HTML, display

    display(HTML(generation.to_html(max_side=max_side)))


def show_image(data: bytes, caption: str = "", *, max_side: int | None = THUMBNAIL_SIDE) -> None:
    """Display one encoded image (thumbnail unless ``max_side=None``) with an optional plain-text caption."""
    from IPython.display import HTML, display

    display(HTML(STYLE + html_from_image(data, html.escape(caption), max_side=max_side)))
