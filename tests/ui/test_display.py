"""Display helpers: the pure HTML builders (escaped text, thumbnails not full images, the demo note) and the thin
show_* wrappers, captured from IPython's display."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from kandinsky_nb.errors import BudgetExceededError
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult
from kandinsky_nb.ui import display


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def generation(demo: bool = False) -> Generation:
    request = ImageInferenceRequest(positivePrompt="a <b>bold</b> fox & friends", width=1280, height=768, steps=28)
    images = [
        GeneratedImage(ImageInferenceResult(taskUUID=request.taskUUID, seed=11 + i, cost=0.004), png(1280, 768))
        for i in range(2)
    ]
    return Generation(request, images, engine="runware", latency_s=3.25, demo=demo)


def embedded_sizes(markup: str) -> list[tuple[int, int]]:
    sizes = []
    for data in re.findall(r'src="data:image/\w+;base64,([^"]+)"', markup):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            sizes.append(image.size)
    return sizes


def test_generation_html_has_thumbnails_with_seed_cost_latency_and_escaped_prompt():
    markup = display.html_for_generation(generation())
    assert embedded_sizes(markup) == [(display.THUMBNAIL_SIDE, 154)] * 2  # downscaled, aspect kept
    assert "seed 11" in markup and "seed 12" in markup
    assert markup.count("· $0.004 ·") == 2 and "total $0.008 " in markup and "3.2 s" in markup
    assert "<b>bold</b>" not in markup and "&lt;b&gt;bold&lt;/b&gt; fox &amp; friends" in markup
    assert "demo" not in markup.replace("knb-demo{", "")


def test_demo_generations_say_their_images_are_noise():
    markup = display.html_for_generation(generation(demo=True))
    assert markup.count("demo weights: noise") == 2 and display.DEMO_NOTE in markup


def test_show_generation_displays_the_same_html(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    gen = generation()
    display.show_generation(gen)
    (item,) = shown
    assert embedded_sizes(item.data) == embedded_sizes(display.html_for_generation(gen))
    assert display.generation_repr_html(gen).count("<img") == 2


def test_request_json_shortens_inline_images_only():
    request = ImageInferenceRequest(positivePrompt="edit", seedImage=png(64, 64), strength=0.5)
    markup = display.html_for_request_json(request)
    assert "chars&gt;" in markup and '"strength": 0.5' in markup.replace("&quot;", '"')


def test_error_and_money_formatting():
    error = BudgetExceededError(needed=0.5, spent=0.2, cap=0.3)
    markup = display.html_for_error(error, context="Generate")
    assert "BudgetExceededError" in markup and "Raise the cap" in markup
    assert [display.format_usd(v) for v in (None, 0, 0.0077, 0.00019, 0.000012)] == [
        "—",
        "$0",
        "$0.0077",
        "$0.00019",
        "$1.2e-05",
    ]
    assert display.format_seconds(75) == "1 min 15 s"


@pytest.mark.parametrize("side", [64, 300])
def test_thumbnail_never_upscales(side):
    data, fmt = display.thumbnail(png(side, side), 128)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (min(side, 128),) * 2 and fmt == "jpeg"
