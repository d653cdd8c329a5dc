"""The toolkit's errors: one root, structured attributes, messages that end with the fix.

::

    KandinskyNBError
    ├── ConfigurationError            missing or invalid settings (API key, folders, engine choice)
    ├── MissingDependencyError        an optional extra is not installed (also ImportError)
    ├── RequestValidationError        the request is invalid; nothing was sent or spent (also ValueError)
    │   └── UnsupportedByEngineError  valid on the wire, but this engine cannot honour it (a scheduler, a cache)
    ├── BudgetExceededError           the run would pass the spending cap; nothing was sent
    ├── APIError                      anything the Runware protocol answered or failed to answer
    │   ├── APIConnectionError        no answer: refused, dropped, DNS
    │   │   └── APITimeoutError
    │   ├── APIStatusError            an HTTP error status: .status_code, .body
    │   │   ├── AuthenticationError       401
    │   │   ├── InsufficientCreditsError  402
    │   │   ├── PermissionDeniedError     403
    │   │   ├── RateLimitError            429
    │   │   └── ServerError               5xx
    │   ├── TaskError                 one item of the envelope's ``errors``: .code, .parameter, .documentation
    │   ├── ResponseValidationError   the answer did not have the documented shape
    │   │   └── UnusableCostError     a cost that is not a finite number of USD >= 0
    │   └── PollTimeoutError          async results did not arrive in time; resume with .task_uuid
    ├── BackendError                  the local engine failed while generating
    ├── RunLogError                   the run log could not be read or written
    ├── SweepError                    a sweep definition or its axes are invalid
    │   └── SweepBusyError            another process is running this sweep; nothing was sent
    └── UnreadableImage               bytes that are not an image, or one past a pixel limit (also ValueError)

Rules: data lives in attributes, never in strings meant to be parsed; errors are raised ``from`` their cause; no
message, attribute or repr ever holds the API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BackendError",
    "BudgetExceededError",
    "ConfigurationError",
    "FieldProblem",
    "InsufficientCreditsError",
    "KandinskyNBError",
    "MissingDependencyError",
    "PermissionDeniedError",
    "PollTimeoutError",
    "RateLimitError",
    "RequestValidationError",
    "ResponseValidationError",
    "RunLogError",
    "ServerError",
    "SweepBusyError",
    "SweepError",
    "TaskError",
    "UnreadableImage",
    "UnsupportedByEngineError",
    "UnusableCostError",
]


class KandinskyNBError(Exception):
    """Root of every error this toolkit raises on purpose."""


class ConfigurationError(KandinskyNBError):
    """A setting is missing or invalid."""


class MissingDependencyError(KandinskyNBError, ImportError):
    """An optional part was used without its extra installed."""

    def __init__(self, feature: str, extra: str, missing: str | None = None) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        what = f" ({missing} is not installed)" if missing else ""
        super().__init__(
            f"{feature} needs the '{extra}' extra{what}. Install it with: pip install 'kandinsky-nb[{extra}]'"
        )


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, int) and value.bit_length() > 256:  # repr() of a 5000-digit int raises ValueError
        return f"<a {value.bit_length()}-bit integer>"
    try:
        text = repr(value)
    except ValueError:  # such an integer inside a list or object
        text = f"<{type(value).__name__} holding an integer too long to print>"
    return text if len(text) <= limit else text[: limit - 12] + f"...<{len(text)} chars>"


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field: where it is (wire path, e.g. ``acceleratorOptions.cacheEndStep``), the value given, what is
    allowed, and what is wrong."""

    field: str
    value: Any
    allowed: str
    message: str = "invalid"

    def __str__(self) -> str:
        text = f"{self.field}={_short(self.value)}: {self.message}"
        return text + (f"; allowed: {self.allowed}" if self.allowed else "")


