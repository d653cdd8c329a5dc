"""SweepPanel: pick axes and values (lists or A1111 range syntax), see the cell count, cost, time and budget before
anything runs, then run with a progress bar and a grid that fills in live; cancel; run again to resume. The grid and
the contact sheet put the axes chosen across, down and per block (choosing a placed axis swaps it); one failed or
chosen cell re-runs on its own; Export grid writes the contact sheet with the sweep embedded.

Planning, estimating, running and resuming are the Session's (``session.sweep(...)`` -> a plan); the panel only turns
its form into that call and shows the plan's state, which it polls from the run log while the sweep runs.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .. import spec
from .._media import data_uri
from ..errors import KandinskyNBError, RequestValidationError, SweepError
from ..html import DEMO_NOTE, STYLE, format_seconds, format_usd, html_from_problems, thumbnail
from ..planning.axes import grid_layout
from ..planning.sweep import design_sweep
from ..types import ImageInferenceRequest
from ._common import ErrorArea, cost_source_note, css, run_in_background, session_or_default, spent_words
from .binding import FormBinding
from .scores import SweepScores, when_scored
from .state import RunState
from .viewer import RunViewer

__all__ = ["GRID_ROLES", "SweepPanel", "SweepState", "sweep_arguments", "sweep_form_problems", "sweep_grid_axes"]

# The numeric axes typed as text (lists or ranges), in the order they are offered.
TEXT_AXES: dict[str, str] = {
    "steps": "e.g. 10-50 (+10)",
    "CFGScale": "e.g. 3-9 [4] or 3, 5, 7",
    "seed": "e.g. 1-4 or 7, 42",
}
_GRID_THUMB = 128
# Where problems that belong to no single field are shown (above the summary).
GENERAL = "general"
# The form's fields, each with its own problem line; the keys are SweepState's names for them.
FIELDS = ("prompt", "name", *TEXT_AXES, "scheduler", "size", "prompts", GENERAL)
# A request field named in a problem -> the form field that sets it.
_FIELD_OF_REQUEST = {
    "positivePrompt": "prompt",
    "width": "size",
    "height": "size",
    "width/height": "size",
    "scheduler": "scheduler",
    **{axis: axis for axis in TEXT_AXES},
}
_PLACEHOLDER_PROMPT = "a placeholder prompt"
_POLL_SECONDS = 0.5
_NO_CELL = "choose a finished cell"
_NO_RERUN = "choose a cell to re-run"
_NO_AXIS = "—"
# Where a sweep's axes go in its grid and contact sheet: SweepState's field -> the dropdown's label.
GRID_ROLES = {"across": "across", "down": "down", "per_block": "per block"}
# A click on a cell's image picks that cell in the Open cell list below the grid (the list's own change event then
# opens it from Python): an inline handler, which widget HTML keeps, with no script tag. It matches the option's value,
# which ipywidgets sets to the label as given (its text has the spaces replaced by no-break spaces).
_OPEN_CELL_HANDLER = html.escape(
    "var s=this.closest('.knb-sweep-panel').querySelector('.knb-sweep-open select');"
    "for(var i=0;i<s.options.length;i++){if(s.options[i].value===this.dataset.cell){s.selectedIndex=i;"
    "s.dispatchEvent(new Event('change',{bubbles:true}));break;}}"
)


@dataclass
class SweepState:
    """The sweep form: base prompt, sweep name, the axis texts and choices, and concurrency."""

    prompt: str = ""
    name: str = ""
    axes: dict[str, str] = field(default_factory=dict)  # axis -> text ("" = not swept)
    prompts: str = ""  # one prompt per line: a positivePrompt axis
    schedulers: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)  # size labels
    concurrency: int = 2
    # The grid's layout: an axis name each, or None for the default (first varied axis across, next down, rest in
    # blocks). A name the sweep does not vary is ignored, so a layout outlives edits of the form.
    across: str | None = None
    down: str | None = None
    per_block: str | None = None


def sweep_grid_axes(
    varied: list[str], across: str | None = None, down: str | None = None, per_block: str | None = None
) -> tuple[str | None, str | None, list[str]]:
    """The grid's (x, y, z) for the varied axes and a chosen layout: the axis chosen per block leads the blocks, the
    rest is placed as :func:`~kandinsky_nb.planning.axes.grid_layout` places it."""
    pinned = per_block if per_block in varied and per_block not in (across, down) else None
    pool = [axis for axis in varied if axis != pinned]
    x, y, rest = grid_layout(
        pool, across if across in pool else None, down if down in pool and down != across else None
    )
    return x, y, ([pinned] if pinned else []) + rest


def sweep_arguments(state: SweepState) -> dict[str, Any]:
    """The keyword arguments of ``session.sweep`` this form stands for (axis values are passed as typed: the engine
    parses range syntax and validates every cell)."""
    axes: dict[str, Any] = {name: text for name, text in state.axes.items() if text.strip()}
    prompts = [line.strip() for line in state.prompts.splitlines() if line.strip()]
    if prompts:
        axes["positivePrompt"] = prompts
    if state.schedulers:
        axes["scheduler"] = list(state.schedulers)
    if state.sizes:
        axes["size"] = [spec.size_by_label(label).__str__() for label in state.sizes]
    return axes


def _problems_of(make: Callable[[], Any]) -> list[str]:
    """The problem text of building something (empty when it builds)."""
    try:
        make()
    except KandinskyNBError as exc:
        return [str(exc)]
    return []


def sweep_form_problems(state: SweepState, *, has_base: bool = False) -> dict[str, list[str]]:
    """Every problem of the form, by the field that shows it: each field is checked on its own (its values parsed
    and validated as the sweep would), so one bad field never hides another. Engine refusals and problems that
    only appear when fields combine are found when the whole sweep is planned."""
    problems: dict[str, list[str]] = {}
    prompts = [line.strip() for line in state.prompts.splitlines() if line.strip()]
    prompt = state.prompt.strip()
    if prompt:
        problems["prompt"] = _problems_of(lambda: design_sweep(prompt, axes={}))
    elif not prompts and not has_base:
        problems["prompt"] = ["Type a prompt, or prompts one per line below (or start from a GeneratePanel: base=)."]
    for axis in TEXT_AXES:
        text = state.axes.get(axis, "")
        if text.strip():
            problems[axis] = _problems_of(
                lambda axis=axis, text=text: design_sweep(_PLACEHOLDER_PROMPT, axes={axis: text})
            )
    if prompts:
        problems["prompts"] = _problems_of(lambda: design_sweep(None, axes={"positivePrompt": prompts}))
    return {field: found for field, found in problems.items() if found}


def report_words(report: Any, engine: str, demo: bool = False) -> str:
    """A finished run of a sweep in words (what its cost means depends on the engine: see spent_words)."""
    ran = report.ok + report.failed
    if ran == 0 and report.not_run == 0:
        return f"All {report.skipped_done} cells were already done: nothing was run."
    recovered = f" ({report.resumed} recovered by taskUUID)" if report.resumed else ""
    stopped = f"; stopped: {report.stopped_by}" if report.stopped_by else ""
    return (
        f"{report.ok} ok{recovered}, {report.failed} failed, {report.skipped_done} already done, "
        f"{report.not_run} not run · {spent_words(report.spent_usd, engine, demo)}{stopped}"
    )


class SweepPanel(widgets.VBox):
    """Plan, price, run, cancel and resume a sweep from the mouse.

    ``base``: a GeneratePanel (its current request is the base of every cell), a request, or None (the panel's own
    prompt with the model defaults). ``plan`` is the current plan, ``estimate`` its estimate, ``task`` the running
    sweep, ``run_state`` the runs (running, progress, reports, errors) and ``report`` the last run's report.
    """

    def __init__(self, session: Any = None, *, base: Any = None, state: SweepState | None = None, **box: Any) -> None:
        self.session = session_or_default(session)
        self.base = base
        self.state = state or SweepState()
        self.plan: Any = None
        self.estimate: Any = None
        self.problems: list[str] = []  # every problem shown, in form order
        self.problems_by_field: dict[str, list[str]] = {}
        self.task: asyncio.Task[Any] | None = None
        self.run_state = RunState()
        self.errors = ErrorArea("knb-sweep-errors", self.run_state.errors)
        self.binding: FormBinding[SweepState] = FormBinding(
            lambda: self.state, self._on_edit, wrap=self.errors.guard("Sweep form")
        )
        self._grid_signature: tuple[Any, ...] = ()
        self._thumbs: dict[str, str] = {}
        self._cell_rows: dict[str, int] = {}  # cell label -> run-log row id, for every cell with an image
        self._offering = False

        self.prompt = css(
            widgets.Textarea(
                description="Prompt",
                placeholder="the prompt of every cell",
                layout=widgets.Layout(width="100%"),
            ),
            "knb-sweep-prompt",
        )
        self.name = css(
            widgets.Text(description="Name", placeholder="a short name; re-running it resumes"),
            "knb-sweep-name",
        )
        self.axis_texts = {
            axis: css(
                widgets.Text(description=axis, placeholder=hint),
                "knb-sweep-axis",
                f"knb-sweep-{axis}",
            )
            for axis, hint in TEXT_AXES.items()
        }
        self.prompts = css(
            widgets.Textarea(
                description="prompts",
                placeholder="optional: one prompt per line, swept as an axis",
                layout=widgets.Layout(width="100%", height="56px"),
            ),
            "knb-sweep-prompts",
        )
        self.schedulers = css(
            widgets.SelectMultiple(options=list(spec.SCHEDULERS), description="scheduler", rows=6),
            "knb-sweep-schedulers",
        )
        self.sizes = css(
            widgets.SelectMultiple(
                options=[(f"{s.label} — {s}", s.label) for s in spec.SIZES], description="size", rows=6
            ),
            "knb-sweep-sizes",
        )
        self.concurrency = widgets.BoundedIntText(value=self.state.concurrency, min=1, max=32, description="in flight")
        self.summary = css(widgets.HTML(""), "knb-sweep-summary")
        # One problem line per field, under it; edits apply as typed, so a fixed field's problem goes at once.
        self.problem_labels = {
            field: css(widgets.HTML(""), "knb-problem", "knb-sweep-problems", f"knb-sweep-problem-{field}")
            for field in FIELDS
        }
        self.run_button = css(
            widgets.Button(
                description="Run / resume",
                button_style="primary",
                icon="play",
                tooltip="runs every cell not done yet; cells already in the log are skipped",
            ),
            "knb-sweep-run",
        )
        self.sheet_button = css(
            widgets.Button(description="Contact sheet", icon="th", tooltip="the labelled grid image of this sweep"),
            "knb-sweep-sheet-button",
        )
        # Hidden until there is a sheet: an empty Image widget shows as a broken-image icon.
        self.sheet_image = css(widgets.Image(format="png", layout={"display": "none"}), "knb-sweep-sheet")
        self.sheet: Any = None
        self._sheet_of: str | None = None  # the name of the sweep the sheet shows
        self.sheet_task: asyncio.Task[Any] | None = None
        self.sheet_status = css(widgets.HTML(""), "knb-sweep-sheet-status")
        self.cancel_button = css(widgets.Button(description="Cancel", icon="stop", disabled=True), "knb-sweep-cancel")
        self.progress = css(widgets.IntProgress(value=0, min=0, max=1, description="cells"), "knb-sweep-progress")
        self.progress_label = css(widgets.HTML(""), "knb-sweep-progress-label")
        self.grid = css(widgets.HTML(""), "knb-sweep-grid")
        # Scores under the grid's cells: computed off the event loop after a run, shown when they arrive.
        self.scores = SweepScores()
        self.score_task: asyncio.Task[Any] | None = None
        self.score_status = css(widgets.HTML(""), "knb-sweep-score-status")
        self.score_button = css(
            widgets.Button(
                description="Score",
                icon="star",
                tooltip="score this sweep's images (in the background; stored scores are not computed again)",
            ),
            "knb-sweep-score",
        )

        # A finished cell opens in the run viewer: pick it here, or click its image in the grid (which picks it here).
        self.cell_picker = css(
            widgets.Dropdown(options=[(_NO_CELL, None)], value=None, description="Open cell"), "knb-sweep-open"
        )
        self.cell_picker.observe(self.errors.guard("Open cell")(self._on_pick), names="value")
        self.viewer = css(RunViewer(self.session, open_panel=self._reuse_target), "knb-sweep-viewer")

        # Which axes go across, down and per block: the grid and the contact sheet redraw with the choice.
        self.layout_pickers = {
            role: css(
                widgets.Dropdown(options=[(_NO_AXIS, None)], value=None, description=label),
                "knb-sweep-layout",
                f"knb-sweep-{role.replace('_', '-')}",
            )
            for role, label in GRID_ROLES.items()
        }
        self._laying_out = False
        for role, picker in self.layout_pickers.items():
            picker.observe(
                self.errors.guard("Grid layout")(lambda change, role=role: self._on_layout(role, change)),
                names="value",
            )
        # Re-run one finished (ok or failed) cell: the same request, a new taskUUID, a new run of that cell.
        self.rerun_picker = css(
            widgets.Dropdown(options=[(_NO_RERUN, None)], value=None, description="Cell"), "knb-sweep-rerun-cell"
        )
        self.rerun_button = css(
            widgets.Button(
                description="Re-run cell",
                icon="redo",
                tooltip="runs the chosen cell again (same request, new taskUUID); the grid shows the new result",
            ),
            "knb-sweep-rerun",
        )
        self.rerun_task: asyncio.Task[Any] | None = None
        self.rerunning = False
        self.rerun_status = css(widgets.HTML(""), "knb-sweep-rerun-status")
        self.export_button = css(
            widgets.Button(
                description="Export grid",
                icon="download",
                tooltip="writes the contact sheet as PNG with the sweep (base request, axes, cells) embedded",
            ),
            "knb-sweep-export",
        )
        self.export_status = css(widgets.HTML(""), "knb-sweep-export-status")

        bind = self.binding
        bind.attribute(self.prompt, "prompt")
        bind.attribute(self.name, "name")
        bind.attribute(self.prompts, "prompts")
        for axis, text in self.axis_texts.items():
            bind.bind(
                text,
                read=lambda s, axis=axis: s.axes.get(axis, ""),
                write=lambda s, value, axis=axis: _set_axis(s, axis, value),
            )
        bind.attribute(self.schedulers, "schedulers", to_widget=tuple, from_widget=list)
        bind.attribute(self.sizes, "sizes", to_widget=tuple, from_widget=list)
        bind.attribute(self.concurrency, "concurrency")
        self.run_button.on_click(self.errors.guard("Run sweep")(lambda _b: self.run()))
        self.cancel_button.on_click(self.errors.guard("Cancel sweep")(lambda _b: self.cancel()))
        self.sheet_button.on_click(self.errors.guard("Contact sheet")(lambda _b: self.draw_contact_sheet()))
        self.score_button.on_click(self.errors.guard("Scoring")(lambda _b: self.score()))
        self.rerun_button.on_click(self.errors.guard("Re-run cell")(lambda _b: self.rerun_cell()))
        self.export_button.on_click(self.errors.guard("Export grid")(lambda _b: self.export_grid()))
        super().__init__(
            children=[
                widgets.HTML(STYLE),
                self._with_problems("prompt", self.prompt),
                self._with_problems("name", self.name),
                widgets.HBox(
                    [
                        widgets.VBox([self._with_problems(axis, text) for axis, text in self.axis_texts.items()]),
                        self._with_problems("scheduler", self.schedulers),
                        self._with_problems("size", self.sizes),
                    ]
                ),
                self._with_problems("prompts", self.prompts),
                self.concurrency,
                self.problem_labels[GENERAL],
                self.summary,
                widgets.HBox([self.run_button, self.cancel_button, self.progress, self.progress_label]),
                self.errors.widget,
                widgets.HBox(list(self.layout_pickers.values())),
                self.grid,
                self.cell_picker,
                widgets.HBox([self.rerun_picker, self.rerun_button, self.rerun_status]),
                self.viewer,
                widgets.HBox([self.score_button, self.score_status]),
                widgets.HBox([self.sheet_button, self.sheet_status, self.export_button, self.export_status]),
                self.sheet_image,
            ],
            **box,
        )
        css(self, "knb-panel", "knb-sweep-panel")
        self._write_widgets()
        self.errors.guard("Sweep form")(self.replan)()

    def _with_problems(self, field: str, control: widgets.Widget) -> widgets.VBox:
        return widgets.VBox([control, self.problem_labels[field]])

    # -- public API --------------------------------------------------------------------------------------------
    @property
    def problem_label(self) -> widgets.HTML:
        """Where problems that belong to no single field are shown."""
        return self.problem_labels[GENERAL]

    @property
    def running(self) -> bool:
        """Whether a sweep is running from this panel."""
        return self.run_state.running

    @property
    def report(self) -> Any:
        """The last run's report (None before the first run finishes)."""
        return self.run_state.last_result

    def update(self, **changes: Any) -> None:
        """Set form values by SweepState field name; ``axes`` entries are merged (``update(axes={"steps": "10-30 (+10)"})``)."""
        axes = changes.pop("axes", None)
        for key, value in changes.items():
            if not hasattr(self.state, key):
                raise AttributeError(f"SweepState has no field {key!r}")
            setattr(self.state, key, value)
        if axes:
            self.state.axes = {**self.state.axes, **axes}
        self._write_widgets()
        self.replan()

    def base_request(self) -> ImageInferenceRequest | None:
        """The request every cell starts from (None: the panel's prompt with the model defaults)."""
        base = self.base
        if base is None:
            return None
        if isinstance(base, ImageInferenceRequest):
            return base
        request = getattr(base, "request", None)  # a GeneratePanel
        if request is None:
            raise SweepError("the GeneratePanel this sweep starts from is invalid; fix it first (see its problems)")
        return request

    def replan(self) -> None:
        """Build the plan from the form and estimate it (nothing is sent); problems are shown next to their fields,
        not raised."""
        self.plan, self.estimate = None, None
        base, found = None, {}
        try:
            base = self.base_request()
        except KandinskyNBError as exc:
            found = {GENERAL: [str(exc)]}
        found = found or sweep_form_problems(self.state, has_base=base is not None)
        if not found:
            prompt = self.state.prompt.strip() or None
            try:
                self.plan = self.session.sweep(
                    prompt if base is None else None,
                    name=self.state.name.strip() or None,
                    request=base.replace(positivePrompt=prompt) if base is not None and prompt else base,
                    **sweep_arguments(self.state),
                )
                self.estimate = self.plan.estimate(self.state.concurrency)
            except RequestValidationError as exc:  # engine refusals too: each problem names its request field
                for problem in exc.problems:
                    shown_at = _FIELD_OF_REQUEST.get(problem.field.split(".")[0], GENERAL)
                    found.setdefault(shown_at, []).append(str(problem))
            except KandinskyNBError as exc:
                found = {GENERAL: [str(exc)]}
        self.problems_by_field = found
        self.problems = [problem for key in FIELDS for problem in found.get(key, [])]
        for key, label in self.problem_labels.items():
            label.value = html_from_problems(found.get(key, []))
        self.summary.value = self._summary_html()
        self._draw_run()
        if self.plan is None:
            # An invalid form shows no grid or sheet: they would belong to a sweep that is not on screen.
            self.grid.value, self._grid_signature = "", ()
            self._cell_rows = {}  # nor cells to open
            self._offer_cells()
            self._hide_sheet()
        elif not self.running:
            if self.sheet is not None and self._sheet_of != self.plan.name:
                self._hide_sheet()
            self._draw_grid()

    def _hide_sheet(self) -> None:
        self.sheet, self._sheet_of = None, None
        self.sheet_image.layout.display = "none"

    def run(self) -> asyncio.Task[Any] | None:
        """Run (or resume) the planned sweep: a task on the running loop, else synchronously."""
        if self.running:
            self.progress_label.value = "<b>Already running</b>: this click was ignored."
            return self.task
        self.replan()
        if self.plan is None:
            raise SweepError("the sweep cannot run: " + "; ".join(self.problems) + " Fix the fields marked in red.")
        plan = self.plan
        self._begin(plan)
        self.task = run_in_background(lambda: self._arun(plan), lambda: self._run_now(plan))
        return self.task

    def contact_sheet(self) -> Any:
        """Draw the sweep's labelled contact sheet (``plan.grid()``: X across, Y down, failed cells as placeholders)
        now, and show it."""
        plan = self._plan_to_draw()
        self._sheet_busy(plan)
        try:
            sheet = plan.grid(**self._grid_arguments(plan))
            png = sheet._repr_png_()
        finally:
            self._sheet_idle()
        return self._show_sheet(plan, sheet, png)

    def draw_contact_sheet(self) -> asyncio.Task[Any] | None:
        """What the Contact sheet button does: draw the sheet off the event loop (reading every image takes a while on
        a big sweep), saying so meanwhile; a task when an event loop runs, else now."""
        plan = self._plan_to_draw()
        if self.sheet_task is not None and not self.sheet_task.done():
            return self.sheet_task  # already drawing: a second click waits for the same sheet
        self._sheet_busy(plan)
        self.sheet_task = run_in_background(lambda: self._adraw_sheet(plan), lambda: self._draw_sheet_now(plan))
        return self.sheet_task

    def _plan_to_draw(self) -> Any:
        if self.plan is None:
            raise SweepError("there is no valid sweep to draw; fix the problems shown above first.")
        return self.plan

    async def _adraw_sheet(self, plan: Any) -> Any:
        layout = self._grid_arguments(plan)

        def draw() -> tuple[Any, bytes]:
            sheet = plan.grid(**layout)
            return sheet, sheet._repr_png_()

        try:
            sheet, png = await asyncio.to_thread(draw)
        except Exception as exc:
            self.errors.show(exc, "Contact sheet")
            return None
        finally:
            self._sheet_idle()
        return self._show_sheet(plan, sheet, png)

    def _draw_sheet_now(self, plan: Any) -> Any:
        try:
            return self.contact_sheet()
        except Exception as exc:
            self.errors.show(exc, "Contact sheet")
            return None

    def _sheet_busy(self, plan: Any) -> None:
        self.sheet_button.disabled = True
        self.sheet_button.description = "Drawing…"
        self.sheet_status.value = (
            f'<span class="knb-muted">Drawing the contact sheet of {len(plan)} cells (reading every image)…</span>'
        )

    def _sheet_idle(self) -> None:
        self.sheet_button.disabled = False
        self.sheet_button.description = "Contact sheet"
        self.sheet_status.value = ""

    def _show_sheet(self, plan: Any, sheet: Any, png: bytes) -> Any:
        if self.plan is None or self.plan.name != plan.name:
            return sheet  # the form moved on while drawing: this sheet belongs to a sweep no longer on screen
        self.sheet, self._sheet_of = sheet, plan.name
        self.sheet_image.value = png
        self.sheet_image.layout.display = None
        return sheet

    def score(self) -> asyncio.Task[Any] | None:
        """Score the planned sweep's images in the background (scores already stored are not computed again) and
        caption the grid's cells when they arrive; a task when an event loop runs, else the captions follow from the
        scoring thread. The Run button does this when a run ends."""
        plan = self._plan_to_draw()
        future = self.scores.start(self.session, plan.name)
        self._show_scores()
        self.score_task = when_scored(future, self._show_scores)
        return self.score_task

    def _show_scores(self) -> None:
        self.score_status.value = (
            f'<span class="knb-muted">{html.escape(self.scores.status_words(self.session.demo))}</span>'
        )
        if self.scores.error is not None:
            self.errors.show(self.scores.error, "Scoring")
        self._draw_run()
        if self.plan is not None and not self.running:
            self._draw_grid()

    def open_cell(self, cell: str | int) -> RunViewer:
        """Open a finished cell in the run viewer, by its coordinates (``"seed=1, CFGScale=5"``, as the grid's
        tooltips and the Open cell list show them) or its row id."""
        run_id = cell if isinstance(cell, int) else self._cell_rows.get(cell)
        if run_id is None:
            done = ", ".join(self._cell_rows) or "none yet"
            raise SweepError(f"cell={cell!r} has no image to open; finished cells: {done}. Run the sweep first.")
        self.viewer.show(run_id)
        return self.viewer

    def _on_pick(self, change: dict[str, Any]) -> None:
        if change["new"] is None or self._offering:
            return
        self.open_cell(int(change["new"]))
        # Back to the prompt, so a second click on the same cell opens it again (an unchanged choice fires nothing).
        self._offering = True
        try:
            self.cell_picker.value = None
        finally:
            self._offering = False

    # -- grid layout, re-run, export ----------------------------------------------------------------------------
    def grid_axes(self) -> tuple[str | None, str | None, list[str]]:
        """The axes the grid and the contact sheet put across, down and per block (the form's choice, else the
        default)."""
        varied = [axis.name for axis in self.plan.varied] if self.plan is not None else []
        return sweep_grid_axes(varied, self.state.across, self.state.down, self.state.per_block)

    def _grid_arguments(self, plan: Any) -> dict[str, Any]:
        x, y, z = sweep_grid_axes(
            [axis.name for axis in plan.varied], self.state.across, self.state.down, self.state.per_block
        )
        return {"x": x, "y": y, "z": z}

    def choose_layout(self, role: str, axis: str | None) -> None:
        """Put ``axis`` across, down or per block (``role``: across, down, per_block); the axis that held that place
        swaps to the place ``axis`` left. The grid and a contact sheet on screen are redrawn."""
        if role not in GRID_ROLES:
            raise SweepError(f"role={role!r} is not a grid place; use one of {', '.join(GRID_ROLES)}")
        x, y, z = self.grid_axes()
        current = {"across": x, "down": y, "per_block": z[0] if z else None}
        if axis is not None and axis not in {a for a in (x, y, *z) if a}:
            varied = ", ".join(a for a in (x, y, *z) if a) or "none"
            raise SweepError(f"axis={axis!r} is not varied by this sweep; its varied axes are: {varied}")
        for other, held in current.items():
            if other != role and held == axis and axis is not None:
                current[other] = current[role]  # swap: the other place takes what this one held
        current[role] = axis
        self.state.across, self.state.down, self.state.per_block = (
            current["across"],
            current["down"],
            current["per_block"],
        )
        self._redraw_layout()

    def _redraw_layout(self) -> None:
        self._grid_signature = ()
        if self.plan is None:
            return
        self._draw_grid()
        if self.sheet is not None and self._sheet_of == self.plan.name:
            self.draw_contact_sheet()

    def _on_layout(self, role: str, change: dict[str, Any]) -> None:
        if not self._laying_out and change["new"] is not None:
            self.choose_layout(role, change["new"])

    def _offer_layout(self) -> None:
        """The layout dropdowns: every varied axis in each, set to where it is drawn now."""
        x, y, z = self.grid_axes()
        options = [(_NO_AXIS, None), *((a, a) for a in (x, y, *z) if a)]
        values = {"across": x, "down": y, "per_block": z[0] if z else None}
        self._laying_out = True  # the panel's own choice, not a person's: no swap
        try:
            for role, picker in self.layout_pickers.items():
                if list(picker.options) != options:
                    picker.options = options
                picker.value = values[role]
        finally:
            self._laying_out = False

    def rerun_cell(self, cell: str | int | None = None) -> asyncio.Task[Any] | None:
        """Run one cell again: by its coordinates (as the grid's tooltips show them), its key, its index, or the one
        chosen in the Cell list. Same request, a new taskUUID, logged as a new run of that cell; the grid then shows
        the new result. A task when an event loop runs, else now."""
        plan = self._plan_to_draw()
        if self.running or self.rerunning:
            raise SweepError("the sweep is running; re-run a cell when it has finished (or cancel it first)")
        chosen = self.rerun_picker.value if cell is None else cell
        if chosen is None:
            raise SweepError("no cell is chosen; pick one in the Cell list (failed and finished cells are offered)")
        if isinstance(chosen, str):
            chosen = next((c.key for c in plan.cells if _cell_label(c) == chosen), chosen)
        target = plan.cell(chosen)  # an unknown cell is refused here, before anything is sent
        self.rerunning = True
        self.rerun_status.value = f'<span class="knb-muted">Re-running {html.escape(_cell_label(target))}…</span>'
        self._draw_run()
        self.rerun_task = run_in_background(lambda: self._arerun(plan, target), lambda: self._rerun_now(plan, target))
        return self.rerun_task

    async def _arerun(self, plan: Any, cell: Any) -> Any:
        report = None
        try:
            report = await plan.arerun_cell(cell)
        except Exception as exc:
            self.errors.show(exc, "Re-run cell")
        finally:
            self._rerun_done(cell, report)
        return report

    def _rerun_now(self, plan: Any, cell: Any) -> Any:
        report = None
        try:
            report = plan.rerun_cell(cell)
        except Exception as exc:
            self.errors.show(exc, "Re-run cell")
        finally:
            self._rerun_done(cell, report)
        return report

    def _rerun_done(self, cell: Any, report: Any) -> None:
        self.rerunning = False
        outcome = "not run" if report is None else ("ok" if report.ok else "failed (logged)")
        self.rerun_status.value = html.escape(f"Re-run of {_cell_label(cell)}: {outcome}")
        self.replan()  # the new run changes the cell's state, the estimate and the grid
        if self.plan is not None and self.sheet is not None and self._sheet_of == self.plan.name:
            self.draw_contact_sheet()

    def _offer_reruns(self, states: dict[str, Any]) -> None:
        """The Cell choices: every finished cell (failed ones first, the usual reason to re-run)."""
        finished = [(cell, states[cell.key][0]) for cell in self.plan.cells if states[cell.key][0] in ("ok", "failed")]
        finished.sort(key=lambda pair: pair[1] != "failed")
        options = [(_NO_RERUN, None), *((f"{_cell_label(cell)} · {state}", cell.key) for cell, state in finished)]
        if list(self.rerun_picker.options) != options:
            keep = self.rerun_picker.value if self.rerun_picker.value in {key for _, key in options} else None
            self.rerun_picker.options = options
            self.rerun_picker.value = keep

    def export_grid(self, path: str | Path | None = None) -> Path:
        """Write the contact sheet, in the layout chosen, as a PNG with the sweep embedded (its name, base request,
        axes, cell keys and where each cell is drawn; read it back with
        :func:`kandinsky_nb.analysis.grid.read_grid_metadata`). ``path``: default ``<run-log home>/grids/<name>.png``."""
        plan = self._plan_to_draw()
        out = Path(path) if path is not None else Path(self.session.runs.home) / "grids" / f"{plan.name}.png"
        saved = plan.grid(**self._grid_arguments(plan)).save(out)
        self.export_status.value = f'<span class="knb-muted">saved {html.escape(str(saved))}</span>'
        return saved

    def _reuse_target(self) -> Any:
        # The viewer's Reuse fills the GeneratePanel this sweep starts from, or one opened under the viewer.
        if hasattr(self.base, "load_request"):
            return self.base
        if not self.viewer.panel_area.children:
            from .generate import GeneratePanel

            self.viewer.panel_area.children = [GeneratePanel(self.session)]
        return self.viewer.panel_area.children[0]

    def cancel(self) -> None:
        """Stop starting new cells; cells in flight finish and are logged. Run again to resume the rest."""
        if self.plan is not None:
            self.run_state.cancel_requested = True
            self.plan.cancel()
            self.progress_label.value = "Cancelling: cells in flight finish; run again to resume the rest."

    # -- running -----------------------------------------------------------------------------------------------
    def _begin(self, plan: Any) -> None:
        self.run_state.begin(time.perf_counter())
        self.progress.max = max(len(plan), 1)
        self._poll(plan)

    async def _arun(self, plan: Any) -> Any:
        async def poller() -> None:
            while True:
                await asyncio.sleep(_POLL_SECONDS)
                self._poll(plan)

        polling = asyncio.ensure_future(poller())
        report = None
        try:
            report = await plan.arun(self.state.concurrency, progress=False)
        except Exception as exc:
            self.errors.show(exc, "Sweep")
        finally:
            polling.cancel()
            self._end(plan, report)
        return report

    def _run_now(self, plan: Any) -> Any:
        report = None
        try:
            report = plan.run(self.state.concurrency, progress=False)
        except Exception as exc:
            self.errors.show(exc, "Sweep")
        finally:
            self._end(plan, report)
        return report

    def _end(self, plan: Any, report: Any) -> None:
        run = self.run_state
        if report is None:
            run.end("failed")
        else:
            run.results.append(report)
            run.end("success" if not report.failed and not report.not_run else "partial")
        self._poll(plan)
        if report is not None:
            self.progress_label.value = html.escape(report_words(report, self.session.engine, self.session.demo))
        self.replan()
        if report is not None and report.ok + report.skipped_done and self.plan is not None:
            self.errors.guard("Scoring")(self.score)()

    def _poll(self, plan: Any) -> None:
        run = self.run_state
        if run.cancel_requested:
            # A plan clears its cancel flag when it starts; a Cancel clicked just before that is repeated here.
            plan.cancel()
        counts = plan.status()
        done = counts.get("ok", 0) + counts.get("failed", 0)
        if run.running:
            run.progress = min(done / max(len(plan), 1), 1.0)
        self.progress_label.value = (
            f"{counts.get('ok', 0)} ok · {counts.get('failed', 0)} failed · {counts.get('pending', 0)} in flight · "
            f"{counts.get('new', 0)} to go · "
            + html.escape(spent_words(self.session.budget.spent, self.session.engine, self.session.demo))
        )
        self._draw_run()
        self._draw_grid()

    def _draw_run(self) -> None:
        """Buttons and progress bar, drawn from ``run_state``."""
        run = self.run_state
        nothing_to_run = self.estimate is not None and self.estimate.cells_to_run == 0
        self.run_button.disabled = self.plan is None or run.running or not self._within_budget() or nothing_to_run
        # A finished sweep says so on its button, rather than offering a run that would do nothing.
        self.run_button.description = "All done" if nothing_to_run and not run.running else "Run / resume"
        self.cancel_button.disabled = not run.running
        self.score_button.disabled = self.plan is None or run.running or self.scores.scoring
        self.rerun_button.disabled = self.plan is None or run.running or self.rerunning
        self.export_button.disabled = self.plan is None
        self.progress.value = round(run.progress * self.progress.max)
        self.progress.bar_style = {"success": "success", "partial": "warning", "failed": "danger"}.get(
            run.outcome, "info"
        )

    # -- view --------------------------------------------------------------------------------------------------
    def _within_budget(self) -> bool:
        return self.estimate is None or bool(getattr(self.estimate, "within_budget", True))

    def _summary_html(self) -> str:
        e = self.estimate
        if e is None or self.plan is None:
            return ""
        shape = " × ".join(f"{a.name} [{len(a)}]" for a in self.plan.varied) or "one cell"
        budget = (
            "no cap"
            if e.budget_left_usd is None
            else f"{format_usd(e.budget_left_usd)} left" + ("" if self._within_budget() else " — <b>not enough</b>")
        )
        demo = f' · <span class="knb-demo">{DEMO_NOTE}</span>' if self.session.demo else ""
        source = html.escape(cost_source_note(e.cost_source, self.session.engine, self.session.demo))
        to_run = (
            f"to run now: {e.cells_to_run} cells, {format_usd(e.cost_to_run_usd)}, {format_seconds(e.seconds_to_run)}"
            if e.cells_to_run
            else "<b>all cells are done</b>: nothing to run (give the sweep a new name to run it again)"
        )
        return (
            f"<b>{html.escape(self.plan.name)}</b>: {shape} = <b>{e.cells}</b> cells, {e.images} images, "
            f"{format_usd(e.cost_usd)} ({source}) · {to_run} · budget: {budget}{demo}"
        )

    def _draw_grid(self) -> None:
        """The cells as tables that fill in as they finish, in the chosen layout: one axis across, one down, one table
        per block."""
        plan = self.plan
        states = plan.cell_states()
        x, y, z = self.grid_axes()
        # The layout and the scores' revision too: a new layout or captions that arrive later redraw the same cells.
        signature = (*((key, state) for key, (state, _) in states.items()), self.scores.revision, x, y, tuple(z))
        if signature == self._grid_signature:
            return
        self._grid_signature = signature
        self._offer_layout()
        self._cell_rows = {
            _cell_label(cell): int(states[cell.key][1]["id"])
            for cell in plan.cells
            if states[cell.key][0] == "ok" and states[cell.key][1] is not None and states[cell.key][1].get("image_path")
        }
        self._offer_cells()
        self._offer_reruns(states)
        values = {axis.name: list(axis.values) for axis in plan.varied}
        columns = values[x] if x else [None]
        blocks: dict[str, dict[str, dict[Any, str]]] = {}  # block label -> row label -> column value -> cell
        for cell in plan.cells:
            state, row = states[cell.key]
            block = ", ".join(f"{a}={cell.coords.get(a)}" for a in z)
            down = f"{y}={cell.coords.get(y)}" if y else " "
            blocks.setdefault(block, {}).setdefault(down, {})[cell.coords.get(x) if x else None] = self._cell_html(
                cell, state, row
            )
        header = "".join(f"<th>{html.escape(f'{x}={v}' if x else '')}</th>" for v in columns)
        tables = []
        for block, rows in blocks.items():
            body = "".join(
                f"<tr><th style='text-align:right'>{html.escape(label)}</th>"
                + "".join(f"<td>{cells.get(v, '')}</td>" for v in columns)
                + "</tr>"
                for label, cells in rows.items()
            )
            title = f'<div class="knb-caption knb-sweep-block">{html.escape(block)}</div>' if block else ""
            tables.append(f'{title}<table class="knb-sweep-table"><tr><th></th>{header}</tr>{body}</table>')
        # A wide sweep scrolls inside the panel instead of spilling out of it.
        self.grid.value = f'<div class="knb-scroll">{"".join(tables)}</div>'

    def _cell_html(self, cell: Any, state: str, row: dict[str, Any] | None) -> str:
        size = _GRID_THUMB
        if state == "ok" and row is not None and row.get("image_path"):
            path = str(self.session.runs.image_path(row))
            if path not in self._thumbs:
                self._thumbs[path] = data_uri(*thumbnail(Path(path).read_bytes(), size))
            caption = self.scores.caption(row.get("id"))
            scores = f'<div class="knb-caption knb-cell-score">{html.escape(caption)}</div>' if caption else ""
            label = html.escape(_cell_label(cell))
            return (
                f'<img class="knb-cell-ok" src="{self._thumbs[path]}" title="{label} · click to open" '
                f'data-cell="{label}" onclick="{_OPEN_CELL_HANDLER}" style="cursor:pointer"/>{scores}'
            )
        text = {"failed": "failed", "pending": "running…"}.get(state, "to do")
        title = html.escape((row or {}).get("error_message") or cell.key)
        return (
            f'<div class="knb-cell knb-cell-{state}" title="{title}" '
            f'style="width:{size}px;height:{size // 2}px">{text}</div>'
        )

    def _offer_cells(self) -> None:
        """The Open cell choices: every cell with an image, by its key (what the grid's click selects)."""
        options = [(_NO_CELL, None), *((key, run_id) for key, run_id in self._cell_rows.items())]
        if list(self.cell_picker.options) != options:
            keep = self.cell_picker.value if self.cell_picker.value in self._cell_rows.values() else None
            self._offering = True  # new choices are not a person's pick: nothing opens
            try:
                self.cell_picker.options = options
                self.cell_picker.value = keep
            finally:
                self._offering = False

    def _write_widgets(self) -> None:
        self.binding.push()

    def _on_edit(self, state: SweepState, _change: dict[str, Any]) -> None:
        self.state = state
        self.replan()


def _cell_label(cell: Any) -> str:
    """A cell's coordinates as people read them (``seed=1, CFGScale=5``), the grid's tooltip and the Open cell choice."""
    return ", ".join(f"{axis}={value}" for axis, value in cell.coords.items()) or "the only cell"


def _set_axis(state: SweepState, axis: str, text: str) -> None:
    if text.strip():
        state.axes[axis] = text
    else:  # empty: not swept
        state.axes.pop(axis, None)
