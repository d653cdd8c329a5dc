"""ipywidgets panels and display helpers: thin views over a Session, their state kept in plain Python objects."""

from .display import generation_repr_html, html_for_generation, show_generation, show_image
from .generate import GeneratePanel
from .state import GenerateState, LoraEntry

__all__ = [
    "GeneratePanel",
    "GenerateState",
    "LoraEntry",
    "generation_repr_html",
    "html_for_generation",
    "show_generation",
    "show_image",
]
