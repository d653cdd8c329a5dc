"""The whole conversation with a Runware server, written once as a sans-I/O generator.

:func:`conversation` yields *actions* (:class:`Post` a task array, :class:`Fetch` an image URL, :class:`Sleep`) and
receives their *outcomes* (:class:`Reply` or :class:`Failure`); it returns one outcome per request: a
:class:`~kandinsky_nb.types.Generation`, the exception that task ended with, or None (``resume`` of a task the server
does not know). The sync and async backends drive it with ``time.sleep``/``httpx.Client`` and
``asyncio.sleep``/``httpx.AsyncClient``; every decision (batching, retries with the same taskUUID,
``conflictTaskUUID`` -> polling, cumulative poll results de-duplicated by imageUUID, the poll timeout, image decoding
and checks) lives here and is tested without a network.

Phases: upload local image inputs once (``imageUpload``) -> submit every task in ONE POST -> poll ``getResponse`` for
tasks that are not complete yet (async delivery, webhooks, or a retry that met ``conflictTaskUUID``) -> turn result
items into image bytes (inline base64/data URI, or a download of ``imageURL``).
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Callable, Generator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from .. import spec
from .._media import decode_data_uri
from ..errors import (
    APIError,
    FieldProblem,
    KandinskyNBError,
    PollTimeoutError,
    RequestValidationError,
    ResponseValidationError,
)
from ..types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult, WireError
from ..types.images import UnreadableImage, inspect_image
from .envelope import OUTPUT_FIELDS, Envelope, MalformedResponse, is_error_item, is_terminal_item, parse_envelope
from .failures import connection_error, malformed_response_error, status_error, task_error
from .policy import (
    CONFLICT_CODE,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_POLL_TIMEOUT,
    DEFAULT_TIMEOUT,
    RetryPolicy,
    is_not_found_code,
    is_retryable_code,
    is_retryable_status,
    latency_hint,
    poll_wait_hint,
)
from .wire import image_upload_task, images_to_upload, inference_task, poll_task

__all__ = [
    "Action",
    "Failure",
    "Fetch",
    "FlowConfig",
    "Outcome",
    "Post",
    "Reply",
    "Sleep",
    "Verdict",
    "classify",
    "coalesce_polls",
    "conversation",
    "decode_inline_image",
    "split_reply",
]


# -- actions the driver performs, and what it sends back -----------------------------------------------------------
@dataclass(frozen=True)
class Post:
    """POST this task array to ``{base_url}/v1`` with the API key."""

    tasks: list[dict[str, Any]]
    timeout: float
    purpose: Literal["upload", "submit", "poll"]


@dataclass(frozen=True)
class Fetch:
    """GET an image URL (without the API key), reading at most ``max_bytes`` + 1 bytes."""

    url: str
    timeout: float
    max_bytes: int


@dataclass(frozen=True)
class Sleep:
    seconds: float


Action = Post | Fetch | Sleep


@dataclass(frozen=True)
class Reply:
    """An HTTP answer. ``too_large``: the body passed the action's byte cap and was cut off. ``retry_after``: the
    server's ``Retry-After`` in seconds (read by :func:`~.policy.retry_after_seconds`), None when it sent none."""

    status: int
    content: bytes
    content_type: str = ""
    too_large: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class Failure:
    """No HTTP answer: refused, dropped, or timed out."""

    reason: str
    timed_out: bool = False


Outcome = Reply | Failure | None


@dataclass(frozen=True)
class FlowConfig:
    timeout: float = DEFAULT_TIMEOUT
    poll_timeout: float = DEFAULT_POLL_TIMEOUT
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    engine: str = "runware"
    # Upload local image inputs once (imageUpload) and send their UUIDs; False sends them inline as data URIs.
    upload_inputs: bool = True
    # Every result is decoded within this many pixels (width x height) before it counts as an image.
    max_result_pixels: int = spec.MAX_RESULT_PIXELS
    # Seconds a request is expected to take (a model fitted to earlier runs: CostModel.seconds), or None when
    # unknown. Polls aim at it when the server sends no hint of its own.
    expected_latency: Callable[[ImageInferenceRequest], float | None] | None = None


