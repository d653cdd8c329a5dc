"""ipywidgets panels: thin views over a Session, their state kept in plain Python objects.

``GeneratePanel`` (one request, every parameter), ``Gallery`` (thumbnails of any slice of the run log),
``SweepPanel`` (plan, price, run, cancel, resume), ``CostPanel`` (spend, price model, plots), and the ``show_*``
helpers. Panel state lives in dataclasses (``GenerateState``, ``SweepState``, ``GalleryState``, ``CostState``, and
``RunState`` for a run) that tests and code can set and read; :class:`~kandinsky_nb.ui.binding.FormBinding` keeps the
widgets in step with them. The HTML the panels show is built by :mod:`kandinsky_nb.html`, which imports no widgets.
"""

from .cost import CostPanel, CostState
from .display import show_generation, show_image
from .gallery import Gallery, GalleryState, request_from_row
from .generate import GeneratePanel
from .state import GenerateState, LoraEntry, RunState
from .sweep import SweepPanel, SweepState, sweep_arguments

__all__ = [
    "CostPanel",
    "CostState",
    "Gallery",
    "GalleryState",
    "GeneratePanel",
    "GenerateState",
    "LoraEntry",
    "RunState",
    "SweepPanel",
    "SweepState",
    "request_from_row",
    "show_generation",
    "show_image",
    "sweep_arguments",
]
