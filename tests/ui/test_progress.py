"""The GeneratePanel's progress bar follows the local engine's real denoising steps, and its live preview shows the
latent projection every few steps (said to be noise on demo weights), on the real demo engine, with and without a
running event loop; an engine that cannot report steps keeps the time-based bar."""

from __future__ import annotations

import io

import pytest

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.ui import GeneratePanel

pytestmark = pytest.mark.local


def watch(panel: GeneratePanel) -> dict[str, list]:
    """Every value the progress bar, the preview image and its caption take while the panel runs."""
    seen: dict[str, list] = {"progress": [], "preview": [], "caption": [], "status": []}
    panel.progress.observe(lambda change: seen["progress"].append(change["new"]), "value")
    panel.preview_image.observe(lambda change: seen["preview"].append(change["new"]), "value")
    panel.preview_caption.observe(lambda change: seen["caption"].append(change["new"]), "value")
    panel.status.observe(lambda change: seen["status"].append(change["new"]), "value")
    return seen


def check_followed_the_steps(panel: GeneratePanel, seen: dict[str, list]) -> None:
    from PIL import Image

    steps = [value for value in seen["progress"] if 0 < value < 1]
    # Step k of 10 puts the bar at k/10 (the busy animation's 1.0 and the final 1.0 aside), in order.
    assert steps == sorted(steps) and {round(v * 10, 6) for v in steps} >= {1.0, 5.0, 9.0}, seen["progress"]
    assert any("step 5 of 10" in status for status in seen["status"]), seen["status"]
    assert len(seen["preview"]) >= 5
    with Image.open(io.BytesIO(bytes(seen["preview"][0]))) as first:
        assert first.format == "PNG" and first.mode == "RGB"
    assert all("demo weights: noise" in caption for caption in seen["caption"])
    run = panel.run_state
    assert run.total_steps == 10 and run.step == 10 and run.first_preview_s is not None
    assert run.first_preview_s < run.results[-1].latency_s + 5  # the preview came during the run, not after it
    # A finished run shows its images, not the preview; the bar is full and green.
    assert panel.preview_box.layout.display == "none"
    assert panel.progress.value == 1 and panel.progress.bar_style == "success"


async def test_the_bar_follows_real_steps_and_previews_show_on_the_event_loop(demo_session):
    panel = GeneratePanel(demo_session)
    panel.update(positivePrompt="a red fox in snow", steps=10)
    assert panel.preview_box.layout.display == "none"  # nothing to preview before a run
    seen = watch(panel)
    panel.generate_button.click()
    await panel.task
    check_followed_the_steps(panel, seen)


def test_the_bar_follows_real_steps_without_an_event_loop(demo_session):
    panel = GeneratePanel(demo_session)
    panel.update(positivePrompt="a red fox in snow", steps=10)
    seen = watch(panel)
    assert panel.generate() is None
    check_followed_the_steps(panel, seen)


async def test_an_engine_without_steps_keeps_the_time_based_bar(tmp_path):
    from kandinsky_nb.session import Session
    from kandinsky_nb.types import Generation

    class OneAnswer(Backend):
        name = "runware"

        def generate(self, request):
            return Generation(request=request, images=[], engine=self.name, latency_s=0.01)

    session = Session(engine=OneAnswer(), home=tmp_path / "home")
    try:
        panel = GeneratePanel(session)
        panel.update(positivePrompt="a red fox in snow", steps=10)
        panel.generate_button.click()
        assert "knb-busy" in panel.progress._dom_classes  # no estimate, no steps: the "working" animation
        await panel.task
        assert panel.run_state.total_steps is None and panel.run_state.preview is None
        assert panel.preview_box.layout.display == "none"
    finally:
        session.runs.close()


async def test_ctrl_enter_in_the_browser_generates_once_while_running(demo_session):
    from kandinsky_nb.ui.keys import SUBMIT_EVENT

    panel = GeneratePanel(demo_session)
    panel.update(positivePrompt="a red fox in snow", steps=10)
    assert panel.shortcut in panel.children and panel.shortcut.scope in panel._dom_classes
    assert "Ctrl+Enter" in panel.generate_button.tooltip
    # What the browser sends on Ctrl/Cmd+Enter inside the panel (the message the widget's front end posts).
    panel.shortcut._handle_custom_msg({"event": SUBMIT_EVENT}, [])
    assert panel.running and panel.task is not None
    panel.shortcut._handle_custom_msg({"event": SUBMIT_EVENT}, [])  # pressed again while running: ignored
    panel.shortcut._handle_custom_msg({"event": "something else"}, [])
    await panel.task
    assert panel.shortcut.presses == 2 and panel.ignored_clicks == 1 and len(panel.generations) == 1


def test_the_shortcut_is_wired_in_the_front_end():
    from kandinsky_nb.ui.keys import SubmitShortcut

    # The browser half: the keys it reacts to, where it listens, and that it stops JupyterLab running the cell.
    script = SubmitShortcut._esm
    for needed in ('event.key !== "Enter"', "event.ctrlKey || event.metaKey", "panel.contains(event.target)"):
        assert needed in script
    assert 'addEventListener("keydown", onKeydown, true)' in script and "stopPropagation" in script
    assert "removeEventListener" in script  # a closed view leaves no listener behind
