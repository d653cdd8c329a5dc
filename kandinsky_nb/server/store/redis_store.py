"""Tasks, images and uploads in Redis, shared by every replica of ``kandinsky-nb serve`` (``--store redis://...``).

Behind a load balancer, a ``getResponse``, an image URL or an uploaded image's UUID may reach any replica; with this
store every replica answers it. Keys (under ``prefix``, default ``knb:``):

* ``task:<uuid>``   the task as JSON, kept for ``task_retention`` seconds from its claim and again from its finish;
  while it runs, ``lease:<uuid>`` (a short expiry) says that a live replica still works on it;
* ``lease:<uuid>``  renewed every ``lease_s / 3`` seconds by the replica running the task. A replica that dies stops
  renewing it: the task then reads as failed with a retryable ``inferenceError`` (its images were never delivered,
  so never charged), and the client sends it again with the same taskUUID, which any replica may claim;
* ``image:<uuid>``  the image bytes with their ttl as a Redis expiry;
* ``upload:<hash>`` the imageUUID of uploaded bytes, expiring with the image.

Redis expires keys itself, so :meth:`prune` has nothing to do; memory is Redis's to bound (``maxmemory`` with an
``allkeys-lru`` or ``volatile-lru`` policy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import ConfigurationError, MissingDependencyError
from ...protocol.envelope import PROCESSING
from ...protocol.server import TaskState, error_object
from ...types import WireError
from .base import StoredImage, TaskStore

__all__ = ["DEFAULT_LEASE_S", "RedisTaskStore"]

log = logging.getLogger("kandinsky_nb.server")

DEFAULT_LEASE_S = 15.0  # a replica silent this long is taken for dead: its running tasks may be claimed again

# Claim a task in one step: refused while it is known, not failed, and (if running) still leased by a live replica.
_CLAIM = """
local known = redis.call('GET', KEYS[1])
if known then
  local status = cjson.decode(known)['status']
  if status ~= 'error' and not (status == 'processing' and redis.call('EXISTS', KEYS[2]) == 0) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
