"""Server role of the Runware wire, as pure functions: what a Runware-compatible server (``kandinsky-nb serve``) reads
from a POST body and writes back. No sockets, no clock, no store: :mod:`kandinsky_nb.server` is the I/O around it.

* a POST body -> tasks: :func:`decode_body`, then :func:`parse_task` for each (an :class:`Authenticate`,
  :class:`Ping`, :class:`Upload`, :class:`Poll` or :class:`Infer`), or a :class:`Refusal` holding the error objects;
* who may call: :func:`check_key`;
* error objects with the codes the client classifies (:mod:`.policy`); each stands for the HTTP status
  :func:`~.policy.status_for_code` gives, the table the client maps statuses back with;
* result items (:func:`result_item`, :func:`upload_item`, :func:`processing_item`) with the field names of
  :mod:`.envelope`, and the envelope around them (:func:`envelope`);
* ``getResponse``: :func:`get_response` of a :class:`TaskState` (cumulative: the same items every time).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import spec
from .._media import base64_text, data_uri, decode_data_uri, sniff_format
from ..errors import KandinskyNBError, RequestValidationError
from ..types import GeneratedImage, ImageInferenceRequest, WireError
from .envelope import OUTPUT_FIELDS, PROCESSING, SUCCESS
from .policy import CONFLICT_CODE, TASK_NOT_FOUND_CODE, status_for_code
from .wire import AUTHENTICATION, GET_RESPONSE, IMAGE_UPLOAD, PING

__all__ = [
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
    "check_key",
    "conflict",
    "decode_body",
    "engine_failed",
    "envelope",
    "error_object",
    "get_response",
    "media_not_found",
    "parse_task",
    "payload_too_large",
    "processing_item",
    "refuse_image_input",
    "result_item",
    "upload_item",
    "validation_errors",
]


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


def media_not_found() -> WireError:
    return error_object("mediaNotFound", "No such image, or its ttl has passed. Run the task again for a new URL.")


def conflict(task_uuid: str) -> WireError:
    return error_object(
        CONFLICT_CODE,
        f"A task with taskUUID {task_uuid} already exists. Fetch its results with getResponse, or send a new taskUUID.",
        parameter="taskUUID",
        task_type=spec.TASK_TYPE,
        task_uuid=task_uuid,
    )


def engine_failed(task_uuid: str, exc: BaseException) -> WireError:
    """The cloud's answer when its provider fails: a retryable ``inferenceError`` (HTTP 500)."""
    return error_object(
        "inferenceError",
        f"The engine failed: {type(exc).__name__}: {exc}. Run the task again; if it keeps failing, see the server's log.",
        task_type=spec.TASK_TYPE,
        task_uuid=task_uuid,
    )


def refuse_image_input(parameter: str, task_uuid: str, *, why: Literal["url", "unknown"], image: str = "") -> Refusal:
    """An image input this server cannot use: a URL (it downloads nothing) or a UUID it has no image for."""
    if why == "url":
        message = (
            "This server does not download image URLs: upload the image (imageUpload) and send its UUID, or send it "
            "as a data URI or base64."
        )
    else:
        message = f"No uploaded or generated image has the UUID {image}, or its ttl has passed. Upload it again."
    return Refusal(
        error_object(
            "invalid" + _camel(parameter), message, parameter=parameter, task_type=spec.TASK_TYPE, task_uuid=task_uuid
        )
    )


# -- who may call ---------------------------------------------------------------------------------------------------
def check_key(authorization: str | None, tasks: Sequence[Any], accepted: Sequence[str]) -> None:
    """Raise a :class:`Refusal` (401) unless the caller holds one of the ``accepted`` keys, sent as
    ``Authorization: Bearer <key>`` or in an ``authentication`` task of the same body. No accepted keys: any
    caller may (an open server; ``kandinsky-nb serve`` then listens on loopback only)."""
    if not accepted:
        return
    given = None
    if authorization and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    given = given or next(
        (
            task["apiKey"]
            for task in tasks
            if isinstance(task, dict) and task.get("taskType") == AUTHENTICATION and isinstance(task.get("apiKey"), str)
        ),
        None,
    )
    if not given:
        raise Refusal(
            error_object(
                "missingApiKey",
                "No API key: send the header 'Authorization: Bearer <key>' (or an authentication task first).",
                parameter="apiKey",
                task_type=AUTHENTICATION,
            )
        )
    # Constant-time comparison, so the answer's timing does not tell how much of a guessed key was right.
    if not any(hmac.compare_digest(given.encode(), key.encode()) for key in accepted):
        raise Refusal(
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
    """The task objects of a POST body (a JSON array, or one task object). Raises :class:`Refusal` (invalidJSON)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(error_object("invalidJSON", "The body is not JSON. Send a JSON array of task objects.")) from None
    return body if isinstance(body, list) else [body]


def _uuid_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_task(raw: Any) -> Task:
    """One task object -> what it asks for. Raises :class:`Refusal` with the error objects that answer it."""
    if not isinstance(raw, dict):
        raise Refusal(error_object("invalidTask", "Each task must be a JSON object with a taskType."))
    task_type = raw.get("taskType")
    task_uuid = _uuid_or_none(raw.get("taskUUID"))
    if task_type == spec.TASK_TYPE:
        try:
            return Infer(ImageInferenceRequest.model_validate(raw))
        except RequestValidationError as exc:
            raise Refusal(*validation_errors(exc, task_uuid=task_uuid)) from None
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


def _decode_upload(image: Any, task_uuid: str | None) -> bytes:
    def refuse(message: str) -> Refusal:
        return Refusal(
            error_object("invalidImage", message, parameter="image", task_type=IMAGE_UPLOAD, task_uuid=task_uuid)
        )

    if not isinstance(image, str) or not image:
        raise refuse("imageUpload needs 'image': a data URI or base64 text of a PNG, JPEG or WEBP image.")
    if image.startswith(("http://", "https://")):
        raise refuse("This server does not download image URLs; send the image as a data URI or base64.")
    try:
        data = decode_data_uri(image) if image.startswith("data:") else base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("'image' is not valid base64 (or a data URI holding base64); encode the file's bytes.") from None
    if sniff_format(data) is None:
        raise refuse("'image' is not a PNG, JPEG, WEBP, GIF or BMP image; send one of those.")
    return data


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


def get_response(task_uuid: str, state: TaskState | None, *, retention_s: float) -> list[dict[str, Any]]:
    """The ``getResponse`` answer for a task: ``processing`` while it runs, then every result item (the same ones on
    every call: results are cumulative). Raises :class:`Refusal`: ``taskNotFound`` (404) for a task never seen or
    forgotten after ``retention_s``, or the task's own errors."""
    if state is None:
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
