"""The tasks of one POST, carried out: parsed by the protocol's server role, run on the engine, kept in the store.

Every ``imageInference`` runs as a background job keyed by its taskUUID, so a client that drops the connection (or
times out) still fetches the result with ``getResponse``. Engine calls are serialised by ``max_concurrency`` slots
(default 1: one GPU). A sync request waits up to ``sync_timeout`` for its jobs, then answers ``processing`` for those
still running, as an async acknowledgement would.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from .._media import extension, sniff_format
from ..backends.base import Backend
from ..errors import ConfigurationError, RequestValidationError
from ..protocol.envelope import SUCCESS
from ..protocol.server import (
    Authenticate,
    Infer,
    Ping,
    Poll,
    Refusal,
    TaskState,
    Upload,
    authentication_item,
    conflict,
    engine_failed,
    get_response,
    parse_task,
    ping_item,
    processing_item,
    refuse_image_input,
    result_item,
    upload_item,
    validation_errors,
)
from ..protocol.wire import content_hash
from ..types import Generation, ImageInferenceRequest, ImageRef, WireError
from .delivery import Delivery
from .store import MemoryTaskStore, TaskStore

__all__ = ["IMAGES_PATH", "ServerState", "image_url"]

log = logging.getLogger("kandinsky_nb.server")

IMAGES_PATH = "/images"  # image URLs are {base}/images/<imageUUID>.<ext>
DEFAULT_IMAGE_TTL = 24 * 3600  # seconds an image URL stays valid when the request gives no ttl
UPLOAD_TTL = 30 * 24 * 3600  # seconds an uploaded image can be used as an input


def image_url(base_url: str, image_uuid: str, data: bytes) -> str:
    return f"{base_url}{IMAGES_PATH}/{image_uuid}.{extension(sniff_format(data), 'png')}"


class ServerState:
    """One replica: the engine, the store (shared by replicas when it is not the in-memory one), the jobs running
    here, and, for tests and diagnostics, the last request bodies received (API keys blanked) and how many
    generations each taskUUID started."""

    def __init__(
        self,
        backend: Backend,
        *,
        api_keys: Iterable[str] = (),
        store: TaskStore | None = None,
        delivery: Delivery | None = None,
        max_concurrency: int = 1,
        sync_timeout: float = 600.0,
        public_url: str | None = None,
    ) -> None:
        if max_concurrency < 1 or sync_timeout <= 0:
            raise ConfigurationError(
                f"max_concurrency={max_concurrency!r}, sync_timeout={sync_timeout!r} is invalid: max_concurrency "
                "counts generations run at once (1 or more), sync_timeout is seconds (above 0). Pass values in range."
            )
        self.backend = backend
        self.api_keys = tuple(key for key in api_keys if key)
        self.store = store if store is not None else MemoryTaskStore()
        self.delivery = delivery if delivery is not None else Delivery()
        self.max_concurrency = max_concurrency
        self.sync_timeout = sync_timeout
        self.public_url = public_url.rstrip("/") if public_url else None
        self.jobs: set[asyncio.Task[None]] = set()
        self.received: deque[list[Any]] = deque(maxlen=500)
        self.generations: Counter[str] = Counter()
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # created lazily, inside the server's event loop
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    def record(self, tasks: list[Any]) -> None:
        """Keep a request body for diagnostics: API keys blanked, long strings (inline images) shortened."""

        def shorten(value: Any) -> Any:
            if isinstance(value, str) and len(value) > 4096:
                return value[:64] + f"...<{len(value)} chars>"
            if isinstance(value, dict):
                return {k: ("***" if k == "apiKey" else shorten(v)) for k, v in value.items()}
            if isinstance(value, list):
                return [shorten(v) for v in value]
            return value

        self.received.append([shorten(task) for task in tasks])

    # -- one POST ---------------------------------------------------------------------------------------------------
    async def answer(self, tasks: list[Any], base_url: str) -> tuple[list[dict[str, Any]], list[WireError]]:
        """The result items and error objects that answer these task objects (the caller already checked the key)."""
        data: list[dict[str, Any]] = []
        errors: list[WireError] = []
        waiting: list[tuple[str, asyncio.Task[None]]] = []
        for raw in tasks:
            try:
                task = parse_task(raw)
                if isinstance(task, Authenticate):
                    data.append(authentication_item(str(uuid.uuid4())))
                elif isinstance(task, Ping):
                    data.append(ping_item())
                elif isinstance(task, Upload):
                    data.append(await self._upload(task, base_url))
                elif isinstance(task, Poll):
                    known = await self.store.get_task(task.task_uuid)
                    data.extend(get_response(task.task_uuid, known, retention_s=self.store.task_retention))
                elif isinstance(task, Infer):
                    job = await self._submit(task.request, base_url)
                    if task.deferred:
                        data.append(processing_item(task.request.taskUUID))
                    else:
                        waiting.append((task.request.taskUUID, job))
            except Refusal as refusal:
                errors.extend(refusal.errors)
        for task_uuid, job in waiting:
            try:
                await asyncio.wait_for(asyncio.shield(job), timeout=self.sync_timeout)
            except TimeoutError:
                data.append(processing_item(task_uuid))  # still running: the client polls getResponse
                continue
            finished = await self.store.get_task(task_uuid)
            if finished is not None:
                data.extend(finished.items)
                errors.extend(finished.errors)
        return data, errors

    async def _upload(self, task: Upload, base_url: str) -> dict[str, Any]:
        key = content_hash(task.data)
        image_uuid = await self.store.uploaded_image(key)
        if image_uuid is None or await self.store.get_image(image_uuid) is None:
            image_uuid = str(uuid.uuid4())
            await self.store.save_image(image_uuid, task.data, ttl=UPLOAD_TTL)
            await self.store.remember_upload(key, image_uuid)
        return upload_item(task.task_uuid, image_uuid, image_url(base_url, image_uuid, task.data))

    async def _submit(self, request: ImageInferenceRequest, base_url: str) -> asyncio.Task[None]:
        request = await self._resolve_image_inputs(request)
        if not await self.store.claim_task(TaskState(request.taskUUID)):
            raise Refusal(conflict(request.taskUUID))
        job = asyncio.get_running_loop().create_task(self._generate(request, base_url))
        self.jobs.add(job)  # a strong reference until it finishes
        job.add_done_callback(self.jobs.discard)
        return job

    async def _resolve_image_inputs(self, request: ImageInferenceRequest) -> ImageInferenceRequest:
        """Image UUIDs (uploaded or generated here) become their bytes, since the engine cannot look them up."""
        if not request.has_image_inputs:
            return request

        async def resolve(ref: ImageRef, parameter: str) -> ImageRef:
            if ref.kind == "url":
                raise refuse_image_input(parameter, request.taskUUID, why="url")
            if ref.kind != "uuid":
                return ref
            stored = await self.store.get_image(str(ref.value))
            if stored is None:
                raise refuse_image_input(parameter, request.taskUUID, why="unknown", image=str(ref.value))
            return ImageRef("bytes", stored.data)

        changes: dict[str, Any] = {"taskUUID": request.taskUUID}
        if request.seedImage is not None:
            changes["seedImage"] = await resolve(request.seedImage, "seedImage")
        if request.referenceImages:
            changes["referenceImages"] = [await resolve(ref, "referenceImages") for ref in request.referenceImages]
        return request.replace(**changes)

    async def _generate(self, request: ImageInferenceRequest, base_url: str) -> None:
        task = TaskState(request.taskUUID)
        try:
            async with self.slots:
                self.generations[request.taskUUID] += 1
                generation = await self.backend.agenerate(request)
            task.items = await self._keep_images(request, generation, base_url)
            task.status = SUCCESS
            self.delivery.start(request, [image.data for image in generation.images], task.items)
        except RequestValidationError as exc:  # the engine refused a value the wire allows
            task.errors, task.status = validation_errors(exc, task_uuid=request.taskUUID), "error"
        except Exception as exc:  # the engine failed: report it as the cloud reports a provider failure
            log.exception("task %s failed in the engine", request.taskUUID)
            task.errors, task.status = [engine_failed(request.taskUUID, exc)], "error"
        finally:
            await self.store.save_task(task)

    async def _keep_images(
        self, request: ImageInferenceRequest, generation: Generation, base_url: str
    ) -> list[dict[str, Any]]:
        """Store every image (so its UUID can be used as an input later, as on the cloud) and build its item."""
        items = []
        for image in generation.images:
            image_uuid = image.result.imageUUID or str(uuid.uuid4())
            await self.store.save_image(image_uuid, image.data, ttl=request.ttl or DEFAULT_IMAGE_TTL)
            url = image_url(base_url, image_uuid, image.data)
            demo = generation.demo or self.backend.demo
            items.append(result_item(request, image, image_uuid=image_uuid, image_url=url, demo=demo))
        return items
