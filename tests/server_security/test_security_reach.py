"""Class 1: what a client can make the server touch. It never opens a file on its own disk on a client's word (image
inputs, LoRAs), never says whether one exists, calls webhooks, upload endpoints and image URLs only on hosts its
operator listed (and private addresses only when listed as addresses), and refuses browsers' cross-site requests."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import uuid

import httpx
import pytest
from security_testkit import KEY_A, Receiver, bearer, png, task

from kandinsky_nb._media import data_uri
from kandinsky_nb.server import Delivery
from kandinsky_nb.types import ImageInferenceRequest


def post(server, body, headers=None):
    return httpx.post(server.url + "/v1", json=body, headers=headers or {}, timeout=10)


def only_error(response):
    (error,) = response.json()["errors"]
    return error


# -- image inputs and LoRAs are never paths on the server ------------------------------------------------------------
@pytest.mark.parametrize("parameter", ["seedImage", "referenceImages"])
def test_an_image_input_that_is_a_path_is_refused_without_looking_at_the_disk(serve, engine, tmp_path, parameter):
    server = serve()
    picture = tmp_path / "on-the-server.png"
    picture.write_bytes(png(32, 32))
    answers = {}
    for path in (str(picture), str(tmp_path / "no-such-file.png"), "/etc/hostname", "~/.bashrc"):
        value = path if parameter == "seedImage" else [path]
        response = post(server, [task(**{parameter: value})])
        assert response.status_code == 400
        error = only_error(response)
        named = parameter if parameter == "seedImage" else "referenceImages[0]"
        assert error["parameter"] == named and error["code"] == f"invalid{parameter[0].upper()}{parameter[1:]}"
        _, said, rest = error["message"].partition("not an image")  # what is said after the value is echoed
        answers[path] = said + rest
    # A real image, a missing file and a system file get the same answer: nothing tells what exists on the server.
    assert len(set(answers.values())) == 1, answers
    assert "file paths are not accepted" in next(iter(answers.values()))
    assert engine.requests == []  # nothing reached the engine


def test_image_inputs_as_data_and_uploaded_uuids_still_work(serve, engine):
    server = serve()
    image = png(24, 24)
    upload = {"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": data_uri(image)}
    (uploaded,) = post(server, [upload]).json()["data"]
    as_base64 = base64.b64encode(image).decode()
    response = post(server, [task(seedImage=data_uri(image), referenceImages=[uploaded["imageUUID"], as_base64])])
    assert response.status_code == 200, response.text
    (request,) = engine.requests
    assert request.seedImage.read_bytes() == image
    assert [ref.read_bytes() for ref in request.referenceImages] == [image, image]


def test_a_lora_is_only_one_the_operator_installed_by_name(serve, engine, tmp_path):
    style = tmp_path / "style.safetensors"
    style.write_bytes(b"operator's file")
    server = serve(loras={"style": str(style)})
    for model in ("/etc/passwd", str(style), "civitai:1@2"):
        response = post(server, [task(lora=[{"model": model, "weight": 0.5}])])
        error = only_error(response)
        assert response.status_code == 400 and (error["code"], error["parameter"]) == ("invalidLora", "lora[0].model")
        assert "installed: style" in error["message"]
    assert engine.requests == []
    assert post(server, [task(lora=[{"model": "style", "weight": 0.5}])]).status_code == 200
    (request,) = engine.requests
    assert request.lora[0].model == str(style) and request.lora[0].weight == 0.5


# -- outbound calls: only to listed hosts ----------------------------------------------------------------------------
@pytest.mark.parametrize("parameter", ["webhookURL", "uploadEndpoint"])
def test_delivery_is_off_unless_the_operator_lists_the_host(serve, engine, parameter):
    server = serve()
    with Receiver() as receiver:
        response = post(server, [task(**{parameter: receiver.url + "/hook?token=secret"})])
        time.sleep(0.2)
    assert response.status_code == 400
    error = only_error(response)
    assert error["parameter"] == parameter and error["code"] == f"invalid{parameter[0].upper()}{parameter[1:]}"
    assert "--delivery-host" in error["message"] and "secret" not in error["message"]
    assert receiver.calls == [] and engine.requests == []


def test_delivery_goes_to_a_listed_address(serve):
    with Receiver() as receiver:
        host = receiver.url.split("//")[1]
        server = serve(delivery_hosts=[host])
        body = post(server, [task(webhookURL=receiver.url + "/hook")]).json()
        deadline = time.monotonic() + 5
        while not receiver.calls and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [call[:2] for call in receiver.calls] == [("POST", "/hook")]
    assert receiver.calls[0][2] and body["data"]


def _a_name_for_loopback() -> str:
    """A host name other than localhost that resolves to a loopback address here (the machine's own name usually
    does); the test is skipped where there is none."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip(f"the host name {name!r} does not resolve")
    if name == "localhost" or not addresses or not all(a.startswith("127.") for a in addresses):
        pytest.skip(f"the host name {name!r} does not resolve to loopback only ({addresses})")
    return name


