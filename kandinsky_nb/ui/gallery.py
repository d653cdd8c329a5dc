"""Gallery: thumbnails of any slice of the run log; click one for the full image and its parameters, and send those
parameters back into a GeneratePanel.

The slice is a DataFrame (``session.runs.df[...]``) or a pandas query over the log (``"steps >= 30 and CFGScale < 5"``).
Only rows with an image are shown; failed rows are counted, not hidden silently.
"""

from __future__ import annotations

import asyncio
import functools
import html
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .. import spec
from ..analysis.quality import score_caption
from ..errors import ConfigurationError
from ..html import DEMO_NOTE, STYLE
from ..runlog.thumbs import cached_thumbnail
from ._common import ErrorArea, css, run_in_background
from .binding import FormBinding
from .scores import NEWEST_FIRST, score_images, scored_metrics, sort_by_score
from .viewer import RunViewer, request_from_row
from .viewer import plain_value as _plain

if TYPE_CHECKING:
    import pandas as pd

    from .generate import GeneratePanel

__all__ = ["Gallery", "GalleryState", "request_from_row", "select_rows"]

DEFAULT_LIMIT = 48  # images per page
_THUMB = 160
PLACEHOLDER_GREY = (200, 200, 200)  # an unreadable image's tile: plainly not a picture, visible on both themes


@dataclass
class GalleryState:
    """What the gallery shows: the query typed, the page (``limit`` images each, newest first), how many images
    match in all, the row ids on screen, and the one opened."""

    query: str = ""
    limit: int = DEFAULT_LIMIT
    page: int = 0
    total: int = 0
    shown_ids: list[int] = field(default_factory=list)
    failed_count: int = 0
    selected_id: int | None = None
    sort_by: str = NEWEST_FIRST  # a metric (``"ssim"``): best score first, unscored images after
    scoring: bool = False  # the Score button's work is under way
    scored: str = ""  # what the last Score did, in words

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))


def select_rows(
    frame: pd.DataFrame, query: str = "", limit: int = DEFAULT_LIMIT, page: int = 0, *, sort_by: str = NEWEST_FIRST
) -> tuple[pd.DataFrame, int, int]:
    """One page of the rows with an image that match ``query`` (a pandas query), newest first or, with
    ``sort_by`` a metric, best score first: ``(rows, failed, total)``, where ``failed`` counts matching failed rows
    and ``total`` the matching images on all pages. Raises ConfigurationError with the query's problem when it does
    not parse."""
    if query.strip():
        try:
            frame = frame.query(query)
        except Exception as exc:  # pandas raises many types for a bad expression; the user needs the message
            raise ConfigurationError(
                f"the query {query!r} did not run: {exc}. Use column names of session.runs.df, "
                "e.g. \"steps >= 30 and scheduler == 'Euler'\"."
            ) from exc
    failed = int((frame["status"] == "failed").sum()) if "status" in frame else 0
    with_images = frame[frame["image_path"].notna()] if "image_path" in frame else frame.iloc[0:0]
    if "status" in with_images:
        with_images = with_images[with_images["status"] == "ok"]
    newest_first = with_images.iloc[::-1]
    ordered = sort_by_score(newest_first, sort_by) if sort_by else newest_first
    return ordered.iloc[page * limit : (page + 1) * limit], failed, len(ordered)


