"""The run viewer and the comparison: one logged run in full, and runs side by side with what differs marked.

A run is a row of the run log. :class:`ViewerState` and :class:`ComparisonState` hold what is shown as plain data, and
the decisions on it are plain functions of a row (the request that reproduces it, the code that does, the parameters
compared); :class:`RunViewer` and :class:`ComparisonView` are thin widget views over them. The Gallery, the SweepPanel
and the GeneratePanel open their runs here.

This module imports no other panel: a panel hands the viewer where "Reuse" goes (``panel=`` a GeneratePanel, or
``open_panel=`` a function that opens one), so the panels can import the viewer without an import circle.
"""

from __future__ import annotations

import asyncio
import html
import json
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..errors import ConfigurationError
from ..html import (
    DEMO_NOTE,
    STYLE,
    ComparedRun,
    differing_fields,
    engine_label,
    format_seconds,
    format_usd,
    html_from_code,
    html_from_comparison,
    html_from_file_link,
    html_from_params,
    html_from_wipe,
)
from ..planning.code import reproduce_code
from ..types import ImageInferenceRequest
from ._common import ErrorArea, css, run_in_background
from .state import GenerateState, state_from_request

__all__ = [
    "ComparisonState",
    "ComparisonView",
    "RunViewer",
    "ViewerState",
    "code_for_row",
    "compare_runs",
    "compared_outcome",
    "compared_params",
    "detail_params",
    "format_created",
    "plain_row",
    "plain_value",
    "request_from_row",
]

# Request fields that say nothing about the image: a new task gets a new taskUUID, and every run has the same type.
_NOT_COMPARED = ("taskUUID", "taskType")
# Fields the run log keeps as the effective value (what the engine used, defaults filled in): a run that left the
# scheduler to the model and one that named the model's default made the same image, so they compare equal.
_EFFECTIVE_COLUMNS = ("steps", "CFGScale", "scheduler", "seed")


# -- plain values from a row ------------------------------------------------------------------------------------------


def plain_value(value: Any) -> Any:
    """A pandas or NumPy scalar as plain Python (NaN -> None), for display and comparison."""
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def plain_row(row: Any) -> dict[str, Any]:
    """A run-log row (a dict, or a pandas Series from ``session.runs.df``) as a dict of plain values."""
    items = row.to_dict() if hasattr(row, "to_dict") else dict(row)
    return {str(key): plain_value(value) for key, value in items.items()}


def request_from_row(row: Any) -> ImageInferenceRequest:
    """The request that reproduces a logged image: its exact request JSON with the image's own seed fixed (so "reuse"
    gives the same image, not a new random one) and a fresh taskUUID."""
    wire = json.loads(row["request_json"])
    wire.pop("taskUUID", None)
    seed = plain_value(row.get("seed") if hasattr(row, "get") else row["seed"])
    if seed is not None:
        wire["seed"] = int(seed)
    return ImageInferenceRequest.model_validate(wire)


def format_created(value: Any) -> str:
    """A logged UTC timestamp as ``2026-12-01 13:30:12 UTC`` (— when missing)."""
    value = plain_value(value)
    if value is None or value == "":
        return "—"
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo is not None else stamp
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def detail_params(row_id: int, row: Any) -> dict[str, Any]:
    """The opened image's facts, formatted for people (money as dollars, times as seconds, dates as dates)."""
    params: dict[str, Any] = {
        "row": row_id,
        "engine": row.get("engine"),
        "seed": plain_value(row.get("seed")),
        "cost": format_usd(plain_value(row.get("cost_usd"))),
        "latency": format_seconds(plain_value(row.get("latency_s"))),
    }
    gpu_seconds = plain_value(row.get("gpu_seconds"))
    if gpu_seconds is not None:
        params["GPU time"] = format_seconds(gpu_seconds)
    params["created"] = format_created(row.get("created_utc"))
    params["sweep"] = plain_value(row.get("sweep_id")) or "—"
    params["request"] = json.loads(row["request_json"])
    if bool(row.get("demo")):
        params["note"] = DEMO_NOTE
    return params


def code_for_row(row: Any) -> str:
    """Python that reproduces a logged run exactly: the same request and seed on the same engine, a new taskUUID (the
    builder the Jupyter sidebar and ``%knb code`` use)."""
    run = plain_row(row)
    run["request"] = json.loads(run["request_json"])
    run["created_utc"] = format_created(run.get("created_utc"))
    return reproduce_code(run)


