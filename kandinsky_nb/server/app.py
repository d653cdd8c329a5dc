"""``kandinsky-nb serve``: the Runware REST protocol in front of any engine (the local GPU, or demo weights).

A notebook points at it by changing one URL (``RunwareBackend(base_url="http://gpu-box:8765")``, or
``RUNWARE_BASE_URL``); Runware's own SDK works against it too (``http_base_url="http://gpu-box:8765/v1"``).

What it speaks, as the cloud does: ``POST /v1`` with a JSON array of tasks (``imageInference`` with sync or async
delivery, ``getResponse``, ``imageUpload``, ``authentication``, ``ping``); Bearer-key or payload authentication;
answers ``{"data": [...]}`` and/or ``{"errors": [...]}`` with the cloud's error objects (``code``, ``message``,
``parameter``, ``taskType``, ``taskUUID``) and HTTP statuses; a repeated taskUUID is refused with
``conflictTaskUUID``, so a client's retry never generates twice. Images for ``outputType="URL"`` are served from
memory under ``/images/<imageUUID>.<ext>`` until their ``ttl`` passes. ``GET /`` is a health answer.

Results also go where a request asks: images PUT to ``uploadEndpoint``, result items POSTed to ``webhookURL`` (as
``{"data": [item]}``), after the task finished. Anyone holding a key can make the server call those URLs, so give
keys only to people you would let reach them.

Every task runs as a background job keyed by its taskUUID, so a client that drops the connection (or times out) can
still fetch the result with ``getResponse``. Engine calls are serialised (``max_concurrency``, default 1: one GPU).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import spec
from ..backends.base import Backend
from ..errors import RequestValidationError
from ..types import GeneratedImage, ImageInferenceRequest, ImageRef
from ..types.images import sniff_format

__all__ = ["ServerState", "create_app", "validation_error_items"]

log = logging.getLogger("kandinsky_nb.server")

DEFAULT_IMAGE_TTL = 24 * 3600  # seconds an image URL stays valid when the request gives no ttl
TASK_RETENTION = 24 * 3600  # seconds a finished task can still be fetched with getResponse
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_STORED_IMAGES = 2000
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif", "bmp": "image/bmp"}
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "bmp": "bmp"}


# -- errors in the cloud's shape ---------------------------------------------------------------------------------
@dataclass
class _Problem(Exception):
    """One error object for the ``errors`` array, with the HTTP status it stands for on its own."""

    code: str
    message: str
    status: int = 400
    parameter: str | list[str] | None = None
    task_type: str | None = None
    task_uuid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.parameter is not None:
            item["parameter"] = self.parameter
        if self.task_type:
            item["taskType"] = self.task_type
        if self.task_uuid:
            item["taskUUID"] = self.task_uuid
        return {**item, **self.extra}


def _camel(name: str) -> str:
    return name[:1].upper() + name[1:]


def validation_error_items(
    exc: RequestValidationError, *, task_uuid: str | None, task_type: str = spec.TASK_TYPE
) -> list[dict[str, Any]]:
    """A RequestValidationError -> the cloud's error objects, one per bad field (``invalidCFGScale``,
    ``missingPositivePrompt``, ``unsupportedParameter``...)."""
    return [p.to_json() for p in _validation_problems(exc, task_uuid=task_uuid, task_type=task_type)]


def _validation_problems(exc: RequestValidationError, *, task_uuid: str | None, task_type: str) -> list[_Problem]:
    problems = []
    for problem in exc.problems:
        field_path = problem.field
        top = field_path.split(".")[0].split("[")[0]
        parameter: str | list[str] = field_path
        if field_path == "width/height":
            code, parameter = "invalidSize", ["width", "height"]
        elif problem.message == "is required":
            code = "missing" + _camel(top)
        elif "is not a parameter of this model" in problem.message or problem.message.startswith(
            "not supported by the"
        ):
            code = "unsupportedParameter"
        else:
            code = "invalid" + _camel(top)
        extra: dict[str, Any] = {"documentation": spec.MODEL_PAGE_URL}
        problems.append(
            _Problem(code, str(problem), 400, parameter, task_type, task_uuid, extra=extra),
        )
    return problems


# -- state ---------------------------------------------------------------------------------------------------------
@dataclass
class _StoredImage:
    data: bytes
    mime: str
    expires: float


@dataclass
class _TaskRecord:
    task_uuid: str
    task_type: str
    status: str = "processing"  # processing -> success | error
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished: float | None = None
    job: asyncio.Task[None] | None = None


class ServerState:
    """What the server holds: tasks by taskUUID, stored images, and (for tests and diagnostics) the last request
    bodies received (API keys removed) and how many generations each taskUUID started."""

    def __init__(self, backend: Backend, api_keys: Iterable[str], *, max_concurrency: int, public_url: str | None):
        self.backend = backend
        self.api_keys = tuple(key for key in api_keys if key)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.tasks: dict[str, _TaskRecord] = {}
        self.images: OrderedDict[str, _StoredImage] = OrderedDict()
        self.uploads_by_hash: dict[str, str] = {}
        self.received: deque[list[Any]] = deque(maxlen=500)
        self.generations: Counter[str] = Counter()
        self.deliveries: set[asyncio.Task[None]] = set()  # webhook and uploadEndpoint calls in flight
        self.max_concurrency = max_concurrency
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # created lazily, inside the server's event loop
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    @property
    def demo(self) -> bool:
        return bool(getattr(self.backend, "demo", False))

    def store_image(self, data: bytes, *, ttl: float, image_uuid: str | None = None) -> str:
        image_uuid = image_uuid or str(uuid.uuid4())
        fmt = sniff_format(data) or "png"
        self.images[image_uuid] = _StoredImage(data, _MIME.get(fmt, "application/octet-stream"), time.time() + ttl)
        while len(self.images) > MAX_STORED_IMAGES:
            self.images.popitem(last=False)
        return image_uuid

    def image(self, image_uuid: str) -> _StoredImage | None:
        stored = self.images.get(image_uuid)
        if stored is None or stored.expires < time.time():
            self.images.pop(image_uuid, None)
            return None
        return stored

    def prune(self) -> None:
        now = time.time()
        for key in [k for k, r in self.tasks.items() if r.finished and now - r.finished > TASK_RETENTION]:
            del self.tasks[key]
        for key in [k for k, img in self.images.items() if img.expires < now]:
            del self.images[key]


# -- the app -------------------------------------------------------------------------------------------------------
def create_app(
    backend: Backend,
    *,
    api_keys: Iterable[str] | None = None,
    max_concurrency: int = 1,
    public_url: str | None = None,
    sync_timeout: float = 600.0,
) -> Any:
    """The Starlette app. ``api_keys``: the Bearer keys accepted (none: any key is accepted; the CLI then refuses to
    bind a non-loopback address). ``public_url``: the base of image URLs (default: the Host the client used).
    ``sync_timeout``: how long a sync request waits before answering ``status: processing`` (poll it then)."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("kandinsky-nb serve", "server", exc.name) from exc

    state = ServerState(backend, api_keys or (), max_concurrency=max_concurrency, public_url=public_url)

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "service": "kandinsky-nb serve",
                "model": spec.MODEL_ID,
                "engine": getattr(backend, "name", type(backend).__name__),
                "demo": state.demo,
                "auth": "api key required" if state.api_keys else "open (loopback only)",
                "tasks": len(state.tasks),
            }
        )

    async def image(request: Request) -> Response:
        name = request.path_params["name"]
        stored = state.image(name.rsplit(".", 1)[0])
        if stored is None:
            return JSONResponse(
                {"errors": [{"code": "mediaNotFound", "message": "No such image, or its ttl has passed."}]},
                status_code=404,
            )
        return Response(stored.data, media_type=stored.mime, headers={"Cache-Control": "private, max-age=60"})

    async def tasks_endpoint(request: Request) -> Response:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return _error_response([_Problem("payloadTooLarge", f"The body is over {MAX_BODY_BYTES} bytes.", 413)])
        raw = await request.body()
        try:
            import json

            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error_response(
                [_Problem("invalidJSON", "The body is not JSON. Send a JSON array of task objects.", 400)]
            )
        tasks = body if isinstance(body, list) else [body]
        state.received.append(_for_the_record(tasks))
        state.prune()
        base_url = state.public_url or str(request.base_url).rstrip("/")
        denied = _check_auth(state, request.headers.get("authorization"), tasks)
        if denied is not None:
            return _error_response([denied])
        data, problems = await _run_tasks(state, tasks, base_url, sync_timeout)
        return _envelope_response(data, problems)

    routes = [
        Route("/", health, methods=["GET"]),
        Route("/v1", tasks_endpoint, methods=["POST"]),
        Route("/v1/", tasks_endpoint, methods=["POST"]),
        Route("/images/{name}", image, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.kandinsky = state
    if state.demo:
        log.warning("kandinsky-nb serve runs DEMO weights: random weights, every image is noise.")
    return app


def _error_response(problems: Sequence[_Problem]) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"errors": [p.to_json() for p in problems]}, status_code=problems[0].status)


