"""Settings read from the environment, in one place.

| variable              | meaning                                                          | default            |
| --------------------- | ---------------------------------------------------------------- | ------------------ |
| ``KANDINSKY_NB_HOME`` | folder for the run log, images and demo weights                  | ``~/.kandinsky_nb`` |
| ``RUNWARE_API_KEY``   | Runware API key; when set, ``Session()`` uses the Runware engine | unset              |
| ``RUNWARE_BASE_URL``  | Runware-compatible server (e.g. ``kandinsky-nb serve``)          | Runware's API      |
| ``KANDINSKY_NB_ENGINE`` | force an engine: ``runware``, ``local`` or ``demo``            | chosen from above  |
| ``KANDINSKY_NB_WEIGHTS`` | local weights: a diffusers folder or hub id                   | unset (demo)       |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import spec
from .errors import ConfigurationError

__all__ = ["MAX_API_KEY_LENGTH", "ApiKey", "api_key", "home_dir", "runware_base_url"]


def home_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The toolkit's folder: the argument, else ``$KANDINSKY_NB_HOME``, else ``~/.kandinsky_nb``. Created on use."""
    raw = explicit or os.environ.get("KANDINSKY_NB_HOME") or Path.home() / ".kandinsky_nb"
    path = Path(raw).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


# Runware keys are 32 characters; proxies in front of a server may use longer tokens (a JWT is about 1 KB). Past this
# the text is not a key but something pasted by mistake (a file, a notebook cell), and it would travel in a header.
MAX_API_KEY_LENGTH = 4096
# A key goes into an HTTP header: printable ASCII without spaces is what a header value can carry unchanged. A newline
# or control character would split or corrupt the header (and echo into messages); anything else is a typo.
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
# A key shorter than this is not a secret anyone issued (a local ``serve`` accepts any key: ``k``, ``demo``): it is
# redacted only where it stands as a word of its own, so that redaction never eats letters out of ordinary text.
_SHORT_KEY = 12
_WORD_CHARACTER = r"[A-Za-z0-9_\-.~+/=]"


class ApiKey:
    """An API key that never shows itself: ``repr``/``str`` are masked; only ``reveal()`` gives the text, and only
    the HTTP layer calls it, to build the Authorization header.

    The key is checked when given (:class:`ConfigurationError` names the rule it breaks, never the key): surrounding
    whitespace is dropped (a key read from a file ends with a newline), and what is left must be 1 to
    :data:`MAX_API_KEY_LENGTH` printable ASCII characters without spaces or control characters.

    :meth:`redact` and :meth:`redact_data` blank the key out of text and of parsed JSON (what a server echoed), so a
    caller redacts fields it has parsed, never the raw bytes of a whole answer.
    """

    __slots__ = ("_pattern", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ConfigurationError(
                f"the API key must be text, not {type(value).__name__}. Pass the key as a str (or set RUNWARE_API_KEY)."
            )
        value = value.strip()
        rule = _key_rule_broken(value)
        if rule:
            raise ConfigurationError(
                f"the API key is invalid: {rule}. The key itself is not shown. Copy the key again from "
                "https://my.runware.ai/keys (or the server's --api-key) and pass exactly that text."
            )
        self._value = value
        boundary = "" if len(value) >= _SHORT_KEY else _WORD_CHARACTER
        escaped = re.escape(value)
        self._pattern = re.compile(
            f"(?<!{boundary}){escaped}(?!{boundary})" if boundary else escaped,
        )

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``***`` (a short key only where it is a word)."""
        if self._value not in text:
            return text
        return self._pattern.sub("***", text)

    def redact_data(self, value: Any) -> Any:
        """Parsed JSON (dicts, lists, strings, numbers) with the key blanked out of every string, keys included."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(k) if isinstance(k, str) else k: self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_data(v) for v in value)
        return value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an ApiKey is not picklable, so it can never be written to a file")


def _key_rule_broken(value: str) -> str:
    """The rule a key breaks, in words that never quote it ("" when it is fine)."""
    if not value:
        return "it is empty"
    if len(value) > MAX_API_KEY_LENGTH:
        return f"it is {len(value)} characters long; a key has at most {MAX_API_KEY_LENGTH}"
    if _KEY_CHARACTERS.fullmatch(value):
        return ""
    if any(ch.isspace() for ch in value):
        return "it contains whitespace (a space, tab or line break) inside it"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "it contains a control character"
    return "it contains a character outside printable ASCII (a key is letters, digits and punctuation)"


def api_key(explicit: str | ApiKey | None = None) -> ApiKey | None:
    """The Runware key: the argument, else ``$RUNWARE_API_KEY``, else None. An invalid key raises
    :class:`ConfigurationError`; an empty one counts as no key."""
    if isinstance(explicit, ApiKey):
        return explicit
    raw = explicit if explicit is not None else os.environ.get("RUNWARE_API_KEY")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return ApiKey(raw)


def runware_base_url(explicit: str | None = None) -> str:
    """Base URL of a Runware-compatible server, without the ``/v1`` path.

    Refused with :class:`ConfigurationError`: a URL that is not absolute http(s), one holding whitespace or control
    characters, and one with credentials (``https://user:pass@host``): the key travels only as the Bearer header, and
    credentials in a URL would show wherever the URL is printed.
    """
    url = explicit or os.environ.get("RUNWARE_BASE_URL") or spec.RUNWARE_BASE_URL
    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be text such as 'http://127.0.0.1:8765', not {type(url).__name__}.")
    url = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ConfigurationError(
            "base_url contains whitespace or a control character. Pass the server's address alone, such as "
            "'http://127.0.0.1:8765'."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port is what checks it)
    except ValueError as exc:
        raise ConfigurationError(
            f"base_url {_without_userinfo(url)!r} is not a valid URL ({exc}). Pass an address such as "
            "'http://127.0.0.1:8765'."
        ) from None
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"base_url {_without_userinfo(url)!r} holds credentials (user:password@). They would show wherever the "
            "URL is printed and are not how a Runware server authenticates: remove them from the URL and pass the "
            "key as api_key=... (or RUNWARE_API_KEY)."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url {url!r} is not an absolute http(s) URL. Pass an address such as 'http://127.0.0.1:8765' or "
            f"{spec.RUNWARE_BASE_URL!r}."
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"base_url {url!r} has a query or fragment; pass the server's address only (requests go to <base_url>/v1)."
        )
    return url.rstrip("/").removesuffix("/v1")


def _without_userinfo(url: str) -> str:
    """The URL with anything before an '@' in its authority replaced by ``***`` (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
