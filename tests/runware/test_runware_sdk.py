"""Runware's official SDK (``runware-sdk``, REST transport) generates through ``kandinsky-nb serve``: sync delivery,
async delivery with getResponse polling, errors, and uploads."""

from __future__ import annotations

import base64
import io
import uuid

import pytest
from PIL import Image
from runware_testkit import KEY

runware = pytest.importorskip("runware", reason="the official SDK (runware-sdk) is a test dependency")

from kandinsky_nb._media import data_uri  # noqa: E402
from kandinsky_nb.server import ServerThread, create_app  # noqa: E402

MODEL = "runware:kandinsky-5.0-image-lite@1"


def sdk(base_url: str, key: str = KEY):
    # taskType is given explicitly below, so the SDK never looks the model up on the network.
    return runware.Runware(api_key=key, transport="rest", http_base_url=base_url + "/v1", retry_delay=10)


def params(**fields):
    return {"taskType": "imageInference", "model": MODEL, "positivePrompt": "a red fox in snow", **fields}


@pytest.mark.parametrize("delivery", ["sync", "async"])
async def test_the_official_sdk_generates_through_the_server(server, state, engine, delivery):
    engine.delay = 0.2
    async with sdk(server.url) as client:
        results = await client.run(
            params(deliveryMethod=delivery, numberResults=2, seed=3, outputType="base64Data", includeCost=True)
        )
    assert len(results) == 2
    assert [r["seed"] for r in results] == [3, 4]
    for result in results:
        assert Image.open(io.BytesIO(base64.b64decode(result["imageBase64Data"]))).format == "JPEG"
        assert result["cost"] >= 0 and result["taskType"] == "imageInference"
    task_uuid = results[0]["taskUUID"]
    assert state.generations[task_uuid] == 1
    sent = [t for body in state.received for t in body if t.get("taskUUID") == task_uuid]
    assert sent[0]["deliveryMethod"] == delivery
    if delivery == "async":
        assert any(t["taskType"] == "getResponse" for t in sent)


async def test_the_official_sdk_sees_the_servers_errors(server):
    async with sdk(server.url) as client:
        with pytest.raises(runware.RunwareError) as caught:
            await client.run(params(deliveryMethod="sync", CFGScale=40))
    assert caught.value.parameter == "CFGScale" and caught.value.status_code == 400
    async with sdk(server.url, key="wrong") as client:
        with pytest.raises(runware.RunwareError) as caught:
            await client.run(params(deliveryMethod="sync"))
    assert caught.value.status_code == 401


async def test_the_official_sdk_uploads_and_fetches_urls(server):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "green").save(buffer, format="PNG")
    async with sdk(server.url) as client:
        (upload,) = await client.image_upload({"image": data_uri(buffer.getvalue())})
        assert uuid.UUID(upload["imageUUID"])
        (result,) = await client.run(params(deliveryMethod="sync"))
    assert result["imageURL"].startswith(server.url + "/images/")


@pytest.mark.local
async def test_the_official_sdk_on_the_demo_engine(demo_backend):
    with ServerThread(create_app(demo_backend)) as demo_server:
        async with sdk(demo_server.url, key="any") as client:
            results = await client.run(params(deliveryMethod="async", width=1280, height=768, steps=10, seed=1))
    (result,) = results
    assert result["demo"] is True and result["imageURL"].startswith(demo_server.url)
