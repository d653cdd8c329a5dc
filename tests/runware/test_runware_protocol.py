"""The pure protocol layer, without sockets: wire bodies, every envelope shape, error mapping, retry and poll
decisions, and the conversation driven by scripted answers and a fake clock."""

from __future__ import annotations

import base64
import io
import json
import random

import pytest
from PIL import Image

from kandinsky_nb import spec
from kandinsky_nb.errors import (
    APIStatusError,
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    PollTimeoutError,
    RateLimitError,
    ServerError,
    TaskError,
)
from kandinsky_nb.protocol import (
    Failure,
    FlowConfig,
    MalformedResponse,
    Post,
    Reply,
    RetryPolicy,
    Sleep,
    classify,
    code_category,
    conversation,
    image_upload_task,
    inference_task,
    is_retryable_code,
    is_terminal_item,
    parse_envelope,
    status_error,
    status_for_code,
    task_error,
)
from kandinsky_nb.protocol.envelope import OUTPUT_FIELDS
from kandinsky_nb.protocol.flow import decode_inline_image
from kandinsky_nb.protocol.server import (
    Authenticate,
    Infer,
    Ping,
    Poll,
    Refusal,
    TaskState,
    Upload,
    check_key,
    conflict,
    decode_body,
    engine_failed,
    envelope,
    get_response,
    media_not_found,
    parse_task,
    payload_too_large,
    processing_item,
    result_item,
)
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult, WireError

T = "0b6f7e36-7d3c-4d0e-9a51-5a1b2c3d4e5f"


def request(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", taskUUID=T, **fields)


# -- request -> wire ------------------------------------------------------------------------------------------------
def test_inference_task_sends_include_cost_unless_told_otherwise():
    assert inference_task(request())["includeCost"] is True
    assert inference_task(request(includeCost=False))["includeCost"] is False
    task = inference_task(request(CFGScale=7.5, steps=28))
    assert task == {**request(CFGScale=7.5, steps=28).to_wire(), "includeCost": True}
    assert "negativePrompt" not in task and task["taskType"] == "imageInference" and task["taskUUID"] == T


# -- envelopes -------------------------------------------------------------------------------------------------------
ITEM = {"taskType": "imageInference", "taskUUID": T, "imageUUID": "u1", "imageURL": "http://x/u1.jpg"}
ERROR = {"code": "invalidSteps", "message": "bad", "parameter": "steps", "taskUUID": T}


@pytest.mark.parametrize(
    ("body", "items", "codes"),
    [
        ({"data": [ITEM]}, 1, []),
        ({"errors": [ERROR]}, 0, ["invalidSteps"]),
        ({"data": [ITEM], "errors": [ERROR]}, 1, ["invalidSteps"]),
        ({"data": ITEM}, 1, []),  # imageUpload docs: data as an object
        (
            {"error": {"code": "invalidApiKey", "message": "no"}, "taskUUID": T, "taskType": "imageInference"},
            0,
            ["invalidApiKey"],
        ),
        ({"error": [ERROR]}, 0, ["invalidSteps"]),
        ([ITEM, ITEM], 2, []),
        ({"error": True, "errorMessage": "Invalid api key", "errorId": 19}, 0, ["19"]),
        (
            {"data": [{"taskUUID": T, "status": "error", "error": {"code": "timeoutProvider", "message": "late"}}]},
            0,
            ["timeoutProvider"],
        ),
        (
            {"data": [], "errors": [{**ERROR, "parameter": ["width", "height"], "allowedValues": [1024]}]},
            0,
            ["invalidSteps"],
        ),
    ],
)
def test_every_envelope_shape_is_read(body, items, codes):
    envelope = parse_envelope(json.dumps(body))
    assert len(envelope.items) == items
    assert [e.code for e in envelope.errors] == codes
    assert all(e.taskUUID in (T, None) for e in envelope.errors)


def test_pre_stream_errors_take_the_task_uuid_from_beside_them():
    body = {"error": {"code": "invalidApiKey", "message": "no"}, "taskUUID": T, "taskType": "imageInference"}
    (error,) = parse_envelope(json.dumps(body)).errors
    assert (error.taskUUID, error.taskType) == (T, "imageInference")


def test_big_seeds_stay_exact():
    body = '{"data": [{"taskUUID": "t", "imageUUID": "u", "seed": 9202427981074766178}]}'
    assert parse_envelope(body).items[0]["seed"] == 9202427981074766178


@pytest.mark.parametrize("content", [b"", b"<html>502</html>", b"42", b'{"result": 1}', b'{"data": [1]}'])
def test_malformed_bodies_are_refused(content):
    with pytest.raises(MalformedResponse):
        parse_envelope(content)


# -- errors ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (403, PermissionDeniedError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (404, APIStatusError),
    ],
)
def test_status_errors(status, cls):
    error = status_error(status, [WireError(code="x", message="server says", parameter="p", taskUUID=T)])
    assert type(error) is cls
    assert (error.status_code, error.code, error.parameter, error.task_uuid) == (status, "x", "p", T)
    assert "server says" in str(error) and str(error).endswith(".")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("insufficientCredits", InsufficientCreditsError),
        ("invalidApiKey", AuthenticationError),
        ("permissionDenied", PermissionDeniedError),
        ("invalidCFGScale", TaskError),
        ("conflictTaskUUID", TaskError),
    ],
)
def test_task_errors_map_credit_and_key_codes_to_their_status_classes(code, cls):
    error = task_error([WireError(code=code, message="m", parameter="p")], task_uuid=T, status=200)
    assert type(error) is cls and error.code == code and error.task_uuid == T


