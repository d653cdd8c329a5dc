"""The request model against the model page: examples round-trip, every limit holds at its edges, errors name fields."""

from __future__ import annotations

import json
import math

import pytest
from model_page import SHARED_REFERENCE, extract_examples, model_page_examples

import kandinsky_nb as knb
from kandinsky_nb import spec
from kandinsky_nb.types import ImageInferenceRequest as Request

EXAMPLES = model_page_examples()


def test_fixture_matches_the_model_page_when_it_is_at_hand():
    page = SHARED_REFERENCE / "runware-kandinsky-5.0-image-lite.md"
    if not page.exists():
        pytest.skip("shared reference notes not checked out beside the repo")
    assert extract_examples(page.read_text()) == EXAMPLES


@pytest.mark.parametrize("example", [pair[0] for pair in EXAMPLES], ids=lambda e: e["taskUUID"][:8])
def test_model_page_examples_round_trip_exactly(example):
    request = Request.model_validate(example)
    assert request.model_dump(by_alias=True, exclude_none=True) == example
    assert json.loads(json.dumps(request.to_wire())) == example
    assert Request.model_validate_json(json.dumps(example)).to_wire() == example


@pytest.mark.parametrize("response", [pair[1] for pair in EXAMPLES], ids=lambda e: e["taskUUID"][:8])
def test_model_page_responses_parse_typed(response):
    result = knb.ImageInferenceResult.model_validate(response)
    assert result.seed == response["seed"] and isinstance(result.seed, int)
    assert result.cost == response["cost"]
    assert result.imageURL == response["imageURL"]


def base(**changes):
    data = {"positivePrompt": "a red fox in snow"}
    data.update(changes)
    return data


def nested(path: str, value):
    """{"acceleratorOptions.cacheEndStep": 5} -> request kwargs, enabling a cache so window options are meaningful."""
    parent, child = path.split(".")
    if parent == "acceleratorOptions":
        options = {"fbCache": True}
        for family, knobs in spec.CACHE_FAMILIES.items():
            if child in knobs:
                options = {family: True}
        options[child] = value
        extra = {"steps": 50} if child == "cacheEndStep" else {}
        return base(acceleratorOptions=options, **extra)
    if parent == "lora":
        return base(lora=[{"model": "civitai:1@1", child: value}])
    raise AssertionError(path)


def kwargs_for(path: str, value):
    if path == "strength":
        return base(seedImage="f05d45ad-e63e-44d8-a247-c2dcc3ab0b94", strength=value)
    return nested(path, value) if "." in path else base(**{path: value})


def edges(limit: spec.Limit):
    """(just inside, just outside) pairs at each documented bound."""
    delta = 1 if limit.integer else (limit.step or 0.01)
    cases = [(limit.minimum, limit.minimum - delta)]
    if limit.maximum is not None:
        cases.append((limit.maximum, limit.maximum + delta))
    cases = [(float(i), round(o, 6)) for i, o in cases] if not limit.integer else [(int(i), int(o)) for i, o in cases]
    return cases


LIMIT_CASES = [(path, inside, outside) for path, limit in spec.LIMITS.items() for inside, outside in edges(limit)]


@pytest.mark.parametrize(("path", "inside", "outside"), LIMIT_CASES, ids=[f"{c[0]}={c[1]}|{c[2]}" for c in LIMIT_CASES])
def test_every_numeric_limit_inside_passes_outside_fails(path, inside, outside):
    Request(**kwargs_for(path, inside))
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**kwargs_for(path, outside))
    leaf = path.split(".")[-1]
    assert any(problem.field.endswith(leaf) for problem in info.value.problems), str(info.value)
    assert leaf in str(info.value)
    assert spec.LIMITS[path].describe() in str(info.value)  # says what is allowed


@pytest.mark.parametrize("path", [p for p, limit in spec.LIMITS.items() if not limit.integer])
def test_float_fields_respect_their_step(path):
    limit = spec.LIMITS[path]
    Request(**kwargs_for(path, limit.minimum + limit.step))
    with pytest.raises(knb.RequestValidationError, match=r"multiple of 0\.01"):
        Request(**kwargs_for(path, limit.minimum + limit.step / 3))


@pytest.mark.parametrize(("field", "low", "high"), [(f, lo, hi) for f, (lo, hi) in spec.TEXT_LIMITS.items()])
def test_text_length_limits(field, low, high):
    Request(**base(**{field: "x" * low}))
    Request(**base(**{field: "x" * high}))
    for bad in ("x" * (low - 1), "x" * (high + 1)):
        with pytest.raises(knb.RequestValidationError) as info:
            Request(**base(**{field: bad}))
        assert info.value.fields == [field]
        assert f"{low} to {high} characters" in str(info.value)


