"""``kandinsky-nb serve``'s HTTP face: the Runware REST protocol in front of any engine (the local GPU, or demo weights).

A notebook points at it by changing one URL (``RunwareBackend(base_url="http://gpu-box:8765")``, or
``RUNWARE_BASE_URL``); Runware's own SDK works against it too (``http_base_url="http://gpu-box:8765/v1"``).

What it speaks, as the cloud does: ``POST /v1`` with a JSON array of tasks (``imageInference`` with sync or async
delivery, ``getResponse``, ``imageUpload``, ``authentication``, ``ping``); Bearer-key or payload authentication;
answers ``{"data": [...]}`` and/or ``{"errors": [...]}`` with the cloud's error objects and HTTP statuses; a repeated
taskUUID is refused with ``conflictTaskUUID``, so a client's retry never generates twice. Images are served under
``/images/<imageUUID>.<ext>`` until their ``ttl`` passes. ``GET /`` is a health answer.

What a request costs before it is trusted (see the README's Security section): :mod:`.guard` refuses browsers'
cross-site requests and, on an open server, foreign Host headers, before anything is read. The key is checked
before the body is read when it comes in the ``Authorization`` header; a body without one (payload authentication,
an ``authentication`` task) is read only up to :data:`PRE_AUTH_BODY_BYTES`. Bodies are limited while they are read
(chunked ones too), and nothing of a request is recorded before its key is checked.

The wire format is :mod:`kandinsky_nb.protocol.server`; running tasks is :mod:`.runner`, keeping them
:mod:`.store`, sending results to webhooks :mod:`.delivery`. This module only turns HTTP into calls to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .. import spec
from ..backends.base import Backend
from ..errors import MissingDependencyError
from ..protocol.server import (
    Refusal,
    bearer_key,
    check_key,
    decode_body,
    envelope,
    media_not_found,
    missing_key,
    payload_too_large,
)
from ..types import WireError
from .delivery import Delivery
from .guard import BodyTooLarge, Guard, content_length, read_body
from .outbound import HostAllowList
from .runner import DEFAULT_POLL_WAIT, IMAGES_PATH, ServerState
from .store import TaskStore

__all__ = ["MAX_BODY_BYTES", "PRE_AUTH_BODY_BYTES", "create_app"]

log = logging.getLogger("kandinsky_nb.server")

MAX_BODY_BYTES = 64 * 1024 * 1024
# The most a caller without an Authorization header may make the server read (and parse) to find an
# ``authentication`` task in the body: enough for tasks that send images by UUID or URL, far too little to matter.
PRE_AUTH_BODY_BYTES = 64 * 1024


def create_app(
    backend: Backend,
    *,
    api_keys: Iterable[str] | None = None,
    max_concurrency: int = 1,
    public_url: str | None = None,
    sync_timeout: float = 600.0,
    store: TaskStore | None = None,
    delivery_hosts: HostAllowList | Iterable[str] = (),
    image_hosts: HostAllowList | Iterable[str] = (),
    loras: Mapping[str, str] | None = None,
    allowed_origins: Iterable[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    poll_wait: float = DEFAULT_POLL_WAIT,
) -> Any:
    """The Starlette app. ``api_keys``: the Bearer keys accepted (none: any key is accepted; the CLI then refuses to
    bind a non-loopback address, and the app answers only requests addressed to a loopback host). ``public_url``:
    the base of image URLs (default: the Host the client used). ``sync_timeout``: how long a sync request waits
    before answering ``status: processing`` (poll it then). ``store``: where tasks and images are kept (default:
    this process's memory). What clients may make the server reach, all empty by default: ``delivery_hosts`` for
    ``webhookURL``/``uploadEndpoint``, ``image_hosts`` for image-input URLs, ``loras`` (name -> file) for ``lora``.
    ``allowed_origins``: web origins whose pages may POST (none: browsers' cross-origin requests are refused).
    ``max_body_bytes``: the largest POST body read (chunked ones too); a larger one is answered 413.
    ``poll_wait``: how long a ``getResponse`` that arrives just before its job's expected finish is held for the
    result (announced as ``pollWaitSeconds``; 0 answers every poll at once).
    ``app.state.kandinsky`` is the :class:`~.runner.ServerState`."""
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.cors import CORSMiddleware
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError as exc:
        raise MissingDependencyError("kandinsky-nb serve", "server", exc.name) from exc

    state = ServerState(
        backend,
        api_keys=api_keys or (),
        store=store,
        max_concurrency=max_concurrency,
        sync_timeout=sync_timeout,
        public_url=public_url,
        delivery=Delivery(hosts=delivery_hosts),
        image_hosts=image_hosts,
        loras=loras,
        poll_wait=poll_wait,
    )

    def answer(data: list[dict[str, Any]], errors: list[WireError], *, close: bool = False) -> Response:
        status, body = envelope(data, errors)
        # close: the body was not read; closing is cheaper than draining what the client still sends.
        return JSONResponse(body, status_code=status, headers={"Connection": "close"} if close else None)

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "service": "kandinsky-nb serve",
                "model": spec.MODEL_ID,
                "engine": backend.name,
                "demo": backend.demo,
                "auth": "api key required" if state.api_keys else "open (loopback only)",
                # This replica's running jobs, not the store's count: anyone may ask, so the answer must cost
                # nothing (counting a shared store's tasks scans it) and say nothing of other users' work.
                "running": len(state.jobs),
            }
        )

    async def image(request: Request) -> Response:
        image_uuid = request.path_params["name"].rsplit(".", 1)[0]
        stored = await state.store.get_image(image_uuid)
        if stored is None:
            return answer([], [media_not_found(await state.store.why_missing(image_uuid))])
        return Response(stored.data, media_type=stored.mime, headers={"Cache-Control": "private, max-age=60"})

    async def tasks_endpoint(request: Request) -> Response:
        size = content_length(request.headers)
        if size is not None and size > max_body_bytes:
            return answer([], [payload_too_large(max_body_bytes)], close=True)
        authorization = request.headers.get("authorization")
        # Who is asked for a key: a keyed header is checked before the body is read (a wrong key costs no read);
        # without one, the key can only be in an authentication task, read from a small body only.
        payload_auth = bool(state.api_keys) and bearer_key(authorization) is None
        limit = min(PRE_AUTH_BODY_BYTES, max_body_bytes) if payload_auth else max_body_bytes
        raw = None
        try:
            owner = "" if payload_auth else check_key(authorization, [], state.api_keys)
            try:
                raw = await read_body(request.stream(), limit)
            except BodyTooLarge:
                if not payload_auth:
                    return answer([], [payload_too_large(max_body_bytes)], close=True)
                raise missing_key(
                    f" in the Authorization header, and the body is over {limit} bytes (an authentication task is "
                    "read only from smaller bodies)"
                ) from None
            if payload_auth:
                try:
                    tasks = decode_body(raw)
                except Refusal:
                    raise missing_key() from None  # no JSON, so no authentication task: the key is what is missing
                owner = check_key(None, tasks, state.api_keys)
            else:
                tasks = decode_body(raw)
        except Refusal as refusal:
            return answer([], refusal.errors, close=raw is None)
        state.record(tasks)
        await state.store.prune()
        base_url = state.public_url or str(request.base_url).rstrip("/")
        return answer(*await state.answer(tasks, base_url, owner))

    routes = [
        Route("/", health, methods=["GET"]),
        Route("/v1", tasks_endpoint, methods=["POST"]),
        Route("/v1/", tasks_endpoint, methods=["POST"]),
        Route(IMAGES_PATH + "/{name}", image, methods=["GET"]),
    ]
    origins = list(allowed_origins)
    middleware = [Middleware(Guard, open_server=not state.api_keys, allowed_origins=origins)]
    if origins:  # a web app the operator allowed also needs CORS answers (its JSON POSTs are preflighted)
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    app = Starlette(routes=routes, middleware=middleware)
    app.state.kandinsky = state
    if backend.demo:
        log.warning("kandinsky-nb serve runs DEMO weights: random weights, every image is noise.")
    return app
