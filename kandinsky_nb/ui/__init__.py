"""ipywidgets panels and display helpers: thin views over a Session, their state kept in plain Python objects.

``GeneratePanel`` (one request, every parameter), ``Gallery`` (thumbnails of any slice of the run log),
``SweepPanel`` (plan, price, run, cancel, resume), ``CostPanel`` (spend, price model, plots), and the ``show_*`` / ``html_for_*`` helpers. Panel state lives in dataclasses (``GenerateState``, ``GalleryState``) that tests
and code can set and read.
"""

from .cost import CostPanel, CostState
from .display import (
    generation_repr_html,
    html_for_generation,
    html_for_image,
    html_for_request_json,
    show_generation,
    show_image,
)
from .gallery import Gallery, GalleryState, request_from_row
from .generate import GeneratePanel
from .state import GenerateState, LoraEntry
from .sweep import SweepPanel, SweepState, sweep_arguments

__all__ = [
    "CostPanel",
    "CostState",
    "Gallery",
    "GalleryState",
    "GeneratePanel",
    "GenerateState",
    "LoraEntry",
    "SweepPanel",
    "SweepState",
    "generation_repr_html",
    "html_for_generation",
    "html_for_image",
    "html_for_request_json",
    "request_from_row",
    "show_generation",
    "show_image",
    "sweep_arguments",
]