@pytest.mark.parametrize("size", spec.SIZES, ids=str)
def test_each_of_the_seven_sizes_is_accepted(size):
    request = Request(**base(width=size.width, height=size.height))
    assert request.size == size


@pytest.mark.parametrize(
    ("width", "height", "nearest"),
    [
        (1000, 1000, "1024x1024"),
        (1280, 720, "1280x768"),
        (1024, 768, "1152x896"),
        (512, 1024, "640x1408"),
        (768, 1296, "768x1280"),
    ],
)
def test_unsupported_size_names_the_seven_sizes_and_the_nearest(width, height, nearest):
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(width=width, height=height))
    message = str(info.value)
    assert f"{width}x{height}" in message
    assert f"the nearest is {nearest}" in message
    for size in spec.SIZES:
        assert f"{size} ({size.label})" in message


def test_width_and_height_go_together():
    with pytest.raises(knb.RequestValidationError, match="must be given together with width"):
        Request(**base(width=1280))
    assert Request(**base()).size == spec.DEFAULT_SIZE


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("scheduler", "Euler a", "Euler A"),
        ("outputType", "base64Data", "base64"),
        ("outputFormat", "WEBP", "TIFF"),
        ("deliveryMethod", "async", "stream"),
        ("taskType", "imageInference", "videoInference"),
        ("model", spec.MODEL_ID, "runware:210@1"),
    ],
)
def test_enumerations_accept_only_documented_values(field, good, bad):
    assert Request(**base(**{field: good})).to_wire()[field] == good
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(**{field: bad}))
    assert info.value.fields == [field]
    assert repr(good) in str(info.value)  # the allowed values are listed


@pytest.mark.parametrize("scheduler", spec.SCHEDULERS)
def test_all_twelve_schedulers_are_valid_requests(scheduler):
    assert Request(**base(scheduler=scheduler)).scheduler == scheduler


def test_strict_types_refuse_lossy_coercion():
    for field, value in [("steps", "20"), ("steps", 20.0), ("seed", True), ("includeCost", 1), ("positivePrompt", 42)]:
        with pytest.raises(knb.RequestValidationError) as info:
            Request(**base(**{field: value}))
        assert info.value.fields == [field], field
    # A float field takes an int (what an IntSlider gives), and keeps it a number.
    assert Request(**base(CFGScale=7)).CFGScale == 7.0


def test_unknown_fields_are_refused_with_a_suggestion():
    with pytest.raises(knb.RequestValidationError, match="did you mean 'CFGScale'"):
        Request(**base(cfgScale=5))
    with pytest.raises(knb.RequestValidationError, match="did you mean 'fbCacheThreshold'"):
        Request(**base(acceleratorOptions={"fbCache": True, "fbCacheTreshold": 0.2}))


def test_task_uuid_is_generated_as_v4_and_validated():
    first, second = Request(**base()), Request(**base())
    assert first.taskUUID != second.taskUUID
    import uuid

    assert uuid.UUID(first.taskUUID).version == 4
    with pytest.raises(knb.RequestValidationError, match="UUID v4"):
        Request(**base(taskUUID="not-a-uuid"))
    with pytest.raises(knb.RequestValidationError, match="UUID v4"):
        Request(**base(taskUUID=str(uuid.uuid1())))


def test_uris_are_checked():
    Request(**base(webhookURL="https://example.com/hook?token=1", uploadEndpoint="https://bucket.example.com/x.jpg"))
    for field in ("webhookURL", "uploadEndpoint"):
        with pytest.raises(knb.RequestValidationError) as info:
            Request(**base(**{field: "ftp://nope"}))
        assert info.value.fields == [field]


def test_ttl_applies_only_to_url_output():
    Request(**base(ttl=60, outputType="URL"))
    Request(**base(ttl=3600))
    with pytest.raises(knb.RequestValidationError, match="ttl"):
        Request(**base(ttl=60, outputType="base64Data"))


def test_safety_object():
    assert Request(**base(safety={"checkContent": True, "mode": "fast"})).to_wire()["safety"] == {
        "checkContent": True,
        "mode": "fast",
    }
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(safety={"checkContent": True, "mode": "none"}))
    assert info.value.fields == ["safety.mode"]
    with pytest.raises(knb.RequestValidationError):
        Request(**base(safety={"mode": "strict"}))


