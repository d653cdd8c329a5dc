"""A misbehaving Runware-speaking server on 127.0.0.1, and hostile images made on the spot.

:class:`HostileServer` answers every request with what its ``answer`` function returns, as raw bytes: it can echo the
key in JSON escapes, send a PNG signature followed by garbage, or a decompression bomb, which no well-behaved server
(and so not ``kandinsky-nb serve``) does. It records what it received, so a test can tell that nothing was sent.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return json.loads(self.body) if self.body else []


# (status, content type, body) for one request
Answer = tuple[int, str, bytes]


class HostileServer:
    def __init__(self, answer: Callable[[Received], Answer]) -> None:
        self.answer = answer
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
                server.received.append(request)
                status, content_type, body = server.answer(request)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def json_answer(payload: Any, status: int = 200) -> Answer:
    return status, "application/json", json.dumps(payload).encode()


def result_item(task: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": task["taskUUID"],
        "imageUUID": f"img-{task['taskUUID']}",
        **fields,
    }


# -- hostile images ------------------------------------------------------------------------------------------------
def png_bytes(width: int = 16, height: int = 16, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _ihdr(width: int, height: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))  # 8-bit greyscale


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels, and no pixel data at all."""
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height) + _chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A complete, valid PNG of ``width`` x ``height`` black pixels: a few KB that decode to width*height bytes."""
    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    compressed = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + _ihdr(width, height) + _chunk(b"IDAT", compressed) + _chunk(b"IEND", b"")


def png_signature_then_garbage(size: int = 4000) -> bytes:
    """Starts like a PNG (the magic bytes a sniffer looks at) and is garbage after."""
    return b"\x89PNG\r\n\x1a\n" + bytes((i * 7919 + 13) % 251 for i in range(size))


def truncated_png() -> bytes:
    """A real PNG's header and half of its pixel data."""
    data = png_bytes(64, 64)
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), bytes((i * 31) % 256 for i in range(64 * 64 * 3))).save(noisy, format="PNG")
    whole = noisy.getvalue()
    assert len(data) > 0
    return whole[: len(whole) // 2]
