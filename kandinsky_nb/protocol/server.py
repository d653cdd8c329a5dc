"""Server role of the Runware wire, as pure functions: what a Runware-compatible server (``kandinsky-nb serve``) reads
from a POST body and writes back. No sockets, no clock, no store: :mod:`kandinsky_nb.server` is the I/O around it.

* a POST body -> tasks: :func:`decode_body`, then :func:`parse_task` for each (an :class:`Authenticate`,
  :class:`Ping`, :class:`Upload`, :class:`Poll` or :class:`Infer`), or a :class:`Refusal` holding the error objects;
* who may call: :func:`check_key` (it also names the caller, :func:`owner_of`, so tasks are scoped by key);
* image inputs only as data, URLs or UUIDs (``ImageInferenceRequest.from_untrusted``), never as paths on the
  server's disk, and only images the engine can use (:func:`check_image`); LoRAs only by the names the operator
  installed;
* error objects with the codes the client classifies (:mod:`.policy`); each stands for the HTTP status
  :func:`~.policy.status_for_code` gives, the table the client maps statuses back with;
* result items (:func:`result_item`, :func:`upload_item`, :func:`processing_item`) with the field names of
  :mod:`.envelope`, and the envelope around them (:func:`envelope`);
* ``getResponse``: :func:`get_response` of a :class:`TaskState` (cumulative: the same items every time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import spec
from .._media import base64_text, data_uri
from ..errors import KandinskyNBError, RequestValidationError
from ..types import GeneratedImage, ImageInferenceRequest, ImageRef, WireError
from ..types.images import SENT_AS_IS, UnreadableImage, inspect_image
from .envelope import OUTPUT_FIELDS, PROCESSING, SUCCESS
from .policy import CONFLICT_CODE, TASK_NOT_FOUND_CODE, status_for_code
from .wire import AUTHENTICATION, GET_RESPONSE, IMAGE_UPLOAD, PING

__all__ = [
    "MAX_INPUT_ASPECT",
    "MAX_JSON_DEPTH",
    "MIN_INPUT_SIDE",
    "Authenticate",
    "Infer",
    "Ping",
    "Poll",
    "Refusal",
    "Task",
    "TaskState",
    "Upload",
    "answer_status",
    "authentication_item",
    "bearer_key",
    "check_image",
    "check_key",
    "conflict",
    "decode_body",
    "engine_failed",
    "envelope",
    "error_object",
    "forbidden",
    "get_response",
    "internal_error",
    "invalid_key",
    "media_not_found",
    "missing_key",
    "owner_of",
    "parse_task",
    "payload_too_large",
    "processing_item",
    "refuse_image_input",
    "result_item",
    "upload_item",
    "validation_errors",
]

# Nesting deeper than this is no Runware task (the deepest, a task in the array holding a list of objects, is 4):
# refused before anything walks it, so a hostile body cannot reach the interpreter's recursion limit.
MAX_JSON_DEPTH = 32
# Image inputs the engine can use, besides the toolkit's own pixel cap (spec.MAX_INPUT_PIXELS, checked as the request
# is parsed). The editing pipeline's Qwen2-VL image processor fails on a side of 1 px and on an aspect ratio of 200:1
# or more (measured on the demo weights: 1x1 and 1x400 give "height and width must be > 0", 3000x10 "absolute aspect
# ratio must be smaller than 200"), after the request was accepted: refused here first, as a bad input (400).
MIN_INPUT_SIDE = 2
MAX_INPUT_ASPECT = 200


# -- error objects ----------------------------------------------------------------------------------------------
def error_object(
    code: str,
    message: str,
    *,
    parameter: str | list[str] | None = None,
    task_type: str | None = None,
    task_uuid: str | None = None,
    documentation: str | None = None,
) -> WireError:
    """One item of the ``errors`` array, in the cloud's shape (the client parses it back into the same type)."""
    return WireError(
        code=code,
        message=message,
        parameter=parameter,
        taskType=task_type,
        taskUUID=task_uuid,
        documentation=documentation,
    )


