"""`kandinsky-nb serve` on 127.0.0.1, spoken to with plain HTTP: the cloud's envelopes, error objects and statuses."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image
from runware_testkit import KEY
from stub_engine import StubEngine

from kandinsky_nb._media import data_uri
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.cli import main
from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.server import ServerThread, check_bind, create_app

AUTH = {"Authorization": f"Bearer {KEY}"}


def task(**fields):
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:kandinsky-5.0-image-lite@1",
        "positivePrompt": "a red fox in snow",
        "width": 1024,
        "height": 1024,
        **fields,
    }


def post(server, body, headers=AUTH):
    return httpx.post(server.url + "/v1", json=body, headers=headers, timeout=10)


def test_health(server):
    answer = httpx.get(server.url + "/").json()
    assert answer["status"] == "ok" and answer["model"] == "runware:kandinsky-5.0-image-lite@1"
    assert answer["engine"] == "stub" and answer["demo"] is False


@pytest.mark.parametrize(
    ("headers", "code"), [({}, "missingApiKey"), ({"Authorization": "Bearer wrong"}, "invalidApiKey")]
)
def test_keys_are_checked(server, headers, code):
    response = post(server, [task()], headers=headers)
    assert response.status_code == 401
    (error,) = response.json()["errors"]
    assert (error["code"], error["parameter"], error["taskType"]) == (code, "apiKey", "authentication")


def test_payload_authentication_is_accepted(server):
    response = post(server, [{"taskType": "authentication", "apiKey": KEY}, task()], headers={})
    assert response.status_code == 200
    auth, image = response.json()["data"]
    assert auth["taskType"] == "authentication" and uuid.UUID(auth["connectionSessionUUID"])
    assert image["imageURL"].startswith(server.url + "/images/")


def test_an_open_server_accepts_any_key(engine):
    with ServerThread(create_app(engine)) as open_server:
        assert post(open_server, [task()], headers={}).status_code == 200
        assert post(open_server, [task()], headers={"Authorization": "Bearer anything"}).status_code == 200


def test_an_open_server_refuses_a_public_address():
    check_bind("127.0.0.1", [])
    check_bind("::1", [])
    check_bind("0.0.0.0", ["a-key"])
    with pytest.raises(ConfigurationError, match="--api-key"):
        check_bind("0.0.0.0", [])
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0"], env={"KANDINSKY_NB_SERVER_KEYS": ""})
    assert result.exit_code == 2 and "Refusing to listen on '0.0.0.0'" in result.output


@pytest.mark.parametrize(
    ("fields", "code", "parameter"),
    [
        ({"CFGScale": 11}, "invalidCFGScale", "CFGScale"),
        ({"width": 1000}, "invalidSize", ["width", "height"]),
        ({"scheduler": "Heun"}, "invalidScheduler", "scheduler"),
        ({"guidance": 3}, "unsupportedParameter", "guidance"),
        ({"positivePrompt": "x"}, "invalidPositivePrompt", "positivePrompt"),
        ({"steps": "many"}, "invalidSteps", "steps"),
    ],
)
def test_bad_input_gets_the_clouds_error_objects(server, state, fields, code, parameter):
    bad = {k: v for k, v in task(**fields).items() if v is not None}
    response = post(server, [bad])
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "data" not in response.json()
    first = errors[0]
    assert (first["code"], first["parameter"], first["taskUUID"], first["taskType"]) == (
        code,
        parameter,
        bad["taskUUID"],
        "imageInference",
    )
    assert errors[0]["message"]
    assert not state.generations


def test_a_missing_prompt_is_missing(server):
    bad = task()
    del bad["positivePrompt"]
    (error,) = post(server, [bad]).json()["errors"]
    assert (error["code"], error["parameter"]) == ("missingPositivePrompt", "positivePrompt")


def test_a_batch_holds_data_and_errors(server):
    good, bad = task(), task(steps=500)
    response = post(server, [good, bad])
    assert response.status_code == 200
    body = response.json()
    assert [item["taskUUID"] for item in body["data"]] == [good["taskUUID"]]
    assert [error["taskUUID"] for error in body["errors"]] == [bad["taskUUID"]]


def test_a_repeated_task_uuid_is_a_conflict_and_generates_once(server, state):
    first = task()
    assert post(server, [first]).status_code == 200
    response = post(server, [first])
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["code"], error["parameter"], error["taskUUID"]) == ("conflictTaskUUID", "taskUUID", first["taskUUID"])
    twice = task()
    body = post(server, [twice, twice]).json()
    assert len(body["data"]) == 1 and body["errors"][0]["code"] == "conflictTaskUUID"
    assert state.generations[first["taskUUID"]] == 1 and state.generations[twice["taskUUID"]] == 1


def test_async_delivery_acknowledges_then_get_response_is_cumulative(server, engine):
    engine.delay = 0.3
    job = task(deliveryMethod="async", numberResults=2, includeCost=True)
    ack = post(server, [job]).json()
    assert ack == {"data": [{"taskType": "imageInference", "taskUUID": job["taskUUID"], "status": "processing"}]}
    poll = [{"taskType": "getResponse", "taskUUID": job["taskUUID"]}]
    assert post(server, poll).json()["data"][0]["status"] == "processing"
    time.sleep(0.5)
    first, again = post(server, poll).json()["data"], post(server, poll).json()["data"]
    assert first == again and len(first) == 2
    assert {item["status"] for item in first} == {"success"} and all(item["cost"] >= 0 for item in first)


def test_get_response_of_an_unknown_task(server):
    unknown = str(uuid.uuid4())
    response = post(server, [{"taskType": "getResponse", "taskUUID": unknown}])
    assert response.status_code == 404
    (error,) = response.json()["errors"]
    assert (error["code"], error["taskUUID"]) == ("taskNotFound", unknown)


def test_image_upload_and_image_urls(server, engine):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    upload = {"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": data_uri(buffer.getvalue())}
    (item,) = post(server, [upload]).json()["data"]
    assert httpx.get(item["imageURL"]).content == buffer.getvalue()
    again = post(server, [{**upload, "taskUUID": str(uuid.uuid4())}]).json()["data"][0]
    assert again["imageUUID"] == item["imageUUID"]  # the same bytes are stored once
    post(server, [task(seedImage=item["imageUUID"], strength=0.4)])
    assert engine.requests[-1].seedImage.read_bytes() == buffer.getvalue()
    (error,) = post(server, [task(seedImage=str(uuid.uuid4()))]).json()["errors"]
    assert (error["code"], error["parameter"]) == ("invalidSeedImage", "seedImage")
    (error,) = post(server, [{**upload, "image": "https://example.com/x.png"}]).json()["errors"]
    assert error["code"] == "invalidImage"


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"not json", "invalidJSON"), ([{"taskType": "videoInference", "taskUUID": "x"}], "unsupportedTaskType")],
)
def test_malformed_requests(server, body, code):
    if isinstance(body, bytes):
        response = httpx.post(server.url + "/v1", content=body, headers=AUTH)
    else:
        response = post(server, body)
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == code


def test_an_engine_failure_is_an_inference_error(engine, server, caplog):
    async def broken(request):
        raise RuntimeError("the GPU caught fire")

    engine.agenerate = broken
    response = post(server, [task()])
    assert response.status_code == 500
    (error,) = response.json()["errors"]
    # The details stay in the server's log (they may name its files); the client gets the incident id to quote.
    assert error["code"] == "inferenceError" and "GPU caught fire" not in error["message"]
    incident = error["message"].split("incident ")[1].split(")")[0]
    assert any(incident in r.getMessage() and "GPU caught fire" in r.exc_text for r in caplog.records if r.exc_text)


def test_demo_weights_are_said_in_every_result():
    with ServerThread(create_app(StubEngine(demo=True))) as demo_server:
        assert httpx.get(demo_server.url + "/").json()["demo"] is True
        item = post(demo_server, [task()]).json()["data"][0]
        assert item["demo"] is True
        backend = RunwareBackend("any", base_url=demo_server.url)
        from kandinsky_nb.types import ImageInferenceRequest

        generation = backend.generate(ImageInferenceRequest(positivePrompt="a fox"))
        backend.close()
    assert generation.demo is True and "demo weights" in repr(generation)


def test_results_go_to_the_webhook_and_the_upload_endpoint(engine):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    received: list[tuple[str, str, bytes]] = []

    async def record(request):
        received.append((request.method, request.url.path, await request.body()))
        return Response(status_code=200 if request.method == "PUT" else 204)

    receiver = Starlette(routes=[Route("/{path}", record, methods=["POST", "PUT"])])
    with ServerThread(receiver) as hooks, ServerThread(create_app(engine, delivery_hosts=["127.0.0.1"])) as server:
        job = task(
            numberResults=2, webhookURL=hooks.url + "/hook", uploadEndpoint=hooks.url + "/put", outputFormat="PNG"
        )
        body = post(server, [job]).json()
        deadline = time.monotonic() + 5
        while len(received) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    puts = [data for method, path, data in received if method == "PUT"]
    hooks_sent = [json.loads(data) for method, path, data in received if path == "/hook"]
    assert len(puts) == 2 and all(data.startswith(b"\x89PNG") for data in puts)
    assert [h["data"][0] for h in hooks_sent] == body["data"]


def test_an_image_url_expires_with_its_ttl(server, state):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    kept, gone = str(uuid.uuid4()), str(uuid.uuid4())
    asyncio.run(state.store.save_image(kept, buffer.getvalue(), ttl=60))
    asyncio.run(state.store.save_image(gone, buffer.getvalue(), ttl=0.05))
    time.sleep(0.1)
    assert httpx.get(f"{server.url}/images/{kept}.png").headers["content-type"] == "image/png"
    expired = httpx.get(f"{server.url}/images/{gone}.png")
    assert expired.status_code == 404 and expired.json()["errors"][0]["code"] == "mediaNotFound"


def _receiver(answers: list[int]):
    """A loopback server that answers each call with the next status of ``answers`` (the last one repeats)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    calls: list[tuple[str, bytes]] = []

    async def record(request):
        calls.append((request.method, await request.body()))
        return Response(status_code=answers[min(len(calls), len(answers)) - 1])

    return ServerThread(Starlette(routes=[Route("/{path}", record, methods=["POST", "PUT"])])), calls


