"""GeneratePanel and Gallery on the real offline demo engine: Generate runs as a task on the running loop, a second
click is ignored, images come back with seed/cost/latency, rows reach the run log, errors land in the panel, and the
gallery's "reuse" reproduces an image."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from kandinsky_nb.errors import BudgetExceededError
from kandinsky_nb.ui import Gallery, GeneratePanel, SweepPanel

pytestmark = pytest.mark.local


def large_sizes(markup: str) -> list[tuple[int, int]]:
    import base64
    import io

    from PIL import Image

    sizes = []
    for data in re.findall(r'class="knb-large" src="data:image/\w+;base64,([^"]+)"', markup):
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            sizes.append(image.size)
    return sizes


def fill(panel: GeneratePanel, **values) -> None:
    defaults = {"positivePrompt": "a red fox in snow", "steps": 10, "size": "1K (~20:9)"}
    panel.update(**(defaults | values))


async def test_generate_runs_as_a_task_and_ignores_a_second_click(demo_session):
    panel = GeneratePanel(demo_session)
    fill(panel, numberResults=2)
    sent = panel.request
    panel.generate_button.click()
    task = panel.task
    assert isinstance(task, asyncio.Task) and not task.done()
    assert panel.running and panel.generate_button.disabled
    # An empty log gives no time estimate: the bar moves ("working") instead of staying empty or inventing a fraction.
    assert panel.run_state.expected_s is None and "knb-busy" in panel.progress._dom_classes
    assert panel.progress.layout.visibility == "visible"
    panel.generate_button.click()  # while running: ignored, and said so
    assert panel.ignored_clicks == 1 and "ignored" in panel.status.value
    generation = await task
    assert not panel.running and not panel.generate_button.disabled
    assert panel.generations == [generation]
    assert generation.request.to_wire() == sent.to_wire()
    # Two thumbnails, each captioned with its own seed, its cost and the latency; the demo note is shown.
    assert panel.results.value.count('class="knb-thumb"') == 2
    # A click on a thumbnail opens the image in place, with its own aspect (1408x640 asked; the demo engine draws
    # smaller images of the same shape).
    assert panel.results.value.count('<details class="knb-zoom">') == 2
    sizes = large_sizes(panel.results.value)
    assert len(sizes) == 2 and all(abs(width / height - 1408 / 640) < 0.05 for width, height in sizes), sizes
    for seed in generation.seeds:
        assert f"seed {seed}" in panel.results.value
    assert "demo weights" in panel.results.value
    assert panel.progress.value == 1 and panel.progress.bar_style == "success"
    assert "knb-busy" not in panel.progress._dom_classes
    rows = demo_session.runs.df
    assert list(rows["status"]) == ["ok", "ok"]
    assert {json.loads(r)["taskUUID"] for r in rows["request_json"]} == {sent.taskUUID}
    assert re.search(r'knb-log-count">2<', panel.status.value)
    # The time a person waited, and (when it differs) how much of it was generating.
    waited = re.search(r"Done: 2 image\(s\) in ([\d.]+) s", panel.status.value)
    assert waited and float(waited.group(1)) >= generation.details["gpu_seconds"] - 0.05, panel.status.value


def test_without_a_running_loop_generate_runs_synchronously(demo_session):
    panel = GeneratePanel(demo_session)
    fill(panel, random_seed=False, seed="7")
    assert panel.generate() is None  # no event loop: ran now, no task
    assert len(panel.generations) == 1 and panel.generations[0].seeds == [7]
    assert len(demo_session.runs) == 1


def test_engine_refusals_show_next_to_the_control(demo_session):
    panel = GeneratePanel(demo_session)
    fill(panel, scheduler="DDIM")
    assert panel.request is None and panel.generate_button.disabled
    assert "DDIM" in panel._problem_labels["scheduler"].value
    assert "not on the local engine" in dict((v, k) for k, v in panel.controls["scheduler"].options)["DDIM"]


async def test_a_failed_run_shows_its_error_in_the_panel_and_is_logged(demo_backend, tmp_path):
    from kandinsky_nb.session import Session

    session = Session(engine=demo_backend, home=tmp_path / "home", budget=1e-9)
    try:
        panel = GeneratePanel(session)
        fill(panel)
        assert "not enough for this request" in panel.cost_label.value  # warned before the click
        panel.generate_button.click()
        assert await panel.task is None
        assert isinstance(panel.errors.last, BudgetExceededError)
        assert "BudgetExceededError" in panel.errors.widget.value and "Raise the cap" in panel.errors.widget.value
        assert panel.progress.bar_style == "danger" and not panel.generate_button.disabled
    finally:
        session.runs.close()


async def test_gallery_shows_a_slice_opens_an_image_and_reuse_reproduces_it(demo_session):
    panel = GeneratePanel(demo_session)
    fill(panel, steps=10)
    panel.generate_button.click()
    await panel.task
    fill(panel, steps=12, numberResults=2)
    panel.generate_button.click()
    await panel.task

    gallery = Gallery(demo_session, panel=panel)
    assert len(gallery.grid.children) == 3
    assert gallery.detail.layout.display == "none"  # nothing opened yet
    gallery.query_box.value = "steps == 12"
    assert len(gallery.grid.children) == 2 and len(gallery.state.shown_ids) == 2
    gallery.query_box.value = "no_such_column > 1"
    assert "did not run" in gallery.errors.widget.value
    gallery.query_box.value = "steps == 10"
    (tile,) = gallery.grid.children
    tile.children[-1].click()  # the tile's open button
    row = demo_session.runs.df.set_index("id").loc[gallery.state.selected_id]
    assert gallery.detail_image.value == Path(row["image_path"]).read_bytes()
    assert f"{row['seed']}" in gallery.detail_params.value

    assert gallery.detail.layout.display is None
    # The full image keeps its aspect: not stretched to the height of the parameters beside it.
    layout = gallery.detail_image.layout
    assert (layout.object_fit, layout.height, layout.align_self) == ("contain", "auto", "flex-start")
    target = GeneratePanel(demo_session)
    gallery.panel = target
    gallery.reuse_button.click()
    assert target.request.seed == row["seed"] and target.request.steps == 10
    target.generate_button.click()
    again = await target.task
    assert len(gallery.grid.children) == 1  # the reused run came from another panel: not followed
    panel.generate()  # the gallery follows its own panel: a Generate there refreshes it without a click
    await panel.task
    assert len(gallery.grid.children) == 2  # query "steps == 10": the refresh picked up the reused run
    # Same parameters, same seed, same engine: the same pixels (the stored file also carries embedded metadata).
    from PIL import Image, ImageChops

    stored = Image.open(Path(row["image_path"])).convert("RGB")
    assert again.images[0].seed == row["seed"]
    assert ImageChops.difference(again.images[0].to_pil().convert("RGB"), stored).getbbox() is None


def test_gallery_takes_a_dataframe_slice(demo_session):
    panel = GeneratePanel(demo_session)
    for steps in (10, 11, 12):
        fill(panel, steps=steps)
        panel.generate()
    frame = demo_session.runs.df
    gallery = Gallery(frame[frame["steps"] >= 11], session=demo_session)
    assert len(gallery.grid.children) == 2
    gallery.grid.children[0].children[-1].click()
    reused = gallery.reuse()  # no panel given: opens one under the gallery
    assert gallery.panel_area.children == (reused,)
    assert reused.request.steps == 12  # newest first


def test_an_empty_log_gives_an_empty_gallery(demo_session):
    gallery = Gallery(demo_session)
    assert gallery.grid.children == () and "<b>0</b> images" in gallery.summary.value
    assert gallery.errors.widget.value == ""


def test_the_engine_and_what_the_estimate_means_are_said_before_anything_runs(demo_session):
    panel = GeneratePanel(demo_session)
    assert "Engine: <b>demo</b>" in panel.engine_line.value and "noise" in panel.engine_line.value
    fill(panel)
    assert len(demo_session.runs) == 0
    # An empty log: the figure is the cloud's list price, and the panel says that is not what this engine logs.
    assert "what the cloud would charge" in panel.cost_label.value
    sweep = SweepPanel(demo_session)
    sweep.update(prompt="a fox", axes={"seed": "1, 2"})
    assert "what the cloud would charge" in sweep.summary.value
    sweep.run()
    assert "2 ok" in sweep.progress_label.value and "demo GPU time (nothing charged" in sweep.progress_label.value
    assert "spent" not in sweep.progress_label.value


def test_a_panel_without_a_session_names_the_engine_the_environment_chooses(monkeypatch):
    panel = GeneratePanel()
    assert "Engine: <b>demo</b>" in panel.engine_line.value and "first Generate" in panel.engine_line.value
    monkeypatch.setenv("RUNWARE_API_KEY", "k" * 32)
    assert "Engine: <b>runware</b>" in GeneratePanel().engine_line.value
    monkeypatch.setenv("KANDINSKY_NB_ENGINE", "gpu-farm")
    assert "unknown engine &#x27;gpu-farm&#x27;" in GeneratePanel().engine_line.value


def test_gallery_pages_captions_and_a_detail_that_follows_the_filter(demo_session):
    panel = GeneratePanel(demo_session)
    for steps in (10, 11, 12, 13, 14):
        fill(panel, steps=steps, random_seed=False, seed=str(steps))
        panel.generate()
    gallery = Gallery(demo_session, limit=2)
    # Paged: 5 images, 2 a page, newest first; every image is reachable.
    assert gallery.state.pages == 3 and "images 1–2 of <b>5</b>" in gallery.summary.value
    assert gallery.previous_button.disabled and not gallery.next_button.disabled
    seen = list(gallery.state.shown_ids)
    gallery.next_button.click()
    seen += gallery.state.shown_ids
    gallery.next_button.click()
    seen += gallery.state.shown_ids
    assert len(set(seen)) == 5 and gallery.next_button.disabled and "page 3 of 3" in gallery.page_label.value
    gallery.show_page(0)
    # A tile says what tells it apart, not only its row id.
    caption = gallery.grid.children[0].children[1].value
    assert "14 steps" in caption and "CFG" in caption and "1408x640" in caption and "seed 14" in caption
    assert "Euler (default)" in caption  # the scheduler was left to the model: the caption says which that is
    # The detail opens above the thumbnails, with money, time and date formatted for people.
    gallery.grid.children[0].children[-1].click()
    assert list(gallery.children).index(gallery.detail) < list(gallery.children).index(gallery.grid)
    params = gallery.detail_params.value
    assert re.search(r"created</b></td><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<", params), params
    assert re.search(r"cost</b></td><td>(\$[0-9.e-]+|—)<", params), params
    # A filter that hides the opened run closes its detail.
    gallery.query_box.value = "steps == 10"
    assert gallery.state.selected_id is None and gallery.detail.layout.display == "none"
    assert gallery.reuse_button.disabled
