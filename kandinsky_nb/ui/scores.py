"""Scores in the panels, as plain state and pure functions: what a grid cell or gallery tile says under its image,
the order of a gallery sorted by a score, and the score-against-cost frontier and recommendation of one sweep.

Computing and storing scores is :mod:`kandinsky_nb.analysis.scoring`; reading them is
:mod:`kandinsky_nb.analysis.quality`. The panels hold these objects and draw from them; tests set and read them
without widgets. Every score here is "higher is better", as the Pareto frontier assumes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..analysis.quality import DEMO_NOTE as DEMO_SCORES_NOTE
from ..analysis.quality import Recommendation, plot_frontier, recommend, score_caption
from ..analysis.scoring import score_runs, score_sweep, score_sweep_in_background
from ..errors import ConfigurationError, KandinskyNBError
from ..quality import download_free_scorers, metric_label
from ..runlog import METRIC_COLUMN_PREFIX, metric_column
from ._common import run_in_background

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "DEMO_SCORES_NOTE",
    "GRID_CAPTION_METRICS",
    "NEWEST_FIRST",
    "QualityChoices",
    "QualityView",
    "SweepScores",
    "quality_choices",
    "quality_view",
    "score_images",
    "scored_metrics",
    "sort_by_score",
    "sweeps_with_scores",
    "when_scored",
]

# Under a 128 px grid cell there is room for one line: how close each image is to its sweep's reference.
GRID_CAPTION_METRICS: tuple[str, ...] = ("ssim", "psnr")
# The gallery's default order (no score chosen).
NEWEST_FIRST = ""


def scored_metrics(frame: pd.DataFrame) -> list[str]:
    """The metrics with at least one stored score in ``frame`` (its ``score_*`` columns), in column order."""
    return [
        column.removeprefix(METRIC_COLUMN_PREFIX)
        for column in frame.columns
        if column.startswith(METRIC_COLUMN_PREFIX) and frame[column].notna().any()
    ]


def sweeps_with_scores(frame: pd.DataFrame) -> list[str]:
    """The sweeps of ``frame`` that have at least one stored score, newest sweep first."""
    columns = [metric_column(metric) for metric in scored_metrics(frame)]
    if not columns or "sweep_id" not in frame.columns:
        return []
    scored = frame[frame[columns].notna().any(axis=1) & frame["sweep_id"].notna()]
    return list(dict.fromkeys(reversed(scored["sweep_id"].astype(str).tolist())))


def sort_by_score(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``frame`` best ``metric`` first; rows without that score keep their order after the scored ones (so a gallery
    sorted by a score still shows every image). Raises ConfigurationError naming the scored metrics when the frame
    has no such column."""
    column = metric_column(metric)
    if column not in frame.columns:
        raise ConfigurationError(
            f"sort_by={metric!r}: no image has a {metric!r} score (scored: {', '.join(scored_metrics(frame)) or 'none'});"
            " score the sweep first (SweepPanel scores it when it finishes) or sort by one of those"
        )
    # A stable sort keeps ties (and the unscored, placed last) in the order they came.
    return frame.sort_values(column, ascending=False, kind="stable", na_position="last")


def when_scored(future: Future[Any], on_done: Callable[[], None]) -> asyncio.Task[None] | None:
    """Call ``on_done`` once ``future`` (a background scoring job) is done: from a task on the running event loop
    when there is one (widgets are written on the kernel's thread, not the scoring thread), else from the scoring
    thread. Errors are not raised here: the state object that started the job keeps them for ``on_done`` to show."""

    async def wait() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(future)
        on_done()

    return run_in_background(wait, lambda: future.add_done_callback(lambda _done: on_done()))


@dataclass
class SweepScores:
    """The scores of one sweep as its grid shows them: the sweep scored, whether scoring runs now, the scored rows
    (``score_sweep``'s frame: each score against this sweep's reference), each run's caption, and what went wrong.

    :meth:`start` scores in the background (stored scores are never computed again); the Future's result lands here
    by itself, so a panel only redraws when the Future is done. ``revision`` counts the results taken, so a view
    knows when its captions changed."""

    sweep_id: str | None = None
    scoring: bool = False
    frame: pd.DataFrame | None = None
    captions: dict[int, str] = field(default_factory=dict)
    error: BaseException | None = None
    metrics: tuple[str, ...] = GRID_CAPTION_METRICS
    revision: int = 0
    future: Future[pd.DataFrame] | None = field(default=None, repr=False)

    def start(self, session: Any, sweep_id: str) -> Future[pd.DataFrame]:
        """Score ``sweep_id`` of ``session`` on the background scoring thread; returns the Future (its result is
        taken into this state before any callback added later runs)."""
        if sweep_id != self.sweep_id:  # another sweep: the old captions describe runs no longer on screen
            self.frame, self.captions, self.error = None, {}, None
        self.sweep_id, self.scoring = sweep_id, True
        future = score_sweep_in_background(session, sweep_id)
        self.future = future
        future.add_done_callback(self._take)
        return future

    def _take(self, future: Future[pd.DataFrame]) -> None:
        if future is not self.future:
            return  # a newer start replaced it: its result is the one to show
        if future.cancelled():
            self.scoring = False
            return
        error = future.exception()
        if error is not None:
            self.scoring, self.error = False, error
            return
        self.finish(future.result())

    def finish(self, frame: pd.DataFrame) -> None:
        """Take a scored frame: one caption per image row ("reference" for each image the others are compared
        with)."""
        captions = {int(row["id"]): self.caption_of(row) for _, row in frame.iterrows()}
        self.frame, self.captions, self.error, self.scoring = frame, captions, None, False
        self.revision += 1

    def caption_of(self, row: Any) -> str:
        reference = row.get("reference_id")
        if reference is not None and reference == reference and int(reference) == int(row["id"]):
            return "reference"  # its SSIM 1 and PSNR ∞ say only that it is itself
        return score_caption(row, [metric for metric in self.metrics if metric_column(metric) in row])

    def caption(self, run_id: int | None) -> str:
        """The caption of one run ('' when it has no score yet)."""
        return "" if run_id is None else self.captions.get(int(run_id), "")

    @property
    def report(self) -> Any:
        """The last pass's :class:`~kandinsky_nb.analysis.scoring.ScoringReport` (None before one finished)."""
        return None if self.frame is None else self.frame.attrs.get("scoring")

    def status_words(self, demo: bool = False) -> str:
        """One line for under the grid: scoring, scored (and what was computed), or why it failed."""
        noise = f" ({DEMO_SCORES_NOTE})" if demo else ""
        if self.scoring:
            return f"Scoring {self.sweep_id} in the background…{noise}"
        if self.error is not None:
            return f"Scoring {self.sweep_id} failed: {self.error}"
        if self.report is not None:
            return f"Scores of {self.sweep_id}: {self.report}{noise}"
        return ""


