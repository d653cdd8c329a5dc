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
from pathlib import Path

from . import spec

__all__ = ["ApiKey", "api_key", "home_dir", "runware_base_url"]


def home_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The toolkit's folder: the argument, else ``$KANDINSKY_NB_HOME``, else ``~/.kandinsky_nb``. Created on use."""
    raw = explicit or os.environ.get("KANDINSKY_NB_HOME") or Path.home() / ".kandinsky_nb"
    path = Path(raw).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


class ApiKey:
    """An API key that never shows itself: ``repr``/``str`` are masked; only ``reveal()`` gives the text, and only
    the HTTP layer calls it, to build the Authorization header."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an ApiKey is not picklable, so it can never be written to a file")


def api_key(explicit: str | ApiKey | None = None) -> ApiKey | None:
    """The Runware key: the argument, else ``$RUNWARE_API_KEY``, else None."""
    if isinstance(explicit, ApiKey):
        return explicit
    raw = explicit if explicit is not None else os.environ.get("RUNWARE_API_KEY")
    return ApiKey(raw) if raw and raw.strip() else None


def runware_base_url(explicit: str | None = None) -> str:
    """Base URL of a Runware-compatible server, without the ``/v1`` path."""
    url = explicit or os.environ.get("RUNWARE_BASE_URL") or spec.RUNWARE_BASE_URL
    return url.rstrip("/").removesuffix("/v1")
