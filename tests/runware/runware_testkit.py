"""What the Runware tests share: the test key, a fast retry policy, and the sync/async caller."""

from __future__ import annotations

import asyncio
from typing import Any

from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.protocol import RetryPolicy

# Distinctive, so a leak anywhere is found by a plain substring search.
KEY = "rw-test-KEY-7f3a9c1e-never-log-me"

# Real backoff shape, test-sized waits.
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05, poll_initial=0.05, poll_max=0.2)

MODES = ["sync", "async"]


def call(backend: RunwareBackend, mode: str, method: str, *args: Any) -> Any:
    """Call ``backend.<method>`` (sync) or ``backend.a<method>`` (async, in a fresh event loop that is closed after)."""
    if mode == "sync":
        return getattr(backend, method)(*args)

    async def run() -> Any:
        try:
            return await getattr(backend, "a" + method)(*args)
        finally:
            await backend.aclose()

    return asyncio.run(run())
