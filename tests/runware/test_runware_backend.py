"""RunwareBackend against the real server on 127.0.0.1, through the fault-injecting proxy. Every scenario runs on the
sync and the async client (parity)."""

from __future__ import annotations

import pytest
from fault_proxy import Fault
from PIL import Image
from runware_testkit import KEY, MODES, call

from kandinsky_nb._media import data_uri
from kandinsky_nb.backends.base import Backend
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.errors import ConfigurationError, TaskError
from kandinsky_nb.types import AcceleratorOptions, Generation, ImageInferenceRequest, Lora, Safety


def prompt(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(positivePrompt="a red fox in snow", **fields)


def every_field_request() -> ImageInferenceRequest:
    return ImageInferenceRequest(
        positivePrompt="a red fox in a snowy birch forest",
        negativePrompt="blurry, low quality",
        width=1280,
        height=768,
        seed=9_202_427_981_074_766_178,  # above 2**53: must stay exact on the wire
        steps=28,
        scheduler="Euler",
        CFGScale=7.5,
        numberResults=2,
        outputType="URL",
        outputFormat="PNG",
        outputQuality=90,
        webhookURL="http://127.0.0.1:9/hook?token=abc",
        deliveryMethod="sync",
        uploadEndpoint="http://127.0.0.1:9/upload",
        ttl=120,
        includeCost=True,
        safety=Safety(checkContent=True, mode="fast"),
        acceleratorOptions=AcceleratorOptions(teaCache=True, teaCacheDistance=0.4, cacheStartStep=2, cacheEndStep=20),
        lora=[Lora(model="civitai:12345@1", weight=0.8)],
    )


def test_backend_protocol_and_missing_key():
    backend = RunwareBackend("k", base_url="http://127.0.0.1:1")
    assert isinstance(backend, Backend)
    assert (backend.name, backend.demo) == ("runware", False)
    with pytest.raises(ConfigurationError, match="RUNWARE_API_KEY"):
        RunwareBackend()


def test_key_from_the_environment(monkeypatch, make_backend, state):
    monkeypatch.setenv("RUNWARE_API_KEY", KEY)
    backend = make_backend(api_key=None)
    assert backend.generate(prompt()).images


@pytest.mark.parametrize("mode", MODES)
def test_every_request_field_reaches_the_server_under_its_wire_name(mode, make_backend, state):
    request = every_field_request()
    generation = call(make_backend(), mode, "generate", request)
    (received,) = [task for body in state.received for task in body if task.get("taskType") == "imageInference"]
    assert received == request.to_wire()
    assert received["seed"] == 9_202_427_981_074_766_178
    assert set(received) >= {"CFGScale", "positivePrompt", "acceleratorOptions", "webhookURL", "uploadEndpoint"}
    assert len(generation.images) == 2


def test_include_cost_is_sent_true_when_unset_and_false_when_asked(make_backend, state):
    backend = make_backend()
    backend.generate(prompt())
    backend.generate(prompt(includeCost=False))
    sent = [task["includeCost"] for body in state.received for task in body]
    assert sent == [True, False]


@pytest.mark.parametrize("mode", MODES)
def test_every_response_field_comes_back_typed(mode, make_backend):
    generation = call(
        make_backend(), mode, "generate", prompt(numberResults=3, seed=41, safety=Safety(checkContent=True))
    )
    assert isinstance(generation, Generation)
    assert generation.engine == "runware" and not generation.demo
    assert len(generation.images) == 3
    assert len({image.image_uuid for image in generation.images}) == 3
    assert generation.seeds == [41, 42, 43]
    for image in generation.images:
        result = image.result
        assert isinstance(result.seed, int) and isinstance(result.cost, float) and result.NSFWContent is False
        assert result.taskUUID == generation.task_uuid and result.taskType == "imageInference"
        assert result.imageURL.startswith("http://127.0.0.1:")
        assert image.format == "jpeg" and image.to_pil().size == (16, 16)
    assert generation.cost == pytest.approx(3 * 0.0012)
    assert [item["imageUUID"] for item in generation.response] == [i.image_uuid for i in generation.images]
    assert generation.latency_s > 0


@pytest.mark.parametrize("mode", MODES)
def test_url_base64_and_data_uri_give_the_same_bytes(mode, make_backend):
    backend = make_backend()
    datas = [
        call(backend, mode, "generate", prompt(seed=7, outputType=kind, outputFormat="PNG")).images[0].data
        for kind in ("URL", "base64Data", "dataURI")
    ]
    assert datas[0] == datas[1] == datas[2]
    assert datas[0].startswith(b"\x89PNG")


@pytest.mark.parametrize("mode", MODES)
def test_async_delivery_polls_until_done(mode, make_backend, engine, state, proxy):
    engine.delay = 0.3
    request = prompt(deliveryMethod="async", numberResults=2)
    generation = call(make_backend(), mode, "generate", request)
    assert len(generation.images) == 2 and generation.details["polls"] >= 2
    polls = [s for s in proxy.seen if b"getResponse" in s.body]
    assert len(polls) == generation.details["polls"]
    assert state.generations[request.taskUUID] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_is_one_post_and_errors_are_scoped_per_task(mode, make_backend, state, proxy):
    good, doomed = prompt(seed=1), prompt(seed=2)

    def fail_one(body):  # the server answered both; rewrite one into a task error, as a mixed body
        data = [item for item in body["data"] if item["taskUUID"] != doomed.taskUUID]
        error = {"code": "invalidPositivePrompt", "message": "nope", "parameter": "positivePrompt"}
        return {"data": data, "errors": [{**error, "taskUUID": doomed.taskUUID, "taskType": "imageInference"}]}

    proxy.inject(Fault("rewrite", rewrite=fail_one))
    outcomes = call(make_backend(), mode, "generate_many", [good, doomed])
    submits = [s for s in proxy.seen if b'"imageInference"' in s.body]
    assert len(submits) == 1
    assert isinstance(outcomes[0], Generation) and outcomes[0].seeds == [1]
    assert isinstance(outcomes[1], TaskError)
    assert (outcomes[1].code, outcomes[1].parameter, outcomes[1].task_uuid) == (
        "invalidPositivePrompt",
        "positivePrompt",
        doomed.taskUUID,
    )


def test_image_inputs_are_uploaded_once_and_sent_by_uuid(make_backend, engine, state, tmp_path):
    picture = tmp_path / "fox.png"
    Image.new("RGB", (8, 8), "orange").save(picture)
    backend = make_backend()
    backend.generate(prompt(seedImage=picture, strength=0.5))
    backend.generate(prompt(seedImage=picture.read_bytes()))
    uploads = [task for body in state.received for task in body if task["taskType"] == "imageUpload"]
    inferences = [task for body in state.received for task in body if task["taskType"] == "imageInference"]
    assert len(uploads) == 1
    assert inferences[0]["seedImage"] == inferences[1]["seedImage"]
    assert len(inferences[0]["seedImage"]) == 36  # a UUID, not the image
    # The server resolved the UUID back to the very bytes for its engine.
    assert engine.requests[-1].seedImage.read_bytes() == picture.read_bytes()


def test_image_inputs_that_runware_takes_directly_are_sent_as_they_are(make_backend, state):
    inline = data_uri(_png())
    make_backend().generate(prompt(seedImage=inline))
    (task,) = [t for body in state.received for t in body]
    assert task["seedImage"] == inline


def test_upload_inputs_false_sends_local_images_inline(make_backend, state):
    make_backend(upload_inputs=False).generate(prompt(seedImage=_png()))
    (task,) = [t for body in state.received for t in body]
    assert task["seedImage"].startswith("data:image/png;base64,")


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buffer, format="PNG")
    return buffer.getvalue()


