"""Pure HTML builders: plain data in, an HTML string out (mediapy's ``html_from_*`` style).

Nothing here imports a widget library, IPython or the toolkit's types: a :class:`~kandinsky_nb.types.Generation`
renders itself in a notebook through these builders without loading ipywidgets, and the panels in
:mod:`kandinsky_nb.ui` show the same markup. Images are shown as thumbnails (data URIs of a downscaled copy), never
the full file, so a notebook does not grow by megabytes per run. Images from the offline demo weights are noise, and
every builder that shows one says so.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ._media import data_uri, sniff_format

__all__ = [
    "DEMO_NOTE",
    "STYLE",
    "THUMBNAIL_SIDE",
    "ComparedRun",
    "ImageInfo",
    "differing_fields",
    "engine_label",
    "format_seconds",
    "format_usd",
    "html_from_code",
    "html_from_comparison",
    "html_from_engine",
    "html_from_error",
    "html_from_file_link",
    "html_from_generation",
    "html_from_image",
    "html_from_params",
    "html_from_problems",
    "html_from_request_json",
    "html_from_wipe",
    "thumbnail",
]

THUMBNAIL_SIDE = 256
DEMO_NOTE = "demo weights: random noise, not a real image"

# Colours are JupyterLab theme variables (fallbacks for plain HTML), so the light and dark themes both read well; the
# badge keeps dark text on a light background in both. Text is at least 12px. The .knb-panel rules let the panels'
# widget rows wrap and shrink at half width instead of overlapping or cutting labels ("Gen…").
STYLE = """<style>
.knb-gen{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;color:var(--jp-ui-font-color1,#212121)}
.knb-gen .knb-tiles{display:flex;flex-wrap:wrap;gap:8px}
.knb-tile{display:inline-flex;flex-direction:column;align-items:center;margin:0;max-width:100%}
.knb-tile img{border:1px solid var(--jp-border-color1,#bdbdbd);border-radius:3px;max-width:100%;height:auto}
.knb-zoom summary{list-style:none;cursor:zoom-in;display:block}
.knb-zoom summary::-webkit-details-marker{display:none}
.knb-zoom[open] summary{cursor:zoom-out}
.knb-zoom:not([open]) .knb-large,.knb-zoom[open] .knb-thumb{display:none}
.knb-tile:has(.knb-zoom[open]){flex-basis:100%}
.knb-caption{color:var(--jp-ui-font-color1,#333);font-size:12px;text-align:center;max-width:260px;
 overflow-wrap:anywhere}
.knb-demo{background:var(--jp-warn-color3,#ffe0b2);color:var(--md-grey-900,#212121);border-radius:3px;padding:1px 5px;
 font-size:12px}
.knb-problems{color:var(--jp-error-color1,#d32f2f);margin:2px 0;padding-left:16px;font-size:12px}
.knb-json{font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.35;
 background:var(--jp-layout-color2,#eeeeee);color:var(--jp-content-font-color1,#212121);padding:6px;border-radius:3px;
 white-space:pre-wrap;overflow-wrap:anywhere;max-height:320px;overflow:auto;margin:0}
.knb-sweep-table td,.knb-sweep-table th{padding:2px;font-size:12px;line-height:1.2;vertical-align:middle}
.knb-cell{display:flex;align-items:center;justify-content:center;color:var(--md-grey-900,#212121)}
.knb-cell-failed{background:var(--jp-error-color3,#ffcdd2)}
.knb-cell-pending{background:var(--jp-warn-color3,#ffe0b2)}
.knb-cell-new{background:var(--jp-layout-color3,#bdbdbd)}
.knb-params td{padding:1px 8px 1px 0;vertical-align:top;font-size:12px;overflow-wrap:anywhere}
.knb-error{color:var(--jp-error-color1,#d32f2f);white-space:pre-wrap;font-family:var(--jp-code-font-family,monospace);
 font-size:12px}
.knb-muted{color:var(--jp-ui-font-color2,#616161);font-size:12px}
.knb-over{color:var(--jp-error-color1,#d32f2f);font-size:12px}
.knb-panel .widget-hbox,.knb-panel .jupyter-widget-hbox{flex-wrap:wrap;max-width:100%}
.knb-panel .widget-vbox,.knb-panel .jupyter-widget-vbox{max-width:100%;min-width:0}
.knb-panel .jupyter-button,.knb-panel .jupyter-widget-upload{width:auto;min-width:max-content;flex:0 0 auto}
.knb-panel .jupyter-widget-hslider{width:auto;flex:1 1 260px;min-width:200px}
.knb-panel .jupyter-widgets:not(.widget-box){max-width:calc(100% - 2 * var(--jp-widgets-margin,2px))}
.knb-panel .jupyter-widget-image{max-width:100%;height:auto}
.knb-panel .jupyter-widget-html-content{white-space:normal;overflow-wrap:anywhere;line-height:1.4}
.knb-scroll{overflow:auto;max-width:100%}
.knb-compare-table th,.knb-compare-table td{padding:2px 6px;font-size:12px;vertical-align:top;text-align:left;
 overflow-wrap:anywhere;max-width:320px}
.knb-compare-image{max-width:100%;height:auto;border:1px solid var(--jp-border-color1,#bdbdbd)}
.knb-differs th,.knb-differs td{background:var(--jp-warn-color3,#ffe0b2);color:var(--md-grey-900,#212121)}
.knb-outcome th,.knb-outcome td{color:var(--jp-ui-font-color2,#616161)}
.knb-code-block pre{max-height:240px}
.knb-copy{font-size:12px;margin:2px 0 4px 6px;cursor:pointer}
.knb-wipe-frame{position:relative;display:inline-block;max-width:100%;line-height:0}
.knb-wipe-frame img{max-width:100%;height:auto;display:block}
.knb-wipe-frame .knb-wipe-top{position:absolute;top:0;left:0;width:100%;height:100%;object-fit:fill}
.knb-wipe-slider{display:block;width:min(512px,100%)}
@keyframes knb-busy{from{margin-left:-30%}to{margin-left:100%}}
.knb-busy .progress{overflow:hidden}
.knb-busy .progress-bar{width:30% !important;animation:knb-busy 1.4s linear infinite}
</style>"""


class ImageInfo(NamedTuple):
    """One image as the builders need it: its encoded bytes, and the seed and cost the engine reported (or None)."""

    data: bytes
    seed: int | None = None
    cost: float | None = None


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
    """A downscaled copy of an encoded image (aspect kept, never upscaled) and its format, as ``(bytes, "png"|"jpeg")``.

    Images with transparency stay PNG; the rest become JPEG, a fraction of the size for photographic content.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        if image.mode in ("RGBA", "LA", "P"):
            image.save(buffer, format="PNG", optimize=True)
            return buffer.getvalue(), "png"
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
        return buffer.getvalue(), "jpeg"


def html_from_image(
    data: bytes,
    caption: str = "",
    *,
    max_side: int | None = THUMBNAIL_SIDE,
    title: str = "",
    zoom_side: int | None = None,
) -> str:
    """One image as an ``<img>`` tile (a thumbnail unless ``max_side`` is None) with a caption below.

    ``zoom_side``: clicking the thumbnail opens the image at up to this many pixels a side in place (aspect kept;
    click again to close). Plain HTML (``<details>``), so it works in any notebook front end and in Voila, no script.
    ``caption`` is HTML (callers escape what they put in it); ``title`` is plain text.
    """
    small, fmt = (data, sniff_format(data)) if max_side is None else thumbnail(data, max_side)
    alt = html.escape(title or "image")
    image = f'<img class="knb-thumb" src="{data_uri(small, fmt)}" alt="{alt}" title="{html.escape(title)}"/>'
    if zoom_side is not None:
        large = data_uri(*thumbnail(data, zoom_side))
        image = (
            f'<details class="knb-zoom"><summary title="click to enlarge; click again to close">{image}'
            f'<img class="knb-large" src="{large}" alt="{alt}"/></summary></details>'
        )
    caption_html = f'<figcaption class="knb-caption">{caption}</figcaption>' if caption else ""
    return f'<figure class="knb-tile">{image}{caption_html}</figure>'


def html_from_generation(
    images: Sequence[ImageInfo],
    *,
    engine: str,
    prompt: str,
    width: int,
    height: int,
    steps: int,
    cfg_scale: float,
    latency_s: float | None,
    total_cost: float | None = None,
    demo: bool = False,
    max_side: int = THUMBNAIL_SIDE,
    zoom_side: int | None = None,
    style: bool = True,
) -> str:
    """Thumbnails of one request's images with seed, cost and latency under each, a summary line above, and a
    demo-weights note when the images are noise. ``zoom_side``: see :func:`html_from_image`."""
    tiles = []
    for index, image in enumerate(images):
        caption = " · ".join(
            [
                f"seed {image.seed}" if image.seed is not None else "seed —",
                format_usd(image.cost),
                format_seconds(latency_s),
            ]
        )
        if demo:
            caption += f'<br><span class="knb-demo" title="{html.escape(DEMO_NOTE)}">demo weights: noise</span>'
        tiles.append(
            html_from_image(image.data, caption, max_side=max_side, title=f"image {index + 1}", zoom_side=zoom_side)
        )
    head = (
        f"<div><b>{len(images)} image{'s' if len(images) != 1 else ''}</b> · "
        f"{html.escape(engine_label(engine, demo))} engine · {width}x{height} · {steps} steps · CFG {cfg_scale:g} · "
        f"total {format_usd(total_cost)} · {format_seconds(latency_s)}"
        + (' · <span class="knb-demo">demo weights</span>' if demo else "")
        + '</div><div class="knb-caption" style="text-align:left;max-width:none">'
        f"{html.escape(_shorten(prompt, 200))}</div>"
    )
    body = f'<div class="knb-gen">{head}<div class="knb-tiles">{"".join(tiles)}</div></div>'
    return (STYLE if style else "") + body


# What each engine is and what its costs mean, said before anything runs.
_ENGINE_NOTES = {
    "demo": "the local Kandinsky 5 pipeline on random demo weights: images are noise, for trying the toolkit "
    "offline; its costs are measured GPU time, not a price",
    "local": "the Kandinsky 5 pipeline on this machine's GPU; cost = measured GPU seconds × the hourly rate",
    "runware": "the Runware cloud; costs are what Runware reports per image",
}


def engine_label(engine: str, demo: bool = False) -> str:
    """The name a person knows the engine by: ``demo`` for the local engine on demo weights (as the README and
    ``KANDINSKY_NB_ENGINE=demo`` say), else the engine's own name."""
    return "demo" if demo else engine


def html_from_engine(engine: str, demo: bool = False, *, when: str = "") -> str:
    """One line naming the engine and what its images and costs are (``when``: a note such as "opened at the first
    Generate")."""
    label = engine_label(engine, demo)
    note = _ENGINE_NOTES.get(label, "")
    badge = ' <span class="knb-demo">demo weights: images are noise</span>' if demo else ""
    when_html = f" ({html.escape(when)})" if when else ""
    return (
        f'<div class="knb-engine">Engine: <b>{html.escape(label)}</b>{when_html}{badge}'
        + (f'<br><span class="knb-muted">{html.escape(note)}</span>' if note else "")
        + "</div>"
    )


def html_from_request_json(wire: Mapping[str, Any]) -> str:
    """A request's wire JSON object, pretty-printed and escaped (inline image data shortened for display)."""
    shown = {key: _shorten_image(key, value) for key, value in wire.items()}
    text = html.escape(json.dumps(shown, indent=2, ensure_ascii=False))
    return f'<pre class="knb-json">{text}</pre>'


def html_from_problems(problems: Iterable[object]) -> str:
    """A red list of validation problems, each shown by its ``str`` (empty string when there are none)."""
    items = [f"<li>{html.escape(str(p))}</li>" for p in problems]
    return f'<ul class="knb-problems">{"".join(items)}</ul>' if items else ""


def html_from_error(error: BaseException, *, context: str = "") -> str:
    """An exception as a red block: its type and full message (the toolkit's messages end with the fix)."""
    where = f"{html.escape(context)}: " if context else ""
    return f'<div class="knb-error">{where}<b>{type(error).__name__}</b>: {html.escape(str(error))}</div>'


def html_from_params(params: Mapping[str, Any]) -> str:
    """A two-column table of parameters (values JSON-encoded where not plain text)."""
    rows = []
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        rows.append(f"<tr><td><b>{html.escape(str(key))}</b></td><td>{html.escape(_shorten(text, 400))}</td></tr>")
    return f'<table class="knb-params">{"".join(rows)}</table>'


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten_image(key: str, value: Any) -> Any:
    if key == "seedImage" and isinstance(value, str) and len(value) > 80:
        return value[:48] + f"…<{len(value)} chars>"
    if key == "referenceImages" and isinstance(value, list):
        return [_shorten_image("seedImage", item) for item in value]
    return value


# -- the run viewer and comparisons --------------------------------------------------------------------------------

# A copy button with no script tag: an inline handler (which widget HTML and Voila keep) copies the code block beside
# it, through the Clipboard API where the page is a secure context (localhost, https) and a selection otherwise.
_COPY_HANDLER = (
    "var p=this.parentElement.querySelector('pre');var t=p.textContent;var b=this;"
    "function ok(){b.textContent='Copied';setTimeout(function(){b.textContent='Copy';},1500);}"
    "if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(t).then(ok);}"
    "else{var r=document.createRange();r.selectNodeContents(p);var s=window.getSelection();s.removeAllRanges();"
    "s.addRange(r);document.execCommand('copy');ok();}"
)


def html_from_code(code: str, *, title: str = "Copy as code") -> str:
    """A block of Python with a Copy button (the code stays selectable where the clipboard is not allowed)."""
    return (
        f'<div class="knb-code-block"><b>{html.escape(title)}</b> '
        f'<button class="knb-copy" type="button" title="copy this code to the clipboard" '
        f'onclick="{html.escape(_COPY_HANDLER)}">Copy</button>'
        f'<pre class="knb-json">{html.escape(code)}</pre></div>'
    )


def html_from_file_link(path: str, *, label: str = "open the file") -> str:
    """A link to an image file on this machine (``file://``, opened by the browser where it may) and its path as text
    to copy, for front ends that block file links."""
    from pathlib import Path

    target = Path(path)
    href = target.as_uri() if target.is_absolute() else path
    return (
        f'<span class="knb-file-link"><a href="{html.escape(href)}" target="_blank" rel="noopener">'
        f"{html.escape(label)}</a> <code>{html.escape(path)}</code></span>"
    )


def differing_fields(params: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fields whose values are not the same in every mapping (a field missing from one counts as differing), in
    the order they first appear."""
    order: dict[str, None] = {}
    for mapping in params:
        order.update(dict.fromkeys(mapping))
    missing = object()
    return [key for key in order if len({_comparable(p.get(key, missing)) for p in params}) > 1]


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value


class ComparedRun(NamedTuple):
    """One run in a comparison: its title, its image's encoded bytes (None: no image), the parameters compared, and
    what it came to (cost, time: shown, never marked as a difference)."""

    title: str
    image: bytes | None
    params: Mapping[str, Any]
    outcome: Mapping[str, Any] = {}
    demo: bool = False


def html_from_comparison(runs: Sequence[ComparedRun], *, max_side: int = THUMBNAIL_SIDE) -> str:
    """Runs side by side: their images in one row, then a table of their parameters with every field that differs
    between them marked (``knb-differs``), then what each came to. Aspect is kept; images are thumbnails."""
    if not runs:
        return '<span class="knb-muted">Nothing to compare yet: add runs with Compare.</span>'
    differing = set(differing_fields([run.params for run in runs]))
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.params))
    outcome_keys: dict[str, None] = {}
    for run in runs:
        outcome_keys.update(dict.fromkeys(run.outcome))

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return html.escape(_shorten(text, 300))

    head = "".join(f"<th>{html.escape(run.title)}</th>" for run in runs)
    images = []
    for run in runs:
        if run.image is None:
            images.append('<td class="knb-muted">no image</td>')
            continue
        small, fmt = thumbnail(run.image, max_side)
        note = '<br><span class="knb-demo">demo weights: noise</span>' if run.demo else ""
        images.append(
            f'<td><img class="knb-compare-image" src="{data_uri(small, fmt)}" alt="{html.escape(run.title)}"/>{note}</td>'
        )
    rows = []
    for key in keys:
        marked = key in differing
        row_class = ' class="knb-differs"' if marked else ""
        sign = ' <span title="differs between these runs">≠</span>' if marked else ""
        values = "".join(f"<td>{cell(run.params.get(key))}</td>" for run in runs)
        rows.append(f"<tr{row_class}><th>{html.escape(key)}{sign}</th>{values}</tr>")
    for key in outcome_keys:
        values = "".join(f"<td>{cell(run.outcome.get(key))}</td>" for run in runs)
        rows.append(f'<tr class="knb-outcome"><th>{html.escape(key)}</th>{values}</tr>')
    count = len(differing)
    summary = f"{len(runs)} runs · <b>{count}</b> parameter{'s differ' if count != 1 else ' differs'}" + (
        f": {html.escape(', '.join(sorted(differing)))}" if differing else " (the same request)"
    )
    return (
        f'<div class="knb-compare"><div class="knb-compare-summary">{summary}</div><div class="knb-scroll">'
        f'<table class="knb-compare-table"><tr><th></th>{head}</tr><tr><th></th>{"".join(images)}</tr>'
        f"{''.join(rows)}</table></div></div>"
    )


# The wipe's slider uncovers the second image from the left; an inline handler (no script tag) moves the clip.
_WIPE_HANDLER = "this.parentElement.querySelector('.knb-wipe-top').style.clipPath='inset(0 0 0 '+this.value+'%)';"


def html_from_wipe(first: ComparedRun, second: ComparedRun, *, max_side: int = 512) -> str:
    """Two runs' images stacked in one frame with a slider that wipes from the first to the second (both drawn at the
    first one's aspect; for two images of the same size, as a sweep's cells are). Empty when either has no image."""
    if first.image is None or second.image is None:
        return ""
    below, above = data_uri(*thumbnail(first.image, max_side)), data_uri(*thumbnail(second.image, max_side))
    return (
        f'<div class="knb-wipe"><div class="knb-muted">Wipe: {html.escape(first.title)} (left of the line) against '
        f"{html.escape(second.title)} (right of it)</div>"
        f'<div class="knb-wipe-frame"><img class="knb-wipe-bottom" src="{below}" alt="{html.escape(first.title)}"/>'
        f'<img class="knb-wipe-top" src="{above}" alt="{html.escape(second.title)}" style="clip-path:inset(0 0 0 50%)"/>'
        f"</div>"
        f'<input class="knb-wipe-slider" type="range" min="0" max="100" value="50" '
        f'aria-label="wipe between {html.escape(first.title)} and {html.escape(second.title)}" '
        f'oninput="{html.escape(_WIPE_HANDLER)}"/></div>'
    )
