"""Fuzz: ImageInferenceRequest from arbitrary dicts, JSON texts and untrusted bodies. Whatever comes in, the only
exceptions that may come out are the toolkit's own (KandinskyNBError), and every message renders."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hostile_server import png_bytes, png_header_only, png_signature_then_garbage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kandinsky_nb import spec
from kandinsky_nb._media import base64_text, data_uri
from kandinsky_nb.errors import KandinskyNBError, RequestValidationError
from kandinsky_nb.types import ImageInferenceRequest

FUZZ = settings(
    max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

FIELDS = sorted(ImageInferenceRequest.model_fields)
NESTED = {
    "safety": ["checkContent", "mode"],
    "acceleratorOptions": [*sorted(spec.CACHE_FAMILIES), "cacheStartStep", "cacheEndStep", "fbCacheThreshold"],
    "lora": ["model", "weight", "transformer"],
}
# Strings a hostile caller would try: local files, images that lie, huge numbers spelled out, control characters.
NASTY_TEXT = [
    "/proc/self/environ",
    "/etc/passwd",
    "/dev/zero",
    "~/.ssh/id_rsa",
    "../../../../etc/shadow",
    "a" * 300,
    "\x00",
    "a\nb\r\nc\u2028",
    "Euler",
    "  ",
    "9" * 5000,
    "http://127.0.0.1:1/x.png",
    "file:///etc/passwd",
    "f05d45ad-e63e-44d8-a247-c2dcc3ab0b94",
    data_uri(png_bytes()),
    data_uri(png_signature_then_garbage(200), "png"),
    data_uri(png_header_only(20000, 20000), "png"),
    "data:image/png;base64,!!!not base64!!!",
    base64_text(png_bytes()),
    base64_text(png_header_only(12000, 12000)),
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.booleans().map(lambda negative: (-1 if negative else 1) * 10**5000),  # a 5000-digit number
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(NASTY_TEXT),
    st.binary(max_size=64),
    st.one_of(st.text(max_size=300), st.sampled_from(NASTY_TEXT[:6])).map(Path),
    st.sampled_from([png_bytes(), png_signature_then_garbage(300), png_header_only(12000, 12000)]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12) | st.sampled_from(FIELDS), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def nested(draw: Any, name: str) -> Any:
    keys = NESTED[name]
    entry = draw(st.dictionaries(st.sampled_from(keys), values, max_size=len(keys)))
    return [entry] if name == "lora" else entry


@st.composite
def request_dicts(draw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["positivePrompt"] = draw(st.text(min_size=0, max_size=60) | st.sampled_from(NASTY_TEXT))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=8, unique=True)):
        data[name] = draw(nested(name)) if name in NESTED and draw(st.booleans()) else draw(values)
    for name in draw(st.lists(st.text(max_size=10), max_size=2)):
        data[name] = draw(values)
    return data


def _renders(error: KandinskyNBError) -> None:
    assert str(error)
    repr(error)
    if isinstance(error, RequestValidationError):
        assert error.fields


@FUZZ
@given(request_dicts())
def test_any_dict_gives_a_request_or_the_toolkits_error(data):
    for validate in (ImageInferenceRequest.model_validate, ImageInferenceRequest.from_untrusted):
        try:
            made = validate(data)
        except KandinskyNBError as error:
            _renders(error)
            continue
        # a request that validated serialises and validates again, on the wire and in the log's form
        assert ImageInferenceRequest.model_validate(made.to_wire()).to_wire() == made.to_wire()
        ImageInferenceRequest.model_validate(json.loads(json.dumps(made.to_log())))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), request_dicts().map(lambda d: _dumps(d))))
def test_any_json_text_gives_a_request_or_the_toolkits_error(text):
    try:
        ImageInferenceRequest.model_validate_json(text)
    except KandinskyNBError as error:
        _renders(error)


def _dumps(data: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, int) and value.bit_length() > 4000:  # json cannot print it: spliced in below
            return "__HUGE_NUMBER__" if value > 0 else "__HUGE_NEGATIVE__"
        if isinstance(value, bytes):
            return base64_text(value)
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    text = json.dumps(plain(data))
    return text.replace('"__HUGE_NUMBER__"', "9" * 5000).replace('"__HUGE_NEGATIVE__"', "-" + "9" * 5000)


def test_a_5000_digit_number_is_refused_with_a_message_that_renders():
    for field in ("steps", "seed", "CFGScale", "numberResults"):
        for number in (10**5000, -(10**5000)):
            try:
                ImageInferenceRequest(positivePrompt="a red fox", **{field: number})
            except RequestValidationError as error:
                assert error.fields == [field]
                assert len(str(error)) < 2000
                assert "too long to print" in str(error) or "-bit integer" in str(error)
            else:
                raise AssertionError(f"{field}=<5000 digits> was accepted")
