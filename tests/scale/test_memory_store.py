"""The in-memory store is bounded: images by bytes (least recently used evicted first) and by ttl, finished tasks by
count and retention; an evicted image, used again, is refused by an error that names it and says what happened."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from scale_testkit import KEY, SleepEngine, png

from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.protocol.server import TaskState
from kandinsky_nb.server import MemoryTaskStore, ServerThread, create_app


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_past_the_byte_cap_the_least_recently_used_image_goes_first() -> None:
    store = MemoryTaskStore(max_image_bytes=300)
    for name in ("a", "b", "c"):
        await store.save_image(name, bytes(100), ttl=60)
    assert await store.get_image("a") is not None  # "a" used: "b" is now the least recently used
    await store.save_image("d", bytes(100), ttl=60)
    assert await store.get_image("b") is None
    assert [await store.get_image(n) is not None for n in ("a", "c", "d")] == [True, True, True]
    assert store.image_bytes == 300
    why = await store.why_missing("b")
    assert "Image b was evicted" in why and "at most 300 bytes" in why and "--max-image-mb" in why


async def test_replacing_an_image_and_an_image_larger_than_the_cap_keep_the_count_right() -> None:
    store = MemoryTaskStore(max_image_bytes=250)
    await store.save_image("a", bytes(100), ttl=60)
    await store.save_image("a", bytes(120), ttl=60)  # same UUID again: replaced, not counted twice
    assert store.image_bytes == 120
    await store.save_image("huge", bytes(400), ttl=60)  # alone over the cap: kept, everything else evicted
    assert store.image_bytes == 400 and await store.get_image("a") is None
    await store.save_image("next", bytes(10), ttl=60)
    assert store.image_bytes == 10 and await store.get_image("huge") is None


async def test_expired_images_are_pruned_and_say_when_they_expired() -> None:
    clock = Clock()
    store = MemoryTaskStore(clock=clock)
    await store.save_image("short", png(), ttl=10)
    await store.save_image("long", png(), ttl=1000)
    await store.remember_upload("hash-short", "short")
    clock.now += 11
    await store.prune()
    assert await store.get_image("short") is None and await store.get_image("long") is not None
    assert await store.uploaded_image("hash-short") is None  # forgotten with its image
    assert "Image short expired at" in await store.why_missing("short")
    assert store.image_bytes == len(png())
    assert await store.why_missing("never-stored") == ""


async def test_finished_tasks_are_bounded_by_count_and_retention_running_ones_are_kept() -> None:
    clock = Clock()
    store = MemoryTaskStore(max_tasks=2, task_retention=60, clock=clock)
    assert await store.claim_task(TaskState("running"))
    for name in ("t1", "t2", "t3"):
        assert await store.claim_task(TaskState(name))
        await store.save_task(TaskState(name, status="success"))
    assert await store.get_task("t1") is None  # the oldest finished one made room
    assert await store.get_task("running") is not None and await store.count_tasks() == 3
    clock.now += 61
    await store.prune()
    assert await store.count_tasks() == 1 and await store.get_task("running") is not None


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"max_image_bytes": 0}, "max_image_bytes=0"), ({"max_tasks": -1}, "max_tasks=-1"), ({"task_retention": 0}, "")],
)
def test_a_store_without_room_is_refused(fields, named) -> None:
    with pytest.raises(ConfigurationError, match=named or "task_retention") as caught:
        MemoryTaskStore(**fields)
    assert "above 0" in str(caught.value)


def _upload(url: str, data: bytes) -> str:
    body = [{"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": base64.b64encode(data).decode()}]
    answer = httpx.post(url + "/v1", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"][0]["imageUUID"]


def test_using_an_evicted_upload_is_refused_by_an_error_that_names_it() -> None:
    images = [png((i, 255 - i, 7), size=64) for i in range(4)]
    cap = sum(len(image) for image in images[:3])  # room for three of them
    store = MemoryTaskStore(max_image_bytes=cap)
    with ServerThread(create_app(SleepEngine(0.0), api_keys=[KEY], store=store)) as server:
        first = _upload(server.url, images[0])
        for image in images[1:]:
            _upload(server.url, image)
        task = {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "model": "runware:kandinsky-5.0-image-lite@1",
            "positivePrompt": "a red fox in snow",
            "seedImage": first,
            "strength": 0.5,
        }
        answer = httpx.post(server.url + "/v1", json=[task], headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 400
        (error,) = answer.json()["errors"]
        assert error["parameter"] == "seedImage" and error["code"] == "invalidSeedImage"
        assert f"Image {first} was evicted" in error["message"] and "Upload it again" in error["message"]
        fetched = httpx.get(f"{server.url}/images/{first}.png")
        assert fetched.status_code == 404 and f"Image {first} was evicted" in fetched.json()["errors"][0]["message"]
        # The same bytes uploaded again are stored again, under a new UUID that works.
        again = _upload(server.url, images[0])
        assert again != first and httpx.get(f"{server.url}/images/{again}.png").content == images[0]


async def test_finished_tasks_holding_inline_images_are_bounded_by_bytes() -> None:
    store = MemoryTaskStore(max_task_bytes=3 * 10_000)
    inline = {"taskType": "imageInference", "imageBase64Data": "A" * 8_500}
    for name in ("t1", "t2", "t3", "t4"):
        await store.claim_task(TaskState(name))
        await store.save_task(TaskState(name, status="success", items=[{**inline, "taskUUID": name}]))
    assert await store.get_task("t1") is None  # about 9.6 KB each: three fit, the oldest made room for the fourth
    assert [await store.get_task(n) is not None for n in ("t2", "t3", "t4")] == [True, True, True]
