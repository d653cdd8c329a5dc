"""End to end on the real local engine (demo weights): RunwareBackend -> kandinsky-nb serve -> LocalBackend."""

from __future__ import annotations

import pytest

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.server import ServerThread, create_app
from kandinsky_nb.types import ImageInferenceRequest


@pytest.mark.local
async def test_runware_backend_through_the_server_on_demo_weights(demo_backend):
    with ServerThread(create_app(demo_backend)) as server:
        async with RunwareBackend("any-key", base_url=server.url, poll_timeout=120) as backend:
            request = ImageInferenceRequest(positivePrompt="a red fox in snow", steps=10, seed=5, outputFormat="PNG")
            generation = await backend.agenerate(request)
            (again,) = await backend.agenerate_many([request.replace(deliveryMethod="async", outputType="dataURI")])
    assert generation.demo is True and again.demo is True
    assert generation.seeds == [5] and [image.format for image in generation.images] == ["png"]
    assert generation.images[0].data == again.images[0].data  # same seed, same engine: same image on any delivery
    assert generation.cost is not None and generation.cost >= 0  # includeCost is on by default
