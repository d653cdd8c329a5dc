"""RedisTaskStore against a real redis-server on 127.0.0.1: what one replica keeps, every replica reads."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from scale_testkit import KEY, SleepEngine, png

from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.protocol.server import TaskState, error_object
from kandinsky_nb.server import RedisTaskStore, ServerThread, create_app, open_store


async def test_a_task_round_trips_with_its_items_errors_and_owner(redis_server) -> None:
    store = RedisTaskStore(redis_server.url)
    try:
        assert await store.claim_task(TaskState("t1", owner="alice"))
        assert not await store.claim_task(TaskState("t1", owner="alice"))  # known and running: conflict
        item = {"taskType": "imageInference", "taskUUID": "t1", "imageUUID": "i1", "cost": 0.0012}
        await store.save_task(TaskState("t1", status="success", items=[item], owner="alice"))
        task = await store.get_task("t1")
        assert (task.status, task.items, task.owner) == ("success", [item], "alice")
        assert task.finished is not None and await store.count_tasks() == 1
        failed = TaskState("t2", status="error", errors=[error_object("inferenceError", "boom", task_uuid="t2")])
        await store.save_task(failed)
        (error,) = (await store.get_task("t2")).errors
        assert (error.code, error.message, error.taskUUID) == ("inferenceError", "boom", "t2")
        assert await store.claim_task(TaskState("t2"))  # a failed task may be sent again
        assert await store.get_task("missing") is None
    finally:
        await store.aclose()


async def test_two_replicas_share_tasks_images_and_uploads(redis_server) -> None:
    first, second = RedisTaskStore(redis_server.url), RedisTaskStore(redis_server.url)
    try:
        assert await first.claim_task(TaskState("shared"))
        assert not await second.claim_task(TaskState("shared"))  # one step: two replicas never both start it
        await first.save_image("img", png(), ttl=60)
        await first.remember_upload("hash-1", "img")
        stored = await second.get_image("img")
        assert stored.data == png() and stored.mime == "image/png"
        assert await second.uploaded_image("hash-1") == "img"
    finally:
        await first.aclose()
        await second.aclose()


async def test_images_and_their_uploads_expire_with_their_ttl(redis_server) -> None:
    store = RedisTaskStore(redis_server.url)
    try:
        await store.save_image("brief", png(), ttl=0.3)
        await store.remember_upload("hash-brief", "brief")
        assert await store.get_image("brief") is not None
        await asyncio.sleep(0.5)
        assert await store.get_image("brief") is None and await store.uploaded_image("hash-brief") is None
        assert "brief" in await store.why_missing("brief")
    finally:
        await store.aclose()


async def test_a_running_task_stays_claimed_while_its_replica_renews_the_lease(redis_server) -> None:
    owner, other = RedisTaskStore(redis_server.url, lease_s=0.3), RedisTaskStore(redis_server.url, lease_s=0.3)
    try:
        assert await owner.claim_task(TaskState("long"))
        await asyncio.sleep(1.0)  # three leases long
        assert (await other.get_task("long")).status == "processing"
        assert not await other.claim_task(TaskState("long"))
    finally:
        await owner.aclose()
        await other.aclose()


async def test_a_task_whose_replica_died_reads_as_retryable_and_any_replica_may_run_it(redis_server) -> None:
    dead, alive = RedisTaskStore(redis_server.url, lease_s=0.3), RedisTaskStore(redis_server.url, lease_s=0.3)
    try:
        assert await dead.claim_task(TaskState("orphan"))
        await dead.aclose()  # stops renewing, as a killed process would
        await asyncio.sleep(0.5)
        task = await alive.get_task("orphan")
        (error,) = task.errors
        assert task.status == "error" and error.code == "inferenceError"
        assert "stopped before it finished" in error.message and "same taskUUID" in error.message
        assert await alive.claim_task(TaskState("orphan"))
        assert (await alive.get_task("orphan")).status == "processing"
    finally:
        await alive.aclose()


def test_the_store_url_says_which_store_and_its_options() -> None:
    pytest.importorskip("redis", reason="the redis client is in the server extra")
    store = open_store("redis://:s3cret@127.0.0.1:6390/2?prefix=team:&lease=4")
    assert isinstance(store, RedisTaskStore)
    assert (store.prefix, store.lease_s) == ("team:", 4.0)
    assert "s3cret" not in repr(store) and "6390/2" in repr(store)
    with pytest.raises(ConfigurationError, match="memcached") as caught:
        open_store("memcached://127.0.0.1:11211")
    assert "redis://127.0.0.1:6379/0" in str(caught.value)
    with pytest.raises(ConfigurationError, match="lease='soon'"):
        RedisTaskStore("redis://127.0.0.1:6379/0?lease=soon")


def test_replicas_on_one_redis_answer_each_others_tasks_images_and_uploads(redis_server) -> None:
    """Two servers (as two replicas): upload on one, use it on the other; submit on one, getResponse on the other;
    an image URL of one, fetched from the other."""

    stores = [RedisTaskStore(redis_server.url), RedisTaskStore(redis_server.url)]

    def replica(store: RedisTaskStore) -> ServerThread:
        return ServerThread(create_app(SleepEngine(0.1), api_keys=[KEY], store=store))

    headers = {"Authorization": f"Bearer {KEY}"}
    with replica(stores[0]) as a, replica(stores[1]) as b:
        upload = httpx.post(
            a.url + "/v1",
            json=[{"taskType": "imageUpload", "taskUUID": "5b1f3c6e-1d8e-4b7a-9f3e-2c4d5e6f7a8b", "image": _uri()}],
            headers=headers,
        ).json()["data"][0]
        task = {
            "taskType": "imageInference",
            "taskUUID": "8f9e0d1c-2b3a-4c5d-8e7f-6a5b4c3d2e1f",
            "model": "runware:kandinsky-5.0-image-lite@1",
            "positivePrompt": "a red fox in snow",
            "seedImage": upload["imageUUID"],
            "strength": 0.5,
            "deliveryMethod": "async",
        }
        ack = httpx.post(b.url + "/v1", json=[task], headers=headers)
        assert ack.status_code == 200, ack.text
        poll = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
        for _ in range(100):
            (item,) = httpx.post(a.url + "/v1", json=poll, headers=headers).json()["data"]
            if item.get("status") == "success":
                break
            asyncio.run(asyncio.sleep(0.05))
        assert item["status"] == "success"
        image_path = item["imageURL"].split("/images/", 1)[1]
        fetched = httpx.get(f"{a.url}/images/{image_path}")  # generated on b, served by a
        assert fetched.status_code == 200 and fetched.content == png()
        for store in stores:  # its connections belong to the server's event loop: closed there, before it stops
            asyncio.run_coroutine_threadsafe(store.aclose(), store._loop).result(timeout=10)


def _uri() -> str:
    return "data:image/png;base64," + base64.b64encode(png(size=64)).decode()


def test_serve_refuses_a_store_it_does_not_know_before_loading_anything() -> None:
    from click.testing import CliRunner

    from kandinsky_nb.cli import main

    result = CliRunner().invoke(main, ["serve", "--store", "memcached://127.0.0.1:11211"])
    assert result.exit_code == 2
    assert "memcached" in result.output and "redis://127.0.0.1:6379/0" in result.output