# -- several conversations' polls in one POST ----------------------------------------------------------------------
def coalesce_polls(posts: Sequence[Post]) -> Post:
    """One ``getResponse`` POST for the polls of several conversations that fall due together (the protocol takes an
    array of tasks): one HTTP round trip instead of one each. Its timeout is the longest of theirs.
    :func:`split_reply` cuts the answer back into one per conversation."""
    return Post([task for post in posts for task in post.tasks], max(post.timeout for post in posts), "poll")


def split_reply(outcome: Outcome, posts: Sequence[Post]) -> list[Outcome]:
    """The answer to a :func:`coalesce_polls` POST, as each of ``posts`` would have been answered alone: its own
    tasks' items and errors, with the errors that name no task (a whole-request failure) in every part. A part whose
    tasks the answer does not fault gets status 200 when the status was another part's error (a 404 for a task
    another conversation asked about must not fail this one); a status no task's error explains (429, 503) and its
    Retry-After stay in every part. A failure, or a body of another shape, goes to every part as it came."""
    if not isinstance(outcome, Reply) or len(posts) == 1:
        return [outcome for _ in posts]
    body = _json_or_none(outcome.content)
    if (
        not isinstance(body, dict)
        or not set(body) <= {"data", "errors"}
        or not all(isinstance(body.get(name, []), list) for name in ("data", "errors"))
    ):
        return [outcome for _ in posts]
    items, errors = body.get("data", []), body.get("errors", [])

    def named(entry: Any) -> Any:
        return entry.get("taskUUID") if isinstance(entry, dict) else None

    def failed(item: Any) -> bool:  # an error reported inside ``data``, as the envelope will read it
        return isinstance(item, dict) and is_error_item(item)

    unscoped = [error for error in errors if not named(error)]
    any_fault = bool(errors) or any(failed(item) for item in items)
    parts: list[Outcome] = []
    for post in posts:
        mine = {task.get("taskUUID") for task in post.tasks}
        own_items = [item for item in items if named(item) in mine or not named(item)]
        own_errors = [error for error in errors if named(error) in mine]
        faulted = bool(own_errors or unscoped or any(failed(item) for item in own_items)) or not any_fault
        part: dict[str, Any] = {}
        if own_items or not (own_errors or unscoped):
            part["data"] = own_items
        if own_errors or unscoped:
            part["errors"] = own_errors + unscoped
        parts.append(
            Reply(
                outcome.status if faulted else 200,
                json.dumps(part).encode(),
                outcome.content_type,
                retry_after=outcome.retry_after if faulted else None,
            )
        )
    return parts