def test_a_failed_delivery_is_retried_then_given_up_with_a_warning(caplog):
    from kandinsky_nb.server import Delivery
    from kandinsky_nb.types import ImageInferenceRequest

    item = {"taskType": "imageInference", "taskUUID": "t", "imageUUID": "u"}
    receiver, calls = _receiver([503, 204])
    with receiver:
        job = ImageInferenceRequest(positivePrompt="a fox", webhookURL=receiver.url + "/hook?token=secret")
        asyncio.run(Delivery(hosts=["127.0.0.1"], attempts=3, first_wait=0.01).send(job, [b"\x89PNG"], [item]))
    assert [json.loads(body) for _, body in calls] == [{"data": [item]}] * 2  # failed once, delivered on the retry

    receiver, calls = _receiver([500])
    with receiver, caplog.at_level("WARNING", logger="kandinsky_nb.server"):
        job = ImageInferenceRequest(positivePrompt="a fox", uploadEndpoint=receiver.url + "/put?token=secret")
        asyncio.run(Delivery(hosts=["127.0.0.1"], attempts=3, first_wait=0.01).send(job, [b"\x89PNG"], [item]))
    assert [method for method, _ in calls] == ["PUT"] * 3
    assert "HTTP 500" in caplog.text and "secret" not in caplog.text


def test_the_memory_store_forgets_finished_tasks_and_expired_images():
    from kandinsky_nb.errors import ConfigurationError
    from kandinsky_nb.protocol.server import TaskState
    from kandinsky_nb.server import MemoryTaskStore

    now = [1000.0]
    store = MemoryTaskStore(task_retention=60, max_images=2, clock=lambda: now[0])

    async def scenario():
        assert await store.claim_task(TaskState("a")) and not await store.claim_task(TaskState("a"))
        await store.save_task(TaskState("a", status="error"))
        assert await store.claim_task(TaskState("a"))  # a failed task may be sent again
        await store.save_task(TaskState("a", status="success"))
        for name in ("x", "y", "z"):
            await store.save_image(name, b"\x89PNG", ttl=30)
        assert await store.get_image("x") is None and (await store.get_image("z")).mime == "image/png"  # oldest out
        now[0] += 45
        assert await store.get_image("z") is None and await store.get_task("a") is not None
        now[0] += 30
        await store.prune()
        assert await store.get_task("a") is None and await store.count_tasks() == 0

    asyncio.run(scenario())
    with pytest.raises(ConfigurationError, match="task_retention=0"):
        MemoryTaskStore(task_retention=0)
