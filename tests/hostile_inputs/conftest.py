"""Fixtures of the hostile-input tests: a real ``kandinsky-nb serve`` on loopback in front of a tiny engine."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator

import pytest
from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult


class TinyEngine(Backend):
    """Makes ``numberResults`` 16x16 PNGs at once (the wire is under test here, not the model)."""

    name = "tiny"

    def __init__(self, *, demo: bool = False) -> None:
        self.demo = demo

    def generate(self, request: ImageInferenceRequest) -> Generation:
        started = time.monotonic()
        images = []
        for index in range(request.effective("numberResults")):
            buffer = io.BytesIO()
            Image.new("RGB", (16, 16), (index * 40 % 256, 90, 160)).save(buffer, format="PNG")
            result = ImageInferenceResult(
                taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=index, cost=0.001
            )
            images.append(GeneratedImage(result=result, data=buffer.getvalue()))
        return Generation(request, images, self.name, time.monotonic() - started, demo=self.demo)

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        return self.generate(request)


@pytest.fixture
def serve() -> Iterator:
    """``serve(api_keys, demo=...)`` starts a real server on 127.0.0.1 and returns it; all are stopped after."""
    from kandinsky_nb.server import ServerThread, create_app

    running = []

    def start(api_keys: list[str], *, demo: bool = False):
        server = ServerThread(create_app(TinyEngine(demo=demo), api_keys=api_keys)).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()
