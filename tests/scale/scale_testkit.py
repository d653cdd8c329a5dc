"""What the scale tests share: an engine of fixed latency, an ASGI wrapper that injects 429s with Retry-After, and
helpers to start real processes (redis-server, nginx, `kandinsky-nb serve`) on free loopback ports."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import uuid
from typing import Any

from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

KEY = "scale-test-key"


def png(colour: tuple[int, int, int] = (200, 80, 20), size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class SleepEngine(Backend):
    """Takes exactly ``latency`` seconds (asyncio.sleep) per request and returns one small PNG per image."""

    name = "sleep"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.image = png()

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        await asyncio.sleep(self.latency)
        images = [
            GeneratedImage(
                ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=1, cost=0.001),
                self.image,
            )
            for _ in range(request.effective("numberResults"))
        ]
        return Generation(request, images, self.name, self.latency)

    def generate(self, request: ImageInferenceRequest) -> Generation:
        return asyncio.run(self.agenerate(request))


class PollLog:
    """ASGI wrapper around the server: notes when each getResponse POST arrives (monotonic seconds) and, while
    ``throttle`` is above 0, answers the next getResponse POSTs with 429 and ``Retry-After: <retry_after>``
    instead of passing them on, as a rate-limited cloud does."""

    def __init__(self, app: Any, *, throttle: int = 0, retry_after: str = "1") -> None:
        self.app = app
        self.throttle = throttle
        self.retry_after = retry_after
        self.polls: list[float] = []
        self.throttled: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b"getResponse" in body:
            if self.throttle > 0:
                self.throttle -= 1
                self.throttled.append(time.monotonic())
                answer = json.dumps({"errors": [{"code": "rateLimitExceeded", "message": "slow down"}]}).encode()
                headers = [(b"content-type", b"application/json"), (b"retry-after", self.retry_after.encode())]
                await send({"type": "http.response.start", "status": 429, "headers": headers})
                await send({"type": "http.response.body", "body": answer})
                return None
            self.polls.append(time.monotonic())
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, what: str, alive: Any = None) -> None:
    """Until something accepts on 127.0.0.1:``port``; ``alive()`` False (the process died) fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited before it listened on port {port}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g}s")
