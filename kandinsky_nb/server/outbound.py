"""Calls the server makes on a client's word (webhooks, upload endpoints, image URLs), only to hosts its operator
listed, and never by surprise to this machine or its private network.

A client's URL is a request to reach whatever that URL names from inside the server's network: its loopback services
(Redis, the Jupyter server, a cloud metadata endpoint) and private hosts. So:

* nothing is called unless the operator listed the host (``--delivery-host``, ``--image-host``; none by default);
* a listed host *name* must resolve to public addresses only. A private or loopback address is called only when the
  operator listed that address itself (``127.0.0.1``, ``10.0.0.5``) or ``localhost``: a name is not trusted to stay
  where it pointed when it was listed (DNS rebinding);
* the connection goes to the address that was checked (the URL's host is replaced by it; the Host header and TLS
  SNI keep the name), so the name cannot be re-resolved elsewhere between the check and the call;
* redirects are not followed (one would lead anywhere).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import ConfigurationError, KandinskyNBError

__all__ = ["HostAllowList", "OutboundRefused", "PinnedCall"]


class OutboundRefused(KandinskyNBError):
    """A URL this server will not call; the message names the host, never the URL's path or query (tokens)."""


@dataclass(frozen=True)
class PinnedCall:
    """An httpx request to a checked address: ``url`` names the address, ``headers`` and ``extensions`` the host."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


class HostAllowList:
    """The hosts (``name``, ``name:port``, ``10.0.0.5``, ``[::1]:8080``) a server may call for ``option`` (the CLI
    option that lists them, named in refusals). Empty: it calls nothing."""

    def __init__(self, entries: Iterable[str] = (), *, option: str) -> None:
        self.option = option
        self._entries: set[tuple[str, int | None]] = set()
        for raw in entries:
            entry = raw.strip().lower()
            parts = urlsplit(f"//{entry}")
            try:
                host, port = parts.hostname, parts.port
            except ValueError:
                host = None
            if not host or parts.path or parts.query or parts.username:
                raise ConfigurationError(
                    f"{option} {raw!r} is not a host: give a host name or address, optionally with :port "
                    "(hooks.example.com, hooks.example.com:8443, 10.0.0.5, [::1]:8080)."
                )
            self._entries.add((host, port))

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:
        return f"HostAllowList({sorted(f'{h}:{p}' if p else h for h, p in self._entries)!r}, option={self.option!r})"

    def _entry_for(self, host: str, port: int) -> str | None:
        for name, allowed_port in self._entries:
            if name == host and allowed_port in (None, port):
                return name
        return None

    def allows(self, url: str) -> bool:
        """Whether ``url`` is http(s) to a listed host (and port); nothing is resolved."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
            return False
        return self._entry_for(host, port or (443 if parts.scheme == "https" else 80)) is not None

    def refusal(self, url: str) -> OutboundRefused:
        return OutboundRefused(
            f"This server does not call {host_of(url)}: its operator has not listed that host ({self.option})."
        )

    async def pin(self, url: str) -> PinnedCall:
        """Resolve ``url``'s host, check every address it has, and return the call to make to the first one.
        Raises :class:`OutboundRefused` for an unlisted host or a private/loopback address the operator did not
        list itself."""
        if not self.allows(url):
            raise self.refusal(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        entry = self._entry_for(host, port) or ""
        literal = _address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError:
                raise OutboundRefused(f"{host_of(url)} does not resolve.") from None
            addresses = [a for a in (_address(str(info[4][0])) for info in infos) if a is not None]
        if not addresses:
            raise OutboundRefused(f"{host_of(url)} does not resolve.")
        # A private address is reached only when the operator named it (or localhost) in the list itself.
        named_by_operator = entry == "localhost" or _address(entry) is not None
        for address in addresses:
            if not address.is_global and not named_by_operator:
                raise OutboundRefused(
                    f"{host_of(url)} resolves to a private or loopback address; this server calls such addresses "
                    f"only when its operator lists the address itself ({self.option} {address})."
                )
        chosen = addresses[0]
        pinned = httpx.URL(url).copy_with(host=str(chosen))
        extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
        return PinnedCall(str(pinned), {"Host": parts.netloc.rsplit("@", 1)[-1]}, extensions)


def host_of(url: str) -> str:
    """The host (and port) of a URL, for messages: never its path or query, which may hold a receiver's token."""
    try:
        return urlsplit(url).netloc.rsplit("@", 1)[-1] or "that URL"
    except ValueError:
        return "that URL"