def _envelope_response(data: list[dict[str, Any]], problems: list[_Problem]) -> Any:
    from starlette.responses import JSONResponse

    body: dict[str, Any] = {}
    if data or not problems:
        body["data"] = data
    if problems:
        body["errors"] = [p.to_json() for p in problems]
    # A body holding data answers 200 even when some tasks failed (their errors are scoped by taskUUID).
    status = 200 if data or not problems else max(p.status for p in problems)
    return JSONResponse(body, status_code=status)


def _for_the_record(tasks: list[Any]) -> list[Any]:
    """A request body as kept in ``ServerState.received``: API keys blanked, long strings (inline images) shortened so
    the record stays small."""

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 4096:
            return f"{value[:64]}...<{len(value)} chars>"
        if isinstance(value, list):
            return [shorten(v) for v in value]
        if isinstance(value, dict):
            return {k: shorten(v) for k, v in value.items()}
        return value

    return [
        {k: ("***" if k == "apiKey" else shorten(v)) for k, v in task.items()} if isinstance(task, dict) else task
        for task in tasks
    ]


def _check_auth(state: ServerState, header: str | None, tasks: list[Any]) -> _Problem | None:
    payload_key = next(
        (
            task.get("apiKey")
            for task in tasks
            if isinstance(task, dict)
            and task.get("taskType") == "authentication"
            and isinstance(task.get("apiKey"), str)
        ),
        None,
    )
    given = None
    if header and header[:7].lower() == "bearer ":
        given = header[7:].strip()
    given = given or payload_key
    if not state.api_keys:
        return None
    if not given:
        return _Problem(
            "missingApiKey",
            "No API key: send the header 'Authorization: Bearer <key>' (or an authentication task first).",
            401,
            "apiKey",
            "authentication",
        )
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in state.api_keys):
        return _Problem(
            "invalidApiKey",
            "Invalid API key. Use a key this server was started with (--api-key or KANDINSKY_NB_SERVER_KEYS).",
            401,
            "apiKey",
            "authentication",
        )
    return None


