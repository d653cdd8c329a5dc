"""Sweeps: a base request times axes -> a plan of cells, each a full valid request with a stable identity.

Planning is pure (:func:`expand_cells`): it expands the axes (lists or A1111 range strings), builds and validates
every cell's request, and names each cell by its coordinates. Running is a thin shell over :class:`Session`: bounded
concurrency, a progress bar, every cell logged, cancellable, and resumable by the sweep's name:

- a cell with an ``ok`` row is done and skipped;
- a cell whose last row is ``submitted`` or ``cancelled`` was sent but never answered in the log: it is looked up by
  its stored taskUUID (``backend.aresume``) and sent again, with the same taskUUID, only when the engine has no record;
- a failed cell is tried again (``retry_failed=False`` keeps it failed).

Do not run one sweep in two processes at the same time: each would resume the other's in-flight cells.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import BudgetExceededError, RequestValidationError, SweepError
from ..runlog.store import UNANSWERED
from ..types import AcceleratorOptions, ImageInferenceRequest
from .ranges import AxisKind, parse_axis_values

if TYPE_CHECKING:
    import pandas as pd

    from .session import Session

__all__ = ["AXES", "Axis", "SweepCell", "SweepEstimate", "SweepPlan", "SweepReport", "expand_cells", "resolve_axis"]


# -- the axes a sweep may vary ----------------------------------------------------------------------------------------
def _axis_table() -> dict[str, tuple[AxisKind, tuple[str, ...]]]:
    table: dict[str, tuple[AxisKind, tuple[str, ...]]] = {
        "steps": ("int", ()),
        "CFGScale": ("float", ("cfg", "cfg_scale", "guidance")),
        "scheduler": ("choice", ("sampler",)),
        "seed": ("int", ()),
        "positivePrompt": ("text", ("prompt",)),
        "negativePrompt": ("text", ("negative_prompt", "negative")),
        "size": ("choice", ()),
        "lora.weight": ("float", ("lora_weight",)),
        "numberResults": ("int", ()),
        "outputFormat": ("choice", ()),
        "strength": ("float", ()),
    }
    for name, info in AcceleratorOptions.model_fields.items():
        kind: AxisKind = (
            "bool" if info.annotation == (bool | None) else "float" if "float" in str(info.annotation) else "int"
        )
        table[f"acceleratorOptions.{name}"] = (kind, (name,))
    return table


AXES: dict[str, tuple[AxisKind, tuple[str, ...]]] = _axis_table()
_LOOKUP = {alias.lower(): name for name, (_, aliases) in AXES.items() for alias in (name, *aliases)}


def resolve_axis(name: str) -> str | None:
    """The canonical axis name for ``name`` or one of its aliases (case-insensitive), or None."""
    return _LOOKUP.get(name.lower())


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]
    kind: AxisKind

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class SweepCell:
    """One cell: its position, its coordinates (axis -> value) and its full, validated request."""

    index: int
    coords: dict[str, Any]
    request: ImageInferenceRequest

    @property
    def key(self) -> str:
        return cell_key(self.coords)


def cell_key(coords: dict[str, Any]) -> str:
    """A cell's identity within its sweep: canonical JSON of its coordinates (axis order does not matter)."""
    return json.dumps(coords, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _size_value(value: Any, axis: str) -> str:
    if isinstance(value, spec.Size):
        return str(value)
    if isinstance(value, tuple | list) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    try:
        return str(spec.size_by_label(str(value).strip()))
    except KeyError as exc:
        raise SweepError(f"axis {axis!r}: {exc.args[0]}") from None


def _changes(base: ImageInferenceRequest, coords: dict[str, Any]) -> dict[str, Any]:
    """The request fields one cell sets, from its coordinates."""
    changes: dict[str, Any] = {}
    accelerator: dict[str, Any] = {}
    for axis, value in coords.items():
        if axis == "size":
            size = spec.size_by_label(value)
            changes["width"], changes["height"] = size.width, size.height
        elif axis == "lora.weight":
            if not base.lora:
                raise SweepError("the 'lora.weight' axis needs a base request with lora=[{'model': ...}]; add one")
            changes["lora"] = [{**entry.model_dump(exclude_none=True), "weight": value} for entry in base.lora]
        elif axis.startswith("acceleratorOptions."):
            accelerator[axis.split(".", 1)[1]] = value
        else:
            changes[axis] = value
    if accelerator:
        existing = base.acceleratorOptions.model_dump(exclude_none=True) if base.acceleratorOptions else {}
        changes["acceleratorOptions"] = {**existing, **accelerator}
    return changes


def expand_cells(base: ImageInferenceRequest, axes: list[Axis]) -> list[SweepCell]:
    """Every combination of the axes' values (the first axis outermost), each validated as a full request."""
    cells = []
    for index, combination in enumerate(itertools.product(*(axis.values for axis in axes))):
        coords = {axis.name: value for axis, value in zip(axes, combination, strict=True)}
        try:
            request = base.replace(**_changes(base, coords))
        except RequestValidationError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in coords.items())
            raise RequestValidationError(
                exc.problems,
                hint=f"Sweep cell ({where}) is not a valid request; change or remove the axis value named above.",
            ) from None
        cells.append(SweepCell(index, coords, request))
    return cells


