"""Retry, backoff and polling decisions, as plain functions of their inputs.

Why retries are safe here: every Runware call is a POST, and a POST is only safe to repeat when the server can tell a
repeat from a new task. Each task carries a ``taskUUID`` chosen once by the client and reused on every retry; a
server that already has the task answers ``conflictTaskUUID``, and the client then polls ``getResponse`` for it
instead of failing. So a retry never pays for a second generation.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "CATEGORY_STATUS",
    "CONFLICT_CODE",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_POLL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "EXPECTED_SECONDS_FIELD",
    "POLL_WAIT_FIELD",
    "RETRYABLE_STATUS",
    "TASK_NOT_FOUND_CODE",
    "RetryPolicy",
    "code_category",
    "is_not_found_code",
    "is_retryable_code",
    "is_retryable_status",
    "latency_hint",
    "poll_wait_hint",
    "retry_after_seconds",
    "status_category",
    "status_for_code",
]

DEFAULT_TIMEOUT = 120.0  # seconds per HTTP call; a sync Kandinsky generation on the cloud takes a few seconds
DEFAULT_MAX_RETRIES = 3
DEFAULT_POLL_TIMEOUT = 600.0  # seconds an async task is polled before PollTimeoutError (the task stays resumable)
DEFAULT_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # a 1408x640 PNG is ~2 MB; anything near this is not an image

# The server's own guess, in an async acknowledgement (or a ``processing`` answer), of how many seconds the task still
# needs. ``kandinsky-nb serve`` sends it; the cloud does not (clients then use their own estimate). Both roles read it
# from here.
EXPECTED_SECONDS_FIELD = "expectedSeconds"
# Sent with that hint by a server that holds polls (``kandinsky-nb serve``): a getResponse that arrives up to this many
# seconds before the task's expected finish is answered when the task finishes, not with ``processing``. Clients
# that read it poll a little before the expected finish, so the result leaves the server as soon as it is stored.
POLL_WAIT_FIELD = "pollWaitSeconds"

CONFLICT_CODE = "conflictTaskUUID"
TASK_NOT_FOUND_CODE = "taskNotFound"

# Request timeout, queue full, and every server-side failure are transient (the cloud's rate-limit page says so).
RETRYABLE_STATUS = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or 500 <= status <= 599


# Raw error codes by category. Exact names first, then the naming patterns Runware's own SDKs use.
_EXACT: dict[str, str] = {
    "invalidApiKey": "auth",
    "missingApiKey": "auth",
    "unauthorized": "auth",
    "authenticationFailed": "auth",
    "authTimeout": "auth",
    "tokenExpired": "auth",
    "accountSuspended": "auth",
    "forbidden": "permission",
    "permissionDenied": "permission",
    "insufficientPermissions": "permission",
    "paymentRequired": "quota",
    "rateLimitExceeded": "rateLimit",
    "inferenceRateLimitExceeded": "rateLimit",
    "providerRateLimitExceeded": "rateLimit",
    "inferenceRateLimitRequestTooLarge": "validation",
    "payloadTooLarge": "validation",
    "contentPolicyViolation": "safety",
    "providerContentPolicyViolation": "safety",
    "sensitiveContentDetected": "safety",
    "nsfwContentDetected": "safety",
    "unsafeContentDetected": "safety",
    "promptBlocked": "safety",
    "imageBlocked": "safety",
    "moderationFailed": "safety",
    "inferenceError": "provider",
    "processingFailed": "provider",
    "taskFailed": "provider",
    "downloadFailed": "provider",
    "uploadFailed": "provider",
    "noAvailableServer": "provider",
    "modelUnavailable": "provider",
    "modelNotReady": "provider",
    "modelDisabled": "notFound",
    "modelNotFound": "notFound",
    TASK_NOT_FOUND_CODE: "notFound",
    "mediaNotFound": "notFound",
    "taskExpired": "notFound",
    "mediaExpired": "notFound",
    "taskCancelled": "notFound",
    "taskFailedOrNotFound": "notFound",
    "unknownModel": "notFound",
    "internalServerError": "serverError",
    "serviceUnavailable": "serverError",
    "serverUnavailable": "serverError",
    "standardError": "serverError",
    "unknownError": "serverError",
}
_PREFIXES = (
    ("invalid", "validation"),
    ("missing", "validation"),
    ("conflict", "validation"),
    ("duplicate", "validation"),
    ("unsupported", "validation"),
    ("unknown", "validation"),
    ("incompatible", "validation"),
    ("value", "validation"),
    ("array", "validation"),
    ("max", "validation"),
    ("provider", "provider"),
)
_RETRYABLE_CATEGORIES = frozenset({"provider", "timeout", "rateLimit", "serverError"})


def code_category(code: str | None) -> str:
    """``validation``, ``auth``, ``permission``, ``quota``, ``rateLimit``, ``safety``, ``provider``, ``timeout``,
    ``notFound``, ``serverError`` or ``unknown``."""
    if not code:
        return "unknown"
    if code in _EXACT:
        return _EXACT[code]
    if any(word in code for word in ("Credits", "Quota", "Balance")):
        return "quota"
    if "Timeout" in code or code.startswith("timeout"):
        return "timeout"
    for prefix, category in _PREFIXES:
        if code.startswith(prefix):
            return category
    return "unknown"


def is_retryable_code(code: str | None) -> bool:
    """Whether a task error is transient, so the same task (same taskUUID) may be sent again."""
    return code_category(code) in _RETRYABLE_CATEGORIES


def is_not_found_code(code: str | None) -> bool:
    """Whether ``getResponse`` says the server has no (or no longer any) record of the task."""
    return code in {TASK_NOT_FOUND_CODE, "taskFailedOrNotFound", "taskExpired"}


# The HTTP status each category of code stands for. Both roles read this one table: the server answers an error with
# its category's status, and the client maps a status back to the category (and so to the exception class).
CATEGORY_STATUS: dict[str, int] = {
    "auth": 401,
    "quota": 402,
    "permission": 403,
    "notFound": 404,
    "rateLimit": 429,
    "serverError": 500,
    "provider": 500,
}
# Codes whose status is not their category's (validation errors are 400 unless named here).
_CODE_STATUS: dict[str, int] = {"payloadTooLarge": 413}
_STATUS_CATEGORY: dict[int, str] = {
    status: category for category, status in CATEGORY_STATUS.items() if category not in ("serverError", "provider")
}


def status_for_code(code: str | None) -> int:
    """The HTTP status a server answers with when ``code`` is the only error of the answer."""
    if code in _CODE_STATUS:
        return _CODE_STATUS[code]
    return CATEGORY_STATUS.get(code_category(code), 400)


def status_category(status: int) -> str | None:
    """The category an HTTP error status stands for on its own (every 5xx is a server error); None when the status
    says nothing more than "bad request", so the error code decides."""
    if status >= 500:
        return "serverError"
    return _STATUS_CATEGORY.get(status)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait. ``backoff(n)`` is the wait before retry ``n`` (1-based): exponential from
    ``initial_delay``, capped at ``max_delay``, with "full jitter" on the upper half so many clients that failed
    together do not retry together. ``poll_delay(n, ...)`` is the wait before poll ``n`` of an async task.

    Polling near the limit: when the task's latency is expected (the server's hint, or a model fitted to earlier
    runs), the first poll goes at the expected finish (plus ``poll_margin`` of it), and later ones follow it closely
    (every ``poll_close`` of the expected latency, at least ``poll_floor`` seconds apart) and back off by
    ``poll_factor`` up to ``poll_max``: a steady server answers in one or two polls, a late one is not hammered. With
    no expectation, polls start at ``poll_initial`` and back off the same way. A server that says it holds polls
    (``pollWaitSeconds`` with its hint) is polled a little before the expected finish instead: one round trip of the
    exchange that brought the hint, at most ``poll_lead`` of the expected latency and half the hold, so the poll is
    there when the result is stored, as a sync answer would be."""

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = 0.5
    max_delay: float = 30.0
    poll_initial: float = 0.5
    poll_factor: float = 1.5
    poll_max: float = 5.0
    poll_margin: float = 0.02
    poll_close: float = 0.05
    poll_floor: float = 0.01
    poll_lead: float = 0.05

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigurationError(
                f"RetryPolicy(max_retries={self.max_retries!r}) is invalid: it counts retries after the first try. "
                "Pass 0 to disable retries, or a positive number."
            )
        for name in ("poll_initial", "poll_max", "poll_floor"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(
                    f"RetryPolicy({name}={getattr(self, name)!r}) is invalid: it is a number of seconds above 0. "
                    "Pass a positive number."
                )
        if (
            not self.poll_factor >= 1
            or not self.poll_margin >= 0
            or not self.poll_close > 0
            or not 0 <= self.poll_lead < 1
        ):
            raise ConfigurationError(
                f"RetryPolicy(poll_factor={self.poll_factor!r}, poll_margin={self.poll_margin!r}, "
                f"poll_close={self.poll_close!r}, poll_lead={self.poll_lead!r}) is invalid: poll_factor must be 1 or "
                "more (polls never speed up), poll_margin 0 or more, poll_close above 0 and poll_lead from 0 to below "
                "1 (fractions of the expected latency). Pass values in range."
            )

    def backoff(self, attempt: int, rng: random.Random | None = None, *, retry_after: float | None = None) -> float:
        """The wait before retry ``attempt``; never shorter than a server's ``Retry-After``."""
        ceiling = min(self.initial_delay * 2 ** max(attempt - 1, 0), self.max_delay)
        jitter = (rng or random).uniform(0.5, 1.0)
        return max(ceiling * jitter, retry_after or 0.0)

    def poll_delay(
        self,
        poll_number: int,
        *,
        expected: float | None = None,
        elapsed: float = 0.0,
        hold: float | None = None,
        round_trip: float = 0.0,
    ) -> float:
        """Seconds to wait before poll ``poll_number`` (1-based) of a task expected to take ``expected`` seconds
        (None: unknown), ``elapsed`` seconds after it was acknowledged. ``hold``: the seconds the server says it
        holds a poll that comes before the finish (None: it does not); ``round_trip``: seconds the exchange that
        brought the expectation took."""
        if expected is None:
            return min(self.poll_initial * self.poll_factor ** max(poll_number - 1, 0), self.poll_max)
        if hold:
            due = expected - min(max(round_trip, 0.0), expected * self.poll_lead, hold / 2)
        else:
            due = expected * (1 + self.poll_margin)
        if poll_number <= 1 or elapsed < due:
            return max(due - elapsed, 0.0)
        close = max(self.poll_floor, expected * self.poll_close)
        return min(close * self.poll_factor ** max(poll_number - 2, 0), self.poll_max)


def latency_hint(item: Mapping[str, Any]) -> float | None:
    """The server's own guess of the seconds a task still needs (``expectedSeconds`` of a ``processing`` item), or
    None when it sent none or sent something that is not a finite number of seconds."""
    return _seconds(item.get(EXPECTED_SECONDS_FIELD))


def poll_wait_hint(item: Mapping[str, Any]) -> float | None:
    """How long the server holds a poll that comes before the expected finish (``pollWaitSeconds``), or None when
    it sent none (it answers at once, as the cloud does) or sent something that is not a finite number of seconds."""
    return _seconds(item.get(POLL_WAIT_FIELD))


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds to wait: delay-seconds (``"3"``) or an HTTP date; None when absent or
    unreadable (the client then backs off on its own)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
