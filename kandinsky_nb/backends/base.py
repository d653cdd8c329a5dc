"""The base every engine derives from: one required method, sensible defaults for the rest.

As httpx's ``BaseTransport`` does, the base class spells out the whole contract and gives every optional part a
default, so callers never probe an engine with ``getattr`` and fakes implement only what they change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..types import Generation, ImageInferenceRequest

#: ``on_step(step, total, preview)``: ``step`` denoising steps of ``total`` are done, counted over every image of the
#: request; ``preview`` is a small PIL RGB image of the image forming (every few steps), else None. It is called on the
#: thread that generates (a worker thread under ``agenerate``); an exception it raises stops the run.
StepCallback = Callable[[int, int, Any], None]


class Backend:
    """An engine that turns a validated request into a :class:`Generation`.

    Subclasses implement :meth:`generate` (and :meth:`agenerate` when they have a native async path). Sync and async
    methods are twins that differ only by ``await``. Engines raise the toolkit's errors, never log, never print.
    """

    #: short engine name recorded with every run ("runware", "local", ...)
    name: str = "backend"
    #: True when the engine's images are noise from random demo weights (every surface that shows them says so)
    demo: bool = False

    # -- checks -------------------------------------------------------------------------------------------------
    def check(self, request: ImageInferenceRequest) -> None:
        """Raise UnsupportedByEngineError if this engine would refuse a valid request. Default: it runs them all."""

    # -- one request --------------------------------------------------------------------------------------------
    def generate(self, request: ImageInferenceRequest) -> Generation:
        raise NotImplementedError(f"{type(self).__name__} must implement generate()")

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        """Default: the sync method in a worker thread, so an event loop (Jupyter's) is never blocked."""
        return await asyncio.to_thread(self.generate, request)

    # -- one request, step by step ------------------------------------------------------------------------------
    def generate_with_progress(self, request: ImageInferenceRequest, on_step: StepCallback | None) -> Generation:
        """:meth:`generate`, calling ``on_step`` after each denoising step. Default: the engine cannot report steps
        (a cloud task is one answer), so it generates and never calls ``on_step``; callers need not ask which."""
        return self.generate(request)

    async def agenerate_with_progress(self, request: ImageInferenceRequest, on_step: StepCallback | None) -> Generation:
        return await self.agenerate(request)

    # -- several requests -------------------------------------------------------------------------------------
    def generate_many(self, requests: Sequence[ImageInferenceRequest]) -> list[Generation | Exception]:
        """Each slot holds its Generation or its error. Default: one request after another; engines that batch
        (Runware: one POST) override it. An error that fails the whole batch is raised, not returned."""
        results: list[Generation | Exception] = []
        for request in requests:
            try:
                results.append(self.generate(request))
            except Exception as error:
                results.append(error)
        return results

    async def agenerate_many(self, requests: Sequence[ImageInferenceRequest]) -> list[Generation | Exception]:
        results: list[Generation | Exception] = []
        for request in requests:
            try:
                results.append(await self.agenerate(request))
            except Exception as error:
                results.append(error)
        return results

    # -- resume -------------------------------------------------------------------------------------------------
    def resume(self, request: ImageInferenceRequest) -> Generation | None:
        """Look up a task submitted earlier (by its ``taskUUID``) without submitting it again. None means the engine
        has no record of it, so sending it is safe; PollTimeoutError means it is still running (never resend).
        Default: an engine that implements only :meth:`aresume` is asked through it (on a private event loop in a
        worker thread, never on Jupyter's running loop); an engine that implements neither keeps no tasks (a local
        pipeline) and so has no record of anything."""
        if type(self).aresume is not Backend.aresume:
            # Answering "no record" here would let the caller send a task the engine may still be running.
            with ThreadPoolExecutor(max_workers=1) as worker:
                return worker.submit(asyncio.run, self.aresume(request)).result()
        return None

    async def aresume(self, request: ImageInferenceRequest) -> Generation | None:
        return self.resume(request)

    # -- lifetime -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release connections, pipelines and memory. Default: nothing to release."""

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