def answer_status(errors: Sequence[WireError]) -> int:
    """The HTTP status of an answer that holds only these errors: the most severe of their codes' statuses."""
    return max(status_for_code(error.code) for error in errors)


class Refusal(KandinskyNBError):
    """A task, or the whole body, is answered with these error objects instead of results."""

    def __init__(self, *errors: WireError) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{error.code}: {error.message}" for error in self.errors))

    @property
    def status(self) -> int:
        return answer_status(self.errors)


def _camel(name: str) -> str:
    return name[:1].upper() + name[1:]


def validation_errors(
    exc: RequestValidationError, *, task_uuid: str | None, task_type: str = spec.TASK_TYPE
) -> list[WireError]:
    """A RequestValidationError -> the cloud's error objects, one per bad field (``invalidCFGScale``,
    ``missingPositivePrompt``, ``invalidSize``, ``unsupportedParameter``...)."""
    errors = []
    for problem in exc.problems:
        top = problem.field.split(".")[0].split("[")[0]
        parameter: str | list[str] = problem.field
        if problem.field == "width/height":
            code, parameter = "invalidSize", ["width", "height"]
        elif problem.message == "is required":
            code = "missing" + _camel(top)
        elif "is not a parameter of this model" in problem.message or problem.message.startswith(
            "not supported by the"
        ):
            code = "unsupportedParameter"
        else:
            code = "invalid" + _camel(top)
        errors.append(
            error_object(
                code,
                str(problem),
                parameter=parameter,
                task_type=task_type,
                task_uuid=task_uuid,
                documentation=spec.MODEL_PAGE_URL,
            )
        )
    return errors


def payload_too_large(limit: int) -> WireError:
    return error_object("payloadTooLarge", f"The body is over {limit} bytes. Send fewer or smaller tasks per request.")


def media_not_found(detail: str = "") -> WireError:
    """No image under a URL; ``detail``: the store's account of why (evicted, expired), when it has one."""
    return error_object(
        "mediaNotFound", detail or "No such image, or its ttl has passed. Run the task again for a new URL."
    )


def conflict(task_uuid: str) -> WireError:
    return error_object(
        CONFLICT_CODE,
        f"A task with taskUUID {task_uuid} already exists. Fetch its results with getResponse, or send a new taskUUID.",
        parameter="taskUUID",
        task_type=spec.TASK_TYPE,
        task_uuid=task_uuid,
    )


def engine_failed(task_uuid: str, incident: str) -> WireError:
    """The cloud's answer when its provider fails: a retryable ``inferenceError`` (HTTP 500). The exception's text
    stays in the server's log under ``incident``: it may name files, hosts or processes of the server."""
    return error_object(
        "inferenceError",
        f"The engine failed (incident {incident}). Run the task again; if it keeps failing, give the server's "
        "operator the incident id: its log holds the details.",
        task_type=spec.TASK_TYPE,
        task_uuid=task_uuid,
    )


def internal_error(incident: str) -> WireError:
    """A fault of the server itself (a bug): the request may be sent again, the details are in its log only."""
    return error_object(
        "internalServerError",
        f"The server failed to answer (incident {incident}). Send the request again; if it keeps failing, give the "
        "server's operator the incident id: its log holds the details.",
    )


def forbidden(message: str) -> WireError:
    """A request refused for where it comes from (a browser on another site), whatever key it holds: HTTP 403."""
    return error_object("forbidden", message)


_ACCEPTED_FORMS = (
    "send the image itself (a data:image/...;base64 URI, or base64 text), or upload it (imageUpload) and send its "
    "imageUUID"
)