class RequestValidationError(KandinskyNBError, ValueError):
    """The request is invalid. Nothing was sent and nothing was spent.

    ``problems`` lists every bad field; ``fields`` their names.
    """

    def __init__(self, problems: list[FieldProblem], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        lines = [f"  - {p}" for p in self.problems]
        count = len(self.problems)
        head = f"Invalid request: {count} problem{'s' if count != 1 else ''}; nothing was sent."
        fix = hint or "Fix the fields named above and try again; kandinsky_nb.spec lists every limit."
        super().__init__("\n".join([head, *lines, fix]))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


class UnsupportedByEngineError(RequestValidationError):
    """A value the wire accepts but this engine cannot honour correctly (it says why and what to use instead)."""

    def __init__(self, field: str, value: Any, engine: str, reason: str, instead: str) -> None:
        self.field = field
        self.value = value
        self.engine = engine
        self.reason = reason
        self.instead = instead
        problem = FieldProblem(field, value, instead, f"not supported by the {engine} engine: {reason}")
        super().__init__([problem], hint=f"Use {instead} instead, or run this request on another engine.")


class BudgetExceededError(KandinskyNBError):
    """Running this would pass the spending cap. Nothing was sent."""

    def __init__(self, *, needed: float, spent: float, cap: float, what: str = "this request") -> None:
        self.needed = needed
        self.spent = spent
        self.cap = cap
        left = max(cap - spent, 0.0)
        super().__init__(
            f"Budget exceeded: {what} needs up to ${needed:.4f} but only ${left:.4f} of the ${cap:.4f} cap is left "
            f"(${spent:.4f} already spent or reserved); nothing was sent. Raise the cap (Session(budget=...)) or "
            "make the run smaller."
        )


class APIError(KandinskyNBError):
    """Something went wrong talking the Runware protocol."""

    def __init__(self, message: str, *, task_uuid: str | None = None) -> None:
        self.task_uuid = task_uuid
        super().__init__(message)


class APIConnectionError(APIError):
    """The server could not be reached, or dropped the connection before answering."""


class APITimeoutError(APIConnectionError):
    """The server did not answer in time."""


class APIStatusError(APIError):
    """The server answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        code: str | None = None,
        parameter: str | list[str] | None = None,
        task_uuid: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.code = code
        self.parameter = parameter
        super().__init__(message, task_uuid=task_uuid)


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class InsufficientCreditsError(APIStatusError):
    """402: the account has no credit left."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class RateLimitError(APIStatusError):
    """429: the queue is full; retried with backoff before this is raised."""


class ServerError(APIStatusError):
    """5xx: the server failed; retried with backoff before this is raised."""


class TaskError(APIError):
    """One task failed: an item of the response's ``errors`` list."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        parameter: str | list[str] | None = None,
        task_uuid: str | None = None,
        documentation: str | None = None,
        error: Any = None,
    ) -> None:
        self.code = code
        self.parameter = parameter
        self.documentation = documentation
        self.error = error
        super().__init__(message, task_uuid=task_uuid)


class ResponseValidationError(APIError):
    """The server's answer did not have the documented shape."""


class UnusableCostError(ResponseValidationError):
    """The engine answered with a cost that is not a finite number of USD of at least 0 (NaN, infinite, negative).
    The answer is logged as failed and its cost is never counted: summed, it would silently disable the cap."""


class PollTimeoutError(APIError):
    """Async results did not arrive before the poll timeout. The task may still finish: resume it by ``task_uuid``."""


class BackendError(KandinskyNBError):
    """The local engine failed while generating."""


class RunLogError(KandinskyNBError):
    """The run log could not be read or written."""


class SweepError(KandinskyNBError, ValueError):
    """A sweep definition is invalid."""


class SweepBusyError(SweepError):
    """Another run holds this sweep's lease; nothing was sent."""

    def __init__(self, name: str, holder: dict[str, Any] | None) -> None:
        self.name = name
        self.holder = holder
        who = (
            f"process {holder.get('pid')} on {holder.get('host')!r} (since {holder.get('since')})"
            if holder
            else "another process"
        )
        super().__init__(
            f"sweep {name!r} is being run by {who}; running it here too would send its cells twice, so nothing was "
            "sent. Wait for that run to finish (or stop it), then run the sweep again: it resumes whatever is left."
        )


class UnreadableImage(KandinskyNBError, ValueError):
    """Bytes that are not an image the toolkit decodes (PNG, JPEG, WEBP, GIF, BMP), or one past a pixel limit."""
