"""The engine protocol every backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..types import Generation, ImageInferenceRequest


@runtime_checkable
class Backend(Protocol):
    """An engine that turns a validated request into a :class:`Generation`.

    ``generate`` and ``agenerate`` are twins that differ only by ``await``. ``aresume`` looks up a task that was
    submitted earlier (by its ``taskUUID``) without submitting it again; it returns None when the engine has no
    record of it, so the caller may safely submit. Engines raise the toolkit's errors, never log, and never print.
    """

    name: str
    demo: bool

    def generate(self, request: ImageInferenceRequest) -> Generation: ...

    async def agenerate(self, request: ImageInferenceRequest) -> Generation: ...

    async def aresume(self, request: ImageInferenceRequest) -> Generation | None: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