# -- classifying one answer --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What an answer means: ``ok`` (an envelope to read per task), ``retry`` (transient: send the same tasks again)
    or ``fatal`` (the whole call failed and must not be repeated)."""

    kind: Literal["ok", "retry", "fatal"]
    envelope: Envelope = field(default_factory=Envelope)
    status: int = 0
    error: APIError | None = None
    retry_after: float | None = None  # seconds the server asked us to wait (429/503 Retry-After)


def classify(outcome: Outcome, *, task_uuid: str | None = None) -> Verdict:
    """Decide what one POST's outcome means. Errors inside a body are checked before the HTTP status, since a 200
    can carry ``errors`` and a 400 usually names the failing task."""
    if isinstance(outcome, Failure) or outcome is None:
        reason = outcome.reason if outcome else "no outcome"
        timed_out = bool(outcome and outcome.timed_out)
        return Verdict("retry", error=connection_error(reason, timed_out=timed_out, task_uuid=task_uuid))
    status = outcome.status
    try:
        envelope: Envelope | None = parse_envelope(outcome.content)
        problem = ""
    except MalformedResponse as exc:
        envelope, problem = None, str(exc)
    errors = envelope.errors if envelope else []
    body = _json_or_none(outcome.content)
    if is_retryable_status(status):
        error = status_error(status, errors, body=body, task_uuid=task_uuid)
        # The envelope is kept: a poll answered 500 may name the tasks that failed (and only those are done for).
        return Verdict("retry", envelope or Envelope(), status, error, retry_after=outcome.retry_after)
    if status in (401, 402, 403):
        return Verdict("fatal", status=status, error=status_error(status, errors, body=body, task_uuid=task_uuid))
    if envelope is None:
        if status >= 300:
            return Verdict("fatal", status=status, error=status_error(status, [], body=None, task_uuid=task_uuid))
        # A 2xx whose body is broken may still mean the server took the task: resend the same taskUUID; the server
        # answers conflictTaskUUID if it has it, and we poll.
        return Verdict("retry", status=status, error=malformed_response_error(problem, task_uuid=task_uuid))
    if status >= 300 and not envelope.errors:
        return Verdict("fatal", status=status, error=status_error(status, [], body=body, task_uuid=task_uuid))
    return Verdict("ok", envelope=envelope, status=status)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


# -- result items ------------------------------------------------------------------------------------------------
def _item_key(item: Mapping[str, Any]) -> str:
    for name in ("imageUUID", *OUTPUT_FIELDS.values()):
        value = item.get(name)
        if isinstance(value, str) and value:
            return f"{name}:{value}"
    return f"item:{id(item)}"


def decode_inline_image(item: Mapping[str, Any]) -> bytes | None:
    """The bytes of an image delivered inline (``imageBase64Data`` or ``imageDataURI``), else None.
    Raises ValueError when the inline text is not base64."""
    text, uri = item.get("imageBase64Data"), item.get("imageDataURI")
    try:
        if text:
            return base64.b64decode(text, validate=True)
        if uri:
            if not isinstance(uri, str) or not uri.startswith("data:") or ";base64," not in uri:
                raise ValueError("imageDataURI is not a base64 data URI")
            return decode_data_uri(uri)
    except binascii.Error as exc:
        raise ValueError(f"the inline image is not valid base64 ({exc})") from exc
    return None


# -- per-task bookkeeping -------------------------------------------------------------------------------------------
@dataclass
class _Task:
    request: ImageInferenceRequest
    phase: Literal["submit", "poll", "fetch", "done", "failed", "unknown"] = "submit"
    wire: dict[str, Any] | None = None
    sends: int = 0
    retries: int = 0
    polls: int = 0
    # Seconds from the acknowledgement to the expected finish (the server's hint, else the fitted model), or None.
    finish_s: float | None = None
    # With its hint, a server may say it holds polls: one that arrives up to ``hold_s`` seconds before the expected
    # finish is answered when the task finishes (None: answered at once, as the cloud does). ``round_trip``: seconds
    # the exchange that brought the hint took, about how long before the finish a poll must leave to be there.
    hold_s: float | None = None
    round_trip: float = 0.0
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_error: APIError | None = None
    error: KandinskyNBError | None = None
    generation: Generation | None = None

    @property
    def uuid(self) -> str:
        return self.request.taskUUID

    @property
    def expected(self) -> int:
        return int(self.request.effective("numberResults"))

    def ingest(self, items: list[dict[str, Any]], *, elapsed: float = 0.0, round_trip: float = 0.0) -> None:
        """Add finished items; polls are cumulative, so an image seen before (same imageUUID) is not added twice.
        A ``processing`` item's latency hint (seconds still needed, ``elapsed`` seconds into polling, in an answer
        that took ``round_trip`` seconds) moves the expected finish."""
        for item in items:
            if is_terminal_item(item):
                self.results.setdefault(_item_key(item), item)
            elif (hint := latency_hint(item)) is not None:
                self.finish_s = elapsed + hint
                self.hold_s, self.round_trip = poll_wait_hint(item), round_trip

    @property
    def complete(self) -> bool:
        return len(self.results) >= self.expected

    def fail(self, error: KandinskyNBError) -> None:
        self.phase, self.error = "failed", error


def _errors_for(task: _Task, envelope: Envelope) -> list[WireError]:
    """The errors that concern one task: those naming its taskUUID, else (when the answer holds nothing else for it)
    errors that name no task, which a server sends for a whole-request failure."""
    scoped = envelope.errors_for(task.uuid)
    if scoped:
        return scoped
    if envelope.unscoped_errors and not envelope.items_for(task.uuid):
        return envelope.unscoped_errors
    return []


# -- the conversation ----------------------------------------------------------------------------------------------
Conversation = Generator[Action, Outcome, list[Generation | KandinskyNBError | None]]


def conversation(
    requests: Sequence[ImageInferenceRequest],
    *,
    config: FlowConfig,
    upload_cache: MutableMapping[str, str] | None = None,
    resume: bool = False,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> Conversation:
    """Run ``requests`` to completion; one outcome per request, in order.

    ``upload_cache`` maps image content hashes to the imageUUIDs they were uploaded under (kept by the backend so an
    image is uploaded once). ``resume=True`` submits nothing: it polls each request's taskUUID and returns None for
    tasks the server does not know.
    """
    rng = rng or random.Random()
    start = clock()
    tasks = [_Task(request) for request in requests]
    cache = upload_cache if upload_cache is not None else {}
    if resume:
        for task in tasks:
            task.phase, task.sends = "poll", 1
    else:
        for task in tasks:
            if task.request.logged_inputs:
                task.fail(_logged_inputs_error(task.request))
        if config.upload_inputs:
            yield from _upload(tasks, config, cache, rng)
        for task in tasks:
            if task.phase == "submit":
                task.wire = inference_task(task.request, cache if config.upload_inputs else None)
                if config.expected_latency is not None:
                    task.finish_s = config.expected_latency(task.request)
    while True:
        yield from _submit(tasks, config, rng, clock)
        yield from _poll(tasks, config, rng, clock, resume=resume)
        again = [task for task in tasks if task.phase == "submit"]
        if not again:
            break
        # The server lost these tasks before they finished (a replica stopped): nothing was charged, so the same
        # taskUUIDs are sent again, after a backoff.
        yield Sleep(config.policy.backoff(max(task.retries for task in again), rng))
    for task in tasks:
        if task.phase == "fetch":
            yield from _collect_images(task, config, rng, latency=lambda: clock() - start, resumed=resume)
    outcomes: list[Generation | KandinskyNBError | None] = []
    for task in tasks:
        if task.phase == "done":
            outcomes.append(task.generation)
        elif task.phase == "unknown":
            outcomes.append(None)
        else:
            assert task.error is not None
            outcomes.append(task.error)
    return outcomes


def _logged_inputs_error(request: ImageInferenceRequest) -> RequestValidationError:
    """A request rebuilt from the run log names its image inputs by hash only: there is nothing to send."""
    problems = [
        FieldProblem(name, repr(ref), "the image itself (a path, bytes or PIL image)", ref.logged_message())
        for name, ref in request.logged_inputs
    ]
    return RequestValidationError(problems, hint="Pass the image inputs again (request.replace(seedImage=...)).")


def _upload(
    tasks: list[_Task], config: FlowConfig, cache: MutableMapping[str, str], rng: random.Random
) -> Generator[Action, Outcome, None]:
    needed: dict[str, bytes] = {}
    for task in tasks:
        if task.phase == "submit":
            needed.update(images_to_upload(task.request))
    waiting = {key: data for key, data in needed.items() if key not in cache}
    failed: dict[str, KandinskyNBError] = {}
    attempt = 0
    while waiting:
        # Fresh taskUUIDs on every attempt: an upload has no result to poll for, and storing an image twice is
        # harmless, so a retry must not be refused as a conflict.
        uploads = {key: image_upload_task(data) for key, data in waiting.items()}
        verdict = classify((yield Post(list(uploads.values()), config.timeout, "upload")))
        if verdict.kind == "ok":
            retry: dict[str, bytes] = {}
            for key, upload in uploads.items():
                errors = verdict.envelope.errors_for(upload["taskUUID"]) or verdict.envelope.unscoped_errors
                items = verdict.envelope.items_for(upload["taskUUID"])
                if not items and len(uploads) == 1:
                    items = verdict.envelope.items  # a server that leaves taskUUID out of a single answer
                image_uuid = next((i.get("imageUUID") for i in items if i.get("imageUUID")), None)
                if image_uuid:
                    cache[key] = str(image_uuid)
                elif errors and is_retryable_code(errors[0].code):
                    retry[key] = waiting[key]
                    failed[key] = task_error(errors, task_uuid=upload["taskUUID"], status=verdict.status)
                elif errors:
                    failed[key] = task_error(errors, task_uuid=upload["taskUUID"], status=verdict.status)
                else:
                    failed[key] = malformed_response_error("imageUpload answered without an imageUUID")
            waiting = retry
        elif verdict.kind == "fatal":
            assert verdict.error is not None
            failed.update(dict.fromkeys(waiting, verdict.error))
            waiting = {}
        else:
            assert verdict.error is not None
            failed.update(dict.fromkeys(waiting, verdict.error))
        if waiting:
            attempt += 1
            if attempt > config.policy.max_retries:
                break
            retry_after = verdict.retry_after if verdict.kind == "retry" else None
            yield Sleep(config.policy.backoff(attempt, rng, retry_after=retry_after))
    for task in tasks:
        if task.phase != "submit":
            continue
        for key in images_to_upload(task.request):
            if key not in cache:
                task.fail(failed.get(key) or malformed_response_error("an image input could not be uploaded"))
                break


def _submit(
    tasks: list[_Task], config: FlowConfig, rng: random.Random, clock: Callable[[], float]
) -> Generator[Action, Outcome, None]:
    pending = [task for task in tasks if task.phase == "submit"]
    while pending:
        for task in pending:
            task.sends += 1
        assert all(task.wire is not None for task in pending)
        sent = clock()
        outcome = yield Post([task.wire for task in pending if task.wire], config.timeout, "submit")
        round_trip = clock() - sent
        verdict = _batch_verdict(outcome, pending)
        if verdict.kind == "fatal":
            return
        again: list[_Task] = []
        if verdict.kind == "retry":
            for task in pending:
                task.last_error = _for_task(verdict.error, task)
            again = pending
        else:
            for task in pending:
                errors = _errors_for(task, verdict.envelope)
                if errors:
                    error = task_error(errors, task_uuid=task.uuid, status=verdict.status)
                    if errors[0].code == CONFLICT_CODE and task.sends > 1:
                        task.phase = "poll"  # our earlier attempt reached the server: wait for its results
                    elif is_retryable_code(errors[0].code):
                        task.last_error = error
                        again.append(task)
                    else:
                        task.fail(error)
                    continue
                task.ingest(verdict.envelope.items_for(task.uuid), round_trip=round_trip)
                task.phase = "fetch" if task.complete else "poll"
        pending = []
        for task in again:
            if task.retries >= config.policy.max_retries:
                assert task.last_error is not None
                task.fail(task.last_error)
            else:
                task.retries += 1
                pending.append(task)
        if pending:
            retry_after = verdict.retry_after if verdict.kind == "retry" else None
            yield Sleep(config.policy.backoff(max(task.retries for task in pending), rng, retry_after=retry_after))


def _batch_verdict(outcome: Outcome, batch: list[_Task]) -> Verdict:
    """Classify the answer to a batch; a fatal one fails every task of the batch, each with its own UUID."""
    verdict = classify(outcome, task_uuid=batch[0].uuid if len(batch) == 1 else None)
    if verdict.kind == "fatal":
        for task in batch:
            task.fail(_for_task(verdict.error, task))
    return verdict


def _for_task(error: APIError | None, task: _Task) -> APIError:
    """The batch-wide error, labelled with this task's UUID (each slot gets its own exception object)."""
    assert error is not None
    if error.task_uuid == task.uuid:
        return error
    # Exceptions with keyword-only arguments do not survive copy.copy; clone by hand so every slot names its task.
    clone = type(error).__new__(type(error))
    clone.__dict__.update(error.__dict__)
    clone.args = error.args
    clone.task_uuid = task.uuid
    return clone


