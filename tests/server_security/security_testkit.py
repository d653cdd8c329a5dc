"""What the server-security tests share: a recording engine, hostile-input builders, loopback receivers that record
whether the server ever called them, a handler for the server's log, and the real `kandinsky-nb serve` process."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from PIL import Image

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.server import ServerThread
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

KEY_A = "key-A-3f9d0c2e7b1a4c58"
KEY_B = "key-B-8e2b6a1d9c4f7e03"
MODEL = "runware:kandinsky-5.0-image-lite@1"


class RecordingEngine(Backend):
    """Makes one 16x16 PNG per image and keeps every request it was given (so a test sees what reached it)."""

    name = "recording"

    def __init__(self) -> None:
        self.requests: list[ImageInferenceRequest] = []

    def generate(self, request: ImageInferenceRequest) -> Generation:
        self.requests.append(request)
        images = []
        for index in range(request.effective("numberResults")):
            result = ImageInferenceResult(
                taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=index, cost=0.001, NSFWContent=False
            )
            images.append(GeneratedImage(result=result, data=png(16, 16)))
        return Generation(request, images, self.name, 0.0)

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        return self.generate(request)


def png(width: int, height: int, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def task(**fields: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": MODEL,
        "positivePrompt": "a red fox in snow",
        **fields,
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Receiver:
    """A loopback HTTP server that records every call (method, path, body) and answers ``status``."""

    def __init__(self, host: str = "127.0.0.1", status: int = 200, body: bytes = b"") -> None:
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        self.calls: list[tuple[str, str, bytes]] = []

        async def record(request):
            self.calls.append((request.method, request.url.path, await request.body()))
            return Response(body, status_code=status)

        self.thread = ServerThread(
            Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST", "PUT"])]), host
        )

    @property
    def url(self) -> str:
        return self.thread.url

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.stop()


class LogRecords(logging.Handler):
    """Every record the server's loggers emit while attached (uvicorn's error log does not reach pytest's caplog)."""

    NAMES = ("kandinsky_nb", "uvicorn", "uvicorn.error", "starlette")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.exc_info or r.exc_text]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeProcess:
    """`kandinsky-nb serve` as an operator starts it, in its own process; ``output()`` is all it printed."""

    def __init__(self, weights: str, home: str, keys: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "KANDINSKY_NB_SERVER_KEYS": keys, "KANDINSKY_NB_HOME": home}
        command = [sys.executable, "-m", "kandinsky_nb", "serve", "--port", str(self.port), "--weights", weights]
        self._log = open(os.path.join(home, "serve.log"), "w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(self.url + "/", timeout=5)
                return
            except httpx.TransportError:
                assert self.process.poll() is None, "kandinsky-nb serve exited:\n" + self.output()
                assert time.monotonic() < deadline, "kandinsky-nb serve did not start:\n" + self.output()
                time.sleep(0.2)

    def output(self) -> str:
        self._log.flush()
        with open(self._log.name) as log:
            return log.read()

    def peak_memory_kib(self) -> int:
        """The process's peak resident memory so far (VmHWM), in KiB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/PID/status")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextmanager
def serve_process(weights: str, home: str, keys: str = f"{KEY_A},{KEY_B}") -> Iterator[ServeProcess]:
    process = ServeProcess(weights, home, keys)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