async def _run_tasks(
    state: ServerState, tasks: list[Any], base_url: str, sync_timeout: float
) -> tuple[list[dict[str, Any]], list[_Problem]]:
    data: list[dict[str, Any]] = []
    problems: list[_Problem] = []
    waiting: list[_TaskRecord] = []
    for task in tasks:
        if not isinstance(task, dict):
            problems.append(_Problem("invalidTask", "Each task must be a JSON object.", 400))
            continue
        task_type = task.get("taskType")
        try:
            if task_type == "authentication":
                data.append({"taskType": "authentication", "connectionSessionUUID": str(uuid.uuid4())})
            elif task_type == "ping":
                data.append({"taskType": "ping", "pong": True})
            elif task_type == "imageUpload":
                data.append(_upload(state, task, base_url))
            elif task_type == "getResponse":
                found, errors = _poll(state, task)
                data.extend(found)
                problems.extend(errors)
            elif task_type == spec.TASK_TYPE:
                record = _submit(state, task, base_url)
                if task.get("deliveryMethod", "sync") == "async":
                    data.append({"taskType": spec.TASK_TYPE, "taskUUID": record.task_uuid, "status": "processing"})
                else:
                    waiting.append(record)
            else:
                raise _Problem(
                    "unsupportedTaskType",
                    f"Task type {task_type!r} is not served here; this server runs imageInference, getResponse, "
                    "imageUpload, authentication and ping.",
                    400,
                    "taskType",
                    str(task_type) if task_type else None,
                    _uuid_or_none(task.get("taskUUID")),
                )
        except _Problem as problem:
            problems.append(problem)
        except _Many as many:
            problems.extend(many.problems)
    for record in waiting:
        assert record.job is not None
        try:
            await asyncio.wait_for(asyncio.shield(record.job), timeout=sync_timeout)
        except TimeoutError:
            # Still running: say so, as an async acknowledgement would; the client polls getResponse.
            data.append({"taskType": spec.TASK_TYPE, "taskUUID": record.task_uuid, "status": "processing"})
            continue
        data.extend(record.items)
        problems.extend(_Problem(**_problem_fields(e)) for e in record.errors)
    return data, problems


def _problem_fields(error: dict[str, Any]) -> dict[str, Any]:
    known = {"code", "message", "parameter", "taskType", "taskUUID"}
    return {
        "code": error["code"],
        "message": error["message"],
        "status": error.get("_status", 400),
        "parameter": error.get("parameter"),
        "task_type": error.get("taskType"),
        "task_uuid": error.get("taskUUID"),
        "extra": {k: v for k, v in error.items() if k not in known and not k.startswith("_")},
    }