@pytest.mark.parametrize(
    ("code", "category", "retryable"),
    [
        ("invalidPositivePrompt", "validation", False),
        ("conflictTaskUUID", "validation", False),
        ("invalidApiKey", "auth", False),
        ("insufficientCredits", "quota", False),
        ("providerInsufficientCredits", "quota", False),
        ("rateLimitExceeded", "rateLimit", True),
        ("timeoutProvider", "timeout", True),
        ("providerGatewayTimeout", "timeout", True),
        ("inferenceError", "provider", True),
        ("serviceUnavailable", "serverError", True),
        ("taskNotFound", "notFound", False),
        ("nsfwContentDetected", "safety", False),
        (None, "unknown", False),
    ],
)
def test_code_categories(code, category, retryable):
    assert code_category(code) == category
    assert is_retryable_code(code) is retryable


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    policy = RetryPolicy(initial_delay=1.0, max_delay=8.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
    assert [RetryPolicy(poll_initial=1, poll_factor=2, poll_max=5).poll_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (Failure("reset"), "retry"),
        (Failure("slow", timed_out=True), "retry"),
        (Reply(429, b""), "retry"),
        (Reply(500, b"<html/>"), "retry"),
        (Reply(408, b""), "retry"),
        (Reply(200, b"{broken"), "retry"),
        (Reply(401, b'{"errors": []}'), "fatal"),
        (Reply(402, b""), "fatal"),
        (Reply(404, b"<html/>"), "fatal"),
        (Reply(400, b'{"errors": [{"code": "invalidSteps"}]}'), "ok"),
        (Reply(200, b'{"data": []}'), "ok"),
    ],
)
def test_classify(outcome, kind):
    assert classify(outcome).kind == kind


