"""Run the server inside this process on a background thread (notebooks, tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from ..errors import KandinskyNBError

__all__ = ["ServerThread"]


class ServerThread:
    """uvicorn serving ``app`` on ``host:port`` (port 0: a free port) in a daemon thread, with real sockets.

    >>> with ServerThread(create_app(backend)) as server:  # doctest: +SKIP
    ...     RunwareBackend("any-key", base_url=server.url).generate(request)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> None:
        import uvicorn

        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this. Without it, a socket handed to uvicorn keeps Nagle's algorithm and every
        # answer waits ~40 ms for the client's delayed ACK (uvicorn sets it only on sockets it binds itself).
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise KandinskyNBError(
                    f"The server on {self.url} did not start within {timeout:g}s. See the log above for why (the "
                    "app failed to load?), or pass a longer start(timeout=)."
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
