"""CostPanel: spend so far (by sweep, day, engine or any parameter), the fitted price model and its error, the cost
and latency plots, and local GPU cost against what the cloud would charge. A view over
:mod:`kandinsky_nb.analysis.cost`, which does every computation on a DataFrame of the run log.
"""

from __future__ import annotations

import asyncio
import html
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import ConfigurationError
from ..html import DEMO_NOTE, STYLE, format_usd
from ._common import ErrorArea, css, session_or_default
from .binding import FormBinding
from .scores import QualityChoices, QualityView, SweepScores, quality_choices, quality_view, when_scored

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["GROUPINGS", "CostPanel", "CostState", "figure_png", "html_for_cost_summary"]

GROUPINGS = ("sweep_id", "day", "engine", "steps", "size", "scheduler", "CFGScale")
ALL_ENGINES = "all engines"


@dataclass
class CostState:
    """What the cost panel shows: the grouping of the spend table, the plots' x axis, one engine or all, and an
    hourly GPU rate to re-price local runs with (None: the rate they were logged with); the sweep and metric of the
    quality-against-cost frontier (None: the newest scored sweep; a metric that sweep lacks: SSIM or its first)."""

    by: str = "sweep_id"
    x: str = "steps"
    engine: str | None = None
    gpu_hourly_usd: float | None = None
    sweep: str | None = None
    metric: str = "ssim"


def figure_png(figure: Figure, dpi: int = 90) -> bytes:
    """A matplotlib Figure as PNG bytes (no pyplot, so nothing global changes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def html_for_cost_summary(summary: dict[str, Any]) -> str:
    """The totals of :func:`kandinsky_nb.analysis.cost_summary` and each engine's fitted model with its error."""
    ratio = summary.get("spent_vs_list")
    lines = [
        f"<b>{summary['images']}</b> image(s), {summary['failed']} failed request(s) · spent "
        f"<b>{format_usd(summary['spent_usd'])}</b> · {format_usd(summary['usd_per_image'])} per image · "
        f"{format_usd(summary['usd_per_megapixel'])} per megapixel · list price of the same images "
        f"{format_usd(summary['list_price_usd'])}" + (f" (spent is {ratio:.2f}× list)" if ratio else "")
    ]
    for engine, model in summary.get("fits", {}).items():
        if model.usable:
            lines.append(f"<b>{html.escape(engine)}</b> price model: {html.escape(model.describe())}")
        else:
            lines.append(
                f"<b>{html.escape(engine)}</b>: {model.points} costed run(s), too few to fit a price model "
                "(the list price is used for estimates)"
            )
    return "<br>".join(lines)


