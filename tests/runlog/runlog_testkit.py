"""Synthetic generations for the run-log tests: real encoded images of one solid colour per seed, no engine."""

from __future__ import annotations

import io
import uuid

from PIL import Image

from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult


def colour_of(seed: int) -> tuple[int, int, int]:
    return (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)


def encoded(colour: tuple[int, int, int], image_format: str = "PNG", size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=image_format)
    return buffer.getvalue()


def request(**fields) -> ImageInferenceRequest:
    fields.setdefault("positivePrompt", "a red fox in snow")
    return ImageInferenceRequest(**fields)


def generation(
    request: ImageInferenceRequest, *, cost: float | None = 0.001, engine: str = "runware", image_format: str = "PNG"
) -> Generation:
    """A finished generation with one solid-colour image per result (colour from the seed). BMP files carry no
    embedded parameters, so two requests with the same seed give byte-identical images (one sha256)."""
    images = []
    seed = request.seed if request.seed is not None else 0
    for index in range(request.effective("numberResults")):
        result = ImageInferenceResult(
            taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=seed + index, cost=cost
        )
        images.append(GeneratedImage(result=result, data=encoded(colour_of(seed + index), image_format)))
    return Generation(request, images, engine, 0.01)
