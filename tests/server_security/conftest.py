"""Hostile clients against `kandinsky-nb serve`: the app on 127.0.0.1 (real sockets) in this process, or the real
command in its own process (fixtures over :mod:`security_testkit`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from security_testkit import LogRecords, RecordingEngine, ServeProcess, serve_process

from kandinsky_nb.server import ServerThread, create_app


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def serve(engine):
    """``serve(**create_app options)``: the app on 127.0.0.1 with the recording engine, stopped after the test."""
    running: list[ServerThread] = []

    def start(**options: Any) -> ServerThread:
        server = ServerThread(create_app(options.pop("backend", engine), **options)).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def server_log() -> Iterator[LogRecords]:
    handler = LogRecords()
    for name in LogRecords.NAMES:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in LogRecords.NAMES:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture(scope="module")
def real_serve(demo_weights, tmp_path_factory) -> Iterator[ServeProcess]:
    """One real `kandinsky-nb serve` on the demo weights for a test module, keyed with KEY_A and KEY_B."""
    pytest.importorskip("uvicorn", reason="needs the 'server' extra")
    with serve_process(str(demo_weights), str(tmp_path_factory.mktemp("serve-home"))) as process:
        yield process
