"""The tasks of one POST, carried out: parsed by the protocol's server role, run on the engine, kept in the store.

Every ``imageInference`` runs as a background job keyed by its taskUUID, so a client that drops the connection (or
times out) still fetches the result with ``getResponse``. Engine calls are serialised by ``max_concurrency`` slots
(default 1: one GPU). A sync request waits up to ``sync_timeout`` for its jobs, then answers ``processing`` for those
still running, as an async acknowledgement would.

A ``processing`` answer carries ``expectedSeconds`` (when this replica's job is expected to finish, from when it got
its slot: :class:`JobSchedule`) and ``pollWaitSeconds``: a ``getResponse`` that arrives at most that long before the
expected finish is answered when the job finishes (``ServerState.poll_wait``), so a client that aims its one poll a
little early gets the result as soon as it is stored. Other polls are answered at once, as the cloud answers them.

Every buffer is bounded: the diagnostic record of recent bodies (:class:`RecentBodies`), the generation counts, and
the store's own caps; only authenticated requests reach any of them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from .._media import extension, sniff_format
from ..backends.base import Backend
from ..errors import ConfigurationError, RequestValidationError
from ..planning.pricing import work_units
from ..protocol.envelope import PROCESSING, SUCCESS
from ..protocol.policy import EXPECTED_SECONDS_FIELD, POLL_WAIT_FIELD
from ..protocol.server import (
    Authenticate,
    Infer,
    Ping,
    Poll,
    Refusal,
    TaskState,
    Upload,
    authentication_item,
    check_image,
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
from .outbound import HostAllowList, OutboundRefused, host_of
from .store import MemoryTaskStore, TaskStore

__all__ = ["IMAGES_PATH", "GenerationCounts", "RecentBodies", "ServerState", "image_url", "incident_id"]

log = logging.getLogger("kandinsky_nb.server")

IMAGES_PATH = "/images"  # image URLs are {base}/images/<imageUUID>.<ext>
DEFAULT_IMAGE_TTL = 24 * 3600  # seconds an image URL stays valid when the request gives no ttl
UPLOAD_TTL = 30 * 24 * 3600  # seconds an uploaded image can be used as an input
MAX_IMAGE_DOWNLOAD_BYTES = 32 * 1024 * 1024  # an image input fetched from an allowed host; 4096x4096 PNG is ~30 MB
IMAGE_DOWNLOAD_TIMEOUT = 30.0
# Seconds a getResponse may wait for a task of this replica that is expected to finish within them: a poll aimed at
# the expected finish that arrives a little early gets the result in that one round trip, not ``processing`` and a
# second poll. Polls of tasks expected later are answered at once, as the cloud answers them.
DEFAULT_POLL_WAIT = 0.25
# The most a poll POST that carries an answer ready now is held for the others in it.
READY_POLL_WAIT = 0.05


def incident_id() -> str:
    """A short id joining a client's error message to the server log's details (which the client never sees)."""
    return uuid.uuid4().hex[:12]


class RecentBodies:
    """The last ``count`` authenticated request bodies, for tests and diagnostics: API keys blanked, strings over
    ``max_string`` characters (inline images) shortened, and a body still over ``max_bytes`` as JSON kept as a
    summary of its tasks. So the record holds at most about ``count * max_bytes``, whatever clients send."""

    def __init__(self, count: int = 200, *, max_string: int = 4096, max_bytes: int = 64 * 1024) -> None:
        self._bodies: deque[list[Any]] = deque(maxlen=count)
        self.max_string = max_string
        self.max_bytes = max_bytes

    def add(self, tasks: list[Any]) -> None:
        def shorten(value: Any) -> Any:  # bodies are at most MAX_JSON_DEPTH deep: recursion is safe
            if isinstance(value, str) and len(value) > self.max_string:
                return value[:64] + f"...<{len(value)} chars>"
            if isinstance(value, dict):
                return {k: ("***" if k == "apiKey" else shorten(v)) for k, v in value.items()}
            if isinstance(value, list):
                return [shorten(v) for v in value]
            return value

        kept = [shorten(task) for task in tasks]
        if len(json.dumps(kept)) > self.max_bytes:
            kept = [
                {k: task.get(k) for k in ("taskType", "taskUUID") if isinstance(task.get(k), str | None)}
                if isinstance(task, dict)
                else None
                for task in tasks[:100]
            ]
            kept.append({"truncated": f"{len(tasks)} tasks, over {self.max_bytes} bytes as JSON"})
        self._bodies.append(kept)

    def __iter__(self) -> Any:
        return iter(list(self._bodies))

    def __len__(self) -> int:
        return len(self._bodies)


class GenerationCounts(Counter[str]):
    """How many generations each taskUUID started: a Counter of the last ``size`` taskUUIDs (the oldest updated one
    is forgotten first), so a stream of new tasks cannot grow it without end."""

    def __init__(self, size: int = 10_000) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, task_uuid: str, count: int) -> None:
        self.pop(task_uuid, None)  # re-inserted last: the most recent
        super().__setitem__(task_uuid, count)
        while len(self) > self.size:
            del self[next(iter(self))]

    def add(self, task_uuid: str) -> None:
        self[task_uuid] += 1


def image_url(base_url: str, image_uuid: str, data: bytes) -> str:
    return f"{base_url}{IMAGES_PATH}/{image_uuid}.{extension(sniff_format(data), 'png')}"


class EngineLatency:
    """What this replica's engine has taken lately, per work unit (megapixel-steps x images): an exponentially
    weighted mean, so the hint follows a GPU that warms up or slows down. It feeds the ``expectedSeconds`` hint of
    an async acknowledgement, which lets clients poll at the expected finish instead of on a fixed schedule."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self.seconds_per_unit: float | None = None

    def observe(self, request: ImageInferenceRequest, seconds: float) -> None:
        rate = seconds / max(work_units(request), 1e-9)
        previous = self.seconds_per_unit
        self.seconds_per_unit = rate if previous is None else previous + self.weight * (rate - previous)

    def seconds(self, request: ImageInferenceRequest) -> float | None:
        """Seconds the engine is expected to spend on ``request`` once it starts; None before any was measured."""
        if self.seconds_per_unit is None:
            return None  # nothing measured yet: no hint beats a wrong one
        return self.seconds_per_unit * work_units(request)

    def expected(self, request: ImageInferenceRequest, *, rounds: int) -> float | None:
        """Seconds until ``request`` finishes when ``rounds`` - 1 rounds of generations run before it starts."""
        seconds = self.seconds(request)
        return None if seconds is None else round(seconds * rounds, 4)


