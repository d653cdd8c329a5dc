"""The Session: an engine, the run log and a budget. The one place that logs runs.

Every run goes: validate (nothing sent or spent on a bad request) -> reserve its estimated cost -> write the
``submitted`` row (taskUUID and exact request, so a crash is recoverable) -> send -> write ``ok`` rows with the
images, or a ``failed`` row with the error, then re-raise -> settle the budget with the real cost.

One resume story: :meth:`Session.resume` takes a taskUUID (or the request) of a run the log holds as unanswered, looks
it up on the engine by its taskUUID and logs what the engine has; only when the engine has no record of it is it sent
again, with the same taskUUID. A task still running is never sent again.

Sync methods use the engine's sync methods and async ones its async methods, so ``session.generate`` works inside a
running Jupyter event loop (it never calls ``asyncio.run`` there) and ``await session.agenerate`` never blocks it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import settings
from ..backends.base import Backend, StepCallback
from ..errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    KandinskyNBError,
    PollTimeoutError,
    RunLogError,
    TaskError,
    UnusableCostError,
)
from ..planning import (
    MAX_CELLS,
    CellRef,
    CostModel,
    Estimate,
    SweepEstimate,
    build_request,
    check_count,
    design_sweep,
)
from ..planning.pricing import work_units
from ..runlog import RunLog
from ..runlog.store import UNANSWERED
from ..types import Generation, ImageInferenceRequest
from .budget import Budget, Reservation, is_cost
from .engines import open_backend
from .plan import SweepPlan

__all__ = ["Session", "UnusableCostError"]

DEFAULT_CONCURRENCY = 4


def _unusable_cost(generation: Generation) -> UnusableCostError | None:
    """The refusal of an answer whose images' costs cannot be counted, or None when every cost is usable."""
    bad = [image.cost for image in generation.images if image.cost is not None and not is_cost(image.cost)]
    if not bad:
        return None
    return UnusableCostError(
        f"the {generation.engine} engine answered taskUUID {generation.task_uuid} with cost={bad[0]!r}; a cost must "
        "be a finite number of USD of at least 0. The answer is logged as failed and its cost is not counted (its "
        "hold stays counted as spent); check the engine's pricing before running more.",
        task_uuid=generation.task_uuid,
    )


