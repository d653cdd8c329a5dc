"""``kandinsky-nb serve``'s HTTP face: the Runware REST protocol in front of any engine (the local GPU, or demo weights).

A notebook points at it by changing one URL (``RunwareBackend(base_url="http://gpu-box:8765")``, or
``RUNWARE_BASE_URL``); Runware's own SDK works against it too (``http_base_url="http://gpu-box:8765/v1"``).

What it speaks, as the cloud does: ``POST /v1`` with a JSON array of tasks (``imageInference`` with sync or async
delivery, ``getResponse``, ``imageUpload``, ``authentication``, ``ping``); Bearer-key or payload authentication;
answers ``{"data": [...]}`` and/or ``{"errors": [...]}`` with the cloud's error objects and HTTP statuses; a repeated
taskUUID is refused with ``conflictTaskUUID``, so a client's retry never generates twice. Images are served under
``/images/<imageUUID>.<ext>`` until their ``ttl`` passes. ``GET /`` is a health answer.

The wire format is :mod:`kandinsky_nb.protocol.server`; running tasks is :mod:`.runner`, keeping them
:mod:`.store`, sending results to webhooks :mod:`.delivery`. This module only turns HTTP into calls to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .. import spec
from ..backends.base import Backend
from ..errors import MissingDependencyError
from ..protocol.server import Refusal, check_key, decode_body, envelope, media_not_found, payload_too_large
from ..types import WireError
from .runner import IMAGES_PATH, ServerState
from .store import TaskStore

__all__ = ["MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("kandinsky_nb.server")

MAX_BODY_BYTES = 64 * 1024 * 1024


def create_app(
    backend: Backend,
    *,
    api_keys: Iterable[str] | None = None,
    max_concurrency: int = 1,
    public_url: str | None = None,
    sync_timeout: float = 600.0,
    store: TaskStore | None = None,
) -> Any:
    """The Starlette app. ``api_keys``: the Bearer keys accepted (none: any key is accepted; the CLI then refuses to
    bind a non-loopback address). ``public_url``: the base of image URLs (default: the Host the client used).
    ``sync_timeout``: how long a sync request waits before answering ``status: processing`` (poll it then).
    ``store``: where tasks and images are kept (default: this process's memory). ``app.state.kandinsky`` is the
    :class:`~.runner.ServerState`."""
    try:
        from starlette.applications import Starlette
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
    )

    def answer(data: list[dict[str, Any]], errors: list[WireError]) -> Response:
        status, body = envelope(data, errors)
        return JSONResponse(body, status_code=status)

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "service": "kandinsky-nb serve",
                "model": spec.MODEL_ID,
                "engine": backend.name,
                "demo": backend.demo,
                "auth": "api key required" if state.api_keys else "open (loopback only)",
                "tasks": await state.store.count_tasks(),
            }
        )

    async def image(request: Request) -> Response:
        stored = await state.store.get_image(request.path_params["name"].rsplit(".", 1)[0])
        if stored is None:
            return answer([], [media_not_found()])
        return Response(stored.data, media_type=stored.mime, headers={"Cache-Control": "private, max-age=60"})

    async def tasks_endpoint(request: Request) -> Response:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return answer([], [payload_too_large(MAX_BODY_BYTES)])
        try:
            tasks = decode_body(await request.body())
            state.record(tasks)
            await state.store.prune()
            check_key(request.headers.get("authorization"), tasks, state.api_keys)
        except Refusal as refusal:
            return answer([], refusal.errors)
        base_url = state.public_url or str(request.base_url).rstrip("/")
        return answer(*await state.answer(tasks, base_url))

    routes = [
        Route("/", health, methods=["GET"]),
        Route("/v1", tasks_endpoint, methods=["POST"]),
        Route("/v1/", tasks_endpoint, methods=["POST"]),
        Route(IMAGES_PATH + "/{name}", image, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.kandinsky = state
    if backend.demo:
        log.warning("kandinsky-nb serve runs DEMO weights: random weights, every image is noise.")
    return app