def _uuid_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _submit(state: ServerState, task: dict[str, Any], base_url: str) -> _TaskRecord:
    task_uuid = _uuid_or_none(task.get("taskUUID"))
    existing = state.tasks.get(task_uuid) if task_uuid else None
    if existing is not None and existing.status != "error":
        raise _Problem(
            "conflictTaskUUID",
            f"A task with taskUUID {task_uuid} already exists. Fetch its results with getResponse, or send a new "
            "taskUUID.",
            400,
            "taskUUID",
            spec.TASK_TYPE,
            task_uuid,
        )
    try:
        request = ImageInferenceRequest.model_validate(task)
    except RequestValidationError as exc:
        problems = _validation_problems(exc, task_uuid=task_uuid, task_type=spec.TASK_TYPE)
        if len(problems) == 1:
            raise problems[0] from None
        raise _Many(problems) from None
    request = _resolve_image_inputs(state, request)
    record = _TaskRecord(request.taskUUID, spec.TASK_TYPE)
    state.tasks[request.taskUUID] = record
    record.job = asyncio.get_running_loop().create_task(_generate(state, record, request, base_url))
    return record


class _Many(Exception):
    def __init__(self, problems: list[_Problem]) -> None:
        self.problems = problems


def _resolve_image_inputs(state: ServerState, request: ImageInferenceRequest) -> ImageInferenceRequest:
    """Image UUIDs (uploaded or generated here) become their bytes, since the engine cannot look them up."""
    if not request.has_image_inputs:
        return request

    def resolve(ref: ImageRef, parameter: str) -> ImageRef:
        if ref.kind == "url":
            raise _Problem(
                "invalid" + _camel(parameter),
                "This server does not download image URLs: upload the image (imageUpload) and send its UUID, or "
                "send it as a data URI or base64.",
                400,
                parameter,
                spec.TASK_TYPE,
                request.taskUUID,
            )
        if ref.kind != "uuid":
            return ref
        stored = state.image(str(ref.value))
        if stored is None:
            raise _Problem(
                "invalid" + _camel(parameter),
                f"No uploaded or generated image has the UUID {ref.value}, or its ttl has passed. Upload it again.",
                400,
                parameter,
                spec.TASK_TYPE,
                request.taskUUID,
            )
        return ImageRef("bytes", stored.data)

    changes: dict[str, Any] = {"taskUUID": request.taskUUID}
    if request.seedImage is not None:
        changes["seedImage"] = resolve(request.seedImage, "seedImage")
    if request.referenceImages:
        changes["referenceImages"] = [resolve(ref, "referenceImages") for ref in request.referenceImages]
    return request.replace(**changes)


async def _generate(state: ServerState, record: _TaskRecord, request: ImageInferenceRequest, base_url: str) -> None:
    try:
        async with state.slots:
            state.generations[request.taskUUID] += 1
            generation = await state.backend.agenerate(request)
        record.items = [_result_item(state, request, image, base_url, generation.demo) for image in generation.images]
        record.status = "success"
        if request.webhookURL or request.uploadEndpoint:
            state.deliveries.add(task := asyncio.get_running_loop().create_task(_deliver(request, record, generation)))
            task.add_done_callback(state.deliveries.discard)
    except RequestValidationError as exc:
        record.errors = [
            {**p.to_json(), "_status": 400}
            for p in _validation_problems(exc, task_uuid=request.taskUUID, task_type=spec.TASK_TYPE)
        ]
        record.status = "error"
    except Exception as exc:  # the engine failed: report it as the cloud reports a provider failure
        log.exception("task %s failed in the engine", request.taskUUID)
        record.errors = [
            {
                "code": "inferenceError",
                "message": f"The engine failed: {type(exc).__name__}: {exc}",
                "taskType": spec.TASK_TYPE,
                "taskUUID": request.taskUUID,
                "_status": 500,
            }
        ]
        record.status = "error"
    finally:
        record.finished = time.time()


async def _deliver(request: ImageInferenceRequest, record: _TaskRecord, generation: Any) -> None:
    """Send finished results where the request asked: each image PUT (raw bytes) to ``uploadEndpoint``, and each
    result item POSTed to ``webhookURL`` as ``{"data": [item]}`` (one call per image, as the cloud does). Failed
    deliveries are retried a few times and logged; they never fail the task, which getResponse still returns."""
    import httpx

    async def attempt(method: str, url: str, **kwargs: Any) -> None:
        for wait in (0.25, 0.5, 1.0, None):
            try:
                response = await client.request(method, url, **kwargs)
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if wait is None:
                log.warning("task %s: %s to %s failed (%s)", request.taskUUID, method, url.split("?")[0], problem)
                return
            await asyncio.sleep(wait)

    async with httpx.AsyncClient(timeout=30) as client:
        for image, item in zip(generation.images, record.items, strict=True):
            if request.uploadEndpoint:
                mime = _MIME.get(sniff_format(image.data) or "png", "application/octet-stream")
                await attempt("PUT", request.uploadEndpoint, content=image.data, headers={"Content-Type": mime})
            if request.webhookURL:
                await attempt("POST", request.webhookURL, json={"data": [item]})


