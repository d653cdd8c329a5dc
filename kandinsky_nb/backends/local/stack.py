"""The bottom of the local engine: its name, and the optional torch + diffusers stack it runs on.

Every other module of the engine may import this one and it imports none of them, so the planner, the pipeline
glue, the engine and the demo-weights builder share these helpers without importing each other in a circle.
Importing it is cheap: torch and diffusers load only when :func:`import_local_stack` is called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ...errors import MissingDependencyError

__all__ = ["ENGINE", "import_local_stack", "quiet_progress"]

#: The engine's name, as results record it and as its refusals (UnsupportedByEngineError.engine) say it.
ENGINE = "local"


def import_local_stack(feature: str = "The local engine") -> tuple[Any, Any]:
    """``(torch, diffusers)``, or MissingDependencyError naming ``feature`` and the ``local`` extra."""
    try:
        import diffusers
        import torch
    except ImportError as exc:
        raise MissingDependencyError(feature, "local", exc.name) from exc
    return torch, diffusers


@contextlib.contextmanager
def quiet_progress(enabled: bool = True) -> Iterator[None]:
    """Hide diffusers'/transformers' progress bars (loading a few MB from disk needs none), then restore them.

    ``enabled=False`` leaves them on: a download from the hub should show its progress.
    """
    if not enabled:
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if before[0]:
            diffusers_logging.enable_progress_bar()
        if before[1]:
            transformers_logging.enable_progress_bar()