class TestAcceleratorOptions:
    def test_all_twelve_fields_are_accepted(self):
        assert len(knb.AcceleratorOptions.model_fields) == 12
        options = {
            "dbCache": True,
            "dbCacheThreshold": 0.3,
            "dbCacheSkipInterval": 4,
            "cacheStartStep": 2,
            "cacheEndStep": 18,
            "cacheMaxConsecutiveSteps": 2,
        }
        assert Request(**base(steps=20, acceleratorOptions=options)).to_wire()["acceleratorOptions"] == options
        pct = {"teaCache": True, "teaCacheDistance": 0.4, "cacheStartStepPercentage": 10, "cacheEndStepPercentage": 90}
        assert Request(**base(acceleratorOptions=pct)).acceleratorOptions.window(20) == (2, 18)

    def test_start_must_be_before_end(self):
        with pytest.raises(knb.RequestValidationError, match="greater than cacheStartStep"):
            Request(**base(acceleratorOptions={"fbCache": True, "cacheStartStep": 8, "cacheEndStep": 8}))
        with pytest.raises(knb.RequestValidationError, match="greater than cacheStartStepPercentage"):
            Request(
                **base(
                    acceleratorOptions={"fbCache": True, "cacheStartStepPercentage": 50, "cacheEndStepPercentage": 40}
                )
            )

    def test_end_must_not_pass_steps(self):
        Request(**base(steps=30, acceleratorOptions={"fbCache": True, "cacheEndStep": 30}))
        with pytest.raises(knb.RequestValidationError) as info:
            Request(**base(steps=30, acceleratorOptions={"fbCache": True, "cacheEndStep": 31}))
        assert info.value.fields == ["acceleratorOptions.cacheEndStep"]
        # unset steps means the default 20
        with pytest.raises(knb.RequestValidationError, match="steps=20"):
            Request(**base(acceleratorOptions={"fbCache": True, "cacheEndStep": 21}))

    def test_step_and_percentage_are_alternatives(self):
        with pytest.raises(knb.RequestValidationError, match="alternative to cacheStartStep"):
            Request(**base(acceleratorOptions={"fbCache": True, "cacheStartStep": 1, "cacheStartStepPercentage": 5}))

    def test_one_cache_family_at_a_time(self):
        with pytest.raises(knb.RequestValidationError, match="one cache at a time"):
            Request(**base(acceleratorOptions={"fbCache": True, "dbCache": True}))

    def test_knobs_need_their_family(self):
        with pytest.raises(knb.RequestValidationError, match="unless teaCache is true"):
            Request(**base(acceleratorOptions={"fbCache": True, "teaCacheDistance": 0.3}))
        with pytest.raises(knb.RequestValidationError, match="unless a cache is enabled"):
            Request(**base(acceleratorOptions={"cacheEndStep": 10}))


def test_lora_entries():
    request = Request(
        **base(
            lora=[{"model": "civitai:1@1", "weight": 0.8}, {"model": "my:lora@2", "weight": -1.5, "transformer": "low"}]
        )
    )
    assert request.to_wire()["lora"][1] == {"model": "my:lora@2", "weight": -1.5, "transformer": "low"}
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(lora=[{"weight": 1.0}]))
    assert info.value.fields == ["lora[0].model"]
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(lora=[{"model": "a:b@1", "transformer": "mid"}]))
    assert info.value.fields == ["lora[0].transformer"]


def test_several_problems_are_all_reported():
    with pytest.raises(knb.RequestValidationError) as info:
        Request(positivePrompt="x", steps=5, CFGScale=11.0, scheduler="Heun")
    assert set(info.value.fields) == {"positivePrompt", "steps", "CFGScale", "scheduler"}
    assert isinstance(info.value, ValueError)  # also a ValueError, for callers that catch those


def test_seed_is_exact_at_64_bits():
    request = Request(**base(seed=spec.SEED_MAX))
    assert request.to_wire()["seed"] == 9223372036854775807
    result = knb.ImageInferenceResult.model_validate_json('{"taskUUID": "x", "seed": 9202427981074766178}')
    assert result.seed == 9202427981074766178


def test_replace_revalidates_and_makes_a_new_task():
    request = Request(**base(steps=28, CFGScale=7.5, seed=1))
    changed = request.replace(steps=40, scheduler="UniPC")
    assert (changed.steps, changed.scheduler, changed.CFGScale, changed.seed) == (40, "UniPC", 7.5, 1)
    assert changed.taskUUID != request.taskUUID
    assert request.replace(seed=None).seed is None
    with pytest.raises(knb.RequestValidationError):
        request.replace(steps=60)


def test_effective_gives_model_defaults():
    request = Request(**base())
    assert request.effective("steps") == 20
    assert request.effective("CFGScale") == 7
    assert request.effective("outputFormat") == "JPG"
    assert math.isclose(spec.list_price_estimate(1024, 1024), spec.LIST_PRICE_USD)


def test_a_bad_field_does_not_hide_a_bad_size():
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(width=1000, height=1000, CFGScale=12.0))
    assert set(info.value.fields) == {"width/height", "CFGScale"}
    with pytest.raises(knb.RequestValidationError) as info:
        Request(**base(width=1280, steps=5))
    assert set(info.value.fields) == {"height", "steps"}