"""

# Point an upload's hash at its image for as long as the image lives.
_REMEMBER_UPLOAD = """
local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', left)
end
return left
"""

_OPTIONS = {"prefix", "lease"}  # query parameters of the store URL that are ours, not the Redis client's


class RedisTaskStore(TaskStore):
    """A :class:`TaskStore` in Redis. ``url``: ``redis://[:password@]host:port/db`` (or ``rediss://``, or
    ``unix://``); ``?prefix=`` and ``?lease=`` in it set ``prefix`` and ``lease_s``. Needs the ``redis`` package
    (the ``server`` extra)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        lease_s: float | None = None,
        task_retention: float = 24 * 3600,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401  (checked now, used in the server's event loop)
        except ImportError as exc:
            raise MissingDependencyError("kandinsky-nb serve --store redis://...", "server", exc.name) from exc
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"store URL {_safe(url)!r} is not a Redis URL: it must start with redis://, rediss:// or unix://, "
                "for example redis://127.0.0.1:6379/0."
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {key: value for key, value in query if key in _OPTIONS}
        self.url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in _OPTIONS])))
        self.prefix = prefix if prefix is not None else ours.get("prefix", "knb:")
        lease = lease_s if lease_s is not None else ours.get("lease", DEFAULT_LEASE_S)
        try:
            self.lease_s = float(lease)
        except ValueError:
            self.lease_s = float("nan")
        if not self.lease_s > 0 or not task_retention > 0:
            raise ConfigurationError(
                f"RedisTaskStore lease={lease!r}, task_retention={task_retention!r} is invalid: both are seconds "
                "above 0 (lease: how long a silent replica's running tasks stay its own). Pass positive numbers."
            )
        self.task_retention = task_retention
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heartbeats: dict[str, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return f"RedisTaskStore({_safe(self.url)!r}, prefix={self.prefix!r}, lease_s={self.lease_s:g})"

    # -- connection ---------------------------------------------------------------------------------------------------
    def _redis(self) -> Any:
        """The client of the running event loop (a connection pool belongs to the loop that opened it)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(self.url)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        for beat in self._heartbeats.values():
            beat.cancel()
        self._heartbeats.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    # -- tasks --------------------------------------------------------------------------------------------------------
    async def claim_task(self, task: TaskState) -> bool:
        lease_ms = int(self.lease_s * 1000)
        keys = [self._key("task", task.task_uuid), self._key("lease", task.task_uuid)]
        retention = max(int(self.task_retention), 1)
        claimed = await self._redis().eval(_CLAIM, 2, *keys, _dump(task), lease_ms, retention)
        if claimed:
            self._heartbeats[task.task_uuid] = asyncio.get_running_loop().create_task(self._renew(keys[1], lease_ms))
        return bool(claimed)

    async def _renew(self, lease_key: str, lease_ms: int) -> None:
        """Keep the lease of a task this replica runs, until the task is saved finished (or the process dies)."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._redis().set(lease_key, "1", px=lease_ms)
            except Exception:  # Redis away for a moment: the next beat tries again; the lease is 3 beats long
                log.warning("could not renew %s in Redis", lease_key, exc_info=True)

    async def save_task(self, task: TaskState) -> None:
        if task.status != PROCESSING and task.finished is None:
            task.finished = time.time()
        client = self._redis()
        key = self._key("task", task.task_uuid)
        if task.status == PROCESSING:
            await client.set(key, _dump(task), ex=max(int(self.task_retention), 1))
            return
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(key, _dump(task), ex=max(int(self.task_retention), 1))
            pipe.delete(self._key("lease", task.task_uuid))
            await pipe.execute()
        beat = self._heartbeats.pop(task.task_uuid, None)
        if beat is not None:
            beat.cancel()

    async def get_task(self, task_uuid: str) -> TaskState | None:
        client = self._redis()
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(self._key("task", task_uuid))
            pipe.exists(self._key("lease", task_uuid))
            raw, leased = await pipe.execute()
        if raw is None:
            return None
        task = _load(raw)
        if task.status == PROCESSING and not leased:
            return _orphaned(task, self.lease_s)
        return task

    async def count_tasks(self) -> int:
        count = 0
        async for _ in self._redis().scan_iter(match=self._key("task", "*"), count=1000):
            count += 1
        return count

    # -- images -------------------------------------------------------------------------------------------------------
    async def save_image(self, image_uuid: str, data: bytes, *, ttl: float) -> None:
        await self._redis().set(self._key("image", image_uuid), data, px=max(int(ttl * 1000), 1))

    async def get_image(self, image_uuid: str) -> StoredImage | None:
        client = self._redis()
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(self._key("image", image_uuid))
            pipe.pttl(self._key("image", image_uuid))
            data, left_ms = await pipe.execute()
        if data is None:
            return None
        expires = time.time() + left_ms / 1000 if left_ms > 0 else float("inf")
        return StoredImage(bytes(data), expires)

    async def why_missing(self, image_uuid: str) -> str:
        return (
            f"No image with the UUID {image_uuid} is in the shared store: never uploaded or generated, its ttl "
            "passed, or Redis evicted it under its maxmemory policy. Upload it again (imageUpload) or run its task "
            "again."
        )

    async def uploaded_image(self, content_hash: str) -> str | None:
        value = await self._redis().get(self._key("upload", content_hash))
        return value.decode() if value is not None else None

    async def remember_upload(self, content_hash: str, image_uuid: str) -> None:
        keys = [self._key("upload", content_hash), self._key("image", image_uuid)]
        await self._redis().eval(_REMEMBER_UPLOAD, 2, *keys, image_uuid)

    async def prune(self) -> None:
        """Nothing to do: Redis expires finished tasks, images and uploads itself."""


# -- JSON of a task -------------------------------------------------------------------------------------------------
def _dump(task: TaskState) -> str:
    fields = {field.name: getattr(task, field.name) for field in dataclasses.fields(task)}
    fields["errors"] = [error.model_dump(mode="json", exclude_none=True) for error in task.errors]
    return json.dumps(fields, separators=(",", ":"))


def _load(raw: bytes | str) -> TaskState:
    fields = json.loads(raw)
    known = {field.name for field in dataclasses.fields(TaskState)}
    fields = {name: value for name, value in fields.items() if name in known}  # written by another version
    fields["errors"] = [WireError.model_validate(error) for error in fields.get("errors", [])]
    return TaskState(**fields)


def _orphaned(task: TaskState, lease_s: float) -> TaskState:
    """A running task whose replica stopped renewing its lease: failed, retryably, so it is sent again."""
    error = error_object(
        "inferenceError",
        f"The replica running task {task.task_uuid} stopped before it finished (no sign of life for {lease_s:g} s). "
        "Nothing was delivered or charged: send the task again with the same taskUUID (kandinsky_nb's client does "
        "this by itself).",
        task_type=task.task_type,
        task_uuid=task.task_uuid,
    )
    return dataclasses.replace(task, status="error", errors=[error])


def _safe(url: str) -> str:
    """The URL without its password, for messages and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
