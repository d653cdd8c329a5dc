"""What the run-log and sweep tests share: an engine that charges a known price, served over the real Runware
protocol (``kandinsky-nb serve``'s app on 127.0.0.1), and synthetic generations for store-only tests."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from kandinsky_nb import spec
from kandinsky_nb.backends.base import Backend
from kandinsky_nb.errors import UnsupportedByEngineError
from kandinsky_nb.protocol import RetryPolicy
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

KEY = "rw-test-KEY-sweeps-0b7e-never-log-me"
FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05, poll_initial=0.05, poll_max=0.2)


def colour_of(seed: int) -> tuple[int, int, int]:
    return (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def generation(request: ImageInferenceRequest, *, cost: float | None = 0.001, engine: str = "runware") -> Generation:
    """A finished generation with one solid-colour PNG per image (colour from the seed), for store-only tests."""
    images = []
    seed = request.seed if request.seed is not None else 0
    for index in range(request.effective("numberResults")):
        result = ImageInferenceResult(
            taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=seed + index, cost=cost
        )
        images.append(GeneratedImage(result=result, data=png(colour_of(seed + index))))
    return Generation(request, images, engine, 0.01)


class PricedEngine(Backend):
    """An engine behind the test server: solid-colour PNGs, each charged ``price_factor`` times the list price,
    after ``delay`` seconds; refuses the ``DDIM`` scheduler as the local engine does. Counts what is in flight.
    Like a local pipeline it keeps no tasks, so the base class's resume (no record) and close stand."""

    name = "priced"

    def __init__(self, delay: float = 0.0, price_factor: float = 1.0) -> None:
        self.delay = delay
        self.price_factor = price_factor
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def _make(self, request: ImageInferenceRequest) -> Generation:
        if request.scheduler == "DDIM":
            raise UnsupportedByEngineError("scheduler", "DDIM", "priced", "not a flow-matching sampler", "'Euler'")
        price = spec.list_price_estimate(request.width, request.height, request.effective("steps")) * self.price_factor
        return generation(request, cost=price, engine=self.name)

    def generate(self, request: ImageInferenceRequest) -> Generation:
        time.sleep(self.delay)
        return self._make(request)

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self._make(request)
        finally:
            with self._lock:
                self.in_flight -= 1


@contextmanager
def served(engine: PricedEngine, max_concurrency: int = 16) -> Iterator[tuple[str, object]]:
    """The real Runware-protocol server in front of ``engine``; yields (base URL, server state)."""
    from kandinsky_nb.server import ServerThread, create_app

    with ServerThread(create_app(engine, api_keys=[KEY], max_concurrency=max_concurrency)) as server:
        yield server.url, server.app.state.kandinsky


def runware(url: str, key: str = KEY, **options: object):
    import httpx

    from kandinsky_nb.backends.runware import RunwareBackend

    # One transport shared by whatever clients the backend makes: its lazy sync client is created without a lock,
    # so threads starting together can each make one; with a shared pool none of their sockets is left unclosed.
    options.setdefault("transport", httpx.HTTPTransport())
    options.setdefault("timeout", 10.0)
    options.setdefault("poll_timeout", 10.0)
    options.setdefault("retry_policy", FAST)
    return RunwareBackend(key, base_url=url, **options)
