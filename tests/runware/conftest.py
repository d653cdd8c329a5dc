"""Fixtures: the real server on 127.0.0.1 (real sockets), a fault-injecting proxy in front of it, and clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fault_proxy import FaultProxy
from runware_testkit import FAST, KEY
from stub_engine import StubEngine

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.server import ServerThread, create_app


@pytest.fixture
def engine() -> StubEngine:
    return StubEngine()


@pytest.fixture
def server(engine) -> Iterator[ServerThread]:
    # The every-field request names a LoRA and delivery URLs on 127.0.0.1: the operator's lists allow them (the
    # stub engine takes any LoRA name).
    app = create_app(engine, api_keys=[KEY], delivery_hosts=["127.0.0.1"], loras={"civitai:12345@1": "civitai:12345@1"})
    with ServerThread(app) as running:
        yield running


@pytest.fixture
def state(server):
    """The server's own record: bodies received, generations started per taskUUID."""
    return server.app.state.kandinsky


@pytest.fixture
def proxy(server) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as running:
        yield running


@pytest.fixture
def make_backend(proxy):
    made: list[RunwareBackend] = []

    def make(**overrides: Any) -> RunwareBackend:
        options: dict[str, Any] = {"base_url": proxy.url, "timeout": 2.0, "poll_timeout": 5.0, "retry_policy": FAST}
        options.update(overrides)
        backend = RunwareBackend(options.pop("api_key", KEY), **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