class JobSchedule:
    """When the jobs of this replica are expected to finish, counted from when each one actually got an engine slot.

    Jobs take the ``slots`` in submission order (asyncio's semaphore is first come, first served). A job holding a
    slot ends at its start plus its expected seconds; a new job starts once the work ahead of it has drained from the
    slots (exactly so for one slot; for more, the mean of the slots' free times once that work is spread over them)
    and ends its own seconds later. So a job submitted halfway through another's generation on a one-GPU server is
    expected after the remaining half plus its own, not after two whole generations. The ends are engine time: the
    few milliseconds of storing the images come after, and a poll that arrives in them is held (``poll_wait``)."""

    def __init__(self, slots: int, latency: EngineLatency) -> None:
        self.slots = slots
        self.latency = latency
        self.running: dict[str, tuple[float, float]] = {}  # taskUUID -> (start, work units), holding a slot
        self.queued: dict[str, float] = {}  # taskUUID -> work units, waiting for a slot
        self.queued_units = 0.0
        self.ends: dict[str, float] = {}  # taskUUID -> expected end of every job here (time.monotonic)

    def submitted(self, request: ImageInferenceRequest, now: float) -> None:
        """Note a new job: it waits for a slot behind the jobs already here."""
        units = work_units(request)
        rate = self.latency.seconds_per_unit
        if rate is not None:
            free = sorted(max(now, start + rate * running) for start, running in self.running.values())
            free = [now] * (self.slots - len(free)) + free
            if len(self.queued) < self.slots - len(self.running):
                begin = now  # a slot is free for it
            else:
                begin = max(free[0], (sum(free) + rate * self.queued_units) / self.slots)
            self.ends[request.taskUUID] = begin + rate * units
        self.queued[request.taskUUID] = units
        self.queued_units += units

    def started(self, task_uuid: str, now: float) -> None:
        units = self._dequeue(task_uuid)
        self.running[task_uuid] = (now, units)
        rate = self.latency.seconds_per_unit
        if rate is not None:
            self.ends[task_uuid] = now + rate * units

    def finished(self, task_uuid: str) -> None:
        self._dequeue(task_uuid)
        self.running.pop(task_uuid, None)
        self.ends.pop(task_uuid, None)

    def _dequeue(self, task_uuid: str) -> float:
        units = self.queued.pop(task_uuid, 0.0)
        self.queued_units = self.queued_units - units if self.queued else 0.0  # no drift once the queue empties
        return units


