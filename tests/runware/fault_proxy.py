"""A fault-injecting HTTP proxy on 127.0.0.1, in front of the real server.

It speaks plain HTTP/1.1 over asyncio sockets (so it can do what no well-behaved server does: close a connection
without answering, answer slowly, send broken JSON) and forwards everything else to the upstream server unchanged.
Faults are scripted in order; each applies to the next request it matches.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import httpx

FaultKind = Literal["status", "drop", "drop_after", "slow", "delay", "malformed", "rewrite"]


@dataclass
class Fault:
    """One scripted fault.

    * ``status``      answer ``status`` with ``body`` without forwarding (the server never sees the request)
    * ``drop``        close the connection without forwarding or answering
    * ``drop_after``  forward (the server does the work), then close without answering
    * ``slow``        forward, then wait ``delay`` seconds before answering
    * ``delay``       wait ``delay`` seconds, then forward and answer (latency injection)
    * ``malformed``   forward, then answer 200 with a body that is not JSON
    * ``rewrite``     forward, then answer with ``rewrite(json_body)`` (same status unless ``status`` is given)

    ``task_type`` limits the fault to bodies holding a task of that type; ``path`` to requests whose path starts
    with it (default ``/v1``); ``times`` repeats it.
    """

    kind: FaultKind
    status: int | None = None
    body: Any = None
    delay: float = 0.0
    rewrite: Callable[[Any], Any] | None = None
    task_type: str | None = None
    path: str = "/v1"
    times: int = 1

    def matches(self, path: str, body: bytes) -> bool:
        if not path.startswith(self.path):
            return False
        if self.task_type is None:
            return True
        try:
            tasks = json.loads(body)
        except ValueError:
            return False
        return any(isinstance(t, dict) and t.get("taskType") == self.task_type for t in tasks)


@dataclass
class Seen:
    path: str
    body: bytes
    fault: str


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.script: list[Fault] = []
        self.seen: list[Seen] = []
        self.latency = 0.0  # added before every forwarded request (benchmarks)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: Fault) -> FaultProxy:
        with self._lock:
            self.script.extend(faults)
        return self

    def faults_used(self) -> list[str]:
        return [s.fault for s in self.seen if s.fault != "pass"]

    def _take(self, path: str, body: bytes) -> Fault | None:
        with self._lock:
            for fault in self.script:
                if fault.matches(path, body):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.script.remove(fault)
                    return fault
        return None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._connections: set[asyncio.StreamWriter] = set()
        async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as client:
            self._client = client
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await self._stop.wait()
                for writer in list(self._connections):
                    writer.close()

    # -- one connection --------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if ":" in line]
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length) if length else b""
                fault = self._take(target, body) if method == "POST" or target.startswith("/images") else None
                self.seen.append(Seen(target, body, fault.kind if fault else "pass"))
                if not await self._answer(fault, method, target, headers, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _forward(self, method: str, target: str, headers: list[Any], body: bytes) -> httpx.Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        # The Host header is kept: the server builds image URLs from it, so they point back through the proxy.
        skip = {"content-length", "connection", "transfer-encoding", "accept-encoding"}
        kept = [(k, v) for k, v in headers if k.lower() not in skip]
        return await self._client.request(method, target, headers=kept, content=body)

    async def _answer(
        self, fault: Fault | None, method: str, target: str, headers: list[Any], body: bytes, writer
    ) -> bool:
        if fault is None:
            response = await self._forward(method, target, headers, body)
            return await _write(writer, response.status_code, response.content, response.headers.get("content-type"))
        if fault.kind == "status":
            status = fault.status or 500
            payload = fault.body
            if payload is None:
                payload = {"errors": [{"code": "serviceUnavailable", "message": f"injected {status}"}]}
            content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            content_type = "text/html" if isinstance(payload, bytes) else "application/json"
            return await _write(writer, status, content, content_type)
        if fault.kind == "drop":
            return False
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            response = await self._forward(method, target, headers, body)
            return await _write(writer, response.status_code, response.content, response.headers.get("content-type"))
        response = await self._forward(method, target, headers, body)
        if fault.kind == "drop_after":
            return False
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return await _write(writer, response.status_code, response.content, response.headers.get("content-type"))
        if fault.kind == "malformed":
            return await _write(writer, 200, b'{"data": [{"taskType": "imageInf', "application/json")
        assert fault.kind == "rewrite" and fault.rewrite is not None
        rewritten = json.dumps(fault.rewrite(response.json())).encode()
        return await _write(writer, fault.status or response.status_code, rewritten, "application/json")


async def _write(writer: asyncio.StreamWriter, status: int, content: bytes, content_type: str | None) -> bool:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(content)}\r\nConnection: keep-alive\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    try:
        writer.write(head.encode("latin-1") + b"\r\n" + content)
        await writer.drain()
    except ConnectionError:
        return False
    return True
