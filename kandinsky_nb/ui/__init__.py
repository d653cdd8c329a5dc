"""ipywidgets panels: thin views over a Session, their state kept in plain Python objects.

``GeneratePanel`` (one request, every parameter), ``Gallery`` (thumbnails of any slice of the run log),
``SweepPanel`` (plan, price, run, cancel, resume), ``CostPanel`` (spend, price model, plots), ``RunViewer`` (one
logged run: full image, parameters, reuse, re-run, compare, copy as code; every panel opens its runs there),
``ComparisonView`` / ``compare_runs`` (runs side by side, differing parameters marked), and the ``show_*`` helpers.
Panel state lives in dataclasses (``GenerateState``, ``SweepState``, ``GalleryState``, ``CostState``, ``ViewerState``,
``ComparisonState``, and ``RunState`` for a run) that tests and code can set and read; :class:`~kandinsky_nb.ui.binding.FormBinding` keeps the
widgets in step with them. The HTML the panels show is built by :mod:`kandinsky_nb.html`, which imports no widgets.
"""

from .cost import CostPanel, CostState
from .display import show_generation, show_image
from .gallery import Gallery, GalleryState
from .generate import GeneratePanel
from .state import GenerateState, LoraEntry, RunState
from .sweep import SweepPanel, SweepState, sweep_arguments
from .viewer import ComparisonState, ComparisonView, RunViewer, ViewerState, compare_runs, request_from_row

__all__ = [
    "ComparisonState",
    "ComparisonView",
    "CostPanel",
    "CostState",
    "Gallery",
    "GalleryState",
    "GeneratePanel",
    "GenerateState",
    "LoraEntry",
    "RunState",
    "RunViewer",
    "SweepPanel",
    "SweepState",
    "ViewerState",
    "compare_runs",
    "request_from_row",
    "show_generation",
    "show_image",
    "sweep_arguments",
]
