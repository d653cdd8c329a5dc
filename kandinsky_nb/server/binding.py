"""Where the server may listen: an open server (no API key) only on a loopback address."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..errors import ConfigurationError

__all__ = ["check_bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_bind(host: str, api_keys: Sequence[str]) -> None:
    """Refuse to expose an open server: without keys, anyone who can reach it could use the GPU."""
    if not api_keys and not is_loopback(host):
        raise ConfigurationError(
            f"Refusing to listen on {host!r} without an API key: anyone who can reach it could use this machine. "
            "Give one or more keys (--api-key KEY, or KANDINSKY_NB_SERVER_KEYS=key1,key2), or listen on 127.0.0.1."
        )