def test_sync_and_async_give_the_same_answer(make_backend):
    backend = make_backend()
    sync = call(backend, "sync", "generate", prompt(seed=21, numberResults=2, outputFormat="WEBP"))
    asynchronous = call(backend, "async", "generate", prompt(seed=21, numberResults=2, outputFormat="WEBP"))
    assert [i.data for i in sync.images] == [i.data for i in asynchronous.images]
    strip = ("taskUUID", "imageUUID", "imageURL")
    assert [{k: v for k, v in item.items() if k not in strip} for item in sync.response] == [
        {k: v for k, v in item.items() if k not in strip} for item in asynchronous.response
    ]
    assert sync.details == asynchronous.details


@pytest.mark.parametrize("mode", MODES)
def test_a_slow_sync_task_is_acknowledged_and_then_polled(mode, engine):
    from kandinsky_nb.server import ServerThread, create_app

    engine.delay = 0.4
    with ServerThread(create_app(engine, sync_timeout=0.1)) as slow_server:
        backend = RunwareBackend("any", base_url=slow_server.url, poll_timeout=5)
        generation = call(backend, mode, "generate", prompt(seed=3))
        backend.close()
    assert generation.seeds == [3] and generation.details["polls"] >= 1


def test_an_empty_batch_sends_nothing(make_backend, proxy):
    assert make_backend().generate_many([]) == []
    assert proxy.seen == []
