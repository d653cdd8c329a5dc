"""A sweep bound to a Session: its cells' states in the run log, estimate, run (resumable), DataFrame and grid.

Resuming is by the sweep's name:

- a cell with an ``ok`` row is done and skipped;
- a cell whose last row is unanswered (``submitted``, ``cancelled``, ``unanswered``) was sent but never answered in
  the log: it goes through :meth:`Session.resume` (looked up by its stored taskUUID, sent again with that taskUUID
  only when the engine has no record of it);
- a failed cell is tried again (``retry_failed=False`` keeps it failed).

A run holds the sweep's lease (:class:`~kandinsky_nb.session.lease.SweepLease`, an OS file lock in the run log's home)
while it reads the cells' states and runs them: a second run of the same name, in any process, is refused with
SweepBusyError instead of sending the cells again. A crashed run's lock is dropped by the operating system.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SweepError
from ..planning import (
    Axis,
    CellJob,
    CellRef,
    CellState,
    CellStatus,
    SweepCell,
    SweepDesign,
    SweepEstimate,
    SweepReport,
    check_count,
    check_same_sweep,
    grid_layout,
)
from ..planning.pricing import LIST_PRICE, work_units
from ..runlog.store import UNANSWERED
from ..types import ImageInferenceRequest
from .host import SweepHost
from .lease import SweepLease
from .runner import AsyncRunner, ThreadRunner, batches

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SweepPlan", "cell_status"]


def _check_run_counts(concurrency: int | None, batch_size: int) -> None:
    if concurrency is not None:
        check_count("concurrency", concurrency)  # None: the session's default
    check_count("batch_size", batch_size)


def cell_status(rows: list[dict[str, Any]]) -> CellStatus:
    """A cell's state from its log rows, oldest first: any ok row makes it done; else its last row decides."""
    done = [row for row in rows if row["status"] == "ok"]
    if done:
        return CellStatus(CellState.OK, done[-1])
    if rows and rows[-1]["status"] in UNANSWERED:
        return CellStatus(CellState.PENDING, rows[-1])
    if rows:
        return CellStatus(CellState.FAILED, rows[-1])
    return CellStatus(CellState.NEW, None)