def _parse_axes(raw: dict[str, Any]) -> tuple[list[Axis], dict[str, Any]]:
    """Split keyword arguments into axes and fixed request fields (anything else is refused, naming it)."""
    axes: list[Axis] = []
    fixed: dict[str, Any] = {}
    for key, values in raw.items():
        canonical = resolve_axis(key)
        if canonical is None:
            if key in ImageInferenceRequest.model_fields and key != "taskUUID":
                fixed[key] = values
                continue
            known = ", ".join(sorted(AXES))
            raise SweepError(f"{key!r} is not a sweep axis or request field; axes are: {known}")
        if any(axis.name == canonical for axis in axes):
            raise SweepError(f"axis {canonical!r} is given twice (as {key!r} and an alias); give it once")
        kind = AXES[canonical][0]
        parsed = parse_axis_values(canonical, values, kind)
        if canonical == "size":
            parsed = list(dict.fromkeys(_size_value(v, canonical) for v in parsed))
        axes.append(Axis(canonical, tuple(parsed), kind))
    return axes, fixed


def _name_seed(name: str) -> int:
    """A seed derived from the sweep's name, so every cell shares one seed and a resume gets the same one."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


# -- estimate and report ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepEstimate:
    """What a sweep will take. ``*_to_run`` counts only cells not finished yet (what a run or resume would send)."""

    name: str
    cells: int
    images: int
    cost_usd: float
    cells_to_run: int
    images_to_run: int
    cost_to_run_usd: float
    cost_source: str
    seconds_to_run: float | None
    budget_left_usd: float | None

    @property
    def within_budget(self) -> bool:
        return self.budget_left_usd is None or self.cost_to_run_usd <= self.budget_left_usd + 1e-12

    def __str__(self) -> str:
        time_part = f", about {self.seconds_to_run:.0f} s" if self.seconds_to_run is not None else ""
        budget = (
            ""
            if self.budget_left_usd is None
            else f"; budget left ${self.budget_left_usd:.4f}" + ("" if self.within_budget else " (NOT ENOUGH)")
        )
        return (
            f"sweep {self.name!r}: {self.cells} cells, {self.images} images, ${self.cost_usd:.4f} in all; "
            f"to run now {self.cells_to_run} cells, {self.images_to_run} images, ${self.cost_to_run_usd:.4f}"
            f"{time_part} ({self.cost_source}){budget}"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


@dataclass
class SweepReport:
    """The outcome of one run of a sweep."""

    name: str
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    skipped_done: int = 0
    not_run: int = 0
    spent_usd: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None

    def __str__(self) -> str:
        stop = f"; stopped: {self.stopped_by}" if self.stopped_by else ""
        return (
            f"sweep {self.name!r}: {self.ok} ok ({self.resumed} recovered by taskUUID), {self.failed} failed, "
            f"{self.skipped_done} already done, {self.not_run} not run; ${self.spent_usd:.4f} spent{stop}"
        )


@dataclass(frozen=True)
class _Todo:
    cell: SweepCell
    request: ImageInferenceRequest
    pending: bool  # sent before without an answer in the log: look it up by taskUUID first


# -- the plan ---------------------------------------------------------------------------------------------------------
class SweepPlan:
    """A planned sweep. ``estimate()``, ``run()`` / ``await arun()``, ``cancel()``, ``status()``, ``df``, ``grid()``."""

    def __init__(
        self,
        session: Session,
        name: str,
        base: ImageInferenceRequest,
        axes: list[Axis],
        cells: list[SweepCell],
        definition: dict[str, Any],
    ) -> None:
        self.session = session
        self.name = name
        self.base = base
        self.axes = axes
        self.cells = cells
        self.definition = definition
        self._cancel = threading.Event()
        self._on_cell: Callable[[SweepReport], None] | None = None

    # -- looking at it ----------------------------------------------------------------------------------------------
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

    def cell_states(self) -> dict[str, tuple[str, dict[str, Any] | None]]:
        """Each cell key's state from the log: ``ok``, ``pending`` (sent, unanswered), ``failed`` or ``new``, with
        the row that decided it."""
        by_cell: dict[str, list[dict[str, Any]]] = {}
        for row in self.session.runs.sweep_rows(self.name):
            by_cell.setdefault(row["sweep_cell"], []).append(row)
        states: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for cell in self.cells:
            rows = by_cell.get(cell.key, [])
            done = [r for r in rows if r["status"] == "ok"]
            if done:
                states[cell.key] = ("ok", done[-1])
            elif rows and rows[-1]["status"] in UNANSWERED:
                states[cell.key] = ("pending", rows[-1])
            elif rows:
                states[cell.key] = ("failed", rows[-1])
            else:
                states[cell.key] = ("new", None)
        return states

    def status(self) -> Counter[str]:
        """How many cells are ok, failed, pending (sent, unanswered) and new."""
        return Counter(state for state, _ in self.cell_states().values())

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
                    "state": state,
                    "task_uuid": row["task_uuid"] if row else None,
                    "error": row["error_message"] if row and state == "failed" else None,
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
    def _todo(self, retry_failed: bool = True) -> tuple[list[_Todo], int]:
        todo, done = [], 0
        states = self.cell_states()
        for cell in self.cells:
            state, row = states[cell.key]
            if state == "ok":
                done += 1
            elif state == "pending" and row is not None:
                request = ImageInferenceRequest.model_validate_json(row["request_json"])
                todo.append(_Todo(cell, request, pending=True))
            elif state == "new" or retry_failed:
                todo.append(_Todo(cell, cell.request.replace(), pending=False))  # a fresh taskUUID per attempt
        return todo, done

    def estimate(self, concurrency: int | None = None) -> SweepEstimate:
        """Images, cost and time of the whole sweep and of what is left to run; says if the budget allows it."""
        session = self.session
        costs = [session.price(cell.request) for cell in self.cells]
        todo, _ = self._todo()
        todo_keys = {item.cell.key for item in todo}
        to_run = [cost for cell, (cost, _) in zip(self.cells, costs, strict=True) if cell.key in todo_keys]
        seconds = [session.seconds(item.request) for item in todo]
        parallel = concurrency or session.concurrency
        known_seconds = None if any(s is None for s in seconds) else sum(s or 0.0 for s in seconds) / parallel
        return SweepEstimate(
            name=self.name,
            cells=len(self.cells),
            images=self.images,
            cost_usd=sum(cost for cost, _ in costs),
            cells_to_run=len(todo),
            images_to_run=sum(item.request.effective("numberResults") for item in todo),
            cost_to_run_usd=sum(to_run),
            cost_source=costs[0][1] if costs else "list price",
            seconds_to_run=known_seconds if todo else 0.0,
            budget_left_usd=session.budget.left,
        )

    # -- running ----------------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop starting new cells; cells not yet started stay pending and a later run resumes them."""
        self._cancel.set()

    def _prepare(
        self, retry_failed: bool, on_cell: Callable[[SweepReport], None] | None = None
    ) -> tuple[list[_Todo], SweepReport]:
        self._on_cell = on_cell
        earlier = self.session.runs.register_sweep(self.name, self.definition)
        _check_same_sweep(self.name, earlier, self.definition)
        todo, done = self._todo(retry_failed)
        cost = sum(self.session.price(item.request)[0] for item in todo if not item.pending)
        self.session.budget.check(cost, f"sweep {self.name!r} ({len(todo)} requests)")
        self._cancel.clear()
        return todo, SweepReport(self.name, skipped_done=done)

    def _progress(self, total: int, enabled: bool) -> Any:
        from tqdm.auto import tqdm

        demo = " (demo weights: noise)" if self.session.demo else ""
        return tqdm(total=total, desc=f"sweep {self.name}{demo}", unit="cell", disable=not enabled, leave=True)

    def _tally(self, report: SweepReport, item: _Todo, outcome: Any, bar: Any) -> None:
        self._tally_only(report, item, outcome, bar)
        if self._on_cell is not None:
            self._on_cell(report)

    def _tally_only(self, report: SweepReport, item: _Todo, outcome: Any, bar: Any) -> None:
        if outcome == "not run":
            report.not_run += 1
            return
        if isinstance(outcome, BaseException):
            report.failed += 1
            report.errors.append(
                {
                    "cell": item.cell.coords,
                    "task_uuid": item.request.taskUUID,
                    "error": f"{type(outcome).__name__}: {outcome}",
                }
            )
        else:
            report.ok += 1
            report.resumed += int(outcome == "resumed")
        bar.update(1)
        bar.set_postfix_str(f"ok {report.ok}, failed {report.failed}, ${self.session.budget.spent:.4f}", refresh=False)

    def _batches(self, todo: list[_Todo], batch_size: int) -> list[list[_Todo]]:
        """Fresh cells in batches of ``batch_size`` (one request to an engine that batches); cells sent before
        without an answer go one by one, since each is looked up by its taskUUID first."""
        pending = [[item] for item in todo if item.pending]
        fresh = [item for item in todo if not item.pending]
        size = max(1, batch_size)
        return pending + [fresh[i : i + size] for i in range(0, len(fresh), size)]

    def _batch_outcomes(self, items: list[_Todo], results: list[Any], report: SweepReport) -> list[tuple[_Todo, Any]]:
        out = []
        for item, result in zip(items, results, strict=True):
            if isinstance(result, BudgetExceededError):
                report.stopped_by = str(result)
                self.cancel()
                out.append((item, "not run"))
            else:
                out.append((item, result if isinstance(result, BaseException) else "sent"))
        return out

    def _batch_sync(self, items: list[_Todo], report: SweepReport) -> list[tuple[_Todo, Any]]:
        if self._cancel.is_set():
            return [(item, "not run") for item in items]
        if len(items) == 1:
            return [(items[0], self._cell_sync(items[0], report))]
        try:
            results = self.session.run_requests([(i.request, self.name, i.cell.key) for i in items])
        except Exception as exc:  # the whole batch failed; every request was logged with this error
            results = [exc] * len(items)
        return self._batch_outcomes(items, results, report)

    async def _batch_async(self, items: list[_Todo], report: SweepReport) -> list[tuple[_Todo, Any]]:
        if self._cancel.is_set():
            return [(item, "not run") for item in items]
        if len(items) == 1:
            return [(items[0], await self._cell_async(items[0], report))]
        try:
            results = await self.session.arun_requests([(i.request, self.name, i.cell.key) for i in items])
        except Exception as exc:
            results = [exc] * len(items)
        return self._batch_outcomes(items, results, report)

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
        API, so it works inside Jupyter's running loop). A failed cell does not stop the sweep; a budget refusal
        stops starting new cells. Ctrl-C / interrupt: in-flight cells finish and are logged, the rest stay pending.
        ``on_cell(report)`` is called after each cell (panels update their own progress from it). ``batch_size``:
        cells per request on an engine that batches (Runware: several tasks in one POST)."""
        todo, report = self._prepare(retry_failed, on_cell)
        spent_before = self.session.budget.spent
        batches = self._batches(todo, batch_size)
        workers = max(1, min(concurrency or self.session.concurrency, len(batches) or 1))
        bar = self._progress(len(todo), progress)
        try:
            # The first batch runs alone: a key or connection problem then shows once rather than once per worker,
            # and an engine that opens its connection lazily opens it from one thread.
            if batches and workers > 1:
                for item, outcome in self._batch_sync(batches.pop(0), report):
                    self._tally(report, item, outcome, bar)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kandinsky-nb-sweep") as pool:
                futures = [pool.submit(self._batch_sync, batch, report) for batch in batches]
                try:
                    for future in as_completed(futures):
                        for item, outcome in future.result():
                            self._tally(report, item, outcome, bar)
                except BaseException:
                    self.cancel()
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            bar.close()
            report.spent_usd = self.session.budget.spent - spent_before
        return report

    def _cell_sync(self, item: _Todo, report: SweepReport) -> Any:
        if self._cancel.is_set():
            return "not run"
        session = self.session
        try:
            if item.pending and session.recover(item.request, sweep_id=self.name, sweep_cell=item.cell.key):
                return "resumed"
            session.run_request(item.request, sweep_id=self.name, sweep_cell=item.cell.key)
            return "sent"
        except BudgetExceededError as exc:
            report.stopped_by = str(exc)
            self.cancel()
            return "not run"
        except Exception as exc:  # logged by the session; the sweep goes on
            return exc

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
        todo, report = self._prepare(retry_failed, on_cell)
        spent_before = self.session.budget.spent
        gate = asyncio.Semaphore(max(1, concurrency or self.session.concurrency))
        bar = self._progress(len(todo), progress)

        async def one(batch: list[_Todo]) -> list[tuple[_Todo, Any]]:
            async with gate:
                return await self._batch_async(batch, report)

        tasks = [asyncio.ensure_future(one(batch)) for batch in self._batches(todo, batch_size)]
        try:
            for finished in asyncio.as_completed(tasks):
                for item, outcome in await finished:
                    self._tally(report, item, outcome, bar)
        except BaseException:
            self.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            bar.close()
            report.spent_usd = self.session.budget.spent - spent_before
        return report

    async def _cell_async(self, item: _Todo, report: SweepReport) -> Any:
        if self._cancel.is_set():
            return "not run"
        session = self.session
        try:
            if item.pending and await session.arecover(item.request, sweep_id=self.name, sweep_cell=item.cell.key):
                return "resumed"
            await session.arun_request(item.request, sweep_id=self.name, sweep_cell=item.cell.key)
            return "sent"
        except BudgetExceededError as exc:
            report.stopped_by = str(exc)
            self.cancel()
            return "not run"
        except Exception as exc:
            return exc

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

        varied = [axis.name for axis in self.varied]
        chosen = [resolve_axis(a) or a for a in (x, y) if a]
        rest = [a for a in varied if a not in chosen]
        x = resolve_axis(x) if x else (rest.pop(0) if rest else None)
        y = resolve_axis(y) if y else (rest.pop(0) if rest else None)
        if z is None:
            z = [a for a in rest if a not in (x, y)]
        orders = {axis.name: list(axis.values) for axis in self.axes}
        options.setdefault("title", f"sweep {self.name} on {self.session.engine}")
        options.setdefault("definition", {"sweep": self.name, **self.definition})
        return contact_sheet(self.df, x=x, y=y, z=z, orders=orders, **options)


def _canonical(request: ImageInferenceRequest) -> dict[str, Any]:
    wire = request.to_wire()
    wire.pop("taskUUID", None)
    return wire


def _check_same_sweep(name: str, earlier: dict[str, Any] | None, definition: dict[str, Any]) -> None:
    if earlier is None:
        return
    if earlier.get("base") != definition["base"] or sorted(earlier.get("axes", {})) != sorted(definition["axes"]):
        raise SweepError(
            f"a sweep named {name!r} is already in the run log with a different base request or axes; resuming it "
            "would mix two experiments. Use another name=, or the same prompt, fields and axis names as before "
            "(adding values to an axis is fine)."
        )


def plan_sweep(
    session: Session,
    prompt: str | list[str] | tuple[str, ...] | None,
    *,
    name: str | None,
    request: ImageInferenceRequest | None,
    axes: dict[str, Any],
) -> SweepPlan:
    """Build and validate a :class:`SweepPlan` (nothing is sent). A list of prompts is a prompt axis."""
    if isinstance(prompt, list | tuple):
        if any(resolve_axis(key) == "positivePrompt" for key in axes):
            raise SweepError("prompts are given twice (a list and a positivePrompt axis); give them once")
        axes = {"positivePrompt": list(prompt), **axes}
        prompt = None
    parsed, fixed = _parse_axes(axes)
    if prompt is None and request is None and not any(a.name == "positivePrompt" for a in parsed):
        raise SweepError("a sweep needs a prompt: sweep('a red fox', ...), request=..., or a positivePrompt axis")
    prompt_axis = next((a for a in parsed if a.name == "positivePrompt"), None)
    base_prompt = prompt if prompt is not None else (None if request is not None else prompt_axis.values[0])  # type: ignore[union-attr]
    base = session.build_request(base_prompt, request=request, **fixed)
    definition = {
        "base": _canonical(base),
        "axes": {axis.name: list(axis.values) for axis in parsed},
    }
    if name is None:
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:10]
        name = f"sweep-{digest}"
    if not name.strip():
        raise SweepError("a sweep name cannot be empty; give a short name such as 'fox-cfg'")
    if base.seed is None and not any(a.name == "seed" for a in parsed):
        # One seed for every cell (A1111's "fixed seed"), derived from the name so a resume reproduces it.
        base = base.replace(seed=_name_seed(name), taskUUID=base.taskUUID)
        definition["seed_from_name"] = base.seed
    cells = expand_cells(base, parsed)
    for cell in cells:
        session.check(cell.request)  # the engine's own refusals (a scheduler it cannot honour) come now, too
    _check_same_sweep(name, session.runs.sweep_definition(name), definition)
    return SweepPlan(session, name, base, parsed, cells, definition)
