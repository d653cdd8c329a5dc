"""HTTP statuses, transport failures and task errors -> the toolkit's exceptions, with messages that end with the fix.

Nothing here raises: each function builds the exception and the caller decides where it goes (raised at once, or
stored in the slot of the one task it belongs to).
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    TaskError,
)
from ..types import WireError
from .policy import CATEGORY_STATUS, CONFLICT_CODE, code_category, status_category

__all__ = [
    "connection_error",
    "malformed_response_error",
    "status_error",
    "task_error",
]

# The exception class of each category that has its own HTTP status (policy.CATEGORY_STATUS), whichever way the
# server reports it: as the status of the answer, or as the code of one task's error.
_CATEGORY_CLASSES: dict[str, type[APIStatusError]] = {
    "auth": AuthenticationError,
    "permission": PermissionDeniedError,
    "quota": InsufficientCreditsError,
    "rateLimit": RateLimitError,
    "serverError": ServerError,
}

_FIXES = {
    "auth": "Check the API key: pass RunwareBackend(api_key=...) or set RUNWARE_API_KEY (keys: https://my.runware.ai/keys).",
    "permission": "Use an API key that is allowed to run this model, or ask the account owner to grant it.",
    "quota": "Add credit to the Runware account (https://my.runware.ai/wallet), then run again.",
    "rateLimit": "The queue is full: wait a little, or lower the concurrency, and run again.",
    "serverError": "The server failed; it was retried with backoff. Run again later.",
    "validation": "Fix the named parameter and run again.",
    "safety": "The content was refused by the safety filter; change the prompt.",
    "provider": "The provider failed; it was retried with backoff. Run again later.",
    "timeout": "The task ran out of time on the server. Run again later.",
    "notFound": "The server has no record of this task or model; check the identifiers.",
    "unknown": "See the server's message above.",
}


def _describe(error: WireError) -> str:
    parts = [f"code={error.code!r}"] if error.code else []
    if error.parameter:
        parts.append(f"parameter={error.parameter!r}")
    if error.allowedValues:
        parts.append(f"allowed={error.allowedValues!r}")
    detail = f" [{', '.join(parts)}]" if parts else ""
    return f"{error.message or 'no message'}{detail}"


def status_error(
    status: int, errors: list[WireError], *, body: Any = None, task_uuid: str | None = None
) -> APIStatusError:
    """The exception for an HTTP error status, carrying the server's first error (code, message, parameter)."""
    first = errors[0] if errors else WireError()
    said_by_status = status_category(status)
    cls = _CATEGORY_CLASSES.get(said_by_status, APIStatusError) if said_by_status else APIStatusError
    category = said_by_status or code_category(first.code)
    what = _describe(first) if errors else "no error details in the body"
    message = f"HTTP {status} from the Runware server: {what}. {_FIXES[category]}"
    return cls(
        message,
        status_code=status,
        body=body,
        code=first.code,
        parameter=first.parameter,
        task_uuid=first.taskUUID or task_uuid,
    )


def task_error(errors: list[WireError], *, task_uuid: str, status: int | None = None) -> APIError:
    """The exception for a task the server refused or failed (an item of ``errors``).

    Credit, key and permission codes map to the same classes as their HTTP statuses, so ``except
    InsufficientCreditsError`` works whichever way the server reports it; every other code is a :class:`TaskError`.
    """
    first = errors[0]
    category = code_category(first.code)
    others = f" (+{len(errors) - 1} more: " + "; ".join(_describe(e) for e in errors[1:]) + ")" if errors[1:] else ""
    if first.code == CONFLICT_CODE:
        fix = (
            "This taskUUID was used before: fetch that task's results with backend.resume(request), or send "
            "request.replace() (a new taskUUID) to generate again."
        )
    else:
        fix = _FIXES[category]
    message = f"Task {task_uuid} failed: {_describe(first)}{others}. {fix}"
    if category in ("auth", "permission", "quota"):
        return _CATEGORY_CLASSES[category](
            message,
            status_code=status if status and status >= 400 else CATEGORY_STATUS[category],
            body=[e.model_dump(exclude_none=True) for e in errors],
            code=first.code,
            parameter=first.parameter,
            task_uuid=task_uuid,
        )
    return TaskError(
        message,
        code=first.code,
        parameter=first.parameter,
        task_uuid=task_uuid,
        documentation=first.documentation,
        error=first if len(errors) == 1 else list(errors),
    )


def connection_error(reason: str, *, timed_out: bool, task_uuid: str | None = None) -> APIConnectionError:
    cls = APITimeoutError if timed_out else APIConnectionError
    what = "did not answer in time" if timed_out else "could not be reached or dropped the connection"
    fix = (
        "Retried with backoff (the same taskUUID, so nothing was paid twice). Check the base URL and the network, "
        "or raise timeout=/max_retries=."
    )
    return cls(f"The Runware server {what} ({reason}). {fix}", task_uuid=task_uuid)


def malformed_response_error(reason: str, *, task_uuid: str | None = None) -> ResponseValidationError:
    return ResponseValidationError(
        f"The Runware server's answer did not have the documented shape: {reason}. It was retried with backoff; if "
        "this persists, check that the base URL points at a Runware-compatible server.",
        task_uuid=task_uuid,
    )
