"""A fast, controllable engine for protocol tests: a Backend and makes real (tiny) images.

Protocol tests are about the wire, not the model; the end-to-end tests use the real local engine on demo weights.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid

from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

_PIL_FORMATS = {"JPG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}


class StubEngine(Backend):
    """Makes ``numberResults`` 16x16 images in the request's outputFormat after ``delay`` seconds."""

    name = "stub"

    def __init__(self, delay: float = 0.0, *, demo: bool = False) -> None:
        self.delay = delay
        self.demo = demo
        self.requests: list[ImageInferenceRequest] = []

    def _images(self, request: ImageInferenceRequest) -> list[GeneratedImage]:
        images = []
        base_seed = request.seed if request.seed is not None else random.randrange(2**32)
        for index in range(request.effective("numberResults")):
            seed = base_seed + index
            buffer = io.BytesIO()
            colour = (seed % 256, (seed // 256) % 256, 128)
            Image.new("RGB", (16, 16), colour).save(buffer, format=_PIL_FORMATS[request.effective("outputFormat")])
            result = ImageInferenceResult(
                taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=seed, cost=0.0012, NSFWContent=False
            )
            images.append(GeneratedImage(result=result, data=buffer.getvalue()))
        return images

    def generate(self, request: ImageInferenceRequest) -> Generation:
        self.requests.append(request)
        started = time.monotonic()
        time.sleep(self.delay)
        images = self._images(request)
        return Generation(request, images, self.name, time.monotonic() - started, demo=self.demo)

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        self.requests.append(request)
        started = time.monotonic()
        await asyncio.sleep(self.delay)
        images = self._images(request)
        return Generation(request, images, self.name, time.monotonic() - started, demo=self.demo)
