"""Running a sweep's cells through a Session: a thread runner and an asyncio runner that are twins.

Each runner takes the cells to run (:class:`~kandinsky_nb.planning.CellJob`), in batches, and turns each into a typed
:class:`~kandinsky_nb.planning.CellOutcome`: a fresh cell is sent (alone, or several in one batch on an engine that
batches); a pending cell (sent before, never answered in the log) goes alone through :meth:`Session.resume`, which
looks it up by its taskUUID before sending anything. A failed cell does not stop the sweep; a budget refusal stops
starting new cells. The two twins differ only by ``await`` in the per-cell code, and by what carries concurrency
(a thread pool over the engine's sync API, which works inside Jupyter's running loop; asyncio tasks under a
semaphore over its async API).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from ..errors import AuthenticationError, BudgetExceededError, InsufficientCreditsError, PermissionDeniedError
from ..planning import CellJob, CellOutcome, Outcome, SweepReport
from ..types import Generation
from .host import SweepHost

__all__ = ["AsyncRunner", "ThreadRunner", "batches"]


def batches(jobs: Sequence[CellJob], batch_size: int) -> list[list[CellJob]]:
    """Fresh cells in batches of ``batch_size`` (one request to an engine that batches); pending cells go one by
    one, since each is looked up by its taskUUID first."""
    pending = [[job] for job in jobs if job.pending]
    fresh = [job for job in jobs if not job.pending]
    size = max(1, batch_size)
    return pending + [fresh[i : i + size] for i in range(0, len(fresh), size)]


# Refusals of the account, not of a cell: the next cell would meet the same one, so the sweep stops at the first
# (cells already in flight finish) instead of sending every cell to it.
STOPS_THE_SWEEP = (AuthenticationError, InsufficientCreditsError, PermissionDeniedError)


class _Runner:
    """What both twins share: the report, the progress bar, the stop flag, and how results become outcomes."""

    def __init__(
        self,
        session: SweepHost,
        report: SweepReport,
        stop: threading.Event,
        bar: Any,
        on_cell: Callable[[SweepReport], None] | None,
    ) -> None:
        self.session = session
        self.report = report
        self.stop = stop
        self.bar = bar
        self.on_cell = on_cell

    def record(self, outcome: CellOutcome) -> None:
        """Count one outcome, move the bar, and tell the caller (panels update their progress from it). A refusal
        that every cell would meet (the key, the account's credit, its permission) stops the sweep."""
        self.report.add(outcome)
        if outcome.outcome is Outcome.FAILED and isinstance(outcome.error, STOPS_THE_SWEEP) and not self.stop.is_set():
            self.report.stopped_by = (
                f"{type(outcome.error).__name__}: {outcome.error} Every cell would meet it, so the sweep stopped; "
                "the cells not sent stay to do: fix it and run the sweep again."
            )
            self.stop.set()
        if outcome.outcome is not Outcome.NOT_RUN:
            self.bar.update(1)
            self.bar.set_postfix_str(
                f"ok {self.report.ok}, failed {self.report.failed}, ${self.session.budget.spent:.4f}", refresh=False
            )
        if self.on_cell is not None:
            self.on_cell(self.report)

    def _refused(self, job: CellJob, error: BudgetExceededError) -> CellOutcome:
        # The cap is reached: nothing more starts, and this cell stays to do for a later run.
        self.report.stopped_by = str(error)
        self.stop.set()
        return CellOutcome(job, Outcome.NOT_RUN)

    def _not_run(self, jobs: Sequence[CellJob]) -> list[CellOutcome]:
        return [CellOutcome(job, Outcome.NOT_RUN) for job in jobs]

    def _answered(self, job: CellJob, generation: Generation) -> CellOutcome:
        resumed = job.pending and generation.details.get("resumed", False)
        return CellOutcome(job, Outcome.RESUMED if resumed else Outcome.SENT)

    def _batch_outcomes(self, jobs: Sequence[CellJob], results: Sequence[Generation | Exception]) -> list[CellOutcome]:
        outcomes = []
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BudgetExceededError):
                outcomes.append(self._refused(job, result))
            elif isinstance(result, Exception):
                outcomes.append(CellOutcome.failed(job, result))
            else:
                outcomes.append(self._answered(job, result))
        return outcomes