def score_images(runs: Any, frame: pd.DataFrame) -> str:
    """Score the images of ``frame`` (rows of the run log ``runs``, e.g. a gallery's) that lack stored scores, and
    say what was done. Each sweep among them is scored whole (:func:`~kandinsky_nb.analysis.scoring.score_sweep`),
    so SSIM and PSNR are always against that sweep's own reference, never against whichever image a filter left
    most expensive; images outside any sweep have no reference, so they get the scores that need none."""
    images = frame[(frame["status"] == "ok") & frame["image_sha256"].notna()]
    computed = cached = 0
    for sweep_id in images["sweep_id"].dropna().unique():
        report = score_sweep(runs, str(sweep_id)).attrs["scoring"]
        computed, cached = computed + report.computed, cached + report.cached
    loose = images[images["sweep_id"].isna()]
    if len(loose):
        need_nothing = [scorer for scorer in download_free_scorers() if scorer.against == "nothing"]
        report = score_runs(runs, loose, need_nothing)
        computed, cached = computed + report.computed, cached + report.cached
    return f"{computed} scores computed, {cached} already stored, for {len(images)} images"


@dataclass(frozen=True)
class QualityChoices:
    """The sweeps and metrics the CostPanel offers, and the ones it shows: the chosen sweep if the log has it, else
    the newest sweep with scores (else the newest sweep); the chosen metric if that sweep has scores of it, else
    SSIM, else its first scored metric."""

    sweeps: list[str]
    sweep: str | None
    metrics: list[str]
    metric: str | None


def quality_choices(frame: pd.DataFrame, sweep: str | None, metric: str | None) -> QualityChoices:
    """What :class:`QualityChoices` says for ``frame`` (the run log) and the state's ``sweep`` and ``metric``."""
    sweep_ids = frame["sweep_id"].dropna().astype(str).tolist() if "sweep_id" in frame.columns else []
    sweeps = list(dict.fromkeys(reversed(sweep_ids)))  # newest first: the log is oldest first
    scored = sweeps_with_scores(frame)
    chosen = sweep if sweep in sweeps else (scored or sweeps or [None])[0]
    metrics = scored_metrics(frame[frame["sweep_id"] == chosen]) if chosen is not None else []
    shown = next((name for name in (metric, "ssim", *metrics) if name in metrics), None)
    return QualityChoices(sweeps=sweeps, sweep=chosen, metrics=metrics, metric=shown)


@dataclass
class QualityView:
    """What the CostPanel shows for one sweep and metric: the frontier of score against cost (a DataFrame and its
    plot) and the one-line recommendation, or why there is none."""

    sweep_id: str | None = None
    metric: str | None = None
    frontier: pd.DataFrame | None = None
    figure: Figure | None = None
    recommendation: Recommendation | None = None
    message: str = ""


def quality_view(frame: pd.DataFrame, sweep_id: str | None, metric: str | None) -> QualityView:
    """The frontier and recommendation of ``sweep_id``'s rows of ``frame`` (the run log with stored scores) for
    ``metric``; a ``message`` instead when there is nothing to draw. The threshold is the metric's default where it
    has one (SSIM, PSNR), else the best score's setting is named."""
    from ..analysis.quality import DEFAULT_THRESHOLDS, pareto_frontier, setting_scores

    view = QualityView(sweep_id=sweep_id, metric=metric)
    if sweep_id is None:
        view.message = "No sweep logged yet: run one in a SweepPanel (it scores its images when it finishes)."
        return view
    if metric is None:
        view.message = f"{sweep_id} has no scores yet: click Score sweep (scoring runs in the background)."
        return view
    rows = frame[frame["sweep_id"] == sweep_id]
    if metric_column(metric) not in rows.columns or not rows[metric_column(metric)].notna().any():
        scored = ", ".join(scored_metrics(rows)) or "none"
        view.message = f"{sweep_id} has no {metric_label(metric)} scores (scored: {scored}); pick a scored metric."
        return view
    threshold = DEFAULT_THRESHOLDS.get(metric)
    try:
        view.frontier = pareto_frontier(rows, metric)
        view.figure = plot_frontier(rows, metric, threshold=threshold)
        if threshold is None:
            # A metric of its own (sharpness...) has no "same picture" level: ask for the best score seen.
            threshold = float(setting_scores(rows, metric)["score"].max())
        view.recommendation = recommend(rows, metric, threshold)
    except KandinskyNBError as exc:
        view.message = str(exc)
    return view
