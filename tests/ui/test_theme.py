"""Colours come from JupyterLab's theme variables, so the panels read in the dark theme as in the light one (the
browser tests look at both); a colour written as a literal would stay light-theme-only."""

from __future__ import annotations

import io
import re

import ipywidgets as widgets
from PIL import Image

from kandinsky_nb.html import STYLE
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult
from kandinsky_nb.ui import GeneratePanel

_DECLARATION = re.compile(r"(?<![\w-])(color|background|background-color|border|border-color)\s*:\s*([^;}\"']+)")
_THEME_VARIABLE = re.compile(r"var\(--(jp|md)-[\w-]+(,[^()]*)?\)")
_LITERAL_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}\b|rgba?\(|\b(white|black|red|grey|gray)\b")


def literal_colours(markup: str) -> list[str]:
    """Colour declarations that are not a theme variable (a literal inside a variable's fallback is fine)."""
    return [
        m.group(0) for m in _DECLARATION.finditer(markup) if _LITERAL_COLOUR.search(_THEME_VARIABLE.sub("", m.group(2)))
    ]


def html_of(widget: widgets.Widget) -> str:
    parts = [widget.value] if isinstance(widget, widgets.HTML) else []
    for child in getattr(widget, "children", ()):
        parts.append(html_of(child))
    return "".join(parts)


def test_the_style_sheet_uses_theme_variables():
    assert literal_colours(STYLE) == []
    assert literal_colours("<p style='color:#444;background: var(--jp-layout-color2,#fff)'>") == ["color:#444"]


def test_panels_and_results_use_theme_variables():
    panel = GeneratePanel()
    fresh = html_of(panel)
    panel.update(positivePrompt="a red fox in snow " * 60)  # over the limit: the counter turns red
    assert "knb-over" in html_of(panel)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    request = ImageInferenceRequest(positivePrompt="a red fox")
    image = GeneratedImage(ImageInferenceResult(taskUUID=request.taskUUID, seed=1), buffer.getvalue())
    result = Generation(request, [image], engine="local", latency_s=1.0, demo=True).to_html()
    assert literal_colours(fresh + html_of(panel) + result) == []
