"""Response side of the wire: every envelope shape Runware is known to send -> result items and task errors.

Shapes accepted (the reference notes list where each was seen):

* ``{"data": [...]}``, ``{"errors": [...]}`` and both together (a batch where some tasks failed);
* ``{"data": {...}}`` (``imageUpload`` docs show an object, not a list);
* ``{"error": {...}, "taskUUID": ..., "taskType": ...}`` (errors raised before a task started);
* ``{"error": [...]}`` (WebSocket style);
* a bare list of items;
* legacy ``{"error": true, "errorMessage": "..."}``;
* per-item errors inside ``data``: ``{"status": "error", "error": {...}, "taskUUID": ...}``.

Items are kept as plain dicts (exactly as received, for the run log); errors become tolerant
:class:`~kandinsky_nb.types.WireError` objects.

The names a result item is made of (where each ``outputType`` puts the image, the task statuses) are defined here
once: the client reads items with them and the server role (:mod:`.server`) builds items with them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import KandinskyNBError
from ..types import WireError

__all__ = [
    "OUTPUT_FIELDS",
    "PROCESSING",
    "SUCCESS",
    "Envelope",
    "MalformedResponse",
    "is_error_item",
    "is_terminal_item",
    "parse_envelope",
]

# Where each outputType puts the image in a result item.
OUTPUT_FIELDS: dict[str, str] = {"URL": "imageURL", "base64Data": "imageBase64Data", "dataURI": "imageDataURI"}
# A task's status in a result item: still running, or finished with this image.
PROCESSING: Final = "processing"
SUCCESS: Final = "success"
# Every spelling of "not finished yet" that servers use.
_NOT_TERMINAL = frozenset({PROCESSING, "pending", "queued", "running"})


def is_error_item(item: Mapping[str, Any]) -> bool:
    """A result item that reports its task's error inside ``data`` (``status: "error"``, or a nested ``error``
    object), which the envelope files under its errors."""
    return item.get("status") == "error" or isinstance(item.get("error"), dict)


def is_terminal_item(item: Mapping[str, Any]) -> bool:
    """A finished image: status ``success``, or an image payload with no non-terminal status. ACKs and
    ``processing``/``pending`` items are not."""
    status = item.get("status")
    if status in _NOT_TERMINAL:
        return False
    return status == SUCCESS or any(item.get(name) for name in OUTPUT_FIELDS.values())


class MalformedResponse(KandinskyNBError, ValueError):
    """The body is not JSON, or not any known envelope shape."""


@dataclass(frozen=True)
class Envelope:
    """A parsed response: result items and error items, in the order received."""

    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[WireError] = field(default_factory=list)

    def items_for(self, task_uuid: str) -> list[dict[str, Any]]:
        return [item for item in self.items if item.get("taskUUID") == task_uuid]

    def errors_for(self, task_uuid: str) -> list[WireError]:
        return [error for error in self.errors if error.taskUUID == task_uuid]

    @property
    def unscoped_errors(self) -> list[WireError]:
        """Errors that name no task (a whole-request failure, or a server that leaves ``taskUUID`` out)."""
        return [error for error in self.errors if not error.taskUUID]


def parse_envelope(content: bytes | str) -> Envelope:
    """Parse a response body. Raises :class:`MalformedResponse` when it is not JSON or not an envelope."""
    if not content or not content.strip():
        raise MalformedResponse("the body is empty")
    try:
        # Integers stay exact Python ints: seeds can exceed 2**53.
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedResponse(f"the body is not JSON ({exc})") from exc
    return envelope_from_json(body)


def envelope_from_json(body: Any) -> Envelope:
    if isinstance(body, list):
        return _split_items(body)
    if not isinstance(body, dict):
        raise MalformedResponse(f"expected a JSON object or list, got {type(body).__name__}")
    known = {"data", "errors", "error"} & body.keys()
    if not known:
        raise MalformedResponse("the JSON object has none of 'data', 'errors', 'error'")
    envelope = Envelope()
    data = body.get("data")
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        envelope = _split_items(data)
    elif data is not None:
        raise MalformedResponse(f"'data' must be a list or an object, got {type(data).__name__}")
    errors = list(envelope.errors)
    for raw in _as_list(body.get("errors")):
        errors.append(_wire_error(raw))
    if "error" in body:
        errors.extend(_top_level_error(body))
    return Envelope(items=envelope.items, errors=errors)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _split_items(raw_items: list[Any]) -> Envelope:
    items: list[dict[str, Any]] = []
    errors: list[WireError] = []
    for raw in raw_items:
        if not isinstance(raw, dict):
            raise MalformedResponse(f"a result item must be an object, got {type(raw).__name__}")
        if is_error_item(raw):
            nested = raw.get("error") if isinstance(raw.get("error"), dict) else {}
            merged = {**{k: v for k, v in raw.items() if k != "error"}, **nested}
            errors.append(_wire_error(merged))
        else:
            items.append(raw)
    return Envelope(items=items, errors=errors)


def _wire_error(raw: Any) -> WireError:
    if isinstance(raw, str):
        return WireError(message=raw)
    if not isinstance(raw, dict):
        raise MalformedResponse(f"an error item must be an object, got {type(raw).__name__}")
    fixed = dict(raw)
    # Some servers give the parameter as a list, the code as a number; keep the documented types.
    if fixed.get("code") is not None and not isinstance(fixed["code"], str):
        fixed["code"] = str(fixed["code"])
    if fixed.get("taskUUID") is not None and not isinstance(fixed["taskUUID"], str):
        fixed["taskUUID"] = str(fixed["taskUUID"])
    for name in ("message", "taskType", "documentation", "type", "status"):
        if fixed.get(name) is not None and not isinstance(fixed[name], str):
            fixed[name] = str(fixed[name])
    parameter = fixed.get("parameter")
    if parameter is not None and not isinstance(parameter, str | list):
        fixed["parameter"] = str(parameter)
    if fixed.get("allowedValues") is not None and not isinstance(fixed["allowedValues"], list):
        fixed["allowedValues"] = [fixed["allowedValues"]]
    return WireError.model_validate(fixed)


def _top_level_error(body: dict[str, Any]) -> list[WireError]:
    error = body["error"]
    if error is True or error is False:  # legacy: {"error": true, "errorMessage": ..., "errorId": ...}
        if not error:
            return []
        return [
            _wire_error(
                {
                    "code": body.get("errorId") or "error",
                    "message": body.get("errorMessage") or "the server reported an error",
                    "taskUUID": body.get("taskUUID"),
                    "taskType": body.get("taskType"),
                }
            )
        ]
    found = []
    for raw in _as_list(error):
        if isinstance(raw, dict):
            # The pre-stream form puts the task's identity next to the error object, not inside it.
            raw = {"taskUUID": body.get("taskUUID"), "taskType": body.get("taskType"), **raw}
        found.append(_wire_error(raw))
    return found