def compared_params(row: Any) -> dict[str, Any]:
    """The parameters that decide a run's image, as compared between runs: the engine, the prompt, the size, the
    effective steps, CFG scale, scheduler and seed (defaults filled in, as the run log keeps them), then every other
    request field as sent."""
    run = plain_row(row)
    request = {k: v for k, v in json.loads(run["request_json"]).items() if k not in _NOT_COMPARED}
    params: dict[str, Any] = {
        "engine": engine_label(str(run.get("engine")), bool(run.get("demo"))),
        "positivePrompt": request.pop("positivePrompt", run.get("prompt")),
    }
    width, height = request.pop("width", run.get("width")), request.pop("height", run.get("height"))
    params["size"] = f"{width}x{height}"
    for column in _EFFECTIVE_COLUMNS:
        logged = run.get(column)
        params[column] = logged if logged is not None else request.get(column)
        request.pop(column, None)
    params.update(sorted(request.items()))
    return params


def compared_outcome(row: Any) -> dict[str, Any]:
    """What a run came to (shown under a comparison, never marked as a difference: every run's time differs)."""
    run = plain_row(row)
    return {
        "status": run.get("status"),
        "cost": format_usd(run.get("cost_usd")),
        "latency": format_seconds(run.get("latency_s")),
        "created": format_created(run.get("created_utc")),
        "sweep": run.get("sweep_cell") or run.get("sweep_id") or "—",
    }


def _run_title(run: Mapping[str, Any]) -> str:
    return f"#{run.get('id')}"


def _image_format(run: Mapping[str, Any]) -> str:
    return str(run.get("image_format") or "png").lower().replace("jpg", "jpeg")


class _Images:
    """Where a row's image file is: run-log rows keep it relative to the log's home, ``runs.df`` gives it absolute."""

    def __init__(self, runs: Any = None) -> None:
        self.runs = runs

    def path(self, run: Mapping[str, Any]) -> Path | None:
        stored = run.get("image_path")
        if not stored:
            return None
        path = Path(str(stored))
        if not path.is_absolute() and self.runs is not None:
            return Path(self.runs.image_path(dict(run)))
        return path

    def read(self, run: Mapping[str, Any]) -> bytes | None:
        path = self.path(run)
        return path.read_bytes() if path is not None and path.is_file() else None


def _row_of(runs: Any, run: Any) -> dict[str, Any]:
    """A run given as a row (dict or Series) or as its row id (read from ``runs``, the run log)."""
    if isinstance(run, numbers.Integral) and not isinstance(run, bool):  # NumPy's integers too (a df's ids)
        if runs is None:
            raise ConfigurationError(
                f"run={run}: a row id needs a run log to read it from; pass session= (or runs=), or pass the row "
                "itself (a row of session.runs.df)"
            )
        rows = runs.get(int(run))
        if not rows:
            raise ConfigurationError(f"run={run}: no such row in the run log; session.runs.df lists the rows")
        return plain_row(rows[0])
    return plain_row(run)


# -- state ------------------------------------------------------------------------------------------------------------


