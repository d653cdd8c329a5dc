"""Results sent where a request asked, after its task finished: each image PUT (raw bytes) to ``uploadEndpoint``, and
each result item POSTed to ``webhookURL`` as ``{"data": [item]}`` (one call per image, as the cloud does).

Off unless the operator lists the hosts results may go to (``hosts``; ``kandinsky-nb serve --delivery-host``): a
request naming any other host is refused (400) before it runs, and each call goes only to a checked address
(:mod:`.outbound`: never to this machine or its private network unless the operator listed that address itself).

A failed send is retried with exponential backoff (tenacity), then logged; it never fails the task, whose results
``getResponse`` still returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import tenacity

from .. import spec
from .._media import mime_type, sniff_format
from ..errors import ConfigurationError
from ..protocol.server import Refusal, error_object
from ..types import ImageInferenceRequest
from .outbound import HostAllowList, OutboundRefused

__all__ = ["Delivery"]

log = logging.getLogger("kandinsky_nb.server")


class _Refused(Exception):
    """The receiver answered with an HTTP error status (retried like a network error)."""


class Delivery:
    """Sends results in the background, to the ``hosts`` listed only (none: delivery is off). ``attempts`` tries per
    call, waiting ``first_wait`` seconds after the first failure and twice as long after each next one;
    ``in_flight`` holds the sends not finished yet."""

    def __init__(
        self,
        *,
        hosts: HostAllowList | Iterable[str] = (),
        attempts: int = 4,
        first_wait: float = 0.25,
        timeout: float = 30.0,
    ) -> None:
        if attempts < 1 or first_wait < 0 or timeout <= 0:
            raise ConfigurationError(
                f"Delivery(attempts={attempts!r}, first_wait={first_wait!r}, timeout={timeout!r}) is invalid: "
                "attempts counts tries (1 or more), first_wait and timeout are seconds (timeout above 0). "
                "Pass values in those ranges."
            )
        self.hosts = hosts if isinstance(hosts, HostAllowList) else HostAllowList(hosts, option="--delivery-host")
        self.attempts = attempts
        self.first_wait = first_wait
        self.timeout = timeout
        self.in_flight: set[asyncio.Task[None]] = set()

    def check(self, request: ImageInferenceRequest) -> None:
        """Refuse (400, naming the parameter) a request whose webhookURL or uploadEndpoint this server will not call,
        before it runs: its results would be generated and then never delivered."""
        for parameter in ("webhookURL", "uploadEndpoint"):
            url = getattr(request, parameter)
            if url and not self.hosts.allows(url):
                raise Refusal(
                    error_object(
                        "invalid" + parameter[0].upper() + parameter[1:],
                        f"{self.hosts.refusal(url)} Leave {parameter} out and fetch the results with getResponse "
                        "(or ask the operator to list the host).",
                        parameter=parameter,
                        task_type=spec.TASK_TYPE,
                        task_uuid=request.taskUUID,
                    )
                )

    def start(self, request: ImageInferenceRequest, images: Sequence[bytes], items: Sequence[dict[str, Any]]) -> None:
        """Send in the background; the caller does not wait."""
        if not (request.webhookURL or request.uploadEndpoint):
            return
        task = asyncio.get_running_loop().create_task(self.send(request, images, items))
        self.in_flight.add(task)  # a strong reference, so the event loop cannot drop the task half way
        task.add_done_callback(self.in_flight.discard)

    async def send(
        self, request: ImageInferenceRequest, images: Sequence[bytes], items: Sequence[dict[str, Any]]
    ) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for data, item in zip(images, items, strict=True):
                if request.uploadEndpoint:
                    headers = {"Content-Type": mime_type(sniff_format(data))}
                    await self._call(client, request, "PUT", request.uploadEndpoint, content=data, headers=headers)
                if request.webhookURL:
                    await self._call(client, request, "POST", request.webhookURL, json={"data": [item]})

    async def _call(
        self, client: httpx.AsyncClient, request: ImageInferenceRequest, method: str, url: str, **kwargs: Any
    ) -> None:
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=self.first_wait),
            retry=tenacity.retry_if_exception_type((httpx.HTTPError, _Refused)),
            reraise=True,
        )
        headers = kwargs.pop("headers", {})
        try:
            async for attempt in retrying:
                with attempt:
                    # Checked on every try: the name may resolve elsewhere by now.
                    call = await self.hosts.pin(url)
                    response = await client.request(
                        method,
                        call.url,
                        headers={**headers, **call.headers},
                        extensions=call.extensions,
                        **kwargs,
                    )
                    if response.status_code >= 300:
                        raise _Refused(f"HTTP {response.status_code}")
        except OutboundRefused as exc:
            log.warning("task %s: %s not sent: %s", request.taskUUID, method, exc)
        except (httpx.HTTPError, _Refused) as exc:
            # The query string may hold the receiver's token: log the URL without it.
            problem = str(exc) if isinstance(exc, _Refused) else type(exc).__name__
            log.warning("task %s: %s to %s failed (%s)", request.taskUUID, method, url.split("?")[0], problem)
