"""Display helpers: the pure HTML builders of kandinsky_nb.html (escaped text, thumbnails not full images, the demo
note), a Generation's own HTML (with no widget library loaded), and the thin show_* wrappers, captured from IPython's
display."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from kandinsky_nb import html as knb_html
from kandinsky_nb.errors import BudgetExceededError
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult
from kandinsky_nb.ui import show_generation


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
    markup = generation().to_html()
    assert embedded_sizes(markup) == [(knb_html.THUMBNAIL_SIDE, 154)] * 2  # downscaled, aspect kept
    assert "seed 11" in markup and "seed 12" in markup
    assert markup.count("· $0.004 ·") == 2 and "total $0.008 " in markup and "3.2 s" in markup
    assert "<b>bold</b>" not in markup and "&lt;b&gt;bold&lt;/b&gt; fox &amp; friends" in markup
    assert "demo" not in markup.replace("knb-demo{", "")


def test_demo_generations_say_their_images_are_noise():
    markup = generation(demo=True).to_html()
    assert markup.count("demo weights: noise") == 2 and knb_html.DEMO_NOTE in markup
    assert "demo engine" in markup  # the name the README and KANDINSKY_NB_ENGINE use, as the panels say it


def test_show_generation_displays_the_same_html(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    gen = generation()
    show_generation(gen)
    (item,) = shown
    assert embedded_sizes(item.data) == embedded_sizes(gen.to_html())
    assert gen._repr_html_().count("<img") == 2


def test_request_json_shortens_inline_images_only():
    request = ImageInferenceRequest(positivePrompt="edit", seedImage=png(64, 64), strength=0.5)
    markup = knb_html.html_from_request_json(request.to_wire())
    assert "chars&gt;" in markup and '"strength": 0.5' in markup.replace("&quot;", '"')


def test_error_and_money_formatting():
    error = BudgetExceededError(needed=0.5, spent=0.2, cap=0.3)
    markup = knb_html.html_from_error(error, context="Generate")
    assert "BudgetExceededError" in markup and "Raise the cap" in markup
    assert [knb_html.format_usd(v) for v in (None, 0, 0.0077, 0.00019, 0.000012)] == [
        "—",
        "$0",
        "$0.0077",
        "$0.00019",
        "$1.2e-05",
    ]
    assert knb_html.format_seconds(75) == "1 min 15 s"


@pytest.mark.parametrize("side", [64, 300])
def test_thumbnail_never_upscales(side):
    data, fmt = knb_html.thumbnail(png(side, side), 128)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (min(side, 128),) * 2 and fmt == "jpeg"


# Run in a fresh interpreter where importing ipywidgets fails, as on a machine without it.
_WITHOUT_IPYWIDGETS = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoWidgets(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "ipywidgets" or name.startswith("ipywidgets."):
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, NoWidgets())
    try:
        import ipywidgets
    except ImportError:
        pass
    else:
        raise SystemExit("the block did not work: ipywidgets imported")

    import io
    from PIL import Image
    from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

    buffer = io.BytesIO()
    Image.new("RGB", (1280, 768), (10, 120, 200)).save(buffer, format="PNG")
    request = ImageInferenceRequest(positivePrompt="a red fox in snow", width=1280, height=768)
    image = GeneratedImage(ImageInferenceResult(taskUUID=request.taskUUID, seed=7, cost=0.004), buffer.getvalue())
    markup = Generation(request, [image], engine="local", latency_s=1.5, demo=True)._repr_html_()
    assert markup.count("<img") == 1 and "seed 7" in markup and "demo weights" in markup, markup[:500]
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("ipywidgets", "kandinsky_nb"))
    assert "ipywidgets" not in sys.modules, loaded
    assert not [name for name in loaded if name.startswith("kandinsky_nb.ui")], loaded
    print("rendered without ipywidgets")
    """
)


def test_a_generation_renders_html_without_ipywidgets():
    result = subprocess.run([sys.executable, "-c", _WITHOUT_IPYWIDGETS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rendered without ipywidgets" in result.stdout
