"""Pydantic models of the wire objects: the strict request, the tolerant results and errors."""

from .images import ImageRef
from .request import AcceleratorOptions, ImageInferenceRequest, Lora, Safety
from .results import GeneratedImage, Generation, ImageInferenceResult, WireError

__all__ = [
    "AcceleratorOptions",
    "GeneratedImage",
    "Generation",
    "ImageInferenceRequest",
    "ImageInferenceResult",
    "ImageRef",
    "Lora",
    "Safety",
    "WireError",
]
