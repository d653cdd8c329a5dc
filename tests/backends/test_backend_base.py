"""The Backend base: what an engine gets for free, and the one default that must never say "no record" wrongly."""

from __future__ import annotations

import asyncio

import pytest

from kandinsky_nb import Generation, ImageInferenceRequest
from kandinsky_nb.backends.base import Backend
from kandinsky_nb.errors import PollTimeoutError


class OnlyGenerates(Backend):
    name = "only-generates"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def generate(self, request: ImageInferenceRequest) -> Generation:
        if request.positivePrompt == "fail":
            raise RuntimeError("engine fault")
        self.seen.append(request.positivePrompt)
        return Generation(request=request, images=[], engine=self.name, latency_s=0.0)


class ResumesAsync(OnlyGenerates):
    async def aresume(self, request: ImageInferenceRequest) -> Generation | None:
        await asyncio.sleep(0)
        raise PollTimeoutError("still running")


def test_the_defaults_give_async_batches_and_lifetime() -> None:
    engine = OnlyGenerates()
    requests = [ImageInferenceRequest(positivePrompt=p) for p in ("a fox", "fail", "a cat")]
    results = engine.generate_many(requests)
    assert isinstance(results[1], RuntimeError) and [type(r) for r in (results[0], results[2])] == [Generation] * 2
    assert asyncio.run(engine.agenerate(requests[0])).request is requests[0]
    assert len(asyncio.run(engine.agenerate_many(requests))) == 3
    with engine as same:
        assert same is engine
    engine.check(requests[0])  # every valid request runs by default


def test_an_engine_that_keeps_no_tasks_has_no_record() -> None:
    request = ImageInferenceRequest(positivePrompt="a fox")
    assert OnlyGenerates().resume(request) is None
    assert asyncio.run(OnlyGenerates().aresume(request)) is None


def test_sync_resume_asks_an_engine_that_only_implements_aresume() -> None:
    # A sync "no record" here would let the session send a task the engine is still running: pay twice.
    with pytest.raises(PollTimeoutError):
        ResumesAsync().resume(ImageInferenceRequest(positivePrompt="a fox"))


def test_a_backend_must_implement_generate() -> None:
    with pytest.raises(NotImplementedError, match="must implement generate"):
        Backend().generate(ImageInferenceRequest(positivePrompt="a fox"))
