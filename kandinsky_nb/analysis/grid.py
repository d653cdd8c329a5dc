"""X/Y(/Z) contact sheets from any part of the run log (a DataFrame), not only a live sweep.

``contact_sheet(df, x="steps", y="CFGScale", z="scheduler")`` lays thumbnails out X across and Y down, one block per
Z value (Z may name several axes), with axis labels; cells whose run failed get a grey placeholder with the error
code, cells never run a white "missing" one, cells whose image file cannot be decoded (gone, broken, a bomb past
``spec.MAX_RESULT_PIXELS``) an "unreadable" one, so the grid stays aligned and one bad file never fails the sheet. The result knows where it put every row
(:attr:`ContactSheet.placements`) and saves as PNG with the layout and the sweep definition in a ``k5nb_grid`` text
chunk. Sheets of demo-weight runs are captioned "demo weights: images are noise".
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import spec
from ..errors import SweepError
from ..planning.axes import resolve_axis
from ..runlog.store import UNANSWERED
from ..types.images import UnreadableImage, open_image

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image as PILImage

__all__ = ["ContactSheet", "Placement", "axis_values", "contact_sheet", "read_grid_metadata"]

DEMO_CAPTION = "demo weights: images are noise"
GRID_KEY = "k5nb_grid"
# Past this many pixels a side, cells shrink: PNG viewers and Pillow's decompression-bomb guard struggle beyond it.
MAX_SIDE = 8000
# Columns of the log that hold an axis under another name.
_COLUMN_OF = {"positivePrompt": "prompt", "negativePrompt": "negative_prompt"}


@dataclass(frozen=True)
class Placement:
    """Where one grid cell went: its axis values, the row shown (None if none), its state and its pixel box."""

    z: tuple[Any, ...]
    y: Any
    x: Any
    status: str  # ok, failed, pending, missing, unreadable
    row_id: int | None
    task_uuid: str | None
    box: tuple[int, int, int, int]
    error_code: str | None = None


@dataclass
class ContactSheet:
    image: PILImage.Image
    x: str | None
    y: str | None
    z: list[str]
    values: dict[str, list[Any]]
    placements: list[Placement]
    metadata: dict[str, Any] = field(default_factory=dict)

    def placement(self, *, x: Any = None, y: Any = None, z: tuple[Any, ...] = ()) -> Placement:
        for placed in self.placements:
            if _same(placed.x, x) and _same(placed.y, y) and all(_same(a, b) for a, b in zip(placed.z, z, strict=True)):
                return placed
        raise KeyError(f"no cell at x={x!r}, y={y!r}, z={z!r}")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the sheet as PNG with the layout and sweep definition in the ``k5nb_grid`` text chunk."""
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt(GRID_KEY, json.dumps(self.metadata, default=str, ensure_ascii=False))
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(out, format="PNG", pnginfo=info)
        return out

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for placed in self.placements:
            counts[placed.status] = counts.get(placed.status, 0) + 1
        return f"ContactSheet(x={self.x!r}, y={self.y!r}, z={self.z!r}, {self.image.size[0]}x{self.image.size[1]} px, {counts})"


