"""The Runware cloud engine (or any server speaking its REST protocol, such as ``kandinsky-nb serve``).

``RunwareBackend`` drives :func:`kandinsky_nb.protocol.flow.conversation` (every decision, written once) with real
HTTP: ``httpx.Client`` for ``generate``/``resume`` and ``httpx.AsyncClient`` for ``agenerate``/``aresume``. The two
drivers below differ only by ``await``.

>>> backend = RunwareBackend()  # doctest: +SKIP  (key from RUNWARE_API_KEY)
>>> generation = backend.generate(ImageInferenceRequest(positivePrompt="a red fox in snow"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from pydantic import BaseModel

from .._version import __version__
from ..errors import ConfigurationError, KandinskyNBError
from ..protocol.flow import (
    Action,
    Conversation,
    Failure,
    Fetch,
    FlowConfig,
    Outcome,
    Post,
    Reply,
    Sleep,
    coalesce_polls,
    conversation,
    split_reply,
)
from ..protocol.policy import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_POLL_TIMEOUT,
    DEFAULT_TIMEOUT,
    RetryPolicy,
    retry_after_seconds,
)
from ..settings import ApiKey, runware_base_url
from ..settings import api_key as find_api_key
from ..types import GeneratedImage, Generation, ImageInferenceRequest
from .base import Backend

__all__ = ["RunwareBackend"]

log = logging.getLogger("kandinsky_nb.runware")

_NO_KEY = (
    "No Runware API key. Pass RunwareBackend(api_key=...) or set the RUNWARE_API_KEY environment variable "
    "(create a key at https://my.runware.ai/keys). For a local `kandinsky-nb serve` started without --api-key, any "
    "non-empty key works."
)


class RunwareBackend(Backend):
    """Kandinsky 5.0 Image Lite on Runware's REST API.

    Parameters
    ----------
    api_key:
        The key, else ``$RUNWARE_API_KEY``. Sent only as ``Authorization: Bearer`` to ``base_url``, never to image
        URLs, and never shown in reprs, logs or errors.
    base_url:
        A Runware-compatible server (``http://127.0.0.1:8765`` for ``kandinsky-nb serve``), else
        ``$RUNWARE_BASE_URL``, else Runware's API. Requests go to ``{base_url}/v1``.
    timeout:
        Seconds per HTTP call (also the cap on one image download).
    max_retries:
        Retries of a call that failed transiently (connection errors, timeouts, 408/429/5xx, retryable task codes),
        with exponential backoff and jitter, always with the same taskUUID. 0 disables retries.
    poll_timeout:
        Seconds an unfinished task (``deliveryMethod="async"``) is polled before :class:`PollTimeoutError`; the task
        stays on the server and ``resume(request)`` fetches it later.
    upload_inputs:
        Upload local image inputs (paths, bytes) once with ``imageUpload`` and send their UUIDs (True), or send them
        inline as data URIs (False).
    expected_latency:
        A function giving the seconds a request is expected to take (a session passes its fitted model,
        ``CostModel.seconds``), or None. Async polls aim at it when the server sends no latency hint of its own.
    transport, async_transport:
        httpx transports to use instead of the network (tests, proxies).

    Notes
    -----
    * ``includeCost`` is sent as ``true`` when a request leaves it unset, so every image carries the server's own
      price (the run log and cost analysis need it); ``includeCost=False`` is respected.
    * ``generate_many`` puts all tasks in ONE POST and never raises for a task: each slot holds its
      :class:`Generation` or the exception of that task (a refused key fills every slot with the same error).
    * ``Generation.details`` holds ``submits``, ``retries``, ``polls``, ``deliveryMethod`` and ``resumed``;
      ``Generation.demo`` is True when the server says its images come from demo weights.
    * Concurrent calls on one backend (``agenerate`` from many tasks, ``generate`` from many threads) share their
      ``getResponse`` polls: while one poll POST is on its way, the polls that fall due go together in the next one
      (one array of tasks), and each call gets its own tasks' answer. One round trip per wave of polls instead of one
      per task: fewer requests against the rate limit, and less of the client's time spent on HTTP.
    """

    name = "runware"

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        poll_timeout: float = DEFAULT_POLL_TIMEOUT,
        upload_inputs: bool = True,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        retry_policy: RetryPolicy | None = None,
        expected_latency: Callable[[ImageInferenceRequest], float | None] | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = find_api_key(api_key)
        if key is None:
            raise ConfigurationError(_NO_KEY)
        if max_retries is None or max_retries < 0:
            raise ConfigurationError(f"max_retries={max_retries!r} is invalid: pass 0 to disable retries, or more.")
        for name, seconds in (("timeout", timeout), ("poll_timeout", poll_timeout)):
            if seconds <= 0:
                raise ConfigurationError(
                    f"{name}={seconds!r} is invalid: it is a number of seconds above 0. Pass a positive number."
                )
        if max_download_bytes <= 0:
            raise ConfigurationError(
                f"max_download_bytes={max_download_bytes!r} is invalid: it is the largest image accepted, in bytes "
                f"(above 0). Pass a positive number (default {DEFAULT_MAX_DOWNLOAD_BYTES})."
            )
        self._key = key
        self.base_url = runware_base_url(base_url)
        self.endpoint = self.base_url + "/v1"
        policy = retry_policy or RetryPolicy()
        if retry_policy is None or max_retries != DEFAULT_MAX_RETRIES:  # an explicit max_retries wins
            policy = dataclasses.replace(policy, max_retries=max_retries)
        self.config = FlowConfig(
            timeout=timeout,
            poll_timeout=poll_timeout,
            policy=policy,
            max_download_bytes=max_download_bytes,
            engine=self.name,
            upload_inputs=upload_inputs,
            expected_latency=expected_latency,
        )
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._polls = _PollLine()
        self._apolls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncPollLine] = weakref.WeakKeyDictionary()
        # Content hash -> imageUUID of local image inputs already uploaded through this backend.
        self._uploaded: dict[str, str] = {}
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"RunwareBackend(base_url={self.base_url!r}, api_key='***', timeout={self.config.timeout:g}, max_retries={self.config.policy.max_retries})"

    # -- public API: sync ------------------------------------------------------------------------------------------
    def generate(self, request: ImageInferenceRequest) -> Generation:
        """Run one request and return its images. Raises the task's error (see :mod:`kandinsky_nb.errors`)."""
        return _one(self._drive(self._plan([request])))

    def generate_many(self, requests: Sequence[ImageInferenceRequest]) -> list[Generation | KandinskyNBError]:
        """Run several requests as ONE batch (one POST); each slot holds its Generation or the error of that task."""
        return self._drive(self._plan(requests))

    def resume(self, request: ImageInferenceRequest) -> Generation | None:
        """Fetch an earlier task's results by its taskUUID without submitting it again; None if the server does not
        know the task (then it is safe to submit). Raises PollTimeoutError if it is still running."""
        return _one_or_none(self._drive(self._plan([request], resume=True)))

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- public API: async -----------------------------------------------------------------------------------------
    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        return _one(await self._adrive(self._plan([request])))

    async def agenerate_many(self, requests: Sequence[ImageInferenceRequest]) -> list[Generation | KandinskyNBError]:
        return await self._adrive(self._plan(requests))

    async def aresume(self, request: ImageInferenceRequest) -> Generation | None:
        return _one_or_none(await self._adrive(self._plan([request], resume=True)))

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self.close()

    # -- the conversation and its two drivers ----------------------------------------------------------------------
    def _plan(self, requests: Sequence[ImageInferenceRequest], *, resume: bool = False) -> Conversation:
        for request in requests:
            if not isinstance(request, ImageInferenceRequest):
                raise TypeError(f"expected an ImageInferenceRequest, got {type(request).__name__}")
        return conversation(
            list(requests), config=self.config, upload_cache=self._uploaded, resume=resume, rng=self._rng
        )

    def _drive(self, flow: Conversation) -> list[Any]:
        try:
            action = next(flow)
            while True:
                action = flow.send(self._perform(action))
        except StopIteration as finished:
            return self._redacted(finished.value)

    async def _adrive(self, flow: Conversation) -> list[Any]:
        try:
            action = next(flow)
            while True:
                action = flow.send(await self._aperform(action))
        except StopIteration as finished:
            return self._redacted(finished.value)

    def _redacted(self, outcomes: list[Any]) -> list[Any]:
        """The outcomes with the key blanked out of everything a server could have echoed it into: the parsed text
        of errors (message, body, wire error, notes) and the result items the run log keeps. Image bytes are never
        touched."""
        key = self._key
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                _redact_error(outcome, key)
            elif isinstance(outcome, Generation):
                outcome.response = key.redact_data(outcome.response)
                outcome.details = key.redact_data(outcome.details)
                outcome.images = [_redact_image(image, key) for image in outcome.images]
        return outcomes

    def _perform(self, action: Action) -> Outcome:
        if isinstance(action, Post) and action.purpose == "poll":
            return self._polls.post(action, self._send)
        return self._send(action)

    def _send(self, action: Action) -> Outcome:
        _log_action(action, self._key)
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            return None
        client = self._sync_client()
        try:
            if isinstance(action, Post):
                response = client.post(self.endpoint, json=action.tasks, headers=self._auth(), timeout=action.timeout)
                return self._reply(response.status_code, response.content, response.headers)
            with client.stream(
                "GET", action.url, timeout=action.timeout, headers=_IMAGE_ACCEPT, follow_redirects=True
            ) as response:
                body, too_large = bytearray(), False
                for chunk in response.iter_bytes():
                    body += chunk
                    if too_large := len(body) > action.max_bytes:
                        break
                return _fetched(response, bytes(body), too_large)
        except httpx.TimeoutException as exc:
            return Failure(_reason(exc), timed_out=True)
        except httpx.TransportError as exc:
            return Failure(_reason(exc))

    async def _aperform(self, action: Action) -> Outcome:
        if isinstance(action, Post) and action.purpose == "poll":
            return await self._async_polls().post(action, self._asend)
        return await self._asend(action)

    async def _asend(self, action: Action) -> Outcome:
        _log_action(action, self._key)
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
            return None
        client = self._async_client()
        try:
            if isinstance(action, Post):
                response = await client.post(
                    self.endpoint, json=action.tasks, headers=self._auth(), timeout=action.timeout
                )
                return self._reply(response.status_code, response.content, response.headers)
            async with client.stream(
                "GET", action.url, timeout=action.timeout, headers=_IMAGE_ACCEPT, follow_redirects=True
            ) as response:
                body, too_large = bytearray(), False
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if too_large := len(body) > action.max_bytes:
                        break
                return _fetched(response, bytes(body), too_large)
        except httpx.TimeoutException as exc:
            return Failure(_reason(exc), timed_out=True)
        except httpx.TransportError as exc:
            return Failure(_reason(exc))

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"}

    def _reply(self, status: int, content: bytes, headers: httpx.Headers) -> Reply:
        # The body goes to the conversation exactly as received: blanking the key out of raw bytes corrupts answers
        # whenever the key is short ("k" is inside "taskUUID"). The key is taken out of what the answers BECAME
        # (errors and result items, after parsing), in _redacted.
        retry_after = retry_after_seconds(headers.get("retry-after"))
        return Reply(status, content, headers.get("content-type", ""), retry_after=retry_after)

    def _headers(self) -> dict[str, str]:
        return {"User-Agent": f"kandinsky-nb/{__version__}", "Accept": "application/json"}

    def _sync_client(self) -> httpx.Client:
        # Sweeps call the sync twin from several threads at once: one lock, so they share one client (and its
        # connection pool) instead of each making one and leaking the others' sockets.
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    transport=self._transport, timeout=self.config.timeout, headers=self._headers()
                )
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            # An AsyncClient's pooled connections belong to the loop that opened them (Jupyter keeps one loop;
            # asyncio.run() makes a new one each time).
            self._aclient = httpx.AsyncClient(
                transport=self._async_transport, timeout=self.config.timeout, headers=self._headers()
            )
            self._aclient_loop = loop
        return self._aclient

    def _async_polls(self) -> _AsyncPollLine:
        # One line per event loop (futures belong to one loop); threads that each run a loop share the backend.
        loop = asyncio.get_running_loop()
        with self._client_lock:
            line = self._apolls.get(loop)
            if line is None:
                line = self._apolls[loop] = _AsyncPollLine(loop)
        return line


