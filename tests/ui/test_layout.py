"""Every panel carries the ``knb-panel`` class its style sheet scopes the half-width rules to: widget rows wrap,
buttons keep their whole label, sliders and images shrink to the panel. The browser tests measure the result at
half width (no element outside its panel, no overlapping neighbours, no clipped label)."""

from __future__ import annotations

import re

import ipywidgets as widgets
import pytest

from kandinsky_nb.html import STYLE
from kandinsky_nb.ui import CostPanel, Gallery, GeneratePanel, SweepPanel


def style_of(panel: widgets.Box) -> str:
    return "".join(
        child.value for child in panel.children if isinstance(child, widgets.HTML) and "<style>" in child.value
    )


def test_the_style_sheet_lets_rows_wrap_and_labels_show_whole():
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", STYLE))
    hbox = next(body for selector, body in rules.items() if ".knb-panel .jupyter-widget-hbox" in selector)
    button = next(body for selector, body in rules.items() if ".knb-panel .jupyter-button" in selector)
    assert "flex-wrap:wrap" in hbox and "min-width:max-content" in button


@pytest.mark.local
def test_every_panel_is_scoped_for_the_half_width_rules(demo_session):
    for panel in (
        GeneratePanel(demo_session),
        SweepPanel(demo_session),
        Gallery(demo_session),
        CostPanel(demo_session),
    ):
        assert "knb-panel" in panel._dom_classes, type(panel).__name__
        assert ".knb-panel .jupyter-widget-hbox" in style_of(panel), type(panel).__name__