class ThreadRunner(_Runner):
    """Cells on threads over the engine's sync API (works inside a running event loop, as in Jupyter)."""

    def run_cell(self, job: CellJob) -> CellOutcome:
        if self.stop.is_set():
            return CellOutcome(job, Outcome.NOT_RUN)
        try:
            if job.pending:
                generation = self.session.resume(job.request)
            else:
                generation = self.session.generate(request=job.request, cell=job.ref)
        except BudgetExceededError as error:
            return self._refused(job, error)
        except Exception as error:  # logged by the session; the sweep goes on
            return CellOutcome.failed(job, error)
        return self._answered(job, generation)

    def run_batch(self, jobs: list[CellJob]) -> list[CellOutcome]:
        if self.stop.is_set():
            return self._not_run(jobs)
        if len(jobs) == 1:
            return [self.run_cell(jobs[0])]
        try:
            results = self.session.generate_many([job.request for job in jobs], cells=[job.ref for job in jobs])
        except Exception as error:  # the whole batch failed; every request was logged with this error
            results = [error] * len(jobs)
        return self._batch_outcomes(jobs, results)

    def run(self, batches: list[list[CellJob]], workers: int) -> None:
        # Every worker starts at once, as the async twin's tasks do: a refused key stops the sweep at its first
        # answer (record), and the engines open their connections under a lock.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kandinsky-nb-sweep") as pool:
            futures = [pool.submit(self.run_batch, batch) for batch in batches]
            try:
                for future in as_completed(futures):
                    for outcome in future.result():
                        self.record(outcome)
            except BaseException:  # Ctrl-C: cells in flight finish and are logged; the rest stay to do
                self.stop.set()
                for future in futures:
                    future.cancel()
                raise


class AsyncRunner(_Runner):
    """The async twin of :class:`ThreadRunner`: asyncio tasks over the engine's async API, under a semaphore."""

    async def run_cell(self, job: CellJob) -> CellOutcome:
        if self.stop.is_set():
            return CellOutcome(job, Outcome.NOT_RUN)
        try:
            if job.pending:
                generation = await self.session.aresume(job.request)
            else:
                generation = await self.session.agenerate(request=job.request, cell=job.ref)
        except BudgetExceededError as error:
            return self._refused(job, error)
        except Exception as error:  # logged by the session; the sweep goes on
            return CellOutcome.failed(job, error)
        return self._answered(job, generation)

    async def run_batch(self, jobs: list[CellJob]) -> list[CellOutcome]:
        if self.stop.is_set():
            return self._not_run(jobs)
        if len(jobs) == 1:
            return [await self.run_cell(jobs[0])]
        try:
            results = await self.session.agenerate_many([job.request for job in jobs], cells=[job.ref for job in jobs])
        except Exception as error:  # the whole batch failed; every request was logged with this error
            results = [error] * len(jobs)
        return self._batch_outcomes(jobs, results)

    async def run(self, batches: list[list[CellJob]], concurrency: int) -> None:
        # Cancelling the awaiting task cancels cells in flight: they are logged "cancelled" and a later run looks
        # them up by their taskUUIDs.
        gate = asyncio.Semaphore(max(1, concurrency))

        async def gated(batch: list[CellJob]) -> list[CellOutcome]:
            async with gate:
                return await self.run_batch(batch)

        tasks = [asyncio.ensure_future(gated(batch)) for batch in batches]
        try:
            for finished in asyncio.as_completed(tasks):
                for outcome in await finished:
                    self.record(outcome)
        except BaseException:
            self.stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