class Gallery(widgets.VBox):
    """Thumbnails of logged runs. ``source``: a Session (its whole log, refreshable), a RunLog, or a DataFrame.

    ``panel``: the GeneratePanel that "Reuse these parameters" fills (a new one is opened under the gallery if none).
    """

    def __init__(
        self,
        source: Any = None,
        *,
        query: str = "",
        limit: int = DEFAULT_LIMIT,
        panel: GeneratePanel | None = None,
        session: Any = None,
        columns: int = 4,
        **box_kwargs: Any,
    ) -> None:
        import pandas as pd

        if source is None and session is None:
            from ._common import session_or_default

            session = session_or_default(None)
        self._frame: pd.DataFrame | None = source if isinstance(source, pd.DataFrame) else None
        self._log = None if self._frame is not None else _run_log_of(source if source is not None else session)
        self._session = session if session is not None else (source if hasattr(source, "runs") else None)
        self.panel = panel
        self.state = GalleryState(query=query, limit=limit)
        self.errors = ErrorArea("knb-gallery-errors")
        self._thumbs: dict[str, tuple[bytes, str]] = {}
        self._rows: dict[int, Any] = {}

        self.query_box = css(
            widgets.Text(
                value=query,
                placeholder="pandas query over session.runs.df, e.g. steps >= 30 and scheduler == 'Euler'",
                description="Query",
                layout=widgets.Layout(width="70%"),
            ),
            "knb-gallery-query",
        )
        self.refresh_button = css(widgets.Button(description="Refresh", icon="refresh"), "knb-gallery-refresh")
        self.score_button = css(
            widgets.Button(
                description="Score",
                icon="star",
                tooltip="score the images that match the query (every page) that have no scores yet",
                disabled=self._log is None,  # a DataFrame has no run log to store scores in
            ),
            "knb-gallery-score",
        )
        self.score_task: asyncio.Task[None] | None = None
        self.previous_button = css(
            widgets.Button(description="Newer", icon="chevron-left", tooltip="the previous page (newer images)"),
            "knb-gallery-previous",
        )
        self.next_button = css(
            widgets.Button(description="Older", icon="chevron-right", tooltip="the next page (older images)"),
            "knb-gallery-next",
        )
        self.page_label = css(widgets.HTML(""), "knb-gallery-page")
        self.summary = css(widgets.HTML(""), "knb-gallery-summary")
        # The scored metrics come from the log, so refresh() sets the choices; the binding writes state.sort_by.
        self.sort_box = css(
            widgets.Dropdown(options=[("newest first", NEWEST_FIRST)], description="Sort"), "knb-gallery-sort"
        )
        self.binding: FormBinding[GalleryState] = FormBinding(
            lambda: self.state, self._on_sort, wrap=self.errors.guard("Sort")
        )
        self.binding.attribute(self.sort_box, "sort_by")
        self.grid = css(
            widgets.GridBox(
                [],
                layout=widgets.Layout(
                    grid_template_columns=f"repeat(auto-fill, minmax({_THUMB + 16}px, 1fr))",
                    max_width=f"{columns * (_THUMB + 16) + (columns - 1) * 6}px",
                    grid_gap="6px",
                ),
            ),
            "knb-gallery-grid",
        )
        # The opened run: the run viewer (full image, parameters, Reuse, Re-run, Compare, copy as code). Reuse fills
        # the gallery's GeneratePanel, or one opened under the viewer.
        self.viewer = css(RunViewer(self._session, runs=self._log, open_panel=self._reuse_target), "knb-gallery-detail")
        self.viewer.on_run(lambda _row: self.errors.guard("Refresh")(self.refresh)())  # a re-run's image joins
        self.viewer.on_close(self._viewer_closed)
        # The names the detail had before the viewer, kept for code that uses them.
        self.detail, self.detail_image, self.detail_params = self.viewer, self.viewer.image, self.viewer.params
        self.reuse_button, self.panel_area = self.viewer.reuse_button, self.viewer.panel_area
        self.refresh_button.on_click(self.errors.guard("Refresh")(lambda _b: self.refresh()))
        self.score_button.on_click(self.errors.guard("Score")(lambda _b: self.score()))
        self.previous_button.on_click(self.errors.guard("Newer")(lambda _b: self.show_page(self.state.page - 1)))
        self.next_button.on_click(self.errors.guard("Older")(lambda _b: self.show_page(self.state.page + 1)))
        self.query_box.observe(self.errors.guard("Query")(self._on_query), names="value")
        super().__init__(
            children=[
                widgets.HTML(STYLE),
                widgets.HBox(
                    [self.query_box, self.sort_box, self.refresh_button, self.score_button],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                self.summary,
                self.errors.widget,
                # The opened image sits above the thumbnails, where the click was, not below the whole page.
                self.detail,
                self.grid,
                widgets.HBox(
                    [self.previous_button, self.page_label, self.next_button],
                    layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
                ),
            ],
            **box_kwargs,
        )
        css(self, "knb-panel", "knb-gallery")
        if panel is not None:
            # New images from that panel appear here without a click on Refresh.
            panel.on_generation(lambda _generation: self.errors.guard("Refresh")(self.refresh)())
        self.errors.guard("Gallery")(self.refresh)()

    # -- public API --------------------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """The rows currently in the gallery's source (the whole log for a Session or RunLog)."""
        if self._frame is not None:
            return self._frame
        assert self._log is not None
        return self._log.df

    def refresh(self) -> None:
        """Re-read the source and redraw the thumbnails of the current page for the current query."""
        frame = self.frame()
        self._offer_sorts(frame)
        order = {"sort_by": self.state.sort_by}
        rows, failed, total = select_rows(frame, self.state.query, self.state.limit, self.state.page, **order)
        if not len(rows) and self.state.page > 0:  # the page emptied (a narrower query): back to the last one
            self.state.page = max(0, -(-total // self.state.limit) - 1)
            rows, failed, total = select_rows(frame, self.state.query, self.state.limit, self.state.page, **order)
        self.state.total = total
        self.state.shown_ids = [int(i) for i in rows["id"]] if "id" in rows else list(range(len(rows)))
        self.state.failed_count = failed
        self._rows = {rid: row for rid, (_, row) in zip(self.state.shown_ids, rows.iterrows(), strict=True)}
        self.grid.children = [self._tile(rid, row) for rid, row in self._rows.items()]
        if self.state.selected_id is not None and self.state.selected_id not in self._rows:
            self.close()  # the opened run is no longer in view: its detail would describe something not shown
        demo = bool(rows["demo"].any()) if "demo" in rows and len(rows) else False
        first = self.state.page * self.state.limit
        shown = f"images {first + 1}–{first + len(rows)} of <b>{total}</b>" if len(rows) else "<b>0</b> images"
        self.summary.value = (
            f"{shown} ({_order_words(self.state.sort_by)})"
            + (f"; {failed} failed run(s) match" if failed else "")
            + (
                f' · <span class="knb-muted">{html.escape(_scoring_words(self.state))}</span>'
                if self.state.scoring or self.state.scored
                else ""
            )
            + (f' · <span class="knb-demo">{DEMO_NOTE}</span>' if demo else "")
        )
        self.page_label.value = f"page {self.state.page + 1} of {self.state.pages}"
        self.previous_button.disabled = self.state.page == 0
        self.next_button.disabled = self.state.page + 1 >= self.state.pages
        self.errors.clear()

    def show_page(self, page: int) -> None:
        """Show page ``page`` (0 is the newest images)."""
        self.state.page = min(max(page, 0), self.state.pages - 1)
        self.refresh()

    def select(self, row_id: int) -> None:
        """Open one image in the run viewer: full size, its parameters, and its actions (Reuse, Re-run, Compare)."""
        row = self._rows[row_id]
        self.state.selected_id = row_id
        self.viewer.show(row)

    def close(self) -> None:
        """Close the opened image."""
        self.state.selected_id = None
        if self.viewer.run is not None:
            self.viewer.close()

    def reuse(self) -> GeneratePanel:
        """Put the opened image's parameters (seed included) into the GeneratePanel, opening one if needed."""
        if self.state.selected_id is None:
            raise ConfigurationError("no image is open; click a thumbnail's button first, then Reuse.")
        return self.viewer.reuse()

    def _reuse_target(self) -> GeneratePanel:
        # Where the viewer's Reuse goes: the gallery's panel, or one opened under the viewer on first use.
        if self.panel is None:
            from .generate import GeneratePanel

            self.panel = GeneratePanel(self._session)
            self.panel_area.children = [self.panel]
        return self.panel

    def _viewer_closed(self) -> None:
        self.state.selected_id = None

    # -- internals ---------------------------------------------------------------------------------------------
    def score(self) -> asyncio.Task[None] | None:
        """Score the images that match the query, on every page, that have no stored scores (sweeps whole, against
        their own references; other images by the scores that need no reference), off the event loop, then refresh.
        A task when an event loop runs, else done now."""
        if self._log is None:
            raise ConfigurationError(
                "Gallery(DataFrame): a DataFrame has no run log to store scores in; open Gallery(session) to score"
            )
        if self.state.scoring:
            return self.score_task  # already scoring: a second click waits for the same pass
        frame = self.frame()
        matching = select_rows(frame, self.state.query, limit=len(frame) + 1)[0]
        self.state.scoring, self.score_button.disabled = True, True
        self.refresh()
        self.score_task = run_in_background(lambda: self._ascore(matching), lambda: self._score_now(matching))
        return self.score_task

    async def _ascore(self, rows: pd.DataFrame) -> None:
        try:
            words = await asyncio.to_thread(score_images, self._log, rows)
        except Exception as exc:  # a task's error would be lost: it is shown in the gallery instead
            self._scored("", exc)
            return
        self._scored(words)

    def _score_now(self, rows: pd.DataFrame) -> None:
        try:
            words = score_images(self._log, rows)
        except Exception as exc:
            self._scored("", exc)
            return
        self._scored(words)

    def _scored(self, words: str, error: BaseException | None = None) -> None:
        self.state.scoring, self.state.scored, self.score_button.disabled = False, words, False
        self.refresh()  # new score columns: tiles, sort choices and order follow
        if error is not None:
            self.errors.show(error, "Score")  # after the refresh, which clears the error area

    def _offer_sorts(self, frame: pd.DataFrame) -> None:
        """The sort choices: newest first and each metric the log has scores of (and the chosen one, even when no
        image has it yet, so the control shows what the state says)."""
        metrics = scored_metrics(frame)
        if self.state.sort_by and self.state.sort_by not in metrics:
            metrics.append(self.state.sort_by)
        with self.binding.holding():
            self.sort_box.options = [("newest first", NEWEST_FIRST)] + [
                (_order_words(metric), metric) for metric in metrics
            ]
            self.sort_box.value = self.state.sort_by

    def _on_sort(self, state: GalleryState, _change: dict[str, Any]) -> None:
        self.state, self.state.page = state, 0
        self.refresh()

    def _on_query(self, change: dict[str, Any]) -> None:
        self.state.query, self.state.page = change["new"], 0
        self.refresh()

    def _tile(self, row_id: int, row: Any) -> widgets.Widget:
        path = str(row["image_path"])
        if path not in self._thumbs:
            self._thumbs[path] = _tile_image(path, row.get("image_sha256"))
        data, fmt = self._thumbs[path]
        # Aspect kept inside a square box: a portrait is not squashed to the tile's width.
        image = widgets.Image(
            value=data,
            format=fmt,
            layout=widgets.Layout(width=f"{_THUMB}px", height=f"{_THUMB}px", object_fit="contain"),
        )
        scores = score_caption(row)  # stored scores, '' until the image is scored
        caption = css(
            widgets.HTML(
                f'<div class="knb-caption">{html.escape(tile_caption(row))}</div>'
                + (f'<div class="knb-caption knb-tile-scores">{html.escape(scores)}</div>' if scores else "")
            ),
            "knb-tile-caption",
        )
        button = css(
            widgets.Button(
                description=f"Open #{row_id}",
                tooltip=str(row.get("prompt", ""))[:200],
                layout=widgets.Layout(width=f"{_THUMB}px"),
            ),
            "knb-gallery-open",
        )
        button.on_click(self.errors.guard("Open image")(lambda _b, rid=row_id: self.select(rid)))
        return css(widgets.VBox([image, caption, button]), "knb-gallery-tile")


def _tile_image(path: str, sha256: Any) -> tuple[bytes, str]:
    """A tile's thumbnail, from the thumbnail cache beside the images (made once per image content); an image that
    is gone or cannot be decoded shows the placeholder, so one bad file never blanks the whole page."""
    from PIL import Image

    try:
        return cached_thumbnail(path, sha256, _THUMB)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # what Pillow raises on a bad file
        return _placeholder()


@functools.cache
def _placeholder() -> tuple[bytes, str]:
    """A plain grey square the tile's size, in the tile's place when its image cannot be shown."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (_THUMB, _THUMB), PLACEHOLDER_GREY).save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def _scoring_words(state: GalleryState) -> str:
    return "scoring the matching images…" if state.scoring else f"scored: {state.scored}"


def _order_words(sort_by: str) -> str:
    # The metric's name, not its label: a label reads after a number ("24 dB PSNR"), not in a menu.
    return f"{sort_by} score, best first" if sort_by else "newest first"


def tile_caption(row: Any) -> str:
    """What tells tiles apart at a glance: steps, CFG, scheduler, size and seed (the prompt is the tooltip)."""
    parts = []
    steps, cfg = _plain(row.get("steps")), _plain(row.get("CFGScale"))
    if steps is not None:
        parts.append(f"{int(steps)} steps")
    if cfg is not None:
        parts.append(f"CFG {float(cfg):g}")
    # A run that left the scheduler to the model says so (the log holds the scheduler it stands for).
    scheduler = _plain(row.get("scheduler")) or spec.MODEL_DEFAULT_SCHEDULER
    parts.append(f"{scheduler} (default)" if "scheduler" in _defaulted(row) else str(scheduler))
    width, height = _plain(row.get("width")), _plain(row.get("height"))
    if width and height:
        parts.append(f"{int(width)}x{int(height)}")
    seed = _plain(row.get("seed"))
    parts.append(f"seed {seed}" if seed is not None else "seed —")
    return " · ".join(parts)


def _defaulted(row: Any) -> list[str]:
    """The fields a logged run left to the model (the run log's ``defaulted`` column; empty when not recorded)."""
    text = _plain(row.get("defaulted"))
    if not text:
        return [] if _plain(row.get("scheduler")) else ["scheduler"]  # a log from before the column: NULL = default
    return list(json.loads(text))


def _run_log_of(source: Any) -> Any:
    runs = getattr(source, "runs", None)
    return runs if runs is not None else source