class CostPanel(widgets.VBox):
    """Spend, price model, plots and local-vs-cloud for a Session's run log (or any DataFrame of it)."""

    def __init__(self, source: Any = None, *, state: CostState | None = None, **box: Any) -> None:
        import pandas as pd

        self._frame: pd.DataFrame | None = source if isinstance(source, pd.DataFrame) else None
        self.session = None if self._frame is not None else session_or_default(source)
        self.state = state or CostState()
        self.errors = ErrorArea("knb-cost-errors")
        self.binding: FormBinding[CostState] = FormBinding(
            lambda: self.state, self._on_edit, wrap=self.errors.guard("Cost panel")
        )
        self.summary: dict[str, Any] = {}
        self.spend: pd.DataFrame | None = None
        self.comparison: pd.DataFrame | None = None

        self.by = css(
            widgets.Dropdown(options=list(GROUPINGS), value=self.state.by, description="spend by"), "knb-cost-by"
        )
        self.x = css(
            widgets.Dropdown(options=["steps", "megapixels"], value=self.state.x, description="plot x"), "knb-cost-x"
        )
        self.engine = css(widgets.Dropdown(options=[ALL_ENGINES], description="engine"), "knb-cost-engine")
        self.gpu_rate = css(
            widgets.Text(description="GPU $/hour", placeholder="as logged", layout=widgets.Layout(width="220px")),
            "knb-cost-gpu-rate",
        )
        self.refresh_button = css(widgets.Button(description="Refresh", icon="refresh"), "knb-cost-refresh")
        self.summary_html = css(widgets.HTML(""), "knb-cost-summary")
        self.spend_html = css(widgets.HTML(""), "knb-cost-spend")
        # Hidden until there is something to plot (an empty Image widget shows a broken-image icon); never wider than
        # the panel, so at half width the two plots stack instead of overflowing.
        plot_layout = {"display": "none", "height": "auto"}  # the panel's style keeps them within its width
        self.cost_plot = css(widgets.Image(format="png", layout=plot_layout), "knb-cost-plot")
        self.latency_plot = css(widgets.Image(format="png", layout=plot_layout), "knb-latency-plot")
        self.comparison_html = css(widgets.HTML(""), "knb-cost-comparison")
        # Quality against cost of one sweep: its frontier and the one-line recommendation, from stored scores.
        self.quality: QualityView = QualityView()
        self.quality_choices = QualityChoices(sweeps=[], sweep=None, metrics=[], metric=None)
        self.scores = SweepScores()  # a sweep scored from this panel (Score sweep)
        self.score_task: asyncio.Task[Any] | None = None
        self.quality_sweep = css(widgets.Dropdown(options=[], description="sweep"), "knb-cost-quality-sweep")
        self.quality_metric = css(widgets.Dropdown(options=[], description="score"), "knb-cost-quality-metric")
        self.score_button = css(
            widgets.Button(
                description="Score sweep",
                icon="star",
                tooltip="score this sweep's images in the background (stored scores are not computed again)",
            ),
            "knb-cost-score",
        )
        self.recommendation_html = css(widgets.HTML(""), "knb-cost-recommendation")
        self.frontier_plot = css(widgets.Image(format="png", layout=dict(plot_layout)), "knb-frontier-plot")
        self.frontier_html = css(widgets.HTML(""), "knb-cost-frontier")
        # Their choices come from the log, so refresh() writes them (after setting their options).
        self.binding.bind(self.quality_sweep, read=None, write=lambda state, sweep: setattr(state, "sweep", sweep))
        self.binding.bind(self.quality_metric, read=None, write=lambda state, metric: setattr(state, "metric", metric))
        self.score_button.on_click(self.errors.guard("Score sweep")(lambda _b: self.score()))
        self.binding.attribute(self.by, "by")
        self.binding.attribute(self.x, "x")
        # The engine choices come from the log, so refresh() writes this one (after setting its options).
        self.binding.bind(
            self.engine,
            read=None,
            write=lambda state, choice: setattr(state, "engine", None if choice == ALL_ENGINES else choice),
        )
        self.binding.attribute(self.gpu_rate, "gpu_hourly_usd", to_widget=_rate_text, from_widget=_parse_rate)
        self.refresh_button.on_click(self.errors.guard("Refresh")(lambda _b: self.refresh()))
        super().__init__(
            children=[
                widgets.HTML(STYLE),
                widgets.HBox([self.by, self.x, self.engine, self.gpu_rate, self.refresh_button]),
                self.errors.widget,
                self.summary_html,
                widgets.HBox([self.cost_plot, self.latency_plot]),
                widgets.HTML("<b>Spend</b>"),
                self.spend_html,
                widgets.HTML("<b>Local GPU cost against the cloud for the same images</b>"),
                self.comparison_html,
                widgets.HTML("<b>Quality against cost</b>"),
                widgets.HBox([self.quality_sweep, self.quality_metric, self.score_button]),
                self.recommendation_html,
                self.frontier_plot,
                self.frontier_html,
            ],
            **box,
        )
        css(self, "knb-panel", "knb-cost-panel")
        self.errors.guard("Cost panel")(self.refresh)()

    def frame(self) -> pd.DataFrame:
        if self._frame is not None:
            return self._frame
        assert self.session is not None
        return self.session.runs.df

    def update(self, **changes: Any) -> None:
        """Set CostState fields (``update(by="day", gpu_hourly_usd=2.5)``) and redraw."""
        for key, value in changes.items():
            if not hasattr(self.state, key):
                raise AttributeError(f"CostState has no field {key!r}")
            setattr(self.state, key, value)
        self._write_widgets()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the log and redraw everything."""
        from ..analysis import cost_summary, fit_cost, local_vs_cloud, plot_cost, plot_latency, spend_by

        frame = self.frame()
        engines = sorted(str(e) for e in frame["engine"].dropna().unique()) if len(frame) else []
        with self.binding.holding():
            self.engine.options = [ALL_ENGINES, *engines]
            self.engine.value = self.state.engine if self.state.engine in engines else ALL_ENGINES
        if self.state.engine is not None:
            frame = frame[frame["engine"] == self.state.engine]
        self._draw_quality(frame)
        if not len(frame):
            self.summary, self.spend, self.comparison = {}, None, None
            self.summary_html.value = "No runs logged yet: generate something, then Refresh."
            self.spend_html.value = self.comparison_html.value = ""
            self.cost_plot.value = self.latency_plot.value = b""
            self.cost_plot.layout.display = self.latency_plot.layout.display = "none"
            return
        self.summary = cost_summary(frame)
        demo = f'<br><span class="knb-demo">{DEMO_NOTE} (demo rows included)</span>' if frame["demo"].any() else ""
        self.summary_html.value = html_for_cost_summary(self.summary) + demo
        self.spend = spend_by(frame, self.state.by)
        table = self.spend.to_html(classes="knb-params", float_format=lambda v: f"{v:.6g}", border=0)
        self.spend_html.value = f'<div class="knb-scroll">{table}</div>'
        self.cost_plot.value = figure_png(plot_cost(frame, x=self.state.x))
        self.latency_plot.value = figure_png(plot_latency(frame, x=self.state.x))
        self.cost_plot.layout.display = self.latency_plot.layout.display = None
        cloud_rows = frame[frame["engine"] == "runware"]
        cloud = fit_cost(cloud_rows) if len(cloud_rows) else None
        self.comparison = local_vs_cloud(frame, gpu_hourly_usd=self.state.gpu_hourly_usd, cloud=cloud)
        self.comparison_html.value = self._comparison_html(cloud)

    def _comparison_html(self, cloud: Any) -> str:
        rows = self.comparison
        if rows is None or not len(rows):
            return "<i>No local runs in this slice.</i>"
        basis = "the fitted cloud price model" if cloud is not None and cloud.usable else "the list price"
        rate = (
            f"re-priced at ${self.state.gpu_hourly_usd:g}/GPU-hour"
            if self.state.gpu_hourly_usd is not None
            else "at the rate they were logged with"
        )
        table = (
            rows.groupby(["size", "steps"])[["local_usd", "cloud_usd"]]
            .mean()
            .assign(local_over_cloud=lambda t: t["local_usd"] / t["cloud_usd"])
        )
        return (
            f"{len(rows)} local image(s), {rate}, against {basis}: local total "
            f"{format_usd(float(rows['local_usd'].sum()))}, cloud {format_usd(float(rows['cloud_usd'].sum()))}."
            + '<div class="knb-scroll">'
            + table.to_html(classes="knb-params", float_format=lambda v: f"{v:.4g}", border=0)
            + "</div>"
        )

    def score(self) -> asyncio.Task[Any] | None:
        """Score the chosen sweep's images in the background (stored scores are not computed again) and redraw when
        they are stored; a task when an event loop runs, else the redraw follows from the scoring thread."""
        sweep = self.quality_choices.sweep
        if sweep is None:
            raise ConfigurationError("sweep=None: the log has no sweep to score; run one first (SweepPanel)")
        if self.session is None:
            raise ConfigurationError(
                "CostPanel(DataFrame): a DataFrame has no run log to store scores in; open CostPanel(session) to score"
            )
        future = self.scores.start(self.session, sweep)
        self._draw_quality_status()
        self.score_task = when_scored(future, self._scored)
        return self.score_task

    def _scored(self) -> None:
        if self.scores.error is not None:
            self.errors.show(self.scores.error, "Score sweep")
            self._draw_quality_status()
            return
        self.refresh()

    def _draw_quality(self, frame: pd.DataFrame) -> None:
        """The quality section from the log's stored scores: choices, recommendation, frontier plot and table."""
        choices = self.quality_choices = quality_choices(frame, self.state.sweep, self.state.metric)
        with self.binding.holding():
            self.quality_sweep.options = choices.sweeps
            self.quality_sweep.value = choices.sweep
            self.quality_metric.options = choices.metrics
            self.quality_metric.value = choices.metric
        self.score_button.disabled = choices.sweep is None or self.session is None
        view = self.quality = quality_view(frame, choices.sweep, choices.metric)
        self._draw_quality_status()
        if view.figure is not None:
            self.frontier_plot.value = figure_png(view.figure)
            self.frontier_plot.layout.display = None
        else:
            self.frontier_plot.value = b""
            self.frontier_plot.layout.display = "none"
        self.frontier_html.value = _frontier_table(view.frontier)

    def _draw_quality_status(self) -> None:
        view = self.quality
        words = html.escape(str(view.recommendation) if view.recommendation is not None else view.message)
        status = self.scores.status_words(self.session is not None and bool(self.session.demo))
        scoring = f'<br><span class="knb-muted">{html.escape(status)}</span>' if status else ""
        self.recommendation_html.value = (f"<b>{words}</b>" if view.recommendation is not None else words) + scoring

    def _write_widgets(self) -> None:
        self.binding.push()

    def _on_edit(self, state: CostState, _change: dict[str, Any]) -> None:
        self.state = state
        self.refresh()


def _frontier_table(frontier: pd.DataFrame | None) -> str:
    """The frontier's settings, cheapest first, with their mean score and cost (absolute and against the reference)."""
    if frontier is None or not len(frontier):
        return ""
    columns = [
        column
        for column in ("size", "scheduler", "CFGScale", "steps", "score", "images", "cost_usd", "cost_share")
        if column in frontier.columns
    ]
    table = frontier[columns].to_html(
        classes="knb-params", float_format=lambda v: f"{v:.4g}", border=0, index=False, na_rep="—"
    )
    return f'<div class="knb-muted">Pareto frontier: no cheaper setting scores higher</div><div class="knb-scroll">{table}</div>'


def _rate_text(rate: float | None) -> str:
    return "" if rate is None else f"{rate:g}"


def _parse_rate(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None  # the rate each run was logged with
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(
            f"GPU $/hour must be a number such as 2.5, not {text!r}; leave it empty to use the rate each run was "
            "logged with."
        ) from None
