"""Classes 8 and 10, and the fuzz: bad input the engine cannot use is a 400 naming the parameter (never a 500 the
client retries), a task is found only with the key that submitted it, deep or huge JSON is refused without a
traceback, faults are answered with an incident id and no server detail, and no body whatever gets anything but the
documented error objects."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from security_testkit import KEY_A, KEY_B, bearer, png, task

from kandinsky_nb._media import data_uri
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.errors import TaskError
from kandinsky_nb.protocol.policy import code_category, status_for_code
from kandinsky_nb.server import MemoryTaskStore
from kandinsky_nb.types import ImageInferenceRequest


def post(url, body, key=KEY_A, **kwargs):
    return httpx.post(url + "/v1", json=body, headers=bearer(key), timeout=60, **kwargs)


# -- class 8: inputs the engine cannot use are the client's to fix ---------------------------------------------------
@pytest.mark.local
@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "parameter"), [((1, 1), "referenceImages"), ((3000, 10), "referenceImages"), ((1, 1), "seedImage")]
)
def test_an_image_the_engine_cannot_use_is_a_400_naming_it(real_serve, size, parameter):
    image = data_uri(png(*size))
    value = image if parameter == "seedImage" else [image]
    response = post(real_serve.url, [task(width=1024, height=1024, steps=10, **{parameter: value})])
    (error,) = response.json()["errors"]
    named = parameter if parameter == "seedImage" else "referenceImages[0]"
    assert response.status_code == 400 and error["parameter"] == named, response.text
    assert f"{size[0]}x{size[1]}" in error["message"] and "inferenceError" not in response.text
    # So the toolkit's client stops at once (a validation error) instead of running the engine four times.
    with RunwareBackend(KEY_A, base_url=real_serve.url) as backend, pytest.raises(TaskError) as caught:
        backend.generate(ImageInferenceRequest(positivePrompt="a fox", steps=10, **{parameter: value}))
    assert caught.value.code == error["code"]


@pytest.mark.local
@pytest.mark.slow
def test_the_real_server_refuses_paths_deep_json_and_huge_numbers_without_a_traceback(real_serve, tmp_path):
    picture = tmp_path / "secret.png"
    picture.write_bytes(png(32, 32))
    answers = []
    for path in (str(picture), str(tmp_path / "missing.png")):
        response = post(real_serve.url, [task(seedImage=path)])
        assert response.status_code == 400 and response.json()["errors"][0]["parameter"] == "seedImage"
        answers.append(response.json()["errors"][0]["message"].partition("not an image")[2])
    assert answers[0] == answers[1]  # the same words whether the file exists or not
    for body in (b"[" * 200_000, b'[{"a":' * 50_000, b"[" * 40 + b"]" * 40, b"[1" + b"0" * 5000 + b"]"):
        response = httpx.post(real_serve.url + "/v1", content=body, headers=bearer(KEY_A), timeout=30)
        assert response.status_code == 400 and response.json()["errors"][0]["code"] in ("invalidJSON", "invalidTask")
    output = real_serve.output()
    assert "Traceback" not in output and "RecursionError" not in output


def test_an_engine_failure_names_nothing_of_the_server(serve, engine, server_log):
    def broken(request):
        raise FileNotFoundError(2, "No such file or directory", "/srv/models/secret-weights.safetensors")

    engine.generate = broken  # an engine that fails the way a missing weights file does
    response = post(serve().url, [task()])
    (error,) = response.json()["errors"]
    assert response.status_code == 500 and error["code"] == "inferenceError"
    assert "/srv" not in response.text and "secret" not in response.text and "FileNotFoundError" not in response.text
    incident = error["message"].split("incident ")[1].split(")")[0]
    assert any(incident in r.getMessage() and "/srv/models" in (r.exc_text or "") for r in server_log.records) or any(
        incident in r.getMessage() and r.exc_info and "/srv/models" in str(r.exc_info[1]) for r in server_log.records
    )


class BrokenStore(MemoryTaskStore):
    """A store that fails the way a full disk or a lost Redis connection does, naming where it keeps things."""

    async def prune(self) -> None:
        raise OSError(28, "No space left on device", "/var/lib/kandinsky/tasks.db")


def test_a_fault_of_the_server_is_an_error_object_with_an_incident_id(serve, server_log):
    server = serve(api_keys=[KEY_A], store=BrokenStore())
    response = post(server.url, [{"taskType": "ping"}])
    (error,) = response.json()["errors"]
    assert response.status_code == 500 and error["code"] == "internalServerError" and "incident" in error["message"]
    assert "/var/lib" not in response.text and "space" not in response.text
    assert len(server_log.tracebacks()) == 1  # logged once, by the guard, with the incident id
    assert error["message"].split("incident ")[1].split(")")[0] in server_log.tracebacks()[0]


# -- class 10: tasks and uploads belong to the key that made them ------------------------------------------------------
def test_get_response_finds_only_the_callers_own_tasks(serve):
    server = serve(api_keys=[KEY_A, KEY_B])
    mine = task(deliveryMethod="async")
    assert post(server.url, [mine]).status_code == 200
    poll = [{"taskType": "getResponse", "taskUUID": mine["taskUUID"]}]
    deadline = time.monotonic() + 5
    while (answer := post(server.url, poll).json())["data"][0].get("status") != "success":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    theirs = post(server.url, poll, key=KEY_B)
    never = post(server.url, [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}], key=KEY_B)
    assert theirs.status_code == never.status_code == 404
    (error,) = theirs.json()["errors"]
    assert error["code"] == "taskNotFound" and "imageUUID" not in theirs.text
    # The same words as for a task that never existed: another key's task cannot be told from none.
    assert error["message"].replace(mine["taskUUID"], "T") == never.json()["errors"][0]["message"].replace(
        never.json()["errors"][0]["taskUUID"], "T"
    )
    assert answer["data"][0]["imageURL"]


def test_an_upload_is_deduplicated_per_key_only(serve):
    server = serve(api_keys=[KEY_A, KEY_B])
    upload = {"taskType": "imageUpload", "image": data_uri(png(8, 8, "blue"))}
    first = post(server.url, [{**upload, "taskUUID": str(uuid.uuid4())}]).json()["data"][0]["imageUUID"]
    again = post(server.url, [{**upload, "taskUUID": str(uuid.uuid4())}]).json()["data"][0]["imageUUID"]
    other = post(server.url, [{**upload, "taskUUID": str(uuid.uuid4())}], key=KEY_B).json()["data"][0]["imageUUID"]
    assert first == again and other != first  # B does not learn that A uploaded these bytes


# -- the fuzz: whatever the body, only documented error objects ------------------------------------------------------
_FIELDS = [
    "taskType", "taskUUID", "positivePrompt", "negativePrompt", "width", "height", "steps", "CFGScale", "seed",
    "scheduler", "numberResults", "outputType", "outputFormat", "deliveryMethod", "seedImage", "referenceImages",
    "strength", "lora", "webhookURL", "uploadEndpoint", "ttl", "includeCost", "acceleratorOptions", "safety", "image",
    "apiKey", "model",
]  # fmt: skip
_TASK_TYPES = ["imageInference", "getResponse", "imageUpload", "authentication", "ping", "videoInference", 7, None]
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        ["/etc/passwd", "~/.ssh/id_rsa", "file:///etc/passwd", "http://127.0.0.1:1/x.png", "data:image/png;base64,AAAA",
         str(uuid.uuid4()), data_uri(png(1, 1)), data_uri(png(3, 3)), "iVBORw0KGgo=", "Euler", "URL", "PNG", "async"]
    ),
)  # fmt: skip
_json = st.recursive(
    _json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_task = st.fixed_dictionaries(
    {"taskType": st.sampled_from(_TASK_TYPES)},
    optional={name: _json for name in _FIELDS[1:]},
)
_body = st.one_of(
    st.lists(_task, max_size=4).map(lambda tasks: json.dumps(tasks).encode()),
    _task.map(lambda one: json.dumps(one).encode()),
    _json.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=3000).map(lambda depth: b"[" * depth + b"]" * depth),
)


@pytest.fixture
def fuzz_server(serve):
    return serve(api_keys=[KEY_A], image_hosts=[], sync_timeout=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_body, with_key=st.booleans())
# Found by this test: a getResponse whose taskUUID is a list broke the poll hold's look-up (a 500).
@example(body=json.dumps([{"taskType": "getResponse", "taskUUID": ["a"]}]).encode(), with_key=True)
def test_any_body_gets_only_documented_error_objects(fuzz_server, server_log, body, with_key):
    headers = {"Content-Type": "application/json", **(bearer(KEY_A) if with_key else {})}
    response = httpx.post(fuzz_server.url + "/v1", content=body, headers=headers, timeout=30)
    answer = response.json()  # always JSON
    assert set(answer) <= {"data", "errors"} and answer
    errors = answer.get("errors", [])
    for error in errors:
        assert isinstance(error["code"], str) and code_category(error["code"]) != "unknown", error
        assert isinstance(error["message"], str) and error["message"]
        assert "Traceback" not in error["message"]
    assert response.status_code < 500, answer
    if "data" in answer:
        assert response.status_code == 200
    else:
        assert response.status_code == max(status_for_code(error["code"]) for error in errors)
    if not with_key:
        assert response.status_code in (401, 403)
    assert server_log.tracebacks() == []


@pytest.mark.local
def test_what_the_engine_refuses_is_a_400_at_submission_even_for_async_delivery(serve, demo_backend):
    server = serve(api_keys=[KEY_A], backend=demo_backend)
    response = post(server.url, [task(scheduler="LCM", deliveryMethod="async", steps=10)])
    (error,) = response.json()["errors"]
    assert response.status_code == 400 and error["parameter"] == "scheduler", response.text
    assert "data" not in response.json()  # no task was acknowledged, so there is nothing to poll
    assert server.app.state.kandinsky.generations[error["taskUUID"]] == 0
