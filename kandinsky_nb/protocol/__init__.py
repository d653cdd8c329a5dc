"""The Runware wire protocol as pure functions, both roles (as h11 holds both ends of HTTP): no sockets, no clock
reads outside injected ones, no logging.

Client role (:class:`~kandinsky_nb.backends.runware.RunwareBackend` drives it):

* :mod:`.wire`      request -> task objects (``imageInference``, ``imageUpload``, ``getResponse``)
* :mod:`.envelope`  every known response shape -> result items and :class:`~kandinsky_nb.types.WireError` items
* :mod:`.failures`  HTTP status / task error code -> the toolkit's exception, with the fix in its message
* :mod:`.policy`    error-code categories and their HTTP statuses; retry, backoff and polling decisions
* :mod:`.flow`      the whole conversation as a sans-I/O generator that the sync and async backends drive

Server role (:mod:`kandinsky_nb.server` is the I/O around it):

* :mod:`.server`    a POST body -> tasks, error objects with the codes and statuses the client classifies, result
  items and envelopes, ``getResponse``

Both roles read the same tables (task types in :mod:`.wire`, item fields and statuses in :mod:`.envelope`, codes and
statuses in :mod:`.policy`), so the halves cannot drift apart.
"""

from .envelope import Envelope, MalformedResponse, is_terminal_item, parse_envelope
from .failures import status_error, task_error
from .flow import Failure, Fetch, FlowConfig, Post, Reply, Sleep, classify, conversation
from .policy import RetryPolicy, code_category, is_retryable_code, is_retryable_status, status_for_code
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
    "status_error",
    "status_for_code",
    "task_error",
]