# -- the conversation, driven by a script -------------------------------------------------------------------------------
class Script:
    """Plays the server: answers each Post from a list, records what was asked, advances a fake clock on Sleep."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.posts: list[Post] = []
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def run(self, flow):
        try:
            action = next(flow)
            while True:
                if isinstance(action, Sleep):
                    self.now += action.seconds
                    outcome = None
                elif isinstance(action, Post):
                    self.posts.append(action)
                    answer = self.answers.pop(0) if self.answers else self.answers_default()
                    outcome = answer if isinstance(answer, Failure | Reply) else Reply(200, json.dumps(answer).encode())
                else:
                    raise AssertionError(f"unexpected {action}")
                action = flow.send(outcome)
        except StopIteration as done:
            return done.value

    def answers_default(self):
        return {"data": [{"taskUUID": T, "status": "processing"}]}


def png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def done_item(uuid: str) -> dict:
    return {
        "taskType": "imageInference",
        "taskUUID": T,
        "imageUUID": uuid,
        "imageBase64Data": png_b64(),
        "status": "success",
    }


CONFIG = FlowConfig(poll_timeout=10, policy=RetryPolicy(poll_initial=1, poll_factor=1, poll_max=1))


def test_cumulative_polls_are_deduplicated_and_processing_is_not_terminal():
    script = Script(
        {"data": [{"taskType": "imageInference", "taskUUID": T}]},  # the async ACK
        {"data": [{"taskUUID": T, "status": "pending"}]},
        {"data": [done_item("a"), {"taskUUID": T, "status": "processing"}]},
        {"data": [done_item("a"), done_item("a")]},  # the same image again: still one
        {"data": [done_item("a"), done_item("b")]},
    )
    (outcome,) = script.run(
        conversation([request(numberResults=2, deliveryMethod="async")], config=CONFIG, clock=script.clock)
    )
    assert isinstance(outcome, Generation)
    assert [image.image_uuid for image in outcome.images] == ["a", "b"]
    assert [p.purpose for p in script.posts] == ["submit", "poll", "poll", "poll", "poll"]
    assert script.posts[1].tasks == [{"taskType": "getResponse", "taskUUID": T}]


def test_poll_timeout_names_the_task():
    script = Script({"data": []})
    (outcome,) = script.run(conversation([request(deliveryMethod="async")], config=CONFIG, clock=script.clock))
    assert isinstance(outcome, PollTimeoutError) and outcome.task_uuid == T
    assert script.now == pytest.approx(10)


def test_conflict_after_a_retry_switches_to_polling():
    conflict = {"errors": [{"code": "conflictTaskUUID", "message": "exists", "taskUUID": T}]}
    script = Script(Failure("reset"), conflict, {"data": [done_item("a")]})
    (outcome,) = script.run(conversation([request()], config=CONFIG, clock=script.clock))
    assert isinstance(outcome, Generation)
    assert [p.purpose for p in script.posts] == ["submit", "submit", "poll"]
    assert script.posts[0].tasks == script.posts[1].tasks  # the same taskUUID both times


def test_resume_of_an_unknown_task_is_none_and_sends_nothing_new():
    script = Script({"errors": [{"code": "taskNotFound", "message": "?", "taskUUID": T}]})
    assert script.run(conversation([request()], config=CONFIG, resume=True, clock=script.clock)) == [None]
    assert [p.purpose for p in script.posts] == ["poll"] and script.now == 0


def test_an_error_that_names_no_task_goes_to_the_tasks_without_answers():
    other = ImageInferenceRequest(positivePrompt="another task")
    body = {
        "data": [{**done_item("a"), "taskUUID": other.taskUUID}],
        "errors": [{"code": "invalidSteps", "message": "no"}],
    }
    script = Script(body)
    first, second = script.run(conversation([request(), other], config=CONFIG, clock=script.clock))
    assert isinstance(first, TaskError) and first.task_uuid == T
    assert isinstance(second, Generation)


def test_a_refused_key_fills_every_slot_of_a_batch_without_retrying():
    other = ImageInferenceRequest(positivePrompt="another task")
    script = Script(Reply(401, b'{"errors": [{"code": "invalidApiKey", "message": "no"}]}'))
    outcomes = script.run(conversation([request(), other], config=CONFIG, clock=script.clock))
    assert [type(o) for o in outcomes] == [AuthenticationError, AuthenticationError]
    assert [o.task_uuid for o in outcomes] == [T, other.taskUUID]
    assert len(script.posts) == 1


def test_a_batch_is_retried_as_a_whole_with_the_same_task_uuids():
    other = ImageInferenceRequest(positivePrompt="another task")
    both = {"data": [done_item("a"), {**done_item("b"), "taskUUID": other.taskUUID}]}
    script = Script(Reply(503, b""), both)
    outcomes = script.run(conversation([request(), other], config=CONFIG, clock=script.clock))
    assert all(isinstance(o, Generation) for o in outcomes)
    assert script.posts[0].tasks == script.posts[1].tasks and len(script.posts[0].tasks) == 2
    assert 0 < script.now <= CONFIG.policy.initial_delay  # one backoff wait, jittered


# -- the server role, read back by the client role -------------------------------------------------------------------
def _refusal_of(action) -> Refusal:
    with pytest.raises(Refusal) as caught:
        action()
    return caught.value


SERVER_REFUSALS = {
    "missing key": (lambda: check_key(None, [], ["k"]), "missingApiKey", 401, "fatal", AuthenticationError),
    "wrong key": (lambda: check_key("Bearer x", [], ["k"]), "invalidApiKey", 401, "fatal", AuthenticationError),
    "not JSON": (lambda: decode_body(b"{"), "invalidJSON", 400, "ok", TaskError),
    "not an object": (lambda: parse_task(42), "invalidTask", 400, "ok", TaskError),
    "unknown task type": (
        lambda: parse_task({"taskType": "videoInference"}),
        "unsupportedTaskType",
        400,
        "ok",
        TaskError,
    ),
    "bad field": (lambda: parse_task({**inference_task(request()), "steps": 0}), "invalidSteps", 400, "ok", TaskError),
    "bad upload": (
        lambda: parse_task({"taskType": "imageUpload", "image": "%%"}),
        "invalidImage",
        400,
        "ok",
        TaskError,
    ),
    "unknown task": (lambda: get_response(T, None, retention_s=3600), "taskNotFound", 404, "ok", TaskError),
}


@pytest.mark.parametrize("case", SERVER_REFUSALS, ids=list(SERVER_REFUSALS))
def test_the_clients_reading_of_every_server_refusal(case):
    action, code, status, kind, cls = SERVER_REFUSALS[case]
    refusal = _refusal_of(action)
    assert [error.code for error in refusal.errors][:1] == [code] and refusal.status == status
    http_status, body = envelope([], refusal.errors)
    assert http_status == status and "data" not in body
    verdict = classify(Reply(http_status, json.dumps(body).encode()), task_uuid=T)
    assert verdict.kind == kind
    error = verdict.error if kind == "fatal" else task_error(verdict.envelope.errors, task_uuid=T, status=http_status)
    assert type(error) is cls and error.code == code
    assert code_category(code) != "unknown"  # every code the server sends is one the client classifies


@pytest.mark.parametrize(
    ("error", "status", "client_sees"),
    [
        (engine_failed(T, "0123abcd4567"), 500, ServerError),  # transient: the client retries the same task
        (conflict(T), 400, TaskError),
        (payload_too_large(10), 413, APIStatusError),
        (media_not_found(), 404, APIStatusError),
    ],
)
def test_error_objects_carry_the_status_the_client_maps_back(error, status, client_sees):
    assert status_for_code(error.code) == status
    http_status, body = envelope([], [error])
    assert http_status == status
    (parsed,) = parse_envelope(json.dumps(body)).errors
    assert parsed == error  # the server's error object is exactly what the client reads
    assert isinstance(status_error(http_status, [parsed], task_uuid=T), APIStatusError)
    if client_sees is ServerError:
        assert classify(Reply(http_status, json.dumps(body).encode())).kind == "retry"
        assert is_retryable_code(error.code)
    elif client_sees is TaskError:
        assert type(task_error([parsed], task_uuid=T, status=http_status)) is TaskError


def test_a_body_with_data_answers_200_even_when_some_tasks_failed():
    item = processing_item(T)
    assert envelope([item], [conflict("other")]) == (
        200,
        {"data": [item], "errors": [conflict("other").model_dump(exclude_none=True)]},
    )
    assert envelope([], []) == (200, {"data": []})


def test_parse_task_reads_every_task_type():
    png = base64.b64decode(png_b64())
    infer = parse_task({**inference_task(request(deliveryMethod="async"))})
    assert isinstance(infer, Infer) and infer.request.taskUUID == T and infer.deferred
    assert not parse_task(inference_task(request())).deferred
    assert parse_task({"taskType": "getResponse", "taskUUID": T}) == Poll(T)
    upload = parse_task(image_upload_task(png, task_uuid=T))
    assert upload == Upload(T, png)
    assert parse_task({"taskType": "imageUpload", "taskUUID": T, "image": png_b64()}) == upload  # bare base64
    assert isinstance(parse_task({"taskType": "ping"}), Ping)
    assert isinstance(parse_task({"taskType": "authentication", "apiKey": "k"}), Authenticate)
    assert decode_body(b'{"taskType": "ping"}') == [{"taskType": "ping"}]  # one task object, not an array


def test_check_key_takes_the_header_or_an_authentication_task():
    check_key("Bearer k", [], ["k"])
    check_key("bearer  k ", [], ["k"])
    check_key(None, [{"taskType": "authentication", "apiKey": "k"}], ["k"])
    check_key(None, [], [])  # an open server
    assert _refusal_of(lambda: check_key("Basic k", [], ["k"])).errors[0].code == "missingApiKey"


def test_get_response_is_cumulative_and_reports_the_tasks_errors():
    running = TaskState(T)
    assert get_response(T, running, retention_s=1) == [processing_item(T)]
    item = {"taskType": "imageInference", "taskUUID": T, "imageUUID": "u", "imageURL": "http://x/u.png"}
    done = TaskState(T, status="success", items=[item])
    assert (
        get_response(T, done, retention_s=1) == get_response(T, done, retention_s=1) == [{**item, "status": "success"}]
    )
    assert all(is_terminal_item(i) for i in get_response(T, done, retention_s=1))
    assert not is_terminal_item(processing_item(T))
    failed = TaskState(T, status="error", errors=[engine_failed(T, "0123abcd4567")])
    (error,) = _refusal_of(lambda: get_response(T, failed, retention_s=1)).errors
    assert (error.code, error.status) == ("inferenceError", "error")


@pytest.mark.parametrize("output_type", ["URL", "base64Data", "dataURI"])
def test_result_items_are_read_back_into_the_same_image(output_type):
    png = base64.b64decode(png_b64())
    result = ImageInferenceResult(taskUUID=T, imageUUID="u", seed=5, cost=0.002)
    wanted = request(outputType=output_type, includeCost=True)
    item = result_item(wanted, GeneratedImage(result, png), image_uuid="u", image_url="http://x/u.png", demo=True)
    assert is_terminal_item(item) and item["seed"] == 5 and item["cost"] == 0.002 and item["demo"] is True
    if output_type == "URL":
        assert item["imageURL"] == "http://x/u.png"
    else:
        assert decode_inline_image(item) == png
    assert set(OUTPUT_FIELDS) == set(spec.OUTPUT_TYPES)


def test_inline_images_are_decoded_and_broken_ones_refused():
    png = base64.b64decode(png_b64())
    assert decode_inline_image({"imageBase64Data": png_b64()}) == png
    assert decode_inline_image({"imageDataURI": "data:image/png;base64," + png_b64()}) == png
    assert decode_inline_image({"imageURL": "http://x/u.png"}) is None
    for broken in ({"imageBase64Data": "not base64!"}, {"imageDataURI": "image/png," + png_b64()}):
        with pytest.raises(ValueError, match="base64"):
            decode_inline_image(broken)