def test_a_listed_name_that_resolves_to_loopback_is_not_called(caplog):
    name = _a_name_for_loopback()
    item = {"taskType": "imageInference", "taskUUID": "t", "imageUUID": "u"}
    with Receiver() as receiver, caplog.at_level(logging.WARNING, logger="kandinsky_nb.server"):
        port = receiver.url.rsplit(":", 1)[1]
        job = ImageInferenceRequest(positivePrompt="a fox", webhookURL=f"http://{name}:{port}/hook?token=secret")
        asyncio.run(Delivery(hosts=[name], attempts=2, first_wait=0.01).send(job, [b"\x89PNG"], [item]))
        assert receiver.calls == []  # DNS pointed the listed name at this machine: refused
        assert "private or loopback" in caplog.text and "secret" not in caplog.text
        # The operator listing the address itself is what lets the server call it.
        asyncio.run(
            Delivery(hosts=["127.0.0.1"], attempts=1).send(job.replace(webhookURL=receiver.url + "/h"), [b""], [item])
        )
        assert len(receiver.calls) == 1


def test_image_urls_are_fetched_only_from_listed_hosts(serve, engine):
    image = png(20, 20)
    with Receiver(body=image) as images:
        server = serve()
        response = post(server, [task(referenceImages=[images.url + "/cat.png"])])
        error = only_error(response)
        assert response.status_code == 400 and error["parameter"] == "referenceImages[0]"
        assert "--image-host" in error["message"] and images.calls == [] and engine.requests == []

        listed = serve(image_hosts=[images.url.split("//")[1]])
        assert post(listed, [task(referenceImages=[images.url + "/cat.png"])]).status_code == 200
    assert [call[:2] for call in images.calls] == [("GET", "/cat.png")]
    assert engine.requests[-1].referenceImages[0].read_bytes() == image


def test_a_fetched_image_that_is_not_an_image_is_refused_naming_the_parameter(serve, engine):
    with Receiver(body=b"root:x:0:0:root:/root:/bin/bash\n") as files:
        server = serve(image_hosts=[files.url.split("//")[1]])
        response = post(server, [task(seedImage=files.url + "/passwd")])
    error = only_error(response)
    assert response.status_code == 400 and error["parameter"] == "seedImage" and engine.requests == []
    assert "root:" not in error["message"]


# -- browsers on other sites ------------------------------------------------------------------------------------------
CROSS_SITE = {
    "text/plain from another origin": {"Origin": "http://evil.example", "Content-Type": "text/plain"},
    "a form from another origin": {
        "Origin": "https://evil.example",
        "Content-Type": "application/x-www-form-urlencoded",
    },
    "an opaque origin": {"Origin": "null", "Content-Type": "text/plain"},
    "another port of this machine": {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
    "Sec-Fetch-Site only": {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
}


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
@pytest.mark.parametrize("keyed", [False, True], ids=["open", "keyed"])
def test_a_browsers_cross_site_post_is_refused(serve, engine, headers, keyed):
    server = serve(api_keys=[KEY_A] if keyed else None)
    body = b'[{"taskType": "imageInference", "positivePrompt": "a fox", "deliveryMethod": "async"}]'
    response = httpx.post(
        server.url + "/v1", content=body, headers={**headers, **(bearer(KEY_A) if keyed else {})}, timeout=10
    )
    assert response.status_code == 403
    assert only_error(response)["code"] == "forbidden" and engine.requests == []
    assert server.app.state.kandinsky.received.__len__() == 0


def test_same_origin_and_allowed_origins_and_plain_clients_are_served(serve):
    server = serve(allowed_origins=["https://lab.example"])
    ping = [{"taskType": "ping"}]
    assert post(server, ping).status_code == 200  # no Origin: a notebook, the SDK, curl
    assert post(server, ping, {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert post(server, ping, {"Origin": "https://lab.example", "Sec-Fetch-Site": "cross-site"}).status_code == 200
    # Image URLs may be embedded in any page, as the cloud's are.
    assert (
        httpx.get(server.url + f"/images/{uuid.uuid4()}.png", headers={"Origin": "http://evil.example"}).status_code
        == 404
    )


def test_an_open_server_answers_only_requests_addressed_to_loopback(serve):
    """DNS rebinding: a page on attacker.example makes its name resolve to 127.0.0.1; its requests are then
    same-origin for the browser and carry the attacker's Host."""
    ping = [{"taskType": "ping"}]
    open_server = serve()
    rebound = {"Host": "attacker.example:8765", "Origin": "http://attacker.example:8765"}
    response = post(open_server, ping, rebound)
    assert response.status_code == 403 and "loopback" in only_error(response)["message"]
    assert httpx.get(open_server.url + "/", headers={"Host": "attacker.example"}).status_code == 403
    for host in ("localhost:1234", "127.0.0.1", "[::1]:80"):
        assert post(open_server, ping, {"Host": host}).status_code == 200
    keyed = serve(api_keys=[KEY_A])  # the key protects a keyed server, whatever name it is reached by
    assert post(keyed, ping, {**bearer(KEY_A), "Host": "gpu-box.lab.example"}).status_code == 200


def test_an_allowed_web_app_gets_cors_answers_and_others_do_not(serve):
    server = serve(api_keys=[KEY_A], allowed_origins=["https://lab.example"])
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = httpx.options(server.url + "/v1", headers={"Origin": "https://lab.example", **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://lab.example"
    other = httpx.options(server.url + "/v1", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    answer = post(server, [{"taskType": "ping"}], {"Origin": "https://lab.example", **bearer(KEY_A)})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://lab.example"