def _poll(
    tasks: list[_Task], config: FlowConfig, rng: random.Random, clock: Callable[[], float], *, resume: bool
) -> Generator[Action, Outcome, None]:
    """Poll ``getResponse`` for every task in the poll phase, each when it is due (see ``RetryPolicy.poll_delay``):
    tasks due within ``poll_floor`` of each other share one POST. A transient failure (429 and 5xx included) waits
    for the backoff or the server's Retry-After, whichever is longer. A task that the server reports failed with a
    retryable code (its replica stopped, say) goes back to ``submit``, with the same taskUUID."""
    polling = [task for task in tasks if task.phase == "poll"]
    if not polling:
        return
    policy = config.policy
    started = clock()
    transient_rounds = 0
    last_transient: APIError | None = None
    retry_after: float | None = None
    while polling:
        elapsed = clock() - started
        remaining = config.poll_timeout - elapsed
        if remaining <= 0:
            break
        waits = [_poll_wait(task, policy, elapsed, resume=resume) for task in polling]
        delay = min(waits)
        if last_transient is not None:
            delay = max(delay, policy.backoff(min(transient_rounds, 6), rng, retry_after=retry_after))
        if delay:
            yield Sleep(min(delay, remaining))
        due = [task for task, wait in zip(polling, waits, strict=True) if wait <= delay + policy.poll_floor]
        sent = clock()
        elapsed = sent - started
        remaining = config.poll_timeout - elapsed
        for task in due:
            task.polls += 1
        outcome = yield Post([poll_task(task.uuid) for task in due], min(config.timeout, max(remaining, 1.0)), "poll")
        round_trip = clock() - sent
        verdict = _batch_verdict(outcome, due)
        if verdict.kind == "fatal":
            return
        if verdict.kind == "retry":
            # A task the answer names has failed (a 500 for an engine failure); the others were not answered:
            # keep polling them until the poll timeout, they are not lost.
            failed = [task for task in due if verdict.envelope.errors_for(task.uuid)]
            if len(failed) < len(due):
                transient_rounds += 1
                last_transient, retry_after = verdict.error, verdict.retry_after
            due = failed
        else:
            transient_rounds, last_transient, retry_after = 0, None, None
        for task in due:
            errors = _errors_for(task, verdict.envelope)
            if errors:
                code = errors[0].code
                if resume and is_not_found_code(code) and not task.results:
                    task.phase = "unknown"
                elif not resume and is_retryable_code(code) and task.retries < policy.max_retries:
                    task.retries += 1
                    task.last_error = task_error(errors, task_uuid=task.uuid, status=verdict.status)
                    task.phase = "submit"
                else:
                    task.fail(task_error(errors, task_uuid=task.uuid, status=verdict.status))
                continue
            task.ingest(verdict.envelope.items_for(task.uuid), elapsed=elapsed, round_trip=round_trip)
            if task.complete:
                task.phase = "fetch"
        polling = [task for task in polling if task.phase == "poll"]
    for task in polling:
        seen = f"; {len(task.results)} of {task.expected} images had arrived" if task.results else ""
        cause = f"; the last poll failed: {last_transient}" if last_transient else ""
        task.fail(
            PollTimeoutError(
                f"Task {task.uuid} did not finish within poll_timeout={config.poll_timeout:g}s{seen}{cause}. It may "
                "still finish on the server: call backend.resume(request) (or aresume) later to fetch its results "
                "without paying again, or raise poll_timeout=.",
                task_uuid=task.uuid,
            )
        )


