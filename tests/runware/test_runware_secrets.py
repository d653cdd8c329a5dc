"""The API key never appears in logs (captured at DEBUG, server and client), exceptions, reprs or results."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from fault_proxy import Fault
from runware_testkit import KEY, MODES, call

from kandinsky_nb.errors import AuthenticationError, KandinskyNBError
from kandinsky_nb.types import ImageInferenceRequest


def prompt(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", **fields)


def everything_about(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))


@pytest.mark.parametrize("mode", MODES)
def test_the_key_never_leaks(mode, make_backend, proxy, state, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"errors": [{"code": "invalidApiKey", "message": f"key {KEY} is not valid", "parameter": "apiKey"}]}
    proxy.inject(Fault("status", status=503), Fault("drop_after"))  # retried; then conflict -> poll
    backend = make_backend()
    first = call(backend, mode, "generate", prompt(deliveryMethod="async"))
    proxy.inject(Fault("status", status=401, body=echo))  # a server that echoes the key
    with pytest.raises(AuthenticationError) as caught:
        call(backend, mode, "generate", prompt())
    failures: list[KandinskyNBError] = [caught.value]
    with pytest.raises(KandinskyNBError) as wrong_key:
        call(make_backend(api_key="some-other-key"), mode, "generate", prompt())
    failures.append(wrong_key.value)

    assert "***" in str(caught.value)  # the echoed key was blanked out, the rest of the message kept
    texts = [
        caplog.text,
        repr(backend),
        str(backend.__dict__.get("config")),
        repr(first),
        repr(first.images),
        json.dumps(first.response),
        json.dumps(first.details),
        json.dumps(list(state.received)),
        *(everything_about(error) for error in failures),
        json.dumps(getattr(caught.value, "body", None)),
    ]
    assert any("POST submit" in record.getMessage() for record in caplog.records)  # debug logging was on
    for text in texts:
        assert KEY not in text


def test_the_payload_authentication_key_is_not_recorded(server, state):
    import httpx

    body = [{"taskType": "authentication", "apiKey": KEY}, {"taskType": "ping", "ping": True}]
    response = httpx.post(server.url + "/v1", json=body)
    assert response.status_code == 200
    assert response.json()["data"][1] == {"taskType": "ping", "pong": True}
    assert KEY not in json.dumps(list(state.received))