def refuse_image_input(
    parameter: str,
    task_uuid: str | None,
    *,
    why: Literal["url", "unknown", "form", "unreadable"],
    image: str = "",
    detail: str = "",
    task_type: str = spec.TASK_TYPE,
) -> Refusal:
    """An image input this server cannot use (HTTP 400, naming ``parameter``): a URL of a host it may not fetch from
    (``image`` is the host), a UUID it has no image for, a string that is no image form at all (a path: the server
    never reads its own disk on a client's word), or bytes that are not an image the engine can use (``detail``)."""
    if why == "url":
        message = (
            f"This server does not download images from {image or 'URLs'}: its operator allows no such host "
            f"(kandinsky-nb serve --image-host). Instead, {_ACCEPTED_FORMS}."
        )
    elif why == "unknown":  # ``detail``: the store's own account (evicted, expired), when it has one
        message = (
            detail or f"No uploaded or generated image has the UUID {image}, or its ttl has passed. Upload it again."
        )
    elif why == "form":
        message = (
            f"{parameter} is not an image UUID, a data URI, base64 image data or an http(s) URL. This server never "
            f"opens files on its own disk for a client: {_ACCEPTED_FORMS}."
        )
    else:
        message = detail
    top = parameter.split("[")[0].split(".")[0]
    return Refusal(
        error_object("invalid" + _camel(top), message, parameter=parameter, task_type=task_type, task_uuid=task_uuid)
    )


def usable_size_problem(width: int, height: int) -> str | None:
    """Why the engine cannot use an input of this size (:data:`MIN_INPUT_SIDE`, :data:`MAX_INPUT_ASPECT`), or None."""
    if min(width, height) < MIN_INPUT_SIDE or max(width, height) >= MAX_INPUT_ASPECT * min(width, height):
        return (
            f"is {width}x{height} pixels; the engine needs each side at least {MIN_INPUT_SIDE} px and the long side "
            f"less than {MAX_INPUT_ASPECT} times the short one. Send an image within those bounds."
        )
    return None


def check_image(data: bytes, parameter: str, task_uuid: str | None, *, task_type: str = spec.TASK_TYPE) -> bytes:
    """``data`` if it is an image the engine can use: it decodes completely within ``spec.MAX_INPUT_PIXELS``
    (:func:`~kandinsky_nb.types.images.inspect_image`, the toolkit's one image check) and its size passes
    :func:`usable_size_problem`. Otherwise a :class:`Refusal` (400 naming ``parameter``), so the client is told to
    fix its input instead of retrying an engine failure."""
    try:
        facts = inspect_image(data, max_pixels=spec.MAX_INPUT_PIXELS, what=parameter)
    except UnreadableImage as exc:
        raise refuse_image_input(
            parameter,
            task_uuid,
            why="unreadable",
            detail=f"{exc}. Send a PNG, JPEG or WEBP image.",
            task_type=task_type,
        ) from None
    problem = usable_size_problem(facts.width, facts.height)
    if problem is not None:
        raise refuse_image_input(
            parameter, task_uuid, why="unreadable", detail=f"{parameter} {problem}", task_type=task_type
        )
    return data


def _image_inputs(request: ImageInferenceRequest) -> list[tuple[str, ImageRef]]:
    found = [("seedImage", request.seedImage)] if request.seedImage is not None else []
    return found + [(f"referenceImages[{i}]", ref) for i, ref in enumerate(request.referenceImages or [])]


def _check_image_inputs(request: ImageInferenceRequest) -> None:
    """Image inputs as a server takes them: only the forms sent over the wire (a run-log reference holds no pixels),
    and data only of a size the engine can use. Paths never get here (``from_untrusted`` refused them)."""
    for parameter, ref in _image_inputs(request):
        if ref.kind not in SENT_AS_IS:
            raise refuse_image_input(parameter, request.taskUUID, why="form")
        if ref.facts is not None and (problem := usable_size_problem(ref.facts.width, ref.facts.height)):
            raise refuse_image_input(parameter, request.taskUUID, why="unreadable", detail=f"{parameter} {problem}")