def _poll_wait(task: _Task, policy: RetryPolicy, elapsed: float, *, resume: bool) -> float:
    """Seconds until this task's next poll is due, ``elapsed`` seconds into the poll phase."""
    if resume and task.polls == 0:
        return 0.0  # a resumed task may have finished long ago: ask at once
    return policy.poll_delay(
        task.polls + 1, expected=task.finish_s, elapsed=elapsed, hold=task.hold_s, round_trip=task.round_trip
    )


def _collect_images(
    task: _Task, config: FlowConfig, rng: random.Random, *, latency: Callable[[], float], resumed: bool
) -> Generator[Action, Outcome, None]:
    images: list[GeneratedImage] = []
    for item in task.results.values():
        try:
            result = ImageInferenceResult.model_validate(item)
        except pydantic.ValidationError as exc:
            task.fail(malformed_response_error(f"a result item has wrong field types ({exc})", task_uuid=task.uuid))
            return
        try:
            data = decode_inline_image(item)
        except ValueError as exc:
            task.fail(malformed_response_error(str(exc), task_uuid=task.uuid))
            return
        if data is None and result.imageURL:
            fetched = yield from _download(result.imageURL, task, config, rng)
            if isinstance(fetched, KandinskyNBError):
                task.fail(fetched)
                return
            data = fetched
        if data is None:
            task.fail(
                malformed_response_error(
                    "a result carried no image (no imageURL, base64 or data URI)", task_uuid=task.uuid
                )
            )
            return
        try:
            inspect_image(data, max_pixels=config.max_result_pixels, what=f"result {len(images) + 1}")
        except UnreadableImage as exc:
            task.fail(
                ResponseValidationError(
                    f"Task {task.uuid} failed: {exc}. The server's answer is not a usable image, so nothing is kept "
                    "as a result. Run the request again (request.replace()), or check the server at the base URL.",
                    task_uuid=task.uuid,
                )
            )
            return
        images.append(GeneratedImage(result=result, data=data))
    items = list(task.results.values())
    delivery = task.request.effective("deliveryMethod")
    task.generation = Generation(
        request=task.request,
        images=images,
        engine=config.engine,
        latency_s=latency(),
        demo=any(item.get("demo") is True for item in items),
        response=items,
        details={
            "submits": task.sends,
            "retries": task.retries,
            "polls": task.polls,
            "deliveryMethod": delivery,
            "resumed": resumed,
        },
    )
    task.phase = "done"