class _PollLine:
    """The ``getResponse`` polls of the threads that share one backend, in a line (group commit): at most one poll
    POST is on its way; the polls that fall due meanwhile wait and go together in the next one. The thread whose
    poll opens a POST sends it and hands each waiting thread its own part of the answer (``split_reply``), then
    passes the line to the first thread left waiting. A lone caller is never delayed: its poll goes at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Seat] = []
        self._busy = False

    def post(self, action: Post, send: Callable[[Post], Outcome]) -> Outcome:
        seat = _Seat(action)
        with self._lock:
            self._waiting.append(seat)
            leads, self._busy = not self._busy, True
        if not leads:
            try:
                seat.called.wait()
            except BaseException:  # interrupted while waiting (Ctrl-C in a notebook): leave the line to the others
                self._leave(seat)
                raise
            if seat.answered:
                return seat.take()
        # This thread's turn: its poll, and every one that fell due since, in one POST. Whatever happens from here
        # (an interrupt included), every caller in the batch gets an answer and the line passes on.
        batch: list[_Seat] = []
        try:
            with self._lock:
                batch, self._waiting = self._waiting, []
            posts = [waiting.action for waiting in batch]
            try:
                outcomes = split_reply(send(coalesce_polls(posts)), posts)
            except Exception as exc:  # not an answer (those are Replies and Failures): every caller in it raises it
                for waiting in batch:
                    waiting.fail(exc)
            else:
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    waiting.answer(outcome)
        finally:
            # Interrupted before the answers were handed out: to the others their poll failed, and they poll again
            # (answer() leaves a caller already answered as it is).
            for waiting in batch:
                waiting.answer(Failure("the poll was interrupted"))
            if seat not in batch:  # interrupted before taking the batch: this caller leaves the line too
                with self._lock:
                    if seat in self._waiting:
                        self._waiting.remove(seat)
            self._pass_on()
        return seat.take()

    def _leave(self, seat: _Seat) -> None:
        with self._lock:
            if seat in self._waiting:
                self._waiting.remove(seat)
            if not (seat.called.is_set() and not seat.answered):
                return
        self._pass_on()  # it had just been given its turn

    def _pass_on(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting[0].called.set()  # the next thread in line sends the next POST
            else:
                self._busy = False


class _Seat:
    """One thread's poll waiting in a :class:`_PollLine`: ``called`` is set when its answer is in, or when it is its
    turn to send."""

    def __init__(self, action: Post) -> None:
        self.action = action
        self.called = threading.Event()
        self.answered = False
        self.outcome: Outcome = None
        self.error: BaseException | None = None

    def answer(self, outcome: Outcome) -> None:
        if not self.answered:
            self.outcome, self.answered = outcome, True
            self.called.set()

    def fail(self, error: BaseException) -> None:
        if not self.answered:
            self.error, self.answered = error, True
            self.called.set()

    def take(self) -> Outcome:
        if self.error is not None:
            raise self.error
        return self.outcome


class _AsyncPollLine:
    """:class:`_PollLine` for the tasks of one event loop: at most one poll POST is on its way, sent by a task of
    its own (a caller that is cancelled does not cancel the others' answers); the polls that fall due meanwhile go
    together in the next one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: list[tuple[Post, asyncio.Future[Outcome]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def post(self, action: Post, send: Callable[[Post], Awaitable[Outcome]]) -> Outcome:
        answer: asyncio.Future[Outcome] = self.loop.create_future()
        self._waiting.append((action, answer))
        if self._sender is None:
            self._sender = self.loop.create_task(self._send_all(send))
        return await answer

    async def _send_all(self, send: Callable[[Post], Awaitable[Outcome]]) -> None:
        batch: list[tuple[Post, asyncio.Future[Outcome]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                posts = [post for post, _ in batch]
                try:
                    outcomes = split_reply(await send(coalesce_polls(posts)), posts)
                except Exception as exc:  # not an answer (those are Replies and Failures): every caller raises it
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), outcome in zip(batch, outcomes, strict=True):
                    if not answer.done():  # its caller may have been cancelled
                        answer.set_result(outcome)
        finally:
            self._sender = None
            for _, answer in [*batch, *self._waiting]:  # cancelled itself (the loop is closing): so are they
                if not answer.done():
                    answer.cancel()
            self._waiting = []


# Image downloads go to a CDN (or the server's /images): ask for an image, and never send the API key there.
_IMAGE_ACCEPT = {"Accept": "image/*, */*;q=0.5"}


def _fetched(response: httpx.Response, body: bytes, too_large: bool) -> Reply:
    return Reply(response.status_code, body, response.headers.get("content-type", ""), too_large=too_large)


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _redact_error(error: BaseException, key: ApiKey, depth: int = 0) -> None:
    """Blank the key out of an exception's message, attributes and notes, and of the exceptions chained to it."""
    error.args = tuple(key.redact_data(arg) if isinstance(arg, str | dict | list) else arg for arg in error.args)
    for name, value in list(vars(error).items()):
        if name.startswith("__"):
            continue
        vars(error)[name] = _redact_value(value, key)
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        error.__notes__ = [key.redact(note) if isinstance(note, str) else note for note in notes]
    for chained in (error.__cause__, error.__context__):
        if chained is not None and chained is not error and depth < 4:
            _redact_error(chained, key, depth + 1)


def _redact_value(value: Any, key: ApiKey) -> Any:
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, key) for v in value)
    if isinstance(value, str | dict):
        return key.redact_data(value)
    if isinstance(value, BaseModel):  # a WireError or result: rebuilt from its redacted fields
        dumped = value.model_dump()
        redacted = key.redact_data(dumped)
        return value if redacted == dumped else type(value).model_validate(redacted)
    return value


def _redact_image(image: GeneratedImage, key: ApiKey) -> GeneratedImage:
    result = _redact_value(image.result, key)
    return image if result is image.result else dataclasses.replace(image, result=result)


def _log_action(action: Action, key: ApiKey) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    if isinstance(action, Post):
        uuids = ", ".join(str(task.get("taskUUID")) for task in action.tasks)
        log.debug("POST %s of %d task(s): %s", action.purpose, len(action.tasks), uuids)
    elif isinstance(action, Fetch):
        log.debug("GET image %s", key.redact(action.url))
    else:
        log.debug("waiting %.2fs before the next call", action.seconds)


def _one(outcomes: list[Any]) -> Generation:
    outcome = _one_or_none(outcomes)
    assert outcome is not None
    return outcome


def _one_or_none(outcomes: list[Any]) -> Generation | None:
    (outcome,) = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
