"""GeneratePanel's form: every parameter reaches the request, problems sit next to their control, Generate is disabled
while invalid, and the JSON, cost and code shown are the ones of the request that would be sent. No engine needed."""

from __future__ import annotations

import datetime
import html
import io
import json
import re

import pytest
from PIL import Image

from kandinsky_nb import spec
from kandinsky_nb.errors import RequestValidationError
from kandinsky_nb.types import ImageInferenceRequest
from kandinsky_nb.ui import GeneratePanel, GenerateState, LoraEntry
from kandinsky_nb.ui import state as st


def png_bytes(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_fresh_panel_asks_for_a_prompt_and_disables_generate():
    panel = GeneratePanel()
    assert panel.request is None
    assert panel.generate_button.disabled
    assert "positivePrompt" in panel._problem_labels["positivePrompt"].value


def test_controls_take_their_ranges_and_defaults_from_spec():
    panel = GeneratePanel()
    steps, cfg = panel.controls["steps"], panel.controls["CFGScale"]
    assert (steps.min, steps.max, steps.value) == (
        spec.LIMITS["steps"].minimum,
        spec.LIMITS["steps"].maximum,
        spec.LIMITS["steps"].default,
    )
    assert (cfg.min, cfg.max, cfg.step, cfg.value) == (
        spec.LIMITS["CFGScale"].minimum,
        spec.LIMITS["CFGScale"].maximum,
        spec.LIMITS["CFGScale"].step,
        spec.LIMITS["CFGScale"].default,
    )
    assert [value for _, value in panel.controls["size"].options] == [s.label for s in spec.SIZES]
    assert [v for _, v in panel.controls["scheduler"].options][1:] == list(spec.SCHEDULERS)
    assert panel.controls["numberResults"].max == spec.LIMITS["numberResults"].maximum


def test_widget_values_become_the_exact_request_and_json_preview():
    panel = GeneratePanel()
    c = panel.controls
    c["positivePrompt"].value = "a red fox in snow"
    c["negativePrompt"].value = "blurry"
    c["size"].value = "1K (5:3)"
    c["steps"].value = 28
    c["CFGScale"].value = 7.5
    c["scheduler"].value = "UniPC"
    c["random_seed"].value = False
    c["seed"].value = str(2**40 + 7)
    c["numberResults"].value = 3
    c["outputFormat"].value = "PNG"
    wire = panel.request.to_wire()
    assert {k: wire[k] for k in ("positivePrompt", "negativePrompt", "width", "height", "steps", "CFGScale")} == {
        "positivePrompt": "a red fox in snow",
        "negativePrompt": "blurry",
        "width": 1280,
        "height": 768,
        "steps": 28,
        "CFGScale": 7.5,
    }
    assert (wire["scheduler"], wire["seed"], wire["numberResults"], wire["outputFormat"]) == (
        "UniPC",
        2**40 + 7,
        3,
        "PNG",
    )
    assert not panel.generate_button.disabled
    shown = json.loads(re.sub(r"<[^>]+>", "", panel.json_preview.value).replace("&quot;", '"'))
    assert shown == wire
    assert "$" in panel.cost_label.value
    assert f"{spec.list_price_estimate(1280, 768, 28, 3):.4f}" in panel.cost_label.value


def test_seed_text_beyond_a_browser_number_and_bad_seed_text():
    panel = GeneratePanel()
    panel.update(positivePrompt="a fox", random_seed=False, seed=str(spec.SEED_MAX))
    assert panel.request.seed == spec.SEED_MAX
    panel.update(seed="12x")
    assert panel.request is None and panel.generate_button.disabled
    assert "whole number" in panel._problem_labels["seed"].value
    panel.update(random_seed=True)
    assert panel.request is not None and "seed" not in panel.request.to_wire()
    assert panel.controls["seed"].disabled


def test_each_problem_is_shown_next_to_its_own_control():
    panel = GeneratePanel()
    panel.update(positivePrompt="a fox", cache="fbCache", cache_options={"cacheEndStep": "99"}, ttl="5")
    labels = panel._problem_labels
    assert "cacheEndStep" in labels["acceleratorOptions.cacheEndStep"].value
    assert "ttl" in labels["ttl"].value
    assert labels["positivePrompt"].value == ""
    assert panel.generate_button.disabled
    assert sorted(p.field for p in panel.problems) == ["acceleratorOptions.cacheEndStep", "ttl"]


def test_negative_prompt_counter_and_too_long_text():
    panel = GeneratePanel()
    high = spec.TEXT_LIMITS["negativePrompt"][1]
    panel.update(positivePrompt="a fox", negativePrompt="x" * (high + 1))
    assert f"{high + 1} / {high}" in panel.counters["negativePrompt"].value
    assert "negativePrompt" in panel._problem_labels["negativePrompt"].value
    assert panel.request is None


def test_cache_family_shows_only_its_knobs_and_sends_them():
    panel = GeneratePanel()
    panel.update(positivePrompt="a fox")
    assert all(box.layout.display == "none" for box in panel._knob_boxes.values())
    panel.controls["acceleratorOptions"].value = "teaCache"
    panel.cache_knobs["teaCacheDistance"].value = "0.3"
    panel.cache_knobs["cacheStartStep"].value = "2"
    assert panel._knob_boxes["teaCacheDistance"].layout.display is None
    assert panel._knob_boxes["fbCacheThreshold"].layout.display == "none"
    assert panel.request.to_wire()["acceleratorOptions"] == {
        "teaCache": True,
        "teaCacheDistance": 0.3,
        "cacheStartStep": 2,
    }


def test_lora_rows_add_edit_remove():
    panel = GeneratePanel()
    panel.update(positivePrompt="a fox")
    panel.add_lora_button.click()
    panel.add_lora_button.click()
    assert len(panel.lora_rows.children) == 2
    # An empty model id is a problem shown under the LoRA list.
    assert panel.request is None and "lora[0].model" in panel._problem_labels["lora"].value
    for index, row in enumerate(panel.lora_rows.children):
        row.children[0].value = f"civitai:{index}@1"
    panel.lora_rows.children[1].children[1].value = 9.0  # clamped to the slider's documented maximum
    assert panel.request.to_wire()["lora"] == [
        {"model": "civitai:0@1", "weight": 1.0, "transformer": "both"},
        {"model": "civitai:1@1", "weight": spec.LIMITS["lora.weight"].maximum, "transformer": "both"},
    ]
    panel.lora_rows.children[0].children[3].click()
    assert [e.model for e in panel.state.loras] == ["civitai:1@1"]


def test_uploaded_image_becomes_seed_image_with_strength():
    panel = GeneratePanel()
    panel.update(positivePrompt="make it blue")
    assert panel.controls["strength"].disabled
    data = png_bytes()
    upload = {
        "name": "fox.png",
        "type": "image/png",
        "size": len(data),
        "content": memoryview(data),
        "last_modified": datetime.datetime.now(datetime.UTC),
    }
    panel.controls["seedImage"].value = (upload,)
    assert panel.state.seedImage == data
    assert not panel.controls["strength"].disabled
    wire = panel.request.to_wire()
    assert wire["seedImage"].startswith("data:image/png;base64,")
    assert wire["strength"] == spec.LIMITS["strength"].default
    assert "<img" in panel.seed_image_preview.value
    assert "PATH_TO_YOUR_IMAGE" in panel.code()
    panel.controls["referenceImages"].value = (upload, upload | {"name": "style.png"})
    assert panel.request.to_wire()["referenceImages"] == [wire["seedImage"]] * 2
    assert "PATH_TO_REFERENCE_2.png" in panel.code()
    panel.clear_image_button.click()
    wire = panel.request.to_wire()
    assert panel.state.seedImage is None and "seedImage" not in wire and "referenceImages" not in wire


def test_safety_and_api_options():
    panel = GeneratePanel()
    panel.update(positivePrompt="a fox", checkContent=True, safetyMode="none")
    assert panel.request is None and "safety.mode" in panel._problem_labels["safety.mode"].value
    panel.controls["safety.mode"].value = "fast"
    panel.controls["outputType"].value = "base64Data"
    panel.controls["webhookURL"].value = "https://example.org/hook"
    wire = panel.request.to_wire()
    assert wire["safety"] == {"checkContent": True, "mode": "fast"}
    assert wire["outputType"] == "base64Data" and wire["webhookURL"] == "https://example.org/hook"


def test_copy_as_code_rebuilds_the_same_request():
    state = GenerateState(
        positivePrompt="a fox's den, at dusk",
        size="1K (9:7)",
        steps=33,
        CFGScale=4.25,
        scheduler="Euler a",
        random_seed=False,
        seed="42",
        cache="dbCache",
        cache_options={"dbCacheThreshold": "0.2"},
        loras=[LoraEntry("civitai:1@2", 0.5, "high")],
    )
    request = st.build_request(state)
    code = st.code_for_request(request)
    call = code[code.index(".generate(") + len(".generate(") : code.rindex(")")]
    # The call's arguments, evaluated, are the request's own fields: "positional prompt, then wire names".
    args, kwargs = eval(f"(lambda *a, **k: (a, k))({call})")
    rebuilt = ImageInferenceRequest(positivePrompt=args[0], **kwargs)
    assert rebuilt.to_wire() | {"taskUUID": ""} == request.to_wire() | {"taskUUID": ""}


def test_state_round_trips_through_a_request():
    state = GenerateState(
        positivePrompt="a fox",
        negativePrompt="rain",
        size="1K (3:5)",
        steps=12,
        CFGScale=3.5,
        random_seed=False,
        seed="7",
        numberResults=2,
        checkContent=True,
        safetyMode="fast",
        cache="fbCache",
        cache_options={"fbCacheThreshold": "0.3", "cacheEndStep": "10"},
        loras=[LoraEntry("civitai:9@9", -1.5, "low")],
        seedImage=png_bytes(),
        strength=0.4,
        referenceImages=[png_bytes(16), png_bytes(24)],
    )
    request = st.build_request(state)
    again = st.build_request(st.state_from_request(request))
    assert again.to_wire() | {"taskUUID": ""} == request.to_wire() | {"taskUUID": ""}


def test_load_request_fills_the_widgets():
    request = ImageInferenceRequest(positivePrompt="reuse me", width=1408, height=640, steps=15, seed=99)
    panel = GeneratePanel()
    panel.load_request(request)
    assert panel.controls["positivePrompt"].value == "reuse me"
    assert panel.controls["size"].value == "1K (~20:9)"
    assert (panel.controls["seed"].value, panel.controls["random_seed"].value) == ("99", False)
    assert panel.request.to_wire()["steps"] == 15


def test_build_request_reports_every_problem_at_once():
    with pytest.raises(RequestValidationError) as caught:
        st.build_request(GenerateState(positivePrompt="x", random_seed=False, seed="abc", ttl="-1"))
    assert sorted(caught.value.fields) == ["positivePrompt", "seed", "ttl"]


def test_unknown_problem_paths_go_to_the_general_area():
    from kandinsky_nb.errors import FieldProblem

    grouped = st.problems_by_control([FieldProblem("somethingNew", 1, "")], frozenset({"steps", st.GENERAL}))
    assert list(grouped) == [st.GENERAL]


def test_dice_draws_and_fixes_a_seed_in_the_engines_random_range():
    panel = GeneratePanel()
    panel.update(positivePrompt="a fox")
    panel.dice_button.click()
    seed = panel.request.seed
    assert not panel.state.random_seed and 0 <= seed <= spec.RANDOM_SEED_MAX
    assert panel.controls["seed"].value == str(seed) and not panel.controls["seed"].disabled


def test_update_takes_a_seed_as_a_number_and_fixes_it():
    panel = GeneratePanel()
    panel.update(positivePrompt="a red fox in snow", seed=3)
    assert panel.controls["seed"].value == "3" and panel.state.random_seed is False
    assert panel.request is not None and panel.request.seed == 3


def _all_html(widget) -> str:
    import ipywidgets as widgets

    own = widget.value if isinstance(widget, widgets.HTML) else ""
    return own + "".join(_all_html(child) for child in getattr(widget, "children", ()))


def test_a_fresh_panel_shows_each_problem_once():
    panel = GeneratePanel()
    (problem,) = panel.problems
    shown = _all_html(panel)
    assert shown.count(html.escape(str(problem))) == 1, shown
    assert "once the form is valid" in panel.json_preview.value


@pytest.mark.parametrize(("key", "typed"), [("CFGScale", 12.0), ("steps", 5)])
def test_a_value_out_of_range_is_said_not_clamped(key, typed):
    panel = GeneratePanel()
    panel.update(positivePrompt="a red fox in snow")
    limit = spec.LIMITS[key]
    panel.number_boxes[key].value = typed  # what a person types next to the slider
    assert getattr(panel.state, key) == typed  # kept as typed, not clamped
    assert panel.request is None and panel.generate_button.disabled
    shown = panel._problem_labels[key].value
    assert f"{typed:g}" in shown and f"{limit.maximum:g}" in shown and f"{limit.minimum:g}" in shown, shown
    assert panel.number_boxes[key].value == typed  # the box still shows what was typed
    # Moving the slider (always in range) fixes it, and the box follows.
    panel.controls[key].value = limit.default
    assert panel.request is not None and panel.number_boxes[key].value == limit.default
    assert panel._problem_labels[key].value == ""