def _download(
    url: str, task: _Task, config: FlowConfig, rng: random.Random
) -> Generator[Action, Outcome, bytes | KandinskyNBError]:
    attempt = 0
    while True:
        outcome = yield Fetch(url, config.timeout, config.max_download_bytes)
        problem: KandinskyNBError | None = None
        transient = False
        if isinstance(outcome, Reply) and outcome.status == 200:
            if outcome.too_large:
                return ResponseValidationError(
                    f"The image at {url} is larger than max_download_bytes={config.max_download_bytes}; it was not "
                    "downloaded. Raise max_download_bytes= if the image is genuine.",
                    task_uuid=task.uuid,
                )
            kind = outcome.content_type.split(";")[0].strip().lower()
            if kind and not (kind.startswith("image/") or kind in ("application/octet-stream", "binary/octet-stream")):
                return ResponseValidationError(
                    f"The image URL {url} answered with content type {kind!r}, not an image. Check that the URL "
                    "has not expired (ttl) and fetch it again with backend.resume(request).",
                    task_uuid=task.uuid,
                )
            return outcome.content  # decoded and checked with the inline images, in _collect_images
        if isinstance(outcome, Reply):
            transient = is_retryable_status(outcome.status)
            problem = ResponseValidationError(
                f"Downloading the image at {url} failed with HTTP {outcome.status}. If the URL expired (ttl), run "
                "the request again; otherwise retry later.",
                task_uuid=task.uuid,
            )
        else:
            transient = True
            problem = connection_error(
                outcome.reason if outcome else "no outcome",
                timed_out=bool(outcome and outcome.timed_out),
                task_uuid=task.uuid,
            )
        attempt += 1
        if not transient or attempt > config.policy.max_retries:
            return problem
        yield Sleep(config.policy.backoff(attempt, rng))