@dataclass
class _Attempt:
    request: ImageInferenceRequest
    reservation: Reservation
    started: float
    cell: CellRef | None


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
        if concurrency is not None:
            check_count("concurrency", concurrency)  # None: the engine's default
        self.budget = Budget(budget)  # checked first: a bad cap opens nothing
        try:
            home = settings.home_dir(home)  # created now: a folder that cannot be made opens nothing either
        except OSError as exc:
            raise ConfigurationError(
                f"home={str(home)!r} cannot be used as the run-log folder ({exc.strerror or exc}); give a folder you "
                "can create and write (home=, or $KANDINSKY_NB_HOME)"
            ) from exc
        self.backend: Backend = open_backend(
            engine, home=home, api_key=api_key, base_url=base_url, expected_latency=self._expected_seconds
        )
        try:
            self.runs = RunLog(home)
        except BaseException:
            if engine is None or isinstance(engine, str):  # we opened it, so we close it
                self.backend.close()
            raise
        if concurrency is None:
            # A local engine runs one pipeline call at a time: more in flight only queues (and inflates latency).
            concurrency = 1 if self.backend.name == "local" else DEFAULT_CONCURRENCY
        self.concurrency = concurrency
        self._cost_model = CostModel(fitted_to=self.engine)
        self._cost_model_rows = -1
        self._cost_model_lock = threading.Lock()

    # -- facts --------------------------------------------------------------------------------------------------
    @property
    def engine(self) -> str:
        return self.backend.name

    @property
    def demo(self) -> bool:
        return self.backend.demo

    def __repr__(self) -> str:
        demo = ", demo weights: images are noise" if self.demo else ""
        cap = f"${self.budget.cap:.4f}" if self.budget.cap is not None else "none"
        return f"Session(engine={self.engine!r}{demo}, home={str(self.runs.home)!r}, spent=${self.budget.spent:.4f}, cap={cap})"

    def check(self, request: ImageInferenceRequest) -> None:
        """Raise UnsupportedByEngineError now if this engine would refuse the request (nothing is sent)."""
        self.backend.check(request)

    # -- cost and time --------------------------------------------------------------------------------------------
    def _expected_seconds(self, request: ImageInferenceRequest) -> float | None:
        """When a request should finish, from this engine's logged latencies (None until enough are logged): the
        Runware engine's first poll of an async task goes out then."""
        try:
            return self._run_cost_model().seconds(request)
        except RunLogError:
            return None  # no estimate is no reason to fail a request: the engine polls on its default schedule

    def cost_model(self) -> CostModel:
        """The cost and latency model of this engine's logged runs (list price until enough are logged), refitted
        when the log has grown. Every estimate the session, its sweeps and its panels show comes from it."""
        return self._fitted_model(len(self.runs))

    def _run_cost_model(self) -> CostModel:
        """:meth:`cost_model` for pricing a request about to run: the log's growth is read from the ids of the rows
        this session writes (each new id counts every process's rows), so the requests of a sweep neither query the
        log nor wait on each other's writes for it. Before this session's first write it counts, as cost_model."""
        written = self.runs.last_written_id
        return self.cost_model() if written is None else self._fitted_model(written)

    def _model_stale(self, rows: int) -> bool:
        return self._cost_model_rows < 0 or rows >= self._cost_model_rows * 1.1 + 10

    def _fitted_model(self, rows: int) -> CostModel:
        """The model, refitted first when the log has ``rows`` rows and has grown by a tenth since the last fit (or
        on first use): estimates stay current without reading the log per run."""
        if not self._model_stale(rows):
            return self._cost_model  # without the lock: a refit swaps in a whole new model
        with self._cost_model_lock:
            if self._model_stale(rows):
                found = self.runs.rows(
                    "status = 'ok' AND engine = ? AND demo = ?",
                    (self.engine, int(self.demo)),
                    columns=CostModel.COLUMNS,
                )
                self._cost_model = CostModel.fit(found, fitted_to=self.engine)
                self._cost_model_rows = rows
            return self._cost_model

    def estimate(
        self, what: ImageInferenceRequest | SweepPlan | None = None, /, **fields: Any
    ) -> Estimate | SweepEstimate:
        """Images, cost and time of a request (or of wire fields for one), or of a sweep plan (its ``estimate()``)."""
        if isinstance(what, ImageInferenceRequest):
            return self.cost_model().estimate(what)
        if what is not None:
            return what.estimate()
        return self.cost_model().estimate(build_request(**fields))

    # -- the run lifecycle (shared by the sync and async twins) ----------------------------------------------------
    def _price(self, request: ImageInferenceRequest) -> tuple[float, float]:
        """The estimate the budget reserves for a request, and its work units (what the learned price scales)."""
        cost, _ = self._run_cost_model().price(request)
        return cost, work_units(request)

    def _begin(self, request: ImageInferenceRequest, cell: CellRef | None) -> _Attempt:
        self.check(request)
        cost, work = self._price(request)
        return self._submitted(request, self.budget.reserve(cost, "this request", work=work), cell)

    async def _abegin(self, request: ImageInferenceRequest, cell: CellRef | None) -> _Attempt:
        self.check(request)
        cost, work = self._price(request)
        return self._submitted(request, await self.budget.areserve(cost, "this request", work=work), cell)

    def _submitted(self, request: ImageInferenceRequest, reservation: Reservation, cell: CellRef | None) -> _Attempt:
        try:
            self.runs.record_submitted(request, engine=self.engine, demo=self.demo, **_sweep_columns(cell))
        except BaseException:
            self.budget.release(reservation)
            raise
        return _Attempt(request, reservation, time.perf_counter(), cell)

    def _succeed(self, attempt: _Attempt, generation: Generation) -> Generation:
        """Settle and log an answer; an answer whose cost is unusable is logged as failed and raised instead."""
        refusal = _unusable_cost(generation)
        if refusal is not None:
            self._fail(attempt, refusal)
            raise refusal
        self.budget.settle(attempt.reservation, generation.cost)
        self.runs.record_generation(generation, **_sweep_columns(attempt.cell))
        return generation

    def _fail(self, attempt: _Attempt, error: BaseException) -> None:
        if isinstance(error, Exception):
            # A refused request is not billed. Without an answer (a dropped connection, a poll timeout) it may have
            # run: the hold stays counted as spent (the cap errs on the safe side) and the row says "unanswered", so
            # a resume looks the task up by its taskUUID instead of paying for it again. An answer with an unusable
            # cost ran and was charged an unknown amount: its hold is counted too, and never its cost.
            unanswered = isinstance(error, APIConnectionError | PollTimeoutError)
            if unanswered or isinstance(error, UnusableCostError):
                self.budget.forfeit(attempt.reservation)
            else:
                self.budget.release(attempt.reservation)
            self.runs.record_failure(
                attempt.request,
                error,
                engine=self.engine,
                demo=self.demo,
                latency_s=time.perf_counter() - attempt.started,
                unanswered=unanswered,
                **_sweep_columns(attempt.cell),
            )
        else:  # cancelled (CancelledError, KeyboardInterrupt): the answer may still come; a resume looks it up
            self.budget.forfeit(attempt.reservation)
            self.runs.record_cancelled(attempt.request.taskUUID)

    # -- generate -----------------------------------------------------------------------------------------------
    def generate(
        self,
        prompt: str | None = None,
        *,
        request: ImageInferenceRequest | None = None,
        cell: CellRef | None = None,
        on_step: StepCallback | None = None,
        **fields: Any,
    ) -> Generation:
        """Run one request on the engine and log it (``cell``: the sweep cell it belongs to). Raises the engine's
        error after logging it as failed. ``on_step(step, total, preview)``: called after each denoising step by an
        engine that can report them (the local one, with a latent preview every few steps); others never call it."""
        attempt = self._begin(build_request(prompt, request=request, **fields), cell)
        try:
            generation = (
                self.backend.generate(attempt.request)
                if on_step is None
                else self.backend.generate_with_progress(attempt.request, on_step)
            )
        except BaseException as error:
            self._fail(attempt, error)
            raise
        return self._succeed(attempt, generation)

    async def agenerate(
        self,
        prompt: str | None = None,
        *,
        request: ImageInferenceRequest | None = None,
        cell: CellRef | None = None,
        on_step: StepCallback | None = None,
        **fields: Any,
    ) -> Generation:
        """The async twin of :meth:`generate` (``on_step`` is called on the engine's worker thread)."""
        attempt = await self._abegin(build_request(prompt, request=request, **fields), cell)
        try:
            generation = await (
                self.backend.agenerate(attempt.request)
                if on_step is None
                else self.backend.agenerate_with_progress(attempt.request, on_step)
            )
        except BaseException as error:
            self._fail(attempt, error)
            raise
        return self._succeed(attempt, generation)

    # -- batches ------------------------------------------------------------------------------------------------
    @staticmethod
    def _cell_refs(
        requests: Sequence[ImageInferenceRequest], cells: Sequence[CellRef | None] | None
    ) -> list[CellRef | None]:
        if cells is not None and len(cells) != len(requests):
            raise ConfigurationError(
                f"cells has {len(cells)} entries for {len(requests)} requests; give one CellRef (or None) per request"
            )
        return list(cells) if cells is not None else [None] * len(requests)

    def _begin_many(
        self, requests: Sequence[ImageInferenceRequest], cells: Sequence[CellRef | None]
    ) -> tuple[list[Generation | Exception | None], list[tuple[int, _Attempt]]]:
        outcomes: list[Generation | Exception | None] = [None] * len(requests)
        attempts: list[tuple[int, _Attempt]] = []
        for index, request in enumerate(requests):
            try:
                attempts.append((index, self._begin(request, cells[index])))
            except KandinskyNBError as error:  # refused before sending (budget, engine check, run log): that slot only
                outcomes[index] = error
        return outcomes, attempts

    async def _abegin_many(
        self, requests: Sequence[ImageInferenceRequest], cells: Sequence[CellRef | None]
    ) -> tuple[list[Generation | Exception | None], list[tuple[int, _Attempt]]]:
        outcomes: list[Generation | Exception | None] = [None] * len(requests)
        attempts: list[tuple[int, _Attempt]] = []
        for index, request in enumerate(requests):
            try:
                attempts.append((index, await self._abegin(request, cells[index])))
            except KandinskyNBError as error:  # refused before sending (budget, engine check, run log): that slot only
                outcomes[index] = error
        return outcomes, attempts

    def _finish_many(
        self,
        outcomes: list[Generation | Exception | None],
        attempts: list[tuple[int, _Attempt]],
        results: Sequence[Generation | Exception],
    ) -> list[Generation | Exception]:
        for (index, attempt), result in zip(attempts, results, strict=True):
            if isinstance(result, Generation):
                try:
                    outcomes[index] = self._succeed(attempt, result)
                except UnusableCostError as refusal:  # logged as failed by _succeed
                    outcomes[index] = refusal
            else:
                self._fail(attempt, result)
                outcomes[index] = result
        return [outcome for outcome in outcomes if outcome is not None]  # every slot is filled by now

    def _one_batch(
        self, requests: Sequence[ImageInferenceRequest], cells: Sequence[CellRef | None]
    ) -> list[Generation | Exception]:
        outcomes, attempts = self._begin_many(requests, cells)
        results: list[Generation | Exception] = []
        try:
            if attempts:
                results = list(self.backend.generate_many([attempt.request for _, attempt in attempts]))
        except BaseException as error:
            for _, attempt in attempts:
                self._fail(attempt, error)
            raise
        return self._finish_many(outcomes, attempts, results)

    async def _aone_batch(
        self, requests: Sequence[ImageInferenceRequest], cells: Sequence[CellRef | None]
    ) -> list[Generation | Exception]:
        outcomes, attempts = await self._abegin_many(requests, cells)
        results: list[Generation | Exception] = []
        try:
            if attempts:
                results = list(await self.backend.agenerate_many([attempt.request for _, attempt in attempts]))
        except BaseException as error:
            for _, attempt in attempts:
                self._fail(attempt, error)
            raise
        return self._finish_many(outcomes, attempts, results)

    def generate_many(
        self, requests: Sequence[ImageInferenceRequest], *, cells: Sequence[CellRef | None] | None = None
    ) -> list[Generation | Exception]:
        """Run several requests as ONE batch where the engine batches (Runware: one POST). Each slot holds its
        Generation or its error (logged); an error that fails the whole batch (no answer at all) is logged for
        every request sent with it and raised. ``cells``: the sweep cell of each request, when they belong to one.

        While a capped budget has not yet learned the engine's real price, requests go one at a time until an answer
        teaches it (a batch reserved at the list price would overrun the cap on an engine that charges more)."""
        refs = self._cell_refs(requests, cells)
        outcomes: list[Generation | Exception] = []
        while len(outcomes) < len(requests) and self.budget.learning:
            at = len(outcomes)
            outcomes += self._one_batch(requests[at : at + 1], refs[at : at + 1])
        if len(outcomes) < len(requests):
            outcomes += self._one_batch(requests[len(outcomes) :], refs[len(outcomes) :])
        return outcomes

    async def agenerate_many(
        self, requests: Sequence[ImageInferenceRequest], *, cells: Sequence[CellRef | None] | None = None
    ) -> list[Generation | Exception]:
        """The async twin of :meth:`generate_many`."""
        refs = self._cell_refs(requests, cells)
        outcomes: list[Generation | Exception] = []
        while len(outcomes) < len(requests) and self.budget.learning:
            at = len(outcomes)
            outcomes += await self._aone_batch(requests[at : at + 1], refs[at : at + 1])
        if len(outcomes) < len(requests):
            outcomes += await self._aone_batch(requests[len(outcomes) :], refs[len(outcomes) :])
        return outcomes

    # -- resume -------------------------------------------------------------------------------------------------
    def _unanswered(self, task: str | ImageInferenceRequest) -> tuple[ImageInferenceRequest, CellRef | None]:
        """The logged request to resume, and its sweep cell; refuses a run the log has no open record of."""
        task_uuid = task if isinstance(task, str) else task.taskUUID
        rows = self.runs.get(task_uuid)
        if not rows:
            raise RunLogError(f"no run with taskUUID {task_uuid!r} in {self.runs.path}; check the id (runs list)")
        row = rows[0]
        if row["status"] not in UNANSWERED:
            raise RunLogError(
                f"run {task_uuid!r} is already {row['status']!r} in the log; nothing to resume "
                "(generate(request=...) runs it again as a new task)"
            )
        request = ImageInferenceRequest.model_validate_json(row["request_json"]) if isinstance(task, str) else task
        cell = CellRef(row["sweep_id"], row["sweep_cell"]) if row["sweep_id"] is not None else None
        return request, cell

    def _found(self, found: Generation, cell: CellRef | None) -> Generation:
        # Paid for when it was first sent (perhaps by another process): counted as spent, never reserved again.
        found.details["resumed"] = True
        refusal = _unusable_cost(found)
        if refusal is not None:
            self.runs.record_failure(found.request, refusal, engine=self.engine, demo=self.demo, **_sweep_columns(cell))
            raise refusal
        if found.cost is not None:
            self.budget.count(found.cost, work_units(found.request))
        self.runs.record_generation(found, **_sweep_columns(cell))
        return found

    def _lookup_failed(self, request: ImageInferenceRequest, cell: CellRef | None, error: APIError) -> None:
        """Say what a failed lookup means for the run, and log a task the engine reports failed."""
        if isinstance(error, TaskError):
            # The engine had the task and it failed there: that is its answer, logged like any failure.
            self.runs.record_failure(request, error, engine=self.engine, demo=self.demo, **_sweep_columns(cell))
            return
        # Still running, or the engine could not be asked: either way it may have run, so sending it again could pay
        # twice. The run stays unanswered in the log for a later resume.
        error.add_note(
            f"taskUUID {request.taskUUID} was not sent again: the engine has not answered for it (still running, or "
            "not reachable). It stays unanswered in the run log; resume it later."
        )

    def resume(self, task: str | ImageInferenceRequest) -> Generation:
        """Finish a logged run that never got its answer (a crash, a cancel, a poll timeout), by its taskUUID or its
        request: look it up on the engine and log what the engine has; only when the engine has no record of it,
        send it again with the same taskUUID. ``generation.details["resumed"]`` says which happened.

        Raises RunLogError when the log holds no unanswered run for it, PollTimeoutError when the task is still
        running (nothing is sent), TaskError when it failed on the engine (logged), and the engine's APIError when
        the lookup itself failed (nothing is sent; resume again later)."""
        request, cell = self._unanswered(task)
        try:
            found = self.backend.resume(request)
        except APIError as error:
            self._lookup_failed(request, cell, error)
            raise
        if found is not None:
            return self._found(found, cell)
        generation = self.generate(request=request, cell=cell)
        generation.details.setdefault("resumed", False)
        return generation

    async def aresume(self, task: str | ImageInferenceRequest) -> Generation:
        """The async twin of :meth:`resume`."""
        request, cell = self._unanswered(task)
        try:
            found = await self.backend.aresume(request)
        except APIError as error:
            self._lookup_failed(request, cell, error)
            raise
        if found is not None:
            return self._found(found, cell)
        generation = await self.agenerate(request=request, cell=cell)
        generation.details.setdefault("resumed", False)
        return generation

    # -- sweeps -------------------------------------------------------------------------------------------------
    def sweep(
        self,
        prompt: str | list[str] | None = None,
        *,
        name: str | None = None,
        request: ImageInferenceRequest | None = None,
        max_cells: int = MAX_CELLS,
        **axes: Any,
    ) -> SweepPlan:
        """Plan a sweep: a base request (``prompt``, or a list of prompts as an axis; ``request``) and axes over its
        fields, each a list or an A1111-style range string (``steps="10-50 (+10)"``, ``CFGScale="3,5,7"``,
        ``scheduler="Euler,UniPC"``, ``size=["1280x768", "1K (1:1)"]``). Scalars fix a field for every cell. Every
        cell is validated now, and checked against this engine (a scheduler it cannot honour is refused now). A plan of
        more than ``max_cells`` cells (10,000 unless raised) is refused before any cell is built."""
        return SweepPlan(self, design_sweep(prompt, name=name, request=request, axes=axes, max_cells=max_cells))

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


def _sweep_columns(cell: CellRef | None) -> dict[str, str | None]:
    """The run log's columns for a run's sweep cell."""
    if cell is None:
        return {"sweep_id": None, "sweep_cell": None}
    return {"sweep_id": cell.sweep_id, "sweep_cell": cell.cell_key}