@dataclass
class ComparisonState:
    """The runs being compared, in the order they were added (each at most once)."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ids(self) -> list[Any]:
        return [run.get("id") for run in self.runs]

    def add(self, row: Any) -> bool:
        """Add a run; False when it is already there."""
        run = plain_row(row)
        if run.get("id") in self.ids:
            return False
        self.runs.append(run)
        return True

    def remove(self, run_id: Any) -> None:
        self.runs = [run for run in self.runs if run.get("id") != run_id]

    def clear(self) -> None:
        self.runs = []

    def differing(self) -> list[str]:
        """The parameters that differ between the runs (empty with fewer than two)."""
        return differing_fields([compared_params(run) for run in self.runs]) if len(self.runs) > 1 else []

    def compared_runs(self, images: Callable[[Mapping[str, Any]], bytes | None]) -> list[ComparedRun]:
        return [
            ComparedRun(
                title=_run_title(run),
                image=images(run),
                params=compared_params(run),
                outcome=compared_outcome(run),
                demo=bool(run.get("demo")),
            )
            for run in self.runs
        ]


@dataclass
class ViewerState:
    """The run the viewer shows (a run-log row, plain values; None: closed), what its last action did, and whether a
    re-run is under way."""

    run: dict[str, Any] | None = None
    rerunning: bool = False
    message: str = ""

    @property
    def run_id(self) -> Any:
        return None if self.run is None else self.run.get("id")

    def _open_run(self) -> dict[str, Any]:
        if self.run is None:
            raise ConfigurationError("no run is open in the viewer; open one first (viewer.show(row or row id))")
        return self.run

    def request(self) -> ImageInferenceRequest:
        """The request that reproduces the open run (its seed fixed, a new taskUUID each call)."""
        return request_from_row(self._open_run())

    def generate_state(self) -> GenerateState:
        """The GeneratePanel form that reproduces the open run."""
        return state_from_request(self.request())

    def code(self) -> str:
        """Python that reproduces the open run exactly."""
        return code_for_row(self._open_run())


# -- views ------------------------------------------------------------------------------------------------------------


class ComparisonView(widgets.VBox):
    """Runs side by side with the parameters that differ marked, and for two runs a wipe between their images; Clear
    empties it. ``add(row)`` adds a run (a row of the run log), ``state`` holds the runs."""

    def __init__(self, runs: Any = None, **box_kwargs: Any) -> None:
        self.state = ComparisonState()
        self._images = _Images(runs)
        self._listeners: list[Callable[[], Any]] = []
        self.table = css(widgets.HTML(""), "knb-compare-view")
        self.wipe = css(widgets.HTML(""), "knb-compare-wipe")
        self.clear_button = css(
            widgets.Button(
                description="Clear comparison", icon="times", tooltip="remove every run from the comparison"
            ),
            "knb-compare-clear",
        )
        self.errors = ErrorArea("knb-compare-errors")
        self.clear_button.on_click(self.errors.guard("Clear comparison")(lambda _b: self.clear()))
        super().__init__(children=[self.table, self.wipe, self.clear_button, self.errors.widget], **box_kwargs)
        css(self, "knb-comparison")
        self.draw()

    def add(self, row: Any) -> bool:
        added = self.state.add(row)
        self.draw()
        return added

    def clear(self) -> None:
        self.state.clear()
        self.draw()

    def on_change(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` after runs are added or cleared (the viewer shows itself while it has runs)."""
        self._listeners.append(callback)

    def draw(self) -> None:
        runs = self.state.runs
        self.layout.display = None if runs else "none"
        self.wipe.value = ""
        if len(runs) == 1:
            self.table.value = (
                f'<span class="knb-muted">Comparing {html.escape(_run_title(runs[0]))}: open another run and click '
                "Compare to see them side by side.</span>"
            )
        elif runs:
            compared = self.state.compared_runs(self._images.read)
            self.table.value = html_from_comparison(compared)
            if len(compared) == 2:
                self.wipe.value = html_from_wipe(*compared)
        else:
            self.table.value = ""
        for callback in self._listeners:
            callback()