# -- who may call ---------------------------------------------------------------------------------------------------
def owner_of(key: str | None) -> str:
    """Who owns a task: a digest of the caller's key (the key itself is never stored), or "" on an open server.
    ``getResponse`` finds only the caller's own tasks, as each account sees only its own on the cloud."""
    if not key:
        return ""
    return hashlib.sha256(b"kandinsky-nb task owner\0" + key.encode()).hexdigest()


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def check_key(authorization: str | None, tasks: Sequence[Any], accepted: Sequence[str]) -> str:
    """The caller's :func:`owner_of` identity, or a :class:`Refusal` (401) unless the caller holds one of the
    ``accepted`` keys, sent as ``Authorization: Bearer <key>`` or in an ``authentication`` task of the same body.
    No accepted keys: any caller may (an open server; ``kandinsky-nb serve`` then listens on loopback only), and
    every caller is the same owner."""
    if not accepted:
        return ""
    given = bearer_key(authorization)
    given = given or next(
        (
            task["apiKey"]
            for task in tasks
            if isinstance(task, dict) and task.get("taskType") == AUTHENTICATION and isinstance(task.get("apiKey"), str)
        ),
        None,
    )
    if not given:
        raise missing_key()
    # Constant-time comparison, so the answer's timing does not tell how much of a guessed key was right.
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in accepted):
        raise invalid_key()
    return owner_of(given)


def missing_key(why: str = "") -> Refusal:
    return Refusal(
        error_object(
            "missingApiKey",
            f"No API key{why}: send the header 'Authorization: Bearer <key>' (or an authentication task first).",
            parameter="apiKey",
            task_type=AUTHENTICATION,
        )
    )


def invalid_key() -> Refusal:
    return Refusal(
        error_object(
            "invalidApiKey",
            "Invalid API key. Use a key this server was started with (--api-key or KANDINSKY_NB_SERVER_KEYS).",
            parameter="apiKey",
            task_type=AUTHENTICATION,
        )
    )


# -- a POST body -> tasks --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Authenticate:
    """``authentication``: the key was checked with the whole body; the answer opens a (nominal) session."""


@dataclass(frozen=True)
class Ping:
    """``ping``: answered ``pong``."""


@dataclass(frozen=True)
class Upload:
    """``imageUpload``: the decoded image bytes, to be stored under an imageUUID."""

    task_uuid: str | None
    data: bytes


@dataclass(frozen=True)
class Poll:
    """``getResponse``: the current state of an earlier task."""

    task_uuid: str


@dataclass(frozen=True)
class Infer:
    """``imageInference``: a validated request. ``deferred``: answer at once with ``processing`` (async delivery)."""

    request: ImageInferenceRequest

    @property
    def deferred(self) -> bool:
        return self.request.effective("deliveryMethod") == "async"


Task = Authenticate | Ping | Upload | Poll | Infer


def decode_body(raw: bytes) -> list[Any]:
    """The task objects of a POST body (a JSON array, or one task object). Raises :class:`Refusal` (invalidJSON)
    for a body that is not JSON, nests deeper than :data:`MAX_JSON_DEPTH`, or holds a number Python will not parse
    (over 4300 digits)."""
    too_deep = Refusal(
        error_object(
            "invalidJSON",
            f"The body nests JSON deeper than {MAX_JSON_DEPTH} levels; no task needs that. Send a JSON array of "
            "task objects.",
        )
    )
    try:
        body = json.loads(raw)
    except RecursionError:  # the C parser stops cleanly at the interpreter's recursion limit
        raise too_deep from None
    except (ValueError, UnicodeDecodeError):
        raise Refusal(error_object("invalidJSON", "The body is not JSON. Send a JSON array of task objects.")) from None
    if _nesting(body) > MAX_JSON_DEPTH:  # before anything recursive (validation, logging) walks it
        raise too_deep
    return body if isinstance(body, list) else [body]