class ServerState:
    """One replica: the engine, the store (shared by replicas when it is not the in-memory one), the jobs running
    here, and, for tests and diagnostics, the last request bodies received (:class:`RecentBodies`) and how many
    generations each taskUUID started (:class:`GenerationCounts`).

    What clients may make it reach: ``image_hosts``, the hosts image-input URLs may be fetched from (none by
    default); ``delivery``, the hosts results may be sent to (none by default); ``loras``, the LoRA files clients may
    apply, by name (none by default). A client never names a file on this machine."""

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
        image_hosts: HostAllowList | Iterable[str] = (),
        loras: Mapping[str, str] | None = None,
        poll_wait: float = DEFAULT_POLL_WAIT,
    ) -> None:
        if max_concurrency < 1 or sync_timeout <= 0 or poll_wait < 0:
            raise ConfigurationError(
                f"max_concurrency={max_concurrency!r}, sync_timeout={sync_timeout!r}, poll_wait={poll_wait!r} is "
                "invalid: max_concurrency counts generations run at once (1 or more), sync_timeout is seconds (above "
                "0), poll_wait is seconds (0 or more). Pass values in range."
            )
        self.backend = backend
        self.api_keys = tuple(key for key in api_keys if key)
        self.store = store if store is not None else MemoryTaskStore()
        self.delivery = delivery if delivery is not None else Delivery()
        self.max_concurrency = max_concurrency
        self.sync_timeout = sync_timeout
        self.public_url = public_url.rstrip("/") if public_url else None
        self.image_hosts = (
            image_hosts if isinstance(image_hosts, HostAllowList) else HostAllowList(image_hosts, option="--image-host")
        )
        self.loras = dict(loras or {})
        self.jobs: set[asyncio.Task[None]] = set()
        self.received = RecentBodies()
        self.generations = GenerationCounts()
        self.latency = EngineLatency()
        self.schedule = JobSchedule(max_concurrency, self.latency)
        self.poll_wait = poll_wait
        self._running: dict[str, asyncio.Task[None]] = {}  # taskUUID -> its job, while it runs in this replica
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # created lazily, inside the server's event loop
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    def record(self, tasks: list[Any]) -> None:
        """Keep an authenticated request body for diagnostics (bounded: :class:`RecentBodies`)."""
        self.received.add(tasks)

    # -- one POST ---------------------------------------------------------------------------------------------------
    async def answer(
        self, tasks: list[Any], base_url: str, owner: str = ""
    ) -> tuple[list[dict[str, Any]], list[WireError]]:
        """The result items and error objects that answer these task objects. The caller checked the key already;
        ``owner`` is who it belongs to (:func:`~kandinsky_nb.protocol.server.owner_of`): tasks and uploads are
        that owner's."""
        data: list[dict[str, Any]] = []
        errors: list[WireError] = []
        waiting: list[tuple[str, asyncio.Task[None]]] = []
        hold_until = time.monotonic() + self.poll_wait  # one bound for all the polls of this POST
        polled = [
            raw.get("taskUUID") for raw in tasks if isinstance(raw, dict) and raw.get("taskType") == "getResponse"
        ]
        if any(not isinstance(task_uuid, str) or task_uuid not in self._running for task_uuid in polled):
            # A poll here can be answered now (its job is done, or not ours, or its taskUUID is not even a string
            # and is refused below): the others of the POST (clients put several polls in one) are waited for only
            # briefly, so a ready result never waits long on a running one, and ones about to finish still come.
            hold_until = time.monotonic() + min(self.poll_wait, READY_POLL_WAIT)
        for raw in tasks:
            try:
                task = parse_task(raw, loras=self.loras)
                if isinstance(task, Authenticate):
                    data.append(authentication_item(str(uuid.uuid4())))
                elif isinstance(task, Ping):
                    data.append(ping_item())
                elif isinstance(task, Upload):
                    data.append(await self._upload(task, base_url, owner))
                elif isinstance(task, Poll):
                    known = await self._poll(task.task_uuid, owner, hold_until)
                    answered = get_response(task.task_uuid, known, retention_s=self.store.task_retention, owner=owner)
                    data.extend(self._with_hint(item) for item in answered)
                elif isinstance(task, Infer):
                    job = await self._submit(task.request, base_url, owner)
                    if task.deferred:
                        data.append(self._acknowledge(task.request))
                    else:
                        waiting.append((task.request.taskUUID, job))
            except Refusal as refusal:
                errors.extend(refusal.errors)
        for task_uuid, job in waiting:
            try:
                await asyncio.wait_for(asyncio.shield(job), timeout=self.sync_timeout)
            except TimeoutError:
                data.append(self._with_hint(processing_item(task_uuid)))  # still running: the client polls
                continue
            finished = await self.store.get_task(task_uuid)
            if finished is not None:
                data.extend(finished.items)
                errors.extend(finished.errors)
        return data, errors

    def _acknowledge(self, request: ImageInferenceRequest) -> dict[str, Any]:
        """The async acknowledgement, with the seconds this task is expected to need (its job is already counted)."""
        return self._with_hint(processing_item(request.taskUUID))

    def _with_hint(self, item: dict[str, Any]) -> dict[str, Any]:
        """A ``processing`` item of a job running here, with the seconds until its expected finish (see
        :class:`JobSchedule`) and how long a poll that comes before it is held (see :meth:`_poll`); other items as
        they are."""
        end = self.schedule.ends.get(str(item.get("taskUUID")))
        if item.get("status") == PROCESSING and end is not None and (left := end - time.monotonic()) > 0:
            item[EXPECTED_SECONDS_FIELD] = round(left, 4)  # a job past its expected end gets no hint
            if self.poll_wait > 0:
                item[POLL_WAIT_FIELD] = self.poll_wait
        return item

    async def _poll(self, task_uuid: str, owner: str, hold_until: float) -> TaskState | None:
        """The caller's task as getResponse finds it. A job of this replica that is expected to finish before
        ``hold_until`` is waited for (until then at most), so an early poll is answered with the result."""
        known = await self.store.get_task(task_uuid)
        job = self._running.get(task_uuid)
        end = self.schedule.ends.get(task_uuid)
        if (
            known is None
            or known.status != PROCESSING
            or job is None
            or end is None
            or end > hold_until
            or not hmac.compare_digest(known.owner, owner)  # another key's task: answered at once, as unknown
        ):
            return known
        await asyncio.wait({job}, timeout=max(hold_until - time.monotonic(), 0.0))
        return await self.store.get_task(task_uuid)

    async def _upload(self, task: Upload, base_url: str, owner: str) -> dict[str, Any]:
        # Deduplicated per owner: another key uploading the same bytes must not learn that someone did.
        key = f"{owner}:{content_hash(task.data)}" if owner else content_hash(task.data)
        image_uuid = await self.store.uploaded_image(key)
        if image_uuid is None or await self.store.get_image(image_uuid) is None:
            image_uuid = str(uuid.uuid4())
            await self.store.save_image(image_uuid, task.data, ttl=UPLOAD_TTL)
            await self.store.remember_upload(key, image_uuid)
        return upload_item(task.task_uuid, image_uuid, image_url(base_url, image_uuid, task.data))

    async def _submit(self, request: ImageInferenceRequest, base_url: str, owner: str) -> asyncio.Task[None]:
        self.delivery.check(request)
        try:
            # What this engine refuses (a scheduler it has no correct mapping for...) is the client's to fix: a 400
            # now, before the task exists, not an engine failure later that clients retry or poll for.
            self.backend.check(request)
        except RequestValidationError as exc:
            raise Refusal(*validation_errors(exc, task_uuid=request.taskUUID)) from None
        request = await self._resolve_image_inputs(request)
        if not await self.store.claim_task(TaskState(request.taskUUID, owner=owner)):
            raise Refusal(conflict(request.taskUUID))
        self.schedule.submitted(request, time.monotonic())
        job = asyncio.get_running_loop().create_task(self._generate(request, base_url, owner))
        self.jobs.add(job)  # a strong reference until it finishes
        self._running[request.taskUUID] = job

        def done(job: asyncio.Task[None], task_uuid: str = request.taskUUID) -> None:
            self.jobs.discard(job)
            self._running.pop(task_uuid, None)
            self.schedule.finished(task_uuid)

        job.add_done_callback(done)
        return job

    async def _resolve_image_inputs(self, request: ImageInferenceRequest) -> ImageInferenceRequest:
        """Image UUIDs (uploaded or generated here) and URLs of allowed hosts become their bytes, since the engine
        cannot look them up; inline data was checked when the task was parsed."""
        if not request.has_image_inputs:
            return request

        async def resolve(ref: ImageRef, parameter: str) -> ImageRef:
            if ref.kind == "url":
                return ImageRef("bytes", await self._download(str(ref.value), parameter, request.taskUUID))
            if ref.kind != "uuid":
                return ref
            stored = await self.store.get_image(str(ref.value))
            if stored is None:
                image, why = str(ref.value), await self.store.why_missing(str(ref.value))
                raise refuse_image_input(parameter, request.taskUUID, why="unknown", image=image, detail=why)
            return ImageRef("bytes", stored.data)

        changes: dict[str, Any] = {"taskUUID": request.taskUUID}
        if request.seedImage is not None:
            changes["seedImage"] = await resolve(request.seedImage, "seedImage")
        if request.referenceImages:
            changes["referenceImages"] = [
                await resolve(ref, f"referenceImages[{index}]") for index, ref in enumerate(request.referenceImages)
            ]
        return request.replace(**changes)

    async def _download(self, url: str, parameter: str, task_uuid: str) -> bytes:
        """An image input from a host the operator allowed (:mod:`.outbound`), at most
        ``MAX_IMAGE_DOWNLOAD_BYTES``, checked as an uploaded image is."""
        if not self.image_hosts.allows(url):
            raise refuse_image_input(parameter, task_uuid, why="url", image=host_of(url))

        def failed(why: str) -> Refusal:
            return refuse_image_input(
                parameter,
                task_uuid,
                why="unreadable",
                detail=f"{parameter} could not be downloaded from {host_of(url)}: {why}.",
            )

        try:
            call = await self.image_hosts.pin(url)
            async with (
                httpx.AsyncClient(timeout=IMAGE_DOWNLOAD_TIMEOUT) as client,
                client.stream("GET", call.url, headers=call.headers, extensions=call.extensions) as response,
            ):
                if response.status_code != 200:
                    raise failed(f"HTTP {response.status_code}")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_IMAGE_DOWNLOAD_BYTES:
                        raise failed(f"over {MAX_IMAGE_DOWNLOAD_BYTES} bytes")
        except OutboundRefused as exc:
            raise failed(str(exc)) from None
        except httpx.HTTPError as exc:
            raise failed(type(exc).__name__) from None
        return check_image(bytes(data), parameter, task_uuid)

    async def _generate(self, request: ImageInferenceRequest, base_url: str, owner: str) -> None:
        task = TaskState(request.taskUUID, owner=owner)
        try:
            async with self.slots:
                self.generations.add(request.taskUUID)
                started = time.perf_counter()
                self.schedule.started(request.taskUUID, time.monotonic())
                generation = await self.backend.agenerate(request)
                self.latency.observe(request, time.perf_counter() - started)
            task.items = await self._keep_images(request, generation, base_url)
            task.status = SUCCESS
            self.delivery.start(request, [image.data for image in generation.images], task.items)
        except RequestValidationError as exc:  # the engine refused a value the wire allows
            task.errors, task.status = validation_errors(exc, task_uuid=request.taskUUID), "error"
        except Exception:  # the engine failed: report it as the cloud reports a provider failure
            incident = incident_id()
            log.exception("task %s failed in the engine (incident %s)", request.taskUUID, incident)
            task.errors, task.status = [engine_failed(request.taskUUID, incident)], "error"
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