class RunViewer(widgets.VBox):
    """One logged run: its full image (aspect kept), its parameters, and actions: Reuse (fill a GeneratePanel),
    Re-run (the same request, a new taskUUID, through the session), Compare (add it to :attr:`comparison`), a link to
    its file, and the code that reproduces it with a Copy button.

    ``session``: the Session a re-run goes through (and whose run log a row id is read from); ``runs``: a run log
    when there is no session. ``panel``: the GeneratePanel Reuse fills; ``open_panel``: a function returning one,
    called at each Reuse when ``panel`` is None (the Gallery opens one under itself).
    """

    def __init__(
        self,
        session: Any = None,
        run: Any = None,
        *,
        runs: Any = None,
        panel: Any = None,
        open_panel: Callable[[], Any] | None = None,
        comparison: ComparisonView | None = None,
        **box_kwargs: Any,
    ) -> None:
        self.session = session
        self._runs = runs if runs is not None else getattr(session, "runs", None)
        self._images = _Images(self._runs)
        self.panel = panel
        self._open_panel = open_panel
        self.state = ViewerState()
        self.rerun_task: asyncio.Task[Any] | None = None
        self._listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._on_close: list[Callable[[], Any]] = []
        self.errors = ErrorArea("knb-viewer-errors")

        self.title = css(widgets.HTML(""), "knb-viewer-title")
        # In a flex row an <img> is stretched to the row's height unless told otherwise (a 1280x768 image drawn at
        # 160x374): keep its own aspect, at most 512 px wide and never wider than the panel.
        self.image = css(
            widgets.Image(
                format="png",
                layout=widgets.Layout(
                    max_width="min(512px, 100%)",
                    width="auto",
                    height="auto",
                    object_fit="contain",
                    align_self="flex-start",
                ),
            ),
            "knb-viewer-image",
            "knb-detail-image",
        )
        self.params = css(widgets.HTML(""), "knb-viewer-params", "knb-detail-params")
        self.reuse_button = css(
            widgets.Button(
                description="Reuse these parameters",
                icon="share",
                disabled=True,
                tooltip="fill the GeneratePanel with this run's request, its seed included",
            ),
            "knb-reuse",
        )
        self.rerun_button = css(
            widgets.Button(
                description="Re-run",
                icon="redo",
                disabled=True,
                tooltip="send the same request again (same seed, a new taskUUID); it is logged as a new run",
            ),
            "knb-rerun",
        )
        self.compare_button = css(
            widgets.Button(
                description="Compare", icon="columns", disabled=True, tooltip="add this run to the comparison below"
            ),
            "knb-compare",
        )
        self.close_button = css(widgets.Button(description="Close", icon="times"), "knb-viewer-close")
        self.file_link = css(widgets.HTML(""), "knb-viewer-file")
        self.code_html = css(widgets.HTML(""), "knb-viewer-code")
        self.status = css(widgets.HTML(""), "knb-viewer-status")
        self.panel_area = widgets.VBox([])
        self.comparison = comparison if comparison is not None else ComparisonView(self._runs)
        self.comparison.on_change(self._draw)

        self.reuse_button.on_click(self.errors.guard("Reuse")(lambda _b: self.reuse()))
        self.rerun_button.on_click(self.errors.guard("Re-run")(lambda _b: self.rerun()))
        self.compare_button.on_click(self.errors.guard("Compare")(lambda _b: self.compare()))
        self.close_button.on_click(self.errors.guard("Close")(lambda _b: self.close()))
        self.body = widgets.VBox(
            [
                self.title,
                widgets.HBox([self.image, self.params], layout=widgets.Layout(flex_flow="row wrap")),
                widgets.HBox(
                    [self.reuse_button, self.rerun_button, self.compare_button, self.close_button],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                self.status,
                self.errors.widget,
                self.file_link,
                self.code_html,
                self.panel_area,
            ]
        )
        super().__init__(children=[widgets.HTML(STYLE), self.body, self.comparison], **box_kwargs)
        css(self, "knb-viewer")
        self.body.layout.display = "none"
        self.layout.display = "none"  # until a run is opened
        if run is not None:
            self.show(run)

    # -- public API --------------------------------------------------------------------------------------------
    @property
    def run(self) -> dict[str, Any] | None:
        """The open run (a run-log row as plain values), or None."""
        return self.state.run

    def show(self, run: Any) -> None:
        """Open a run: a row of the run log (dict or a Series of ``session.runs.df``) or its row id."""
        row = _row_of(self._runs, run)
        self.state.run, self.state.message = row, ""
        data = self._images.read(row)
        self.image.format = _image_format(row)
        self.image.value = data or b""
        self.image.layout.display = None if data else "none"
        demo = f' <span class="knb-demo">{html.escape(DEMO_NOTE)}</span>' if row.get("demo") else ""
        state_words = "" if row.get("status") == "ok" else f" · <b>{html.escape(str(row.get('status')))}</b>"
        self.title.value = (
            f"<b>Run #{html.escape(str(row.get('id')))}</b>{state_words} · {html.escape(_prompt_line(row))}{demo}"
        )
        self.params.value = html_from_params(detail_params(row.get("id"), row))
        path = self._images.path(row)
        self.file_link.value = html_from_file_link(str(path)) if path is not None else ""
        self.code_html.value = html_from_code(self.state.code())
        self.errors.clear()
        self.body.layout.display = None
        self._draw()

    def close(self) -> None:
        """Close the open run (the comparison stays)."""
        self.state.run = None
        self.body.layout.display = "none"
        self._draw()
        for callback in self._on_close:
            callback()

    def code(self) -> str:
        """Python that reproduces the open run (the text the Copy button copies)."""
        return self.state.code()

    def reuse(self) -> Any:
        """Fill the GeneratePanel with the open run's request (seed included) and return the panel."""
        request = self.state.request()
        target = self.panel if self.panel is not None else (self._open_panel() if self._open_panel else None)
        if target is None:
            raise ConfigurationError(
                "Reuse: this viewer has no GeneratePanel to fill; pass panel=GeneratePanel(session) to RunViewer, "
                "or use viewer.state.generate_state() for the form's values"
            )
        target.load_request(request)
        self.state.message = f"Reused run #{self.state.run_id} in the GeneratePanel."
        self._draw()
        return target

    def rerun(self) -> asyncio.Task[Any] | None:
        """Send the open run's request again through the session (same seed, a new taskUUID), log it as a new run and
        open that: a task when an event loop runs, else now."""
        if self.state.rerunning:
            return self.rerun_task  # one re-run at a time: a double click never pays twice
        if self.session is None:
            raise ConfigurationError("Re-run needs a Session; open the viewer with RunViewer(session, ...)")
        request = self.state.request()
        session = self.session
        self.state.rerunning, self.state.message = True, f"Re-running run #{self.state.run_id}…"
        self._draw()
        self.rerun_task = run_in_background(
            lambda: self._arerun(session, request), lambda: self._rerun_now(session, request)
        )
        return self.rerun_task

    def compare(self, run: Any = None) -> bool:
        """Add a run (the open one by default) to the comparison; False when it was already there."""
        row = self.state.run if run is None else _row_of(self._runs, run)
        if row is None:
            raise ConfigurationError("Compare: no run is open; open one first (viewer.show(row or row id))")
        added = self.comparison.add(row)
        count = len(self.comparison.state.runs)
        self.state.message = (
            f"Run #{row.get('id')} {'added to' if added else 'is already in'} the comparison ({count} run(s))."
        )
        self._draw()
        return added

    def on_run(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``callback(row)`` with the new run's row after each re-run (a Gallery refreshes itself)."""
        self._listeners.append(callback)

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the viewer is closed."""
        self._on_close.append(callback)

    # -- internals ---------------------------------------------------------------------------------------------
    async def _arerun(self, session: Any, request: ImageInferenceRequest) -> Any:
        try:
            generation = await session.agenerate(request=request)
        except Exception as exc:
            self._rerun_failed(exc)
            return None
        self._reran(session, generation)
        return generation

    def _rerun_now(self, session: Any, request: ImageInferenceRequest) -> Any:
        try:
            generation = session.generate(request=request)
        except Exception as exc:
            self._rerun_failed(exc)
            return None
        self._reran(session, generation)
        return generation

    def _rerun_failed(self, error: BaseException) -> None:
        self.state.rerunning, self.state.message = False, "Re-run failed (logged as a failed run)."
        self._draw()
        self.errors.show(error, "Re-run")

    def _reran(self, session: Any, generation: Any) -> None:
        was = self.state.run_id
        rows = sorted(session.runs.get(generation.task_uuid), key=lambda r: r.get("result_index") or 0)
        self.state.rerunning = False
        if not rows:  # logged elsewhere (a run log of another home): say so rather than show an old run as new
            self.state.message = f"Re-ran run #{was}; its row is not in this run log."
            self._draw()
            return
        self.show(rows[0])
        self.state.message = f"Re-ran run #{was} as run #{self.state.run_id}."
        self._draw()
        for callback in self._listeners:
            try:
                callback(self.state.run or {})
            except Exception as exc:  # a listener's failure is shown, and never undoes the run
                self.errors.show(exc, "after Re-run")

    def _draw(self) -> None:
        is_open = self.state.run is not None
        self.layout.display = None if is_open or self.comparison.state.runs else "none"
        self.reuse_button.disabled = not is_open
        self.compare_button.disabled = not is_open
        self.rerun_button.disabled = not is_open or self.session is None or self.state.rerunning
        self.rerun_button.description = "Re-running…" if self.state.rerunning else "Re-run"
        self.status.value = (
            f'<span class="knb-muted">{html.escape(self.state.message)}</span>' if self.state.message else ""
        )


def _prompt_line(run: Mapping[str, Any]) -> str:
    prompt = str(run.get("prompt") or "")
    return prompt if len(prompt) <= 120 else prompt[:119] + "…"


def compare_runs(source: Any, run_ids: Iterable[int]) -> ComparisonView:
    """A comparison of logged runs by row id (``source``: a Session or its run log): ``compare_runs(session, [3, 5])``."""
    runs = getattr(source, "runs", source)
    view = ComparisonView(runs)
    for run_id in run_ids:
        view.add(_row_of(runs, int(run_id)))
    return view
