"""The run-log API's HTTP handlers: a thin shell over :class:`RunLogReader`.

Every verb is ``@tornado.web.authenticated`` on a Jupyter ``APIHandler``, so a request without the server's token or
login cookie gets 403 (not a login redirect). The browser never sends a path: runs and sweeps are named by id and
name, and the reader resolves files inside the log's home. Every read runs in the extension's thread pool, never on
the event loop.

Routes (under ``<base_url>/kandinsky-nb/api/``)::

    status                     log path, existence, schema version, run count, change revision
    revision                   only the change revision (a stat of the files, no query): what live views poll
    runs                       a page of runs, newest first (filters: status, engine, sweep, q, since, until, demo;
                               limit, offset)
    runs/<id>                  one run: request and response JSON, every column, and the code that reproduces it
    runs/<id>/image            the image file
    runs/<id>/thumbnail        a cached JPEG thumbnail (?size=32..512, default 128)
    sweeps                     every sweep: cells per state, images, spend
    sweeps/<name>              one sweep: axes, each cell's state and latest run, spend, failed cells
    cost                       spend this session, today, in all; per engine; per day
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler

from .._media import mime_type, sniff_format
from ..errors import RunLogError
from .code import reproduce_code
from .reader import QueryParameterError, RunFilter, RunLogReader, RunNotFoundError, int_parameter
from .thumbnails import THUMBNAIL_MIME, ThumbnailCache

__all__ = ["API_PREFIX", "api_handlers"]

API_PREFIX = "kandinsky-nb/api"
T = TypeVar("T")

THUMBNAIL_SIZE = (32, 512, 128)  # smallest, largest, default edge in pixels
# Run images are content-addressed (a file's name is its hash): a URL's bytes never change.
IMMUTABLE = "private, max-age=31536000, immutable"


class RunLogHandler(APIHandler):
    """Base of the run-log routes: the reader, the thumbnail cache and the thread pool come from the extension."""

    def initialize(self, reader: RunLogReader, thumbnails: ThumbnailCache, executor: Executor) -> None:
        self.reader = reader
        self.thumbnails = thumbnails
        self.executor = executor

    async def off_loop(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking read in the pool; map the reader's errors to HTTP statuses whose message says the fix."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        except QueryParameterError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from exc
        except RunNotFoundError as exc:
            raise tornado.web.HTTPError(404, str(exc)) from exc
        except RunLogError as exc:
            raise tornado.web.HTTPError(500, str(exc)) from exc

    def finish_json(self, value: Any) -> None:
        self.set_header("Cache-Control", "no-store")  # the log changes under a running sweep
        self.finish(json.dumps(value, default=str))

    def query(self) -> dict[str, str]:
        return {name: self.get_argument(name) for name in self.request.arguments}


class StatusHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        from .._version import __version__

        status = await self.off_loop(self.reader.status)
        status["toolkit_version"] = __version__
        self.finish_json(status)


class RevisionHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.finish_json({"revision": await self.off_loop(self.reader.revision)})


class RunsHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            run_filter = RunFilter.from_query(self.query())
        except QueryParameterError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from exc
        self.finish_json(await self.off_loop(self.reader.runs, run_filter))


class RunHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        run = await self.off_loop(self.reader.run, int(run_id))
        run["code"] = reproduce_code(run)
        self.finish_json(run)


class RunImageHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        path = await self.off_loop(self.reader.image_file, int(run_id))
        data = await self.off_loop(path.read_bytes)
        self.set_header("Cache-Control", IMMUTABLE)
        self.finish(data, set_content_type=mime_type(sniff_format(data)))


class RunThumbnailHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        low, high, default = THUMBNAIL_SIZE
        try:
            size = int_parameter("size", self.get_argument("size", None), default, low, high)
        except QueryParameterError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from exc
        path = await self.off_loop(self.reader.image_file, int(run_id))
        data = await self.off_loop(self.thumbnails.get, path, size)
        self.set_header("Cache-Control", IMMUTABLE)
        self.finish(data, set_content_type=THUMBNAIL_MIME)


class SweepsHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.finish_json({"sweeps": await self.off_loop(self.reader.sweeps)})


class SweepHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        self.finish_json(await self.off_loop(self.reader.sweep, name))


class CostHandler(RunLogHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.finish_json(await self.off_loop(self.reader.cost))


# (pattern under the API prefix, handler); the extension app prepends the server's base_url.
ROUTES: tuple[tuple[str, type[RunLogHandler]], ...] = (
    ("status", StatusHandler),
    ("revision", RevisionHandler),
    ("runs", RunsHandler),
    (r"runs/(\d+)", RunHandler),
    (r"runs/(\d+)/image", RunImageHandler),
    (r"runs/(\d+)/thumbnail", RunThumbnailHandler),
    ("sweeps", SweepsHandler),
    (r"sweeps/([^/]+)", SweepHandler),
    ("cost", CostHandler),
)


def api_handlers(reader: RunLogReader, thumbnails: ThumbnailCache, executor: Executor) -> list[tuple[str, type, dict]]:
    """The routes as jupyter_server handler tuples, each given the same reader, cache and pool."""
    kwargs = {"reader": reader, "thumbnails": thumbnails, "executor": executor}
    return [(f"/{API_PREFIX}/{pattern}", handler, kwargs) for pattern, handler in ROUTES]
