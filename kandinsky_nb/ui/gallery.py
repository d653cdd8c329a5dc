"""Gallery: thumbnails of any slice of the run log; click one for the full image and its parameters, and send those
parameters back into a GeneratePanel.

The slice is a DataFrame (``session.runs.df[...]``) or a pandas query over the log (``"steps >= 30 and CFGScale < 5"``).
Only rows with an image are shown; failed rows are counted, not hidden silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import ConfigurationError
from ..html import DEMO_NOTE, STYLE, format_seconds, format_usd, html_from_params, thumbnail
from ..types import ImageInferenceRequest
from ._common import ErrorArea, css

if TYPE_CHECKING:
    import pandas as pd

    from .generate import GeneratePanel

__all__ = ["Gallery", "GalleryState", "request_from_row", "select_rows"]

DEFAULT_LIMIT = 48
_THUMB = 160


@dataclass
class GalleryState:
    """What the gallery shows: the query typed, the newest-first limit, the row ids on screen, the one opened."""

    query: str = ""
    limit: int = DEFAULT_LIMIT
    shown_ids: list[int] = field(default_factory=list)
    failed_count: int = 0
    selected_id: int | None = None


def select_rows(frame: pd.DataFrame, query: str = "", limit: int = DEFAULT_LIMIT) -> tuple[pd.DataFrame, int]:
    """The newest ``limit`` rows with an image that match ``query`` (a pandas query), and how many matching rows
    failed. Raises ConfigurationError with the query's problem when it does not parse."""
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
    return with_images.iloc[::-1].head(limit), failed


def request_from_row(row: Any) -> ImageInferenceRequest:
    """The request that reproduces a logged image: its exact request JSON with the image's own seed fixed (so "reuse"
    gives the same image, not a new random one) and a fresh taskUUID."""
    wire = json.loads(row["request_json"])
    wire.pop("taskUUID", None)
    seed = row.get("seed") if hasattr(row, "get") else row["seed"]
    if seed is not None and seed == seed:  # NaN from pandas means "no seed"
        wire["seed"] = int(seed)
    return ImageInferenceRequest.model_validate(wire)


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
        self.summary = css(widgets.HTML(""), "knb-gallery-summary")
        self.grid = css(
            widgets.GridBox(
                [], layout=widgets.Layout(grid_template_columns=f"repeat({columns}, {_THUMB + 16}px)", grid_gap="6px")
            ),
            "knb-gallery-grid",
        )
        # In a flex row an <img> is stretched to the row's height unless told otherwise (a 1280x768 image drawn at
        # 160x374): keep its own aspect, at most 512 px wide and never wider than the panel.
        self.detail_image = css(
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
            "knb-detail-image",
        )
        self.detail_params = css(widgets.HTML(""), "knb-detail-params")
        self.reuse_button = css(
            widgets.Button(
                description="Reuse these parameters",
                icon="share",
                disabled=True,
                layout=widgets.Layout(width="240px"),
                tooltip="fill the GeneratePanel with this image's request, its seed included",
            ),
            "knb-reuse",
        )
        self.panel_area = widgets.VBox([])
        self.detail = css(
            widgets.VBox(
                [
                    widgets.HBox([self.detail_image, self.detail_params], layout=widgets.Layout(flex_flow="row wrap")),
                    self.reuse_button,
                    self.panel_area,
                ]
            ),
            "knb-gallery-detail",
        )
        self.refresh_button.on_click(self.errors.guard("Refresh")(lambda _b: self.refresh()))
        self.query_box.observe(self.errors.guard("Query")(self._on_query), names="value")
        self.reuse_button.on_click(self.errors.guard("Reuse")(lambda _b: self.reuse()))
        super().__init__(
            children=[
                widgets.HTML(STYLE),
                widgets.HBox([self.query_box, self.refresh_button]),
                self.summary,
                self.errors.widget,
                self.grid,
                self.detail,
            ],
            **box_kwargs,
        )
        css(self, "knb-gallery")
        self.detail.layout.display = "none"  # until an image is opened
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
        """Re-read the source and redraw the thumbnails for the current query."""
        rows, failed = select_rows(self.frame(), self.state.query, self.state.limit)
        self.state.shown_ids = [int(i) for i in rows["id"]] if "id" in rows else list(range(len(rows)))
        self.state.failed_count = failed
        self._rows = {rid: row for rid, (_, row) in zip(self.state.shown_ids, rows.iterrows(), strict=True)}
        self.grid.children = [self._tile(rid, row) for rid, row in self._rows.items()]
        demo = bool(rows["demo"].any()) if "demo" in rows and len(rows) else False
        self.summary.value = (
            f"<b>{len(rows)}</b> image(s) shown (newest first, at most {self.state.limit})"
            + (f"; {failed} failed run(s) match" if failed else "")
            + (f' · <span class="knb-demo">{DEMO_NOTE}</span>' if demo else "")
        )
        self.errors.clear()

    def select(self, row_id: int) -> None:
        """Open one image: full size, its parameters, and the Reuse button."""
        row = self._rows[row_id]
        self.state.selected_id = row_id
        self.detail_image.value = Path(row["image_path"]).read_bytes()
        self.detail_image.format = str(row.get("image_format") or "png").lower().replace("jpg", "jpeg")
        params = {
            "row": row_id,
            "engine": row.get("engine"),
            "seed": _plain(row.get("seed")),
            "cost": format_usd(_plain(row.get("cost_usd"))),
            "latency": format_seconds(_plain(row.get("latency_s"))),
            "created": str(row.get("created_utc")),
            "sweep": row.get("sweep_id") or "—",
            "request": json.loads(row["request_json"]),
        }
        if bool(row.get("demo")):
            params["note"] = DEMO_NOTE
        self.detail_params.value = html_from_params(params)
        self.reuse_button.disabled = False
        self.detail.layout.display = None

    def reuse(self) -> GeneratePanel:
        """Put the opened image's parameters (seed included) into the GeneratePanel, opening one if needed."""
        if self.state.selected_id is None:
            raise ConfigurationError("no image is open; click a thumbnail's button first, then Reuse.")
        request = request_from_row(self._rows[self.state.selected_id])
        if self.panel is None:
            from .generate import GeneratePanel

            self.panel = GeneratePanel(self._session)
            self.panel_area.children = [self.panel]
        self.panel.load_request(request)
        return self.panel

    # -- internals ---------------------------------------------------------------------------------------------
    def _on_query(self, change: dict[str, Any]) -> None:
        self.state.query = change["new"]
        self.refresh()

    def _tile(self, row_id: int, row: Any) -> widgets.Widget:
        path = str(row["image_path"])
        if path not in self._thumbs:
            self._thumbs[path] = thumbnail(Path(path).read_bytes(), _THUMB)
        data, fmt = self._thumbs[path]
        image = widgets.Image(value=data, format=fmt, layout=widgets.Layout(width=f"{_THUMB}px"))
        label = f"#{row_id} · seed {_plain(row.get('seed'))}"
        button = css(
            widgets.Button(
                description=label, tooltip=str(row.get("prompt", ""))[:200], layout=widgets.Layout(width=f"{_THUMB}px")
            ),
            "knb-gallery-open",
        )
        button.on_click(self.errors.guard("Open image")(lambda _b, rid=row_id: self.select(rid)))
        return css(widgets.VBox([image, button]), "knb-gallery-tile")


def _plain(value: Any) -> Any:
    """A pandas scalar as plain Python (NaN -> None), for display."""
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _run_log_of(source: Any) -> Any:
    runs = getattr(source, "runs", None)
    return runs if runs is not None else source