def _nesting(value: Any) -> int:
    """How deeply a parsed JSON value nests, found without recursion (the value may be ~1000 levels deep)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                pending.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _uuid_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_task(raw: Any, *, loras: Mapping[str, str] | None = None) -> Task:
    """One task object -> what it asks for. Raises :class:`Refusal` with the error objects that answer it.

    ``loras``: the LoRAs the operator installed, name -> file; a task's ``lora[].model`` must be one of the names
    (a client never names a file on the server), and the :class:`Infer` request holds the file instead."""
    if not isinstance(raw, dict):
        raise Refusal(error_object("invalidTask", "Each task must be a JSON object with a taskType."))
    task_type = raw.get("taskType")
    task_uuid = _uuid_or_none(raw.get("taskUUID"))
    if task_type == spec.TASK_TYPE:
        try:
            # from_untrusted: an image input that is a path is refused, never looked up (it would be this server's).
            request = ImageInferenceRequest.from_untrusted(raw)
        except RequestValidationError as exc:
            raise Refusal(*validation_errors(exc, task_uuid=task_uuid)) from None
        _check_image_inputs(request)
        return Infer(_installed_loras(request, loras or {}))
    if task_type == GET_RESPONSE:
        if task_uuid is None:
            raise Refusal(
                error_object(
                    "missingTaskUUID",
                    "getResponse needs the taskUUID of the task to look up.",
                    parameter="taskUUID",
                    task_type=GET_RESPONSE,
                )
            )
        return Poll(task_uuid)
    if task_type == IMAGE_UPLOAD:
        return Upload(task_uuid, _decode_upload(raw.get("image"), task_uuid))
    if task_type == AUTHENTICATION:
        return Authenticate()
    if task_type == PING:
        return Ping()
    served = ", ".join((spec.TASK_TYPE, GET_RESPONSE, IMAGE_UPLOAD, AUTHENTICATION, PING))
    raise Refusal(
        error_object(
            "unsupportedTaskType",
            f"Task type {task_type!r} is not served here; send one of: {served}.",
            parameter="taskType",
            task_type=str(task_type) if task_type else None,
            task_uuid=task_uuid,
        )
    )


def _installed_loras(request: ImageInferenceRequest, loras: Mapping[str, str]) -> ImageInferenceRequest:
    if not request.lora:
        return request
    for index, entry in enumerate(request.lora):
        if entry.model not in loras:
            installed = ", ".join(sorted(loras)) or "none"
            raise Refusal(
                error_object(
                    "invalidLora",
                    f"lora[{index}].model={entry.model!r} is not a LoRA this server has; installed: {installed}. "
                    "Use one of those names (the operator adds one with kandinsky-nb serve --lora NAME=FILE).",
                    parameter=f"lora[{index}].model",
                    task_type=spec.TASK_TYPE,
                    task_uuid=request.taskUUID,
                )
            )
    lora = [{**entry.model_dump(exclude_none=True), "model": loras[entry.model]} for entry in request.lora]
    return request.replace(taskUUID=request.taskUUID, lora=lora)


def _decode_upload(image: Any, task_uuid: str | None) -> bytes:
    def refuse(message: str) -> Refusal:
        return Refusal(
            error_object("invalidImage", message, parameter="image", task_type=IMAGE_UPLOAD, task_uuid=task_uuid)
        )

    if not isinstance(image, str) or not image:
        raise refuse("imageUpload needs 'image': a data URI or base64 text of a PNG, JPEG or WEBP image.")
    if image.startswith(("http://", "https://")):
        raise refuse("This server does not download image URLs; send the image as a data URI or base64.")
    text = image.strip()
    try:
        payload = text.split(",", 1)[1] if text.startswith("data:") else text
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("'image' is not valid base64 (or a data URI holding base64); encode the file's bytes.") from None
    return check_image(data, "image", task_uuid, task_type=IMAGE_UPLOAD)


# -- answers --------------------------------------------------------------------------------------------------------
def authentication_item(session_uuid: str) -> dict[str, Any]:
    return {"taskType": AUTHENTICATION, "connectionSessionUUID": session_uuid}


def ping_item() -> dict[str, Any]:
    return {"taskType": PING, "pong": True}


def processing_item(task_uuid: str, task_type: str = spec.TASK_TYPE) -> dict[str, Any]:
    """The answer for a task that is not finished: the async acknowledgement, and getResponse until it is done."""
    return {"taskType": task_type, "taskUUID": task_uuid, "status": PROCESSING}


def upload_item(task_uuid: str | None, image_uuid: str, image_url: str) -> dict[str, Any]:
    return {"taskType": IMAGE_UPLOAD, "taskUUID": task_uuid, "imageUUID": image_uuid, "imageURL": image_url}


def result_item(
    request: ImageInferenceRequest, image: GeneratedImage, *, image_uuid: str, image_url: str, demo: bool
) -> dict[str, Any]:
    """The result item of one generated image, as the request asked for it: the image as a URL, base64 or a data
    URI (``outputType``), its seed, ``NSFWContent`` when the safety check was asked for, ``cost`` when
    ``includeCost``, and ``demo: true`` when it came from random demo weights."""
    item: dict[str, Any] = {"taskType": spec.TASK_TYPE, "taskUUID": request.taskUUID, "imageUUID": image_uuid}
    output_type = request.effective("outputType")
    if output_type == "URL":
        item[OUTPUT_FIELDS[output_type]] = image_url
    elif output_type == "base64Data":
        item[OUTPUT_FIELDS[output_type]] = base64_text(image.data)
    else:
        item[OUTPUT_FIELDS[output_type]] = data_uri(image.data)
    if image.result.seed is not None:
        item["seed"] = image.result.seed
    if request.safety is not None and request.safety.checkContent:
        item["NSFWContent"] = bool(image.result.NSFWContent)
    if request.includeCost:
        item["cost"] = image.result.cost if image.result.cost is not None else 0.0
    if demo:
        item["demo"] = True  # clients mark their Generation with it: the image is noise
    return item


def envelope(data: list[dict[str, Any]], errors: Sequence[WireError]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of an answer: ``{"data": [...]}`` and/or ``{"errors": [...]}``."""
    body: dict[str, Any] = {}
    if data or not errors:
        body["data"] = data
    if errors:
        body["errors"] = [error.model_dump(exclude_none=True) for error in errors]
    # A body holding data answers 200 even when some tasks failed: their errors name their taskUUIDs.
    return (200 if data or not errors else answer_status(errors)), body


