"""Where the local engine's two pipelines come from: the ``weights`` argument turned into a :class:`WeightsLocation`.

It reads the environment and looks at folders, but loads nothing: a wrong path is a ConfigurationError when the
engine is created, not a failure on its first request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ... import spec
from ...errors import ConfigurationError
from .demo_weights import PIPELINES, default_demo_folder, is_demo_weights

__all__ = ["WeightsLocation", "resolve_weights"]


@dataclass(frozen=True)
class WeightsLocation:
    """Where the two pipelines come from: a local diffusers folder or a hub id each. ``demo`` for demo weights."""

    t2i: str
    i2i: str
    demo: bool = False

    def for_kind(self, kind: str) -> str:
        """The source of the ``"t2i"`` (text to image) or ``"i2i"`` (editing) pipeline."""
        return self.t2i if kind == "t2i" else self.i2i


def resolve_weights(
    weights: str | os.PathLike[str] | None, i2i_weights: str | os.PathLike[str] | None = None
) -> WeightsLocation:
    """Turn the ``weights`` argument (or ``$KANDINSKY_NB_WEIGHTS``) into a :class:`WeightsLocation`.

    Accepted: ``"demo"`` (demo weights in the toolkit folder), a demo-weights folder, a folder with ``t2i/`` and
    ``i2i/`` diffusers pipelines, one diffusers pipeline folder (text to image), or a hub id. Unset means the
    official checkpoints on the Hugging Face hub.
    """
    raw = weights if weights is not None else os.environ.get("KANDINSKY_NB_WEIGHTS") or None
    if raw is None:
        return WeightsLocation(spec.LOCAL_T2I_CHECKPOINT, str(i2i_weights or spec.LOCAL_I2I_CHECKPOINT))
    if str(raw) == "demo":
        raw = default_demo_folder()
    path = Path(raw).expanduser()
    _require_existing_if_path("weights", raw)
    if i2i_weights is not None:
        _require_existing_if_path("i2i_weights", i2i_weights)
    if path.is_dir():
        demo = is_demo_weights(path)
        if demo or all((path / name / "model_index.json").is_file() for name in PIPELINES):
            return WeightsLocation(str(path / "t2i"), str(i2i_weights or path / "i2i"), demo=demo)
        return WeightsLocation(str(path), str(i2i_weights or spec.LOCAL_I2I_CHECKPOINT))
    return WeightsLocation(str(raw), str(i2i_weights or spec.LOCAL_I2I_CHECKPOINT))


def _looks_like_a_path(raw: str | os.PathLike[str]) -> bool:
    """A hub id is ``owner/name``; anything absolute, relative-looking or deeper is meant as a folder."""
    text = os.fspath(raw)
    return (
        isinstance(raw, Path)
        or text.startswith(("/", ".", "~"))
        or text.count("/") > 1
        or os.sep in text.replace("/", "")
    )


def _require_existing_if_path(argument: str, raw: str | os.PathLike[str]) -> None:
    if _looks_like_a_path(raw) and not Path(raw).expanduser().is_dir():
        raise ConfigurationError(
            f"{argument}={os.fspath(raw)!r} is not a folder. Give a diffusers pipeline folder, a hub id such as "
            f"{spec.LOCAL_T2I_CHECKPOINT!r}, or 'demo' for the offline demo weights (kandinsky-nb weights build)."
        )
