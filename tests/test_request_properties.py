"""Property tests: every valid request survives the wire; nothing invalid is accepted."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kandinsky_nb as knb
from kandinsky_nb import spec
from kandinsky_nb.types import ImageInferenceRequest as Request

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def in_limit(key: str) -> st.SearchStrategy:
    limit = spec.LIMITS[key]
    if limit.integer:
        return st.integers(
            int(limit.minimum), int(limit.maximum) if limit.maximum is not None else int(limit.minimum) + 10_000
        )
    lo, hi = round(limit.minimum / limit.step), round(limit.maximum / limit.step)
    return st.integers(lo, hi).map(lambda k: round(k * limit.step, 2))


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=2, max_size=60)


@st.composite
def accelerator_options(draw, steps: int):
    family = draw(st.sampled_from(list(spec.CACHE_FAMILIES)))
    options: dict = {family: True}
    for knob in spec.CACHE_FAMILIES[family]:
        if draw(st.booleans()):
            options[knob] = draw(in_limit(f"acceleratorOptions.{knob}"))
    if draw(st.booleans()):
        start = draw(st.integers(0, steps - 1))
        options["cacheStartStep"] = start
        options["cacheEndStep"] = draw(st.integers(start + 1, steps))
    elif draw(st.booleans()):
        start = draw(st.integers(0, 98))
        options["cacheStartStepPercentage"] = start
        options["cacheEndStepPercentage"] = draw(st.integers(start + 1, 100))
    if draw(st.booleans()):
        options["cacheMaxConsecutiveSteps"] = draw(in_limit("acceleratorOptions.cacheMaxConsecutiveSteps"))
    return options


@st.composite
def valid_requests(draw) -> dict:
    size = draw(st.sampled_from(spec.SIZES))
    steps = draw(optional(in_limit("steps")))
    data: dict = {
        "taskUUID": str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)), version=4)),
        "positivePrompt": draw(text),
        "width": size.width,
        "height": size.height,
    }
    if steps is not None:
        data["steps"] = steps
    output_type = draw(optional(st.sampled_from(spec.OUTPUT_TYPES)))
    maybe = {
        "negativePrompt": text,
        "seed": in_limit("seed"),
        "CFGScale": in_limit("CFGScale"),
        "scheduler": st.sampled_from(spec.SCHEDULERS),
        "numberResults": in_limit("numberResults"),
        "outputType": st.just(output_type) if output_type else st.nothing(),
        "outputFormat": st.sampled_from(spec.OUTPUT_FORMATS),
        "outputQuality": in_limit("outputQuality"),
        "deliveryMethod": st.sampled_from(spec.DELIVERY_METHODS),
        "includeCost": st.booleans(),
        "ttl": in_limit("ttl") if output_type in (None, "URL") else st.nothing(),
        "webhookURL": st.sampled_from(["https://example.com/hook", "http://127.0.0.1:9000/cb?t=1"]),
        "uploadEndpoint": st.just("https://bucket.example.com/upload/x.jpg"),
        "safety": st.fixed_dictionaries(
            {}, optional={"checkContent": st.just(False), "mode": st.sampled_from(spec.SAFETY_MODES)}
        ),
        "acceleratorOptions": accelerator_options(steps or 20),
        "lora": st.lists(
            st.fixed_dictionaries(
                {"model": st.sampled_from(["civitai:1@1", "my:lora@2"])},
                optional={"weight": in_limit("lora.weight"), "transformer": st.sampled_from(spec.LORA_TRANSFORMERS)},
            ),
            min_size=1,
            max_size=3,
        ),
    }
    for key, strategy in maybe.items():
        if draw(st.booleans()):
            value = draw(optional(strategy))
            if value is not None:
                data[key] = value
    return data


@SETTINGS
@given(valid_requests())
def test_any_valid_request_round_trips_through_json(data):
    request = Request.model_validate(data)
    wire = json.dumps(request.to_wire())
    again = Request.model_validate_json(wire)
    assert again == request
    assert again.to_wire() == request.to_wire()


MUTATIONS = {
    "steps": st.integers(-1000, 9) | st.integers(51, 1000),
    "CFGScale": st.floats(-100, 1.99)
    | st.floats(10.01, 100)
    | st.floats(2, 10).filter(lambda v: not spec.on_step(v, 0.01)),
    "numberResults": st.integers(-50, 0) | st.integers(21, 500),
    "outputQuality": st.integers(-5, 19) | st.integers(100, 1000),
    "ttl": st.integers(-100, 59),
    "seed": st.integers(-(2**70), -1) | st.integers(2**63, 2**70),
    "width": st.integers(1, 4096).filter(lambda w: w not in {s.width for s in spec.SIZES}),
    "scheduler": st.text(max_size=20).filter(lambda s: s not in spec.SCHEDULERS),
    "outputFormat": st.text(max_size=8).filter(lambda s: s not in spec.OUTPUT_FORMATS),
    "negativePrompt": st.text(max_size=1) | st.text(min_size=3001, max_size=3002),
    "unknownField": st.integers(),
}


@SETTINGS
@given(valid_requests(), st.sampled_from(sorted(MUTATIONS)), st.data())
def test_no_invalid_request_is_accepted(data, field, draw):
    data = dict(data)
    value = draw.draw(MUTATIONS[field])
    if field == "width":
        data["height"] = data["height"]  # keep the pair explicit: only the width is wrong
    data[field] = value
    with pytest.raises(knb.RequestValidationError) as info:
        Request.model_validate(data)
    named = field if field != "width" else "width/height"
    assert any(p.field.startswith(named) for p in info.value.problems), str(info.value)
