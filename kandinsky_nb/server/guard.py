"""What is refused before a request costs the server anything: browsers' cross-site requests, a Host header that
is not this machine's on an open server (DNS rebinding), bodies over the limit (streamed ones too, while they are
read), and any fault of the server's own as a documented error object instead of a traceback page.

The decisions are plain functions of headers (:func:`cross_site_problem`, :func:`host_problem`); :class:`Guard` is
the ASGI middleware that applies them to every request, and :func:`read_body` reads a body within a limit.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..protocol.server import envelope, forbidden, internal_error
from ..types import WireError
from .runner import incident_id

__all__ = ["BodyTooLarge", "Guard", "content_length", "cross_site_problem", "host_problem", "read_body"]

log = logging.getLogger("kandinsky_nb.server")

# Sec-Fetch-Site values of requests a web page on another site did not make: the server's own pages (same-origin)
# and a user typing the URL or a non-browser client (none).
_SAME_ORIGIN_FETCHES = frozenset({"same-origin", "none"})
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _host_name(netloc: str) -> str:
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


def cross_site_problem(headers: Mapping[str, str], *, allowed_origins: Iterable[str] = ()) -> str | None:
    """Why a state-changing request (POST) must be refused as a browser's cross-site request, or None.

    As Jupyter server does for its API: a request whose ``Origin`` is not the origin it was sent to (its ``Host``)
    is refused unless the operator allowed that origin; so is one a browser marks ``Sec-Fetch-Site: cross-site`` or
    ``same-site`` (another port of the same machine is another origin). Clients that are not browsers send
    neither header. A browser's "simple" request (a form, or ``text/plain`` from ``fetch``) reaches the server
    without a CORS preflight, so the check must be here, not in CORS headers."""
    origin = headers.get("origin")
    if origin is not None and origin in set(allowed_origins):
        return None
    if origin is not None:
        host = headers.get("host", "")
        origin_netloc = urlsplit(origin).netloc if origin != "null" else None
        if origin_netloc is None or origin_netloc.lower() != host.lower():
            return (
                f"Cross-origin request refused: a web page at {origin} may not use this server. Call it from code "
                "(a notebook, the SDK, curl), or have the operator allow that origin (kandinsky-nb serve "
                "--allow-origin)."
            )
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_ORIGIN_FETCHES:
        return (
            f"Cross-site request refused (Sec-Fetch-Site: {fetch_site}): a web page on another site may not use this "
            "server. Call it from code (a notebook, the SDK, curl)."
        )
    return None


def host_problem(host: str | None, *, open_server: bool) -> str | None:
    """Why a request to an open (keyless, loopback) server must be refused for its ``Host`` header, or None.

    A web page can make its own host name resolve to 127.0.0.1 (DNS rebinding); its requests are then same-origin
    for the browser and carry no key, which an open server does not ask for. As Jupyter server does when it listens
    on loopback, an open server answers only requests addressed to a loopback name or address."""
    if not open_server:
        return None
    name = _host_name(host or "")
    if name in _LOCAL_NAMES:
        return None
    try:
        if ipaddress.ip_address(name.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"Host {host!r} refused: this server has no API key, so it answers only requests addressed to localhost "
        "or a loopback address. Use http://127.0.0.1:PORT, or start it with --api-key."
    )


def content_length(headers: Mapping[str, str]) -> int | None:
    """The declared body size, or None when not declared (chunked) or not a number."""
    value = headers.get("content-length")
    return int(value) if value and value.isdigit() else None


class BodyTooLarge(Exception):
    """The body is longer than the limit it was read with (raised as soon as it is, not after reading it all)."""


async def read_body(receive: Any, limit: int) -> bytes:
    """The request body from an ASGI ``receive`` (or a Starlette ``Request.stream()``), at most ``limit`` bytes:
    :class:`BodyTooLarge` as soon as more arrives, whatever Content-Length said or whether it was chunked."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in receive:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _json_answer(errors: list[WireError], *, close: bool = False) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status, body = envelope([], errors)
    headers = [(b"content-type", b"application/json")]
    if close:
        headers.append((b"connection", b"close"))
    return status, headers, json.dumps(body).encode()


class Guard:
    """ASGI middleware in front of the app: :func:`host_problem` for every request, :func:`cross_site_problem` for
    every request but GET/HEAD/OPTIONS (image URLs may be embedded in any page, as the cloud's are), both answered
    403 ``forbidden`` before the body is read; and a fault of the app itself answered 500 ``internalServerError``
    with an incident id (the traceback goes to the log once, never to the client)."""

    def __init__(self, app: Any, *, open_server: bool, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.open_server = open_server
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        problem = host_problem(headers.get("host"), open_server=self.open_server)
        if problem is None and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            problem = cross_site_problem(headers, allowed_origins=self.allowed_origins)
        if problem is not None:
            await self._send(send, [forbidden(problem)], close=True)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            incident = incident_id()
            log.exception("%s %s failed (incident %s)", scope["method"], scope.get("path", ""), incident)
            if not started:
                await self._send(send, [internal_error(incident)], close=True)

    @staticmethod
    async def _send(send: Any, errors: list[WireError], *, close: bool) -> None:
        status, headers, body = _json_answer(errors, close=close)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