def _result_item(
    state: ServerState, request: ImageInferenceRequest, image: GeneratedImage, base_url: str, demo: bool
) -> dict[str, Any]:
    result = image.result
    image_uuid = result.imageUUID or str(uuid.uuid4())
    item: dict[str, Any] = {"taskType": spec.TASK_TYPE, "taskUUID": request.taskUUID, "imageUUID": image_uuid}
    fmt = sniff_format(image.data) or "png"
    output_type = request.effective("outputType")
    ttl = request.ttl or DEFAULT_IMAGE_TTL
    # Stored in every case, so the image's UUID can be used as an input later (as on the cloud).
    state.store_image(image.data, ttl=ttl, image_uuid=image_uuid)
    if output_type == "URL":
        item["imageURL"] = f"{base_url}/images/{image_uuid}.{_EXT.get(fmt, 'png')}"
    elif output_type == "base64Data":
        item["imageBase64Data"] = base64.b64encode(image.data).decode("ascii")
    else:
        item["imageDataURI"] = f"data:{_MIME.get(fmt, 'image/png')};base64," + base64.b64encode(image.data).decode()
    if result.seed is not None:
        item["seed"] = result.seed
    safety = request.safety
    if safety is not None and safety.checkContent:
        item["NSFWContent"] = bool(result.NSFWContent)
    if request.includeCost:
        item["cost"] = result.cost if result.cost is not None else 0.0
    if demo or state.demo:
        item["demo"] = True  # demo weights: the image is noise; clients mark their Generation with it
    return item


def _poll(state: ServerState, task: dict[str, Any]) -> tuple[list[dict[str, Any]], list[_Problem]]:
    task_uuid = _uuid_or_none(task.get("taskUUID"))
    if task_uuid is None:
        raise _Problem(
            "missingTaskUUID", "getResponse needs the taskUUID of the task to look up.", 400, "taskUUID", "getResponse"
        )
    record = state.tasks.get(task_uuid)
    if record is None:
        raise _Problem(
            "taskNotFound",
            f"No task with taskUUID {task_uuid} is known here (never submitted, or finished more than "
            f"{TASK_RETENTION // 3600} hours ago).",
            404,
            "taskUUID",
            "getResponse",
            task_uuid,
        )
    if record.status == "processing":
        return [{"taskType": record.task_type, "taskUUID": task_uuid, "status": "processing"}], []
    if record.status == "success":
        return [{**item, "status": "success"} for item in record.items], []
    return [], [_Problem(**_problem_fields({**error, "status": "error"})) for error in record.errors]


def _upload(state: ServerState, task: dict[str, Any], base_url: str) -> dict[str, Any]:
    task_uuid = _uuid_or_none(task.get("taskUUID"))
    image = task.get("image")

    def refuse(message: str) -> _Problem:
        return _Problem("invalidImage", message, 400, "image", "imageUpload", task_uuid)

    if not isinstance(image, str) or not image:
        raise refuse("imageUpload needs 'image': a data URI or base64 text of a PNG, JPEG or WEBP image.")
    if image.startswith(("http://", "https://")):
        raise refuse("This server does not download image URLs; send the image as a data URI or base64.")
    text = image.split(",", 1)[1] if image.startswith("data:") else image
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("'image' is not valid base64 (or a data URI holding base64).") from None
    if sniff_format(data) is None:
        raise refuse("'image' is not a PNG, JPEG, WEBP, GIF or BMP image.")
    digest = hashlib.sha256(data).hexdigest()
    image_uuid = state.uploads_by_hash.get(digest)
    if image_uuid is None or state.image(image_uuid) is None:
        image_uuid = state.store_image(data, ttl=30 * 24 * 3600)
        state.uploads_by_hash[digest] = image_uuid
    fmt = sniff_format(data) or "png"
    return {
        "taskType": "imageUpload",
        "taskUUID": task_uuid,
        "imageUUID": image_uuid,
        "imageURL": f"{base_url}/images/{image_uuid}.{_EXT.get(fmt, 'png')}",
    }