class SweepPlan:
    """A planned sweep. ``estimate()``, ``run()`` / ``await arun()``, ``cancel()``, ``status()``, ``df``, ``grid()``."""

    def __init__(self, session: SweepHost, design: SweepDesign) -> None:
        for cell in design.cells:
            session.check(cell.request)  # the engine's own refusals (a scheduler it cannot honour) come now, too
        check_same_sweep(design.name, session.runs.sweep_definition(design.name), design.definition)
        self.session = session
        self.design = design
        self._stop = threading.Event()

    # -- looking at it ----------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.design.name

    @property
    def base(self) -> ImageInferenceRequest:
        return self.design.base

    @property
    def axes(self) -> list[Axis]:
        return self.design.axes

    @property
    def cells(self) -> list[SweepCell]:
        return self.design.cells

    @property
    def definition(self) -> dict[str, Any]:
        return self.design.definition

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[SweepCell]:
        return iter(self.cells)

    def __getitem__(self, index: int) -> SweepCell:
        return self.cells[index]

    @property
    def images(self) -> int:
        return sum(cell.request.effective("numberResults") for cell in self.cells)

    @property
    def varied(self) -> list[Axis]:
        """Axes with more than one value (the grid's dimensions)."""
        return [axis for axis in self.axes if len(axis) > 1]

    def __repr__(self) -> str:
        shape = " x ".join(f"{a.name}[{len(a)}]" for a in self.axes) or "one cell"
        demo = "; demo weights: images are noise" if self.session.demo else ""
        return f"SweepPlan({self.name!r}: {shape} = {len(self)} cells on {self.session.engine}{demo})"

    def cell_states(self) -> dict[str, CellStatus]:
        """Each cell key's state from the log (ok, pending = sent but unanswered, failed, new), with the row that
        decided it."""
        by_cell: dict[str, list[dict[str, Any]]] = {}
        for row in self.session.runs.sweep_rows(self.name):
            by_cell.setdefault(row["sweep_cell"], []).append(row)
        return {cell.key: cell_status(by_cell.get(cell.key, [])) for cell in self.cells}

    def status(self) -> Counter[str]:
        """How many cells are ok, failed, pending (sent, unanswered) and new."""
        return Counter(str(status.state) for status in self.cell_states().values())

    def to_frame(self) -> pd.DataFrame:
        """One row per cell: its coordinates, state and taskUUID."""
        import pandas as pd

        states = self.cell_states()
        records = []
        for cell in self.cells:
            state, row = states[cell.key]
            records.append(
                {
                    "cell": cell.index,
                    **cell.coords,
                    "state": str(state),
                    "task_uuid": row["task_uuid"] if row else None,
                    "error": row["error_message"] if row and state is CellState.FAILED else None,
                }
            )
        return pd.DataFrame.from_records(records)

    @property
    def df(self) -> pd.DataFrame:
        """This sweep's rows of the run log."""
        return self.session.runs.dataframe("sweep_id = ?", (self.name,))

    def export(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write this sweep's rows to Parquet or CSV (by ``format`` or the file's extension)."""
        return self.session.runs.export(path, format, self.df)

    # -- estimate ---------------------------------------------------------------------------------------------------
    def _jobs(self, retry_failed: bool = True) -> tuple[list[CellJob], int]:
        """The cells to run now and how many are done already."""
        jobs, done = [], 0
        for cell, (state, row) in zip(self.cells, self.cell_states().values(), strict=True):
            ref = CellRef(self.name, cell.key)
            if state is CellState.OK:
                done += 1
            elif state is CellState.PENDING and row is not None:
                request = ImageInferenceRequest.model_validate_json(row["request_json"])
                jobs.append(CellJob(cell, request, ref, pending=True))
            elif state is CellState.NEW or retry_failed:
                jobs.append(CellJob(cell, cell.request.replace(), ref))  # a fresh taskUUID per attempt
        return jobs, done

    def estimate(self, concurrency: int | None = None) -> SweepEstimate:
        """Images, cost and time of the whole sweep and of what is left to run; says if the budget allows it."""
        model = self.session.cost_model()
        budget = self.session.budget
        # What the budget will hold: the model's estimate, or the price the engine has charged when that is higher.
        priced = [model.price(cell.request) for cell in self.cells]
        costs = [
            (budget.expected(cost, work_units(cell.request)), source)
            for cell, (cost, source) in zip(self.cells, priced, strict=True)
        ]
        jobs, _ = self._jobs()
        to_run = {job.cell.key for job in jobs}
        seconds = [model.seconds(job.request) for job in jobs]
        parallel = concurrency or self.session.concurrency
        known_seconds = None if any(s is None for s in seconds) else sum(s or 0.0 for s in seconds) / parallel
        return SweepEstimate(
            name=self.name,
            cells=len(self.cells),
            images=self.images,
            cost_usd=sum(cost for cost, _ in costs),
            cells_to_run=len(jobs),
            images_to_run=sum(job.request.effective("numberResults") for job in jobs),
            cost_to_run_usd=sum(cost for cell, (cost, _) in zip(self.cells, costs, strict=True) if cell.key in to_run),
            cost_source=(costs[0][1] if costs else LIST_PRICE)
            + (f"; at least the ${budget.rate:.4g} per megapixel-step the engine charged" if budget.rate else ""),
            seconds_to_run=known_seconds if jobs else 0.0,
            budget_left_usd=self.session.budget.left,
        )

    # -- running ----------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop starting new cells; cells not yet started stay to do and a later run resumes them."""
        self._stop.set()

    def _lease(self) -> SweepLease:
        """This sweep's lease, held from before its cells' states are read until its last cell is logged: another
        run of the same name (another process, or this one) is refused meanwhile, so no cell is sent twice."""
        return SweepLease(self.session.runs.home, self.name)

    def _prepare(self, retry_failed: bool) -> tuple[list[CellJob], SweepReport]:
        self._register()
        jobs, done = self._jobs(retry_failed)
        self._admit(jobs)
        return jobs, SweepReport(self.name, skipped_done=done)

    def _register(self) -> None:
        runs = self.session.runs
        check_same_sweep(self.name, runs.register_sweep(self.name, self.definition), self.definition)

    def _admit(self, jobs: list[CellJob]) -> None:
        """Check the budget has room for ``jobs`` and clear a previous Cancel."""
        # Pending cells were paid for when first sent (their hold stayed counted): only fresh ones need room.
        model = self.session.cost_model()
        fresh = [job.request for job in jobs if not job.pending]
        cost = sum(model.price(request)[0] for request in fresh)
        work = sum(work_units(request) for request in fresh)  # at the price the budget has learned, if higher
        self.session.budget.check(cost, f"sweep {self.name!r} ({len(jobs)} requests)", work=work)
        self._stop.clear()

    def cell(self, cell: str | int | SweepCell) -> SweepCell:
        """One of this sweep's cells, by its key (``plan[i].key``), its index, or the cell itself."""
        if isinstance(cell, SweepCell):
            cell = cell.key
        if isinstance(cell, int) and not isinstance(cell, bool) and 0 <= cell < len(self.cells):
            return self.cells[cell]
        found = next((c for c in self.cells if c.key == cell), None)
        if found is None:
            raise SweepError(
                f"cell={cell!r} is not a cell of sweep {self.name!r}; give an index 0-{len(self.cells) - 1} "
                "or a cell key as plan[i].key gives it"
            )
        return found

    def _rerun_job(self, cell: str | int | SweepCell) -> CellJob:
        found = self.cell(cell)
        # The same request with a fresh taskUUID, logged under the same cell: a new run of that cell, not a resume.
        return CellJob(found, found.request.replace(), CellRef(self.name, found.key))

    def rerun_cell(self, cell: str | int | SweepCell, *, progress: bool = False) -> SweepReport:
        """Run one cell again, done or failed: the same request under a new taskUUID, logged as a new run of the same
        cell (its latest ok run is the one grids show). Holds the sweep's lease like :meth:`run`."""
        with self._lease():
            job = self._rerun_job(cell)
            self._register()
            self._admit([job])
            report, spent_before = SweepReport(self.name), self.session.budget.spent
            bar = self._progress(1, progress)
            try:
                ThreadRunner(self.session, report, self._stop, bar, None).run([[job]], 1)
            finally:
                bar.close()
                report.spent_usd = self.session.budget.spent - spent_before
        return report

    async def arerun_cell(self, cell: str | int | SweepCell, *, progress: bool = False) -> SweepReport:
        """The async twin of :meth:`rerun_cell`."""
        with self._lease():
            job = self._rerun_job(cell)
            self._register()
            self._admit([job])
            report, spent_before = SweepReport(self.name), self.session.budget.spent
            bar = self._progress(1, progress)
            try:
                await AsyncRunner(self.session, report, self._stop, bar, None).run([[job]], 1)
            finally:
                bar.close()
                report.spent_usd = self.session.budget.spent - spent_before
        return report

    def _progress(self, total: int, enabled: bool) -> Any:
        from tqdm.auto import tqdm

        demo = " (demo weights: noise)" if self.session.demo else ""
        # Nothing to run (a finished sweep run again): no bar at all rather than an empty "0/0" one.
        shown = enabled and total > 0
        return tqdm(total=total, desc=f"sweep {self.name}{demo}", unit="cell", disable=not shown, leave=True)

    def run(
        self,
        concurrency: int | None = None,
        *,
        retry_failed: bool = True,
        progress: bool = True,
        on_cell: Callable[[SweepReport], None] | None = None,
        batch_size: int = 1,
    ) -> SweepReport:
        """Run every unfinished cell with up to ``concurrency`` requests in flight (threads over the engine's sync
        API, so it works inside Jupyter's running loop). A failed cell does not stop the sweep; a budget refusal,
        and a refusal of the account itself (the key, its credit or permission: every cell would meet it), stop
        starting new cells (``report.stopped_by`` says why; the cells not sent stay to do). Ctrl-C / interrupt: in-flight cells finish and are logged, the rest stay to do.
        ``on_cell(report)`` is called after each cell (panels update their own progress from it). ``batch_size``:
        cells per request on an engine that batches (Runware: several tasks in one POST)."""
        _check_run_counts(concurrency, batch_size)
        with self._lease():
            jobs, report = self._prepare(retry_failed)
            spent_before = self.session.budget.spent
            planned = batches(jobs, batch_size)
            workers = max(1, min(concurrency or self.session.concurrency, len(planned) or 1))
            bar = self._progress(len(jobs), progress)
            try:
                ThreadRunner(self.session, report, self._stop, bar, on_cell).run(planned, workers)
            finally:
                bar.close()
                report.spent_usd = self.session.budget.spent - spent_before
        return report

    async def arun(
        self,
        concurrency: int | None = None,
        *,
        retry_failed: bool = True,
        progress: bool = True,
        on_cell: Callable[[SweepReport], None] | None = None,
        batch_size: int = 1,
    ) -> SweepReport:
        """The async twin of :meth:`run` (the engine's async API; asyncio tasks bounded by a semaphore). Cancelling
        the awaiting task cancels in-flight cells: they are logged ``cancelled`` and a later run looks them up."""
        _check_run_counts(concurrency, batch_size)
        with self._lease():
            jobs, report = self._prepare(retry_failed)
            spent_before = self.session.budget.spent
            bar = self._progress(len(jobs), progress)
            try:
                runner = AsyncRunner(self.session, report, self._stop, bar, on_cell)
                await runner.run(batches(jobs, batch_size), concurrency or self.session.concurrency)
            finally:
                bar.close()
                report.spent_usd = self.session.budget.spent - spent_before
        return report

    # -- drawing ----------------------------------------------------------------------------------------------------
    def grid(
        self,
        x: str | None = None,
        y: str | None = None,
        z: str | list[str] | tuple[str, ...] | None = None,
        **options: Any,
    ) -> Any:
        """The contact sheet of this sweep (see :func:`kandinsky_nb.analysis.contact_sheet`): by default the first
        varied axis across, the second down, and one block per value of the rest."""
        from ..analysis.grid import contact_sheet

        x, y, blocks = grid_layout([axis.name for axis in self.varied], x, y, z)
        orders = {axis.name: list(axis.values) for axis in self.axes}
        options.setdefault("title", f"sweep {self.name} on {self.session.engine}")
        # The cell keys too, so an exported sheet names every cell of its sweep (each with its coordinates).
        cells = {cell.key: cell.coords for cell in self.cells}
        options.setdefault("definition", {"sweep": self.name, **self.definition, "cells": cells})
        return contact_sheet(self.df, x=x, y=y, z=blocks, orders=orders, **options)