def read_grid_metadata(source: str | os.PathLike[str] | bytes) -> dict[str, Any] | None:
    """What :meth:`ContactSheet.save` embedded in a PNG (layout, placements, and the sweep's definition: base
    request, axes, cell keys), or None when the file has no ``k5nb_grid`` chunk."""
    import io

    from PIL import Image

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        text = getattr(image, "text", {}).get(GRID_KEY)  # PNG text chunks (tEXt, zTXt, iTXt) by keyword
    return json.loads(text) if text else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def _clean(value: Any) -> Any:
    """numpy scalars -> Python values, so labels, comparisons and JSON behave."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def axis_values(frame: pd.DataFrame, axis: str) -> list[Any]:
    """The value of ``axis`` on every row: a column (by its name, its wire name or an alias), else the sweep cell
    coordinates stored with the row."""
    if axis in frame.columns:
        return [_clean(v) for v in frame[axis]]
    canonical = resolve_axis(axis) or axis
    column = _COLUMN_OF.get(canonical, canonical)
    if column in frame.columns:
        return [_clean(v) for v in frame[column]]
    if "sweep_cell" in frame.columns:
        out = []
        for cell in frame["sweep_cell"]:
            coords = json.loads(cell) if isinstance(cell, str) and cell else {}
            out.append(coords.get(canonical))
        if any(v is not None for v in out):
            return out
    raise SweepError(f"the runs have no axis {axis!r}; use a column of the log or an axis of the sweep")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ordered(values: list[Any]) -> list[Any]:
    unique = list(dict.fromkeys(v for v in values if not _missing(v)))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def _label(axis: str, value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    return (
        f"{axis}={value}"
        if axis not in ("positivePrompt", "prompt", "negativePrompt", "negative_prompt")
        else str(value)
    )


def _fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(path: str | None, cell: int) -> PILImage.Image | str:
    """The thumbnail of an image file, or why there is none: ``"missing"`` (no file) or ``"unreadable"``."""
    from PIL import Image

    if not path or not Path(path).is_file():
        return "missing"
    try:
        data = Path(path).read_bytes()
        # The size is checked from the header before decoding: a bomb in the log costs its header, not gigabytes.
        with open_image(data, max_pixels=spec.MAX_RESULT_PIXELS, what=Path(path).name) as image:
            image.draft("RGB", (cell, cell))  # JPEG decodes at a reduced scale: cheap thumbnails of big images
            thumb = image.convert("RGB")
    except UnreadableImage:
        return "unreadable"
    except Exception:  # Pillow fails on broken pixel data with many exception types; any of them: unreadable
        return "unreadable"
    scale = min(cell / thumb.width, cell / thumb.height)
    size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
    # Down: smooth resampling. Up (small demo images): nearest, so pixels stay visibly pixels.
    return thumb.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)


def contact_sheet(
    frame: pd.DataFrame,
    x: str | None = None,
    y: str | None = None,
    z: str | Sequence[str] | None = None,
    *,
    orders: dict[str, list[Any]] | None = None,
    cell: int = 192,
    pad: int = 6,
    title: str | None = None,
    definition: dict[str, Any] | None = None,
    demo: bool | None = None,
) -> ContactSheet:
    """Draw rows of the run log as an X/Y(/Z) grid of thumbnails.

    ``frame``: rows of the log (``session.runs.df``, a filtered part of it, or ``plan.df``). ``x``/``y``: axes
    across and down (columns such as ``"steps"``, ``"CFGScale"``, ``"scheduler"``, ``"seed"``, ``"size"``, or sweep
    axes). ``z``: one axis or several; one block per combination. ``orders``: value order per axis (default
    sorted). ``cell``: thumbnail size in pixels. When several rows land in one cell the latest ok one is shown.
    """
    from PIL import Image, ImageDraw, ImageFont

    z_axes = [z] if isinstance(z, str) else list(z or [])
    axes = [a for a in (x, y, *z_axes) if a]
    if len(set(axes)) != len(axes):
        raise SweepError(f"an axis appears twice in x={x!r}, y={y!r}, z={z_axes!r}; give each axis once")
    orders = orders or {}
    rows = frame.to_dict("records")
    coords = {axis: axis_values(frame, axis) for axis in axes}
    values: dict[str, list[Any]] = {}
    for axis in axes:
        canonical = resolve_axis(axis) or axis
        given = orders.get(axis) or orders.get(canonical)
        values[axis] = list(given) if given else _ordered(coords[axis])
        if not values[axis]:
            raise SweepError(
                f"no run has a value for axis {axis!r}; run the sweep first, or draw another part of the log"
            )
    xs = values[x] if x else [None]
    ys = values[y] if y else [None]
    blocks = list(itertools.product(*(values[a] for a in z_axes))) if z_axes else [()]

    # Index rows by their cell; the latest ok row wins, else the latest row of any state.
    index: dict[tuple[Any, ...], dict[str, Any]] = {}
    present_blocks: set[tuple[Any, ...]] = set()
    for i, row in enumerate(rows):
        key_parts = []
        for axis in axes:
            value = coords[axis][i]
            match = next((v for v in values[axis] if _same(v, value)), None)
            if match is None:
                break
            key_parts.append(match)
        else:
            key = tuple(key_parts)
            earlier = index.get(key)
            if earlier is None or row["status"] == "ok" or earlier["status"] != "ok":
                index[key] = row
            present_blocks.add(key[len(axes) - len(z_axes) :] if z_axes else ())
    blocks = [b for b in blocks if b in present_blocks] or blocks[:1]

    is_demo = bool(frame["demo"].any()) if demo is None and "demo" in frame.columns and len(frame) else bool(demo)
    # Shrink cells so the sheet stays within MAX_SIDE pixels a side.
    cell = max(32, min(cell, (MAX_SIDE // max(len(xs), 1)) - pad, (MAX_SIDE // max(len(ys) * len(blocks), 1)) - pad))
    font_size = max(11, min(18, cell // 11))
    font = ImageFont.load_default(size=font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = pad
    if y:
        left = int(min(max(probe.textlength(_label(y, v), font=font) for v in ys), cell * 1.5)) + 2 * pad
    line = font_size + 2 * pad
    top_title = line if title else 0
    x_head = line if x else 0
    z_head = line if z_axes else 0
    block_height = z_head + x_head + len(ys) * (cell + pad)
    caption = line if is_demo else 0
    width = left + len(xs) * (cell + pad) + pad
    height = top_title + len(blocks) * block_height + caption + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), _fit_text(draw, title, font, width - 2 * pad), fill="black", font=font)

    placements: list[Placement] = []
    for b, block in enumerate(blocks):
        origin = top_title + b * block_height
        if z_axes:
            z_text = ", ".join(_label(a, v) for a, v in zip(z_axes, block, strict=True))
            draw.text((pad, origin + pad), _fit_text(draw, z_text, font, width - 2 * pad), fill="black", font=font)
        grid_top = origin + z_head + x_head
        if x:
            for ix, xv in enumerate(xs):
                centre = left + ix * (cell + pad) + cell // 2
                text = _fit_text(draw, _label(x, xv), font, cell)
                draw.text((centre, origin + z_head + line // 2), text, fill="black", font=font, anchor="mm")
        for iy, yv in enumerate(ys):
            if y:
                text = _fit_text(draw, _label(y, yv), font, left - 2 * pad)
                draw.text((pad, grid_top + iy * (cell + pad) + cell // 2), text, fill="black", font=font, anchor="lm")
            for ix, xv in enumerate(xs):
                x0, y0 = left + ix * (cell + pad), grid_top + iy * (cell + pad)
                box = (x0, y0, x0 + cell, y0 + cell)
                key = tuple(v for v, a in ((xv, x), (yv, y)) if a) + tuple(block)
                row = index.get(key)
                status = "missing" if row is None else ("pending" if row["status"] in UNANSWERED else row["status"])
                thumb = _thumbnail(row.get("image_path"), cell) if row is not None and status == "ok" else None
                if thumb is not None and not isinstance(thumb, str):
                    sheet.paste(thumb, (x0 + (cell - thumb.width) // 2, y0 + (cell - thumb.height) // 2))
                else:
                    if isinstance(thumb, str):
                        status = thumb  # the row says ok but its file is gone or cannot be decoded
                    fill = {
                        "failed": (200, 200, 200),
                        "pending": (235, 235, 200),
                        "unreadable": (235, 205, 205),
                    }.get(status, (245, 245, 245))
                    draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=fill, outline=(160, 160, 160))
                    text = status
                    if status == "failed" and row is not None:
                        code = _fit_text(
                            draw, str(row.get("error_code") or row.get("error_type") or ""), font, cell - 4
                        )
                        text = f"failed\n{code}".strip()
                    draw.multiline_text(
                        (x0 + cell // 2, y0 + cell // 2), text, fill="black", font=font, anchor="mm", align="center"
                    )
                placements.append(
                    Placement(
                        z=tuple(block),
                        y=yv,
                        x=xv,
                        status=status,
                        row_id=int(row["id"]) if row is not None and "id" in row else None,
                        task_uuid=row.get("task_uuid") if row is not None else None,
                        box=box,
                        error_code=(row.get("error_code") if row is not None and status == "failed" else None),
                    )
                )
    if is_demo:
        draw.text((pad, height - caption), DEMO_CAPTION, fill=(180, 0, 0), font=font)

    metadata = {
        "x": x,
        "y": y,
        "z": z_axes,
        "values": values,
        "cell": cell,
        "demo": is_demo,
        "title": title,
        "definition": definition,
        "placements": [
            {
                "z": list(p.z),
                "y": p.y,
                "x": p.x,
                "status": p.status,
                "row_id": p.row_id,
                "task_uuid": p.task_uuid,
                "box": list(p.box),
            }
            for p in placements
        ],
    }
    return ContactSheet(sheet, x, y, z_axes, values, placements, json.loads(json.dumps(metadata, default=str)))
