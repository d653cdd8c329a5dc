"""Faults the server cannot produce, injected by the proxy in front of it: each is retried and recovered with the same
taskUUID and NO second generation (the server counts them), or surfaced at once as the right exception."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from fault_proxy import Fault
from runware_testkit import MODES, call

from kandinsky_nb.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    PollTimeoutError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    TaskError,
)
from kandinsky_nb.types import Generation, ImageInferenceRequest


def prompt(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", **fields)


def submits(proxy, request) -> int:
    return sum(1 for s in proxy.seen if request.taskUUID.encode() in s.body and b'"imageInference"' in s.body)


RECOVERABLE = {
    "429": Fault("status", status=429, body={"errors": [{"code": "rateLimitExceeded", "message": "queue full"}]}),
    "500": Fault("status", status=500, body=b"<html>oops</html>"),
    "503": Fault("status", status=503),
    "dropped before the server": Fault("drop"),
    "dropped after the server ran it": Fault("drop_after"),
    "slow answer (client times out)": Fault("slow", delay=2.0),
    "malformed JSON": Fault("malformed"),
    "retryable task code": Fault(
        "rewrite",
        rewrite=lambda body: {"errors": [{**body["data"][0], "code": "timeoutProvider", "message": "provider slow"}]},
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(RECOVERABLE))
def test_fault_is_retried_and_recovered_without_a_second_generation(fault, mode, make_backend, proxy, state):
    proxy.inject(replace(RECOVERABLE[fault]))  # a copy: the proxy counts its uses down
    request = prompt(seed=5)
    generation = call(make_backend(timeout=1.0), mode, "generate", request)
    assert isinstance(generation, Generation) and generation.seeds == [5]
    assert proxy.faults_used() == [RECOVERABLE[fault].kind]
    assert submits(proxy, request) == 2  # the same taskUUID, sent twice
    assert state.generations[request.taskUUID] <= 1  # ... and generated at most once
    assert generation.details["retries"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_fault_while_polling_is_retried(mode, make_backend, proxy, engine):
    engine.delay = 0.2
    proxy.inject(Fault("status", status=503, task_type="getResponse"), Fault("drop", task_type="getResponse"))
    generation = call(make_backend(), mode, "generate", prompt(deliveryMethod="async"))
    assert len(generation.images) == 1
    assert proxy.faults_used() == ["status", "drop"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "invalidApiKey", AuthenticationError),
        (402, "insufficientCredits", InsufficientCreditsError),
        (403, "permissionDenied", PermissionDeniedError),
    ],
)
def test_auth_credit_and_permission_errors_are_raised_at_once(status, code, expected, mode, make_backend, proxy):
    request = prompt()
    error = {"code": code, "message": f"{code} says the server", "parameter": "apiKey", "taskUUID": request.taskUUID}
    proxy.inject(Fault("status", status=status, body={"errors": [error]}, times=5))
    with pytest.raises(expected) as caught:
        call(make_backend(), mode, "generate", request)
    assert (caught.value.status_code, caught.value.code, caught.value.parameter) == (status, code, "apiKey")
    assert caught.value.task_uuid == request.taskUUID
    assert f"{code} says the server" in str(caught.value)
    assert len(proxy.seen) == 1  # never retried


@pytest.mark.parametrize("mode", MODES)
def test_a_real_wrong_key_is_an_authentication_error(mode, make_backend, proxy):
    with pytest.raises(AuthenticationError, match="invalidApiKey") as caught:
        call(make_backend(api_key="not-the-key"), mode, "generate", prompt())
    assert caught.value.status_code == 401 and len(proxy.seen) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault("status", status=429, times=9), RateLimitError),
        (Fault("status", status=502, times=9), ServerError),
        (Fault("drop", times=9), APIConnectionError),
        (Fault("slow", delay=1.0, times=9), APITimeoutError),
        (Fault("malformed", times=9), ResponseValidationError),
    ],
)
def test_a_fault_that_persists_surfaces_after_max_retries(fault, expected, mode, make_backend, proxy):
    proxy.inject(replace(fault))
    request = prompt()
    with pytest.raises(expected) as caught:
        call(make_backend(max_retries=2, timeout=0.4), mode, "generate", request)
    assert caught.value.task_uuid == request.taskUUID
    assert len(proxy.seen) >= 3  # one try and two retries, then it gave up (polls may follow a slow answer)


@pytest.mark.parametrize("mode", MODES)
def test_validation_errors_are_not_retried(mode, make_backend, proxy):
    request = prompt()
    error = {"code": "invalidSteps", "message": "bad", "parameter": "steps", "taskUUID": request.taskUUID}
    proxy.inject(Fault("status", status=400, body={"errors": [error]}, times=5))
    with pytest.raises(TaskError) as caught:
        call(make_backend(), mode, "generate", request)
    assert (caught.value.code, caught.value.parameter) == ("invalidSteps", "steps")
    assert len(proxy.seen) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_reused_task_uuid_is_a_conflict_on_the_first_try(mode, make_backend, state):
    backend = make_backend()
    request = prompt()
    call(backend, mode, "generate", request)
    with pytest.raises(TaskError, match="resume") as caught:
        call(backend, mode, "generate", request)
    assert caught.value.code == "conflictTaskUUID"
    assert state.generations[request.taskUUID] == 1


@pytest.mark.parametrize("mode", MODES)
def test_poll_timeout_leaves_the_task_resumable(mode, make_backend, engine, state):
    engine.delay = 0.8
    backend = make_backend(poll_timeout=0.3)
    request = prompt(deliveryMethod="async", seed=11)
    with pytest.raises(PollTimeoutError) as caught:
        call(backend, mode, "generate", request)
    assert caught.value.task_uuid == request.taskUUID
    assert "resume" in str(caught.value)
    time.sleep(0.7)
    generation = call(backend, mode, "resume", request)
    assert generation.seeds == [11] and generation.details["resumed"]
    assert state.generations[request.taskUUID] == 1


@pytest.mark.parametrize("mode", MODES)
def test_resume_of_an_unknown_task_is_none(mode, make_backend, state):
    assert call(make_backend(), mode, "resume", prompt()) is None
    assert not state.generations


@pytest.mark.parametrize("mode", MODES)
def test_download_checks_size_and_content_type(mode, make_backend, proxy):
    with pytest.raises(ResponseValidationError, match="max_download_bytes"):
        call(make_backend(max_download_bytes=100), mode, "generate", prompt())

    def point_at_health(body):
        body["data"][0]["imageURL"] = proxy.url + "/"
        return body

    proxy.inject(Fault("rewrite", rewrite=point_at_health))
    with pytest.raises(ResponseValidationError, match="content type 'application/json'"):
        call(make_backend(), mode, "generate", prompt())


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_download_is_retried(mode, make_backend, proxy):
    proxy.inject(Fault("status", status=503, path="/images"), Fault("drop", path="/images"))
    generation = call(make_backend(), mode, "generate", prompt())
    assert generation.images and proxy.faults_used() == ["status", "drop"]


@pytest.mark.parametrize("mode", MODES)
def test_an_upload_is_retried_on_a_transient_fault_and_a_refused_upload_fails_only_its_task(
    mode, make_backend, proxy, state
):
    import io

    from PIL import Image

    def png(colour: str) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
        return buffer.getvalue()

    proxy.inject(Fault("status", status=503, task_type="imageUpload"))
    generation = call(make_backend(), mode, "generate", prompt(seedImage=png("red")))
    assert generation.images and proxy.faults_used() == ["status"]

    def refuse(body):
        task_uuid = body["data"][0]["taskUUID"]
        return {
            "errors": [{"code": "invalidImage", "message": "unreadable", "parameter": "image", "taskUUID": task_uuid}]
        }

    proxy.inject(Fault("rewrite", rewrite=refuse, status=400, task_type="imageUpload"))
    with_image, without = prompt(seedImage=png("blue")), prompt()
    outcomes = call(make_backend(), mode, "generate_many", [with_image, without])
    assert isinstance(outcomes[0], TaskError) and outcomes[0].code == "invalidImage"
    assert isinstance(outcomes[1], Generation)
    assert state.generations[with_image.taskUUID] == 0
