"""Display helpers: pure ``html_for_*`` builders (strings, testable without a notebook) and thin ``show_*`` wrappers
that hand them to IPython.

Images are shown as small thumbnails (data URIs of a downscaled copy), never the full file: a notebook that embeds
full-size images grows by megabytes per run. Images from the offline demo weights are noise, and every builder that
shows one says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import FieldProblem
    from ..types import Generation, ImageInferenceRequest

__all__ = [
    "DEMO_NOTE",
    "STYLE",
    "THUMBNAIL_SIDE",
    "format_seconds",
    "format_usd",
    "html_for_error",
    "html_for_generation",
    "html_for_image",
    "html_for_params",
    "html_for_problems",
    "html_for_request_json",
    "show_generation",
    "show_image",
    "thumbnail",
]

THUMBNAIL_SIDE = 256
DEMO_NOTE = "demo weights: random noise, not a real image"

STYLE = """<style>
.knb-gen{font-family:var(--jp-ui-font-family,sans-serif);font-size:12px}
.knb-gen .knb-tiles{display:flex;flex-wrap:wrap;gap:8px}
.knb-tile{display:inline-flex;flex-direction:column;align-items:center;margin:0}
.knb-tile img{border:1px solid #ccc;border-radius:3px;max-width:100%}
.knb-caption{color:#444;font-size:11px;text-align:center;max-width:260px;overflow-wrap:anywhere}
.knb-demo{background:#fff3cd;color:#664d03;border-radius:3px;padding:1px 5px;font-size:11px}
.knb-problems{color:#b00020;margin:2px 0;padding-left:16px;font-size:12px}
.knb-json{font-family:var(--jp-code-font-family,monospace);font-size:11px;line-height:1.35;background:#f6f8fa;
 padding:6px;border-radius:3px;white-space:pre-wrap;max-height:320px;overflow:auto;margin:0}
.knb-sweep-table td,.knb-sweep-table th{padding:2px;font-size:11px;line-height:1.2;vertical-align:middle}
.knb-params td{padding:1px 8px 1px 0;vertical-align:top;font-size:12px}
.knb-error{color:#b00020;white-space:pre-wrap;font-family:var(--jp-code-font-family,monospace);font-size:12px}
</style>"""


def format_usd(value: float | None) -> str:
    """``$0.0077``; small amounts keep 2 significant digits; None is an em dash (no cost reported)."""
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if abs(value) >= 0.01:
        return f"${value:.4f}"
    return f"${value:.2g}" if abs(value) >= 0.0001 else f"${value:.1e}"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def thumbnail(data: bytes, max_side: int = THUMBNAIL_SIDE) -> tuple[bytes, str]:
    """A downscaled copy of an encoded image (aspect kept) and its format, as ``(bytes, "png"|"jpeg")``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((max_side, max_side))
        has_alpha = image.mode in ("RGBA", "LA", "P")
        buffer = io.BytesIO()
        if has_alpha:
            image.save(buffer, format="PNG", optimize=True)
            return buffer.getvalue(), "png"
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
        return buffer.getvalue(), "jpeg"


def _data_uri(data: bytes, fmt: str) -> str:
    return f"data:image/{fmt};base64," + base64.b64encode(data).decode("ascii")


def html_for_image(data: bytes, caption: str = "", *, max_side: int | None = THUMBNAIL_SIDE, title: str = "") -> str:
    """One image as an ``<img>`` tile (a thumbnail unless ``max_side`` is None) with an escaped caption below."""
    if max_side is None:
        from ..types.images import sniff_format

        small, fmt = data, (sniff_format(data) or "png")
    else:
        small, fmt = thumbnail(data, max_side)
    caption_html = f'<figcaption class="knb-caption">{caption}</figcaption>' if caption else ""
    return (
        f'<figure class="knb-tile"><img src="{_data_uri(small, fmt)}" alt="{html.escape(title or "image")}" '
        f'title="{html.escape(title)}"/>{caption_html}</figure>'
    )


def html_for_generation(generation: Generation, *, max_side: int = THUMBNAIL_SIDE, style: bool = True) -> str:
    """Thumbnails of a Generation's images with seed, cost and latency under each, and a demo-weights note."""
    request = generation.request
    per_image_latency = generation.latency_s
    tiles = []
    for index, image in enumerate(generation.images):
        caption = " · ".join(
            [
                f"seed {image.seed}" if image.seed is not None else "seed —",
                format_usd(image.cost),
                format_seconds(per_image_latency),
            ]
        )
        if generation.demo:
            caption += f'<br><span class="knb-demo" title="{html.escape(DEMO_NOTE)}">demo weights: noise</span>'
        tiles.append(html_for_image(image.data, caption, max_side=max_side, title=f"image {index + 1}"))
    head = (
        f"<div><b>{len(generation.images)} image{'s' if len(generation.images) != 1 else ''}</b> · "
        f"{html.escape(generation.engine)} engine · {request.width}x{request.height} · "
        f"{request.effective('steps')} steps · CFG {request.effective('CFGScale'):g} · "
        f"total {format_usd(generation.cost)} · {format_seconds(generation.latency_s)}"
        + (' · <span class="knb-demo">demo weights</span>' if generation.demo else "")
        + f'</div><div class="knb-caption" style="text-align:left;max-width:none">'
        f"{html.escape(_shorten(request.positivePrompt, 200))}</div>"
    )
    body = f'<div class="knb-gen">{head}<div class="knb-tiles">{"".join(tiles)}</div></div>'
    return (STYLE if style else "") + body


def html_for_request_json(request: ImageInferenceRequest | Mapping[str, Any]) -> str:
    """The exact JSON object sent for a request, pretty-printed and escaped (image data shortened for display)."""
    wire = request if isinstance(request, Mapping) else request.to_wire()
    shown = {key: _shorten_image(key, value) for key, value in wire.items()}
    text = html.escape(json.dumps(shown, indent=2, ensure_ascii=False))
    return f'<pre class="knb-json" style="line-height:1.35">{text}</pre>'


def html_for_problems(problems: Iterable[FieldProblem | str]) -> str:
    """A red list of validation problems (empty string when there are none)."""
    items = [f"<li>{html.escape(str(p))}</li>" for p in problems]
    return f'<ul class="knb-problems">{"".join(items)}</ul>' if items else ""


def html_for_error(error: BaseException, *, context: str = "") -> str:
    """An exception as a red block: its type and full message (the message ends with the fix)."""
    where = f"{html.escape(context)}: " if context else ""
    return f'<div class="knb-error">{where}<b>{type(error).__name__}</b>: {html.escape(str(error))}</div>'


def html_for_params(params: Mapping[str, Any]) -> str:
    """A two-column table of parameters (values JSON-encoded where not plain text)."""
    rows = []
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        rows.append(f"<tr><td><b>{html.escape(str(key))}</b></td><td>{html.escape(_shorten(text, 400))}</td></tr>")
    return f'<table class="knb-params">{"".join(rows)}</table>'


def show_generation(generation: Generation, *, max_side: int = THUMBNAIL_SIDE) -> None:
    """Display a Generation's thumbnails with their seed, cost and latency in the notebook."""
    from IPython.display import HTML, display

    display(HTML(html_for_generation(generation, max_side=max_side)))


def show_image(data: bytes, caption: str = "", *, max_side: int | None = THUMBNAIL_SIDE) -> None:
    """Display one encoded image (thumbnail unless ``max_side=None``) with an optional caption."""
    from IPython.display import HTML, display

    display(HTML(STYLE + html_for_image(data, html.escape(caption), max_side=max_side)))


def generation_repr_html(generation: Generation) -> str:
    """The ``_repr_html_`` of a Generation (so a Generation at the end of a cell shows its thumbnails)."""
    return html_for_generation(generation)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten_image(key: str, value: Any) -> Any:
    if key in ("seedImage",) and isinstance(value, str) and len(value) > 80:
        return value[:48] + f"…<{len(value)} chars>"
    if key == "referenceImages" and isinstance(value, list):
        return [_shorten_image("seedImage", item) for item in value]
    return value