# -- getResponse ----------------------------------------------------------------------------------------------------
@dataclass
class TaskState:
    """What a server keeps of a task between requests: its status, then its result items or its errors."""

    task_uuid: str
    task_type: str = spec.TASK_TYPE
    status: Literal["processing", "success", "error"] = PROCESSING
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[WireError] = field(default_factory=list)
    finished: float | None = None  # when it finished (stamped by the store), for the retention window
    owner: str = ""  # owner_of() the key that submitted it: only that key finds it with getResponse


def get_response(
    task_uuid: str, state: TaskState | None, *, retention_s: float, owner: str = ""
) -> list[dict[str, Any]]:
    """The ``getResponse`` answer for a task: ``processing`` while it runs, then every result item (the same ones on
    every call: results are cumulative). Raises :class:`Refusal`: ``taskNotFound`` (404) for a task never seen,
    forgotten after ``retention_s``, or submitted with another key than ``owner``'s (the same answer, so a caller
    cannot tell another key's task from none), or the task's own errors."""
    if state is None or not hmac.compare_digest(state.owner, owner):
        raise Refusal(
            error_object(
                TASK_NOT_FOUND_CODE,
                f"No task with taskUUID {task_uuid} is known here (never submitted, or finished more than "
                f"{retention_s / 3600:g} hours ago). Submit it again.",
                parameter="taskUUID",
                task_type=GET_RESPONSE,
                task_uuid=task_uuid,
            )
        )
    if state.status == PROCESSING:
        return [processing_item(task_uuid, state.task_type)]
    if state.status == SUCCESS:
        return [{**item, "status": SUCCESS} for item in state.items]
    raise Refusal(*(error.model_copy(update={"status": "error"}) for error in state.errors))
