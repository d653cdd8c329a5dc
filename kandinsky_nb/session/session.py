"""The Session: an engine, the run log and a budget. The one place that logs runs.

Every run goes: validate (nothing sent or spent on a bad request) -> reserve its estimated cost -> write the
``submitted`` row (taskUUID and exact request, so a crash is recoverable) -> send -> write ``ok`` rows with the
images, or a ``failed`` row with the error, then re-raise -> settle the budget with the real cost.

Sync methods use the engine's sync methods and async ones its async methods, so ``session.generate`` works inside a
running Jupyter event loop (it never calls ``asyncio.run`` there) and ``await session.agenerate`` never blocks it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend
from ..errors import APIConnectionError, PollTimeoutError, RunLogError
from ..runlog import RunLog
from ..runlog.store import UNANSWERED
from ..types import Generation, ImageInferenceRequest
from .budget import Budget, Reservation
from .engines import open_backend
from .pricing import LinearModel, fit_linear, list_price, megapixel_steps

if TYPE_CHECKING:
    from .sweep import SweepPlan

__all__ = ["Estimate", "Session"]

DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class Estimate:
    """What a request or a sweep will take: images, USD (and where the figure comes from), seconds if known."""

    images: int
    cost_usd: float
    cost_source: str
    seconds: float | None = None
    requests: int = 1

    def __str__(self) -> str:
        time_part = f", about {self.seconds:.0f} s" if self.seconds is not None else ""
        return (
            f"{self.requests} request(s), {self.images} image(s), ${self.cost_usd:.4f} ({self.cost_source}){time_part}"
        )


@dataclass
class _Attempt:
    request: ImageInferenceRequest
    reservation: Reservation
    started: float
    sweep_id: str | None
    sweep_cell: str | None


class Session:
    """An engine, a run log and a budget.

    ``engine``: ``None`` (from the environment: ``RUNWARE_API_KEY`` -> ``"runware"``, else ``KANDINSKY_NB_WEIGHTS``
    -> ``"local"``, else ``"demo"``; ``KANDINSKY_NB_ENGINE`` forces one), a name, or a Backend instance.
    ``home``: the folder of the run log and images (default ``$KANDINSKY_NB_HOME``, else ``~/.kandinsky_nb``).
    ``budget``: a spending cap in USD for this session (``None``: no cap, cost still counted).
    ``concurrency``: default number of requests in flight for sweeps (4; 1 on the local engine, which runs one
    pipeline call at a time).
    """

    def __init__(
        self,
        engine: str | Backend | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        budget: float | None = None,
        api_key: Any = None,
        base_url: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.backend: Backend = open_backend(engine, home=home, api_key=api_key, base_url=base_url)
        try:
            self.runs = RunLog(home)
        except BaseException:
            if engine is None or isinstance(engine, str):  # we opened it, so we close it
                self.backend.close()
            raise
        if concurrency is None:
            # A local engine runs one pipeline call at a time: more in flight only queues (and inflates latency).
            concurrency = 1 if self.backend.name == "local" else DEFAULT_CONCURRENCY
        self.budget = Budget(budget)
        self.concurrency = concurrency
        self._models: dict[str, LinearModel] = {}
        self._models_rows = -1
        self._models_lock = threading.Lock()

    # -- facts --------------------------------------------------------------------------------------------------
    @property
    def engine(self) -> str:
        return self.backend.name

    @property
    def demo(self) -> bool:
        return bool(getattr(self.backend, "demo", False))

    def __repr__(self) -> str:
        demo = ", demo weights: images are noise" if self.demo else ""
        cap = f"${self.budget.cap:.4f}" if self.budget.cap is not None else "none"
        return f"Session(engine={self.engine!r}{demo}, home={str(self.runs.home)!r}, spent=${self.budget.spent:.4f}, cap={cap})"

    # -- requests -----------------------------------------------------------------------------------------------
    @staticmethod
    def build_request(
        prompt: str | None = None, *, request: ImageInferenceRequest | None = None, **fields: Any
    ) -> ImageInferenceRequest:
        """A validated request from a prompt and wire fields, or from ``request`` with fields replaced."""
        if prompt is not None:
            fields["positivePrompt"] = prompt
        if request is not None:
            return request.replace(**fields) if fields else request
        return ImageInferenceRequest(**fields)

    def check(self, request: ImageInferenceRequest) -> None:
        """Raise UnsupportedByEngineError now if this engine would refuse the request (nothing is sent)."""
        checker = getattr(self.backend, "check", None)  # engines that can refuse valid requests (local) say so
        if callable(checker):
            checker(request)

    # -- cost and time --------------------------------------------------------------------------------------------
    def _fitted(self) -> dict[str, LinearModel]:
        """Cost and latency models fitted to this engine's logged runs (refitted when the log has grown)."""
        with self._models_lock:
            count = len(self.runs)
            # Refit when the log has grown by a tenth (or first use): estimates stay current without a query per run.
            if self._models_rows < 0 or count >= self._models_rows * 1.1 + 10:
                rows = self.runs.rows(
                    "status = 'ok' AND engine = ? AND demo = ?", (self.engine, int(self.demo)), limit=None
                )
                xs = [megapixel_steps(r["width"], r["height"], r["steps"]) for r in rows]
                costed = [(x, r["cost_usd"]) for x, r in zip(xs, rows, strict=True) if r["cost_usd"] is not None]
                self._models = {
                    "cost": fit_linear([c[0] for c in costed], [c[1] for c in costed]),
                    "latency": fit_linear(
                        xs,
                        [r["latency_s"] / max(r["number_results"], 1) for r in rows],
                        what="latency_s",
                    ),
                }
                self._models_rows = count
            return self._models

    def cost_model(self) -> LinearModel | None:
        """The fitted cost model for this engine when the log has enough costed runs, else None (list price)."""
        model = self._fitted()["cost"]
        return model if model.usable else None

    def price(self, request: ImageInferenceRequest) -> tuple[float, str]:
        """Estimated USD for one request and where the figure comes from."""
        model = self.cost_model()
        if model is not None:
            return model.predict_request(request), f"fitted to {model.points} logged {self.engine} runs"
        return list_price(request), "list price"

    def seconds(self, request: ImageInferenceRequest) -> float | None:
        model = self._fitted()["latency"]
        return model.predict_request(request) if model.usable else None

    def estimate(self, what: ImageInferenceRequest | SweepPlan | None = None, /, **fields: Any) -> Any:
        """Images, cost and time of a request (or of fields for one), or of a sweep plan (its ``estimate()``)."""
        from .sweep import SweepPlan

        if isinstance(what, SweepPlan):
            return what.estimate()
        request = what if isinstance(what, ImageInferenceRequest) else self.build_request(**fields)
        cost, source = self.price(request)
        return Estimate(request.effective("numberResults"), cost, source, self.seconds(request))

    # -- the run lifecycle (shared by the sync and async twins) ----------------------------------------------------
    def _begin(
        self, request: ImageInferenceRequest, sweep_id: str | None, sweep_cell: str | None, *, reserve: bool = True
    ) -> _Attempt:
        self.check(request)
        cost, _ = self.price(request)
        reservation = self.budget.reserve(cost, "this request") if reserve else Reservation(0.0)
        try:
            self.runs.record_submitted(
                request, engine=self.engine, demo=self.demo, sweep_id=sweep_id, sweep_cell=sweep_cell
            )
        except BaseException:
            self.budget.release(reservation)
            raise
        return _Attempt(request, reservation, time.perf_counter(), sweep_id, sweep_cell)

    def _succeed(self, attempt: _Attempt, generation: Generation) -> Generation:
        self.budget.settle(attempt.reservation, generation.cost)
        self.runs.record_generation(generation, sweep_id=attempt.sweep_id, sweep_cell=attempt.sweep_cell)
        return generation

    def _fail(self, attempt: _Attempt, error: BaseException) -> None:
        if isinstance(error, Exception):
            # A refused request is not billed. Without an answer (a dropped connection, a poll timeout) it may have
            # run: the hold stays counted as spent (the cap errs on the safe side) and the row says "unanswered", so
            # a resume looks the task up by its taskUUID instead of paying for it again.
            unanswered = isinstance(error, APIConnectionError | PollTimeoutError)
            self.budget.settle(attempt.reservation, None if unanswered else 0.0)
            self.runs.record_failure(
                attempt.request,
                error,
                engine=self.engine,
                demo=self.demo,
                latency_s=time.perf_counter() - attempt.started,
                sweep_id=attempt.sweep_id,
                sweep_cell=attempt.sweep_cell,
                unanswered=unanswered,
            )
        else:  # cancelled (CancelledError, KeyboardInterrupt): the answer may still come; a resume looks it up
            self.budget.settle(attempt.reservation, None)
            self.runs.record_cancelled(attempt.request.taskUUID)

    # -- generate -----------------------------------------------------------------------------------------------
    def generate(
        self, prompt: str | None = None, *, request: ImageInferenceRequest | None = None, **fields: Any
    ) -> Generation:
        """Run one request on the engine and log it. Raises the engine's error after logging it as failed."""
        return self.run_request(self.build_request(prompt, request=request, **fields))

    async def agenerate(
        self, prompt: str | None = None, *, request: ImageInferenceRequest | None = None, **fields: Any
    ) -> Generation:
        """The async twin of :meth:`generate`."""
        return await self.arun_request(self.build_request(prompt, request=request, **fields))

    def run_request(
        self, request: ImageInferenceRequest, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> Generation:
        attempt = self._begin(request, sweep_id, sweep_cell)
        try:
            generation = self.backend.generate(request)
        except BaseException as error:
            self._fail(attempt, error)
            raise
        return self._succeed(attempt, generation)

    async def arun_request(
        self, request: ImageInferenceRequest, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> Generation:
        attempt = self._begin(request, sweep_id, sweep_cell)
        try:
            generation = await self.backend.agenerate(request)
        except BaseException as error:
            self._fail(attempt, error)
            raise
        return self._succeed(attempt, generation)

    # -- batches ------------------------------------------------------------------------------------------------
    def _begin_many(
        self, items: list[tuple[ImageInferenceRequest, str | None, str | None]]
    ) -> tuple[list[Any], list[tuple[int, _Attempt]]]:
        outcomes: list[Any] = [None] * len(items)
        attempts: list[tuple[int, _Attempt]] = []
        for index, (request, sweep_id, sweep_cell) in enumerate(items):
            try:
                attempts.append((index, self._begin(request, sweep_id, sweep_cell)))
            except Exception as error:  # refused before sending (budget, engine check): that slot only
                outcomes[index] = error
        return outcomes, attempts

    def _finish_many(self, outcomes: list[Any], attempts: list[tuple[int, _Attempt]], results: list[Any]) -> list[Any]:
        for (index, attempt), result in zip(attempts, results, strict=True):
            if isinstance(result, Generation):
                outcomes[index] = self._succeed(attempt, result)
            else:
                self._fail(attempt, result)
                outcomes[index] = result
        return outcomes

    def run_requests(
        self, items: list[tuple[ImageInferenceRequest, str | None, str | None]]
    ) -> list[Generation | Exception]:
        """Run ``(request, sweep_id, sweep_cell)`` items as ONE batch when the engine batches (``generate_many``:
        one POST to Runware), else one after another. Each slot holds its Generation or its error (logged); an
        error that fails the whole batch (no answer at all) is logged for every request and raised."""
        outcomes, attempts = self._begin_many(items)
        many = getattr(self.backend, "generate_many", None)
        requests = [attempt.request for _, attempt in attempts]
        results: list[Any] = []
        try:
            if callable(many) and len(requests) > 1:
                results = list(many(requests))
            else:
                for request in requests:
                    try:
                        results.append(self.backend.generate(request))
                    except Exception as error:
                        results.append(error)
        except BaseException as error:
            done = len(results)  # the answers that came before the failure are logged as they are
            self._finish_many(outcomes, attempts[:done], results)
            for _, attempt in attempts[done:]:
                self._fail(attempt, error)
            raise
        return self._finish_many(outcomes, attempts, results)

    async def arun_requests(
        self, items: list[tuple[ImageInferenceRequest, str | None, str | None]]
    ) -> list[Generation | Exception]:
        """The async twin of :meth:`run_requests` (``agenerate_many``)."""
        outcomes, attempts = self._begin_many(items)
        many = getattr(self.backend, "agenerate_many", None)
        requests = [attempt.request for _, attempt in attempts]
        results: list[Any] = []
        try:
            if callable(many) and len(requests) > 1:
                results = list(await many(requests))
            else:
                for request in requests:
                    try:
                        results.append(await self.backend.agenerate(request))
                    except Exception as error:
                        results.append(error)
        except BaseException as error:
            done = len(results)  # the answers that came before the failure are logged as they are
            self._finish_many(outcomes, attempts[:done], results)
            for _, attempt in attempts[done:]:
                self._fail(attempt, error)
            raise
        return self._finish_many(outcomes, attempts, results)

    def generate_many(self, requests: list[ImageInferenceRequest]) -> list[Generation | Exception]:
        """Run several requests as one batch where the engine batches; each slot holds its Generation or error."""
        return self.run_requests([(request, None, None) for request in requests])

    async def agenerate_many(self, requests: list[ImageInferenceRequest]) -> list[Generation | Exception]:
        """The async twin of :meth:`generate_many`."""
        return await self.arun_requests([(request, None, None) for request in requests])

    # -- resume -------------------------------------------------------------------------------------------------
    def _recovered(self, found: Generation, sweep_id: str | None, sweep_cell: str | None) -> Generation:
        # Paid for when it was first sent (perhaps by another process): counted as spent, never reserved again.
        self.budget.settle(Reservation(0.0), found.cost)
        self.runs.record_generation(found, sweep_id=sweep_id, sweep_cell=sweep_cell)
        return found

    async def arecover(
        self, request: ImageInferenceRequest, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> Generation | None:
        """Look a request that was sent earlier but never answered in the log up by its taskUUID, without sending
        it again. Logs and returns what the engine has, or None when it has no record (then it is safe to send).
        Raises PollTimeoutError when the engine has the task but it is still running (the run stays unanswered)."""
        try:
            found = await self.backend.aresume(request)
        except PollTimeoutError:
            raise  # the engine has the task and it is still running: sending it again would pay twice
        except Exception:
            return None  # the lookup itself failed: the caller decides whether to send again
        return None if found is None else self._recovered(found, sweep_id, sweep_cell)

    def recover(
        self, request: ImageInferenceRequest, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> Generation | None:
        """The sync twin of :meth:`arecover`. Engines look tasks up asynchronously, so unless the engine has a sync
        ``resume``, the lookup runs on a private event loop in a worker thread, never on a running (Jupyter) loop."""
        resume = getattr(self.backend, "resume", None)
        try:
            found = resume(request) if callable(resume) else _run_in_thread(self.backend.aresume(request))
        except PollTimeoutError:
            raise  # still running on the engine: never send it again
        except Exception:
            return None
        return None if found is None else self._recovered(found, sweep_id, sweep_cell)

    async def aresume_request(
        self, request: ImageInferenceRequest, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> Generation:
        """Recover a request by its taskUUID, or send it (same taskUUID) when the engine has no record of it."""
        found = await self.arecover(request, sweep_id=sweep_id, sweep_cell=sweep_cell)
        return found or await self.arun_request(request, sweep_id=sweep_id, sweep_cell=sweep_cell)

    def resume_request(
        self, request: ImageInferenceRequest, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> Generation:
        """The sync twin of :meth:`aresume_request`."""
        found = self.recover(request, sweep_id=sweep_id, sweep_cell=sweep_cell)
        return found or self.run_request(request, sweep_id=sweep_id, sweep_cell=sweep_cell)

    def _unanswered(self, task_uuid: str) -> tuple[ImageInferenceRequest, str | None, str | None]:
        rows = self.runs.get(task_uuid)
        if not rows:
            raise RunLogError(f"no run with taskUUID {task_uuid!r} in {self.runs.path}; check the id (runs list)")
        status = rows[0]["status"]
        if status not in UNANSWERED:
            raise RunLogError(
                f"run {task_uuid!r} is already {status!r} in the log; nothing to resume "
                "(generate(request=...) runs it again as a new task)"
            )
        request = ImageInferenceRequest.model_validate_json(rows[0]["request_json"])
        return request, rows[0]["sweep_id"], rows[0]["sweep_cell"]

    def resume(self, task_uuid: str) -> Generation:
        """Finish a logged request that never got its answer (a crash, a cancel, a poll timeout): fetch it by its
        taskUUID, or send it again with that taskUUID when the engine has no record of it."""
        request, sweep_id, sweep_cell = self._unanswered(task_uuid)
        return self.resume_request(request, sweep_id=sweep_id, sweep_cell=sweep_cell)

    async def aresume(self, task_uuid: str) -> Generation:
        """The async twin of :meth:`resume`."""
        request, sweep_id, sweep_cell = self._unanswered(task_uuid)
        return await self.aresume_request(request, sweep_id=sweep_id, sweep_cell=sweep_cell)

    # -- sweeps -------------------------------------------------------------------------------------------------
    def sweep(
        self,
        prompt: str | list[str] | None = None,
        *,
        name: str | None = None,
        request: ImageInferenceRequest | None = None,
        **axes: Any,
    ) -> SweepPlan:
        """Plan a sweep: a base request (``prompt``, or a list of prompts as an axis; ``request``) and axes over its
        fields, each a list or an
        A1111-style range string (``steps="10-50 (+10)"``, ``CFGScale="3,5,7"``, ``scheduler="Euler,UniPC"``,
        ``size=["1280x768", "1K (1:1)"]``). Scalars fix a field for every cell. Every cell is validated now."""
        from .sweep import plan_sweep

        return plan_sweep(self, prompt, name=name, request=request, axes=axes)

    # -- closing ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.backend.close()
        self.runs.close()

    async def aclose(self) -> None:
        await self.backend.aclose()
        self.runs.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _run_in_thread(coroutine: Any) -> Any:
    """Run a coroutine to completion on a fresh event loop in another thread (safe under a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="kandinsky-nb-resume")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
