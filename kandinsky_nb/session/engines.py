"""Which engine a Session uses: a pure decision from the arguments and the environment, then the one import."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import settings
from ..backends.base import Backend
from ..errors import ConfigurationError
from ..types import ImageInferenceRequest

__all__ = ["ENGINE_NAMES", "choose_engine", "open_backend"]

ENGINE_NAMES = ("runware", "local", "demo")


def choose_engine(
    engine: str | None = None,
    *,
    api_key: object = None,
    base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The engine name: the argument; else ``$KANDINSKY_NB_ENGINE``; else ``runware`` when a key (argument or
    ``$RUNWARE_API_KEY``) or a base URL is given; else ``local`` when ``$KANDINSKY_NB_WEIGHTS`` is set; else
    ``demo`` (offline demo weights, whose images are noise)."""
    env = os.environ if environ is None else environ
    name = engine or env.get("KANDINSKY_NB_ENGINE") or None
    if name is None:
        if api_key or (env.get("RUNWARE_API_KEY") or "").strip() or base_url:
            name = "runware"
        elif env.get("KANDINSKY_NB_WEIGHTS"):
            name = "local"
        else:
            name = "demo"
    name = name.strip().lower()
    if name not in ENGINE_NAMES:
        raise ConfigurationError(
            f"unknown engine {name!r}; use one of {', '.join(ENGINE_NAMES)} (or pass a Backend instance)"
        )
    return name


def open_backend(
    engine: str | Backend | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    api_key: object = None,
    base_url: str | None = None,
    expected_latency: Callable[[ImageInferenceRequest], float | None] | None = None,
    **options: Any,
) -> Backend:
    """A Backend instance for ``engine`` (an instance passes through). ``expected_latency`` tells the Runware engine
    when a task should finish, so async delivery polls around then instead of on a fixed schedule."""
    if engine is not None and not isinstance(engine, str):
        if not isinstance(engine, Backend):
            raise ConfigurationError(
                f"engine must be 'runware', 'local', 'demo' or a Backend, not {type(engine).__name__}"
            )
        return engine
    name = choose_engine(engine, api_key=api_key, base_url=base_url)
    if name == "runware":
        from ..backends.runware import RunwareBackend

        return RunwareBackend(api_key=api_key, base_url=base_url, expected_latency=expected_latency, **options)
    from ..backends.local import LocalBackend

    if name == "local":
        return LocalBackend(**options)
    return LocalBackend.from_demo_weights(Path(settings.home_dir(home)) / "demo-weights", **options)
