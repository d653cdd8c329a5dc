"""The Runware wire protocol as pure functions: no sockets, no clock reads outside injected ones, no logging.

* :mod:`.wire`      request -> task objects (``imageInference``, ``imageUpload``, ``getResponse``)
* :mod:`.envelope`  every known response shape -> result items and :class:`~kandinsky_nb.types.WireError` items
* :mod:`.failures`  HTTP status / task error code -> the toolkit's exception, with the fix in its message
* :mod:`.policy`    retry, backoff and polling decisions
* :mod:`.flow`      the whole conversation as a sans-I/O generator that the sync and async backends drive
"""

from .envelope import Envelope, MalformedResponse, parse_envelope
from .failures import redact, status_error, task_error
from .flow import Failure, Fetch, FlowConfig, Post, Reply, Sleep, classify, conversation, is_terminal_item
from .policy import RetryPolicy, code_category, is_retryable_code, is_retryable_status
from .wire import image_upload_task, inference_task, poll_task

__all__ = [
    "Envelope",
    "Failure",
    "Fetch",
    "FlowConfig",
    "MalformedResponse",
    "Post",
    "Reply",
    "RetryPolicy",
    "Sleep",
    "classify",
    "code_category",
    "conversation",
    "image_upload_task",
    "inference_task",
    "is_retryable_code",
    "is_retryable_status",
    "is_terminal_item",
    "parse_envelope",
    "poll_task",
    "redact",
    "status_error",
    "task_error",
]
