"""Pieces every panel shares: an error area that never loses a callback's error, background scheduling on the
kernel's running event loop, and the control factories that read their ranges from :mod:`kandinsky_nb.spec`.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ipywidgets as widgets

from .. import spec
from ..html import engine_label, format_usd, html_from_error
from ..planning.pricing import LIST_PRICE

__all__ = [
    "ErrorArea",
    "cost_source_note",
    "css",
    "limit_slider",
    "number_box",
    "run_in_background",
    "session_or_default",
    "spent_words",
]

T = TypeVar("T")


def css(widget: widgets.Widget, *classes: str) -> widgets.Widget:
    """Add CSS classes (stable hooks for browser tests and styling) and return the widget."""
    for name in classes:
        widget.add_class(name)
    return widget


class ErrorArea:
    """Where a panel shows errors from its callbacks: JupyterLab drops exceptions raised in widget callbacks, so every
    callback runs through :meth:`guard` and its error lands here.

    ``errors`` is the list the errors are kept in: pass the panel's ``RunState.errors`` so the state object, not the
    widget, holds them."""

    def __init__(self, css_class: str, errors: list[BaseException] | None = None) -> None:
        self.widget = css(widgets.HTML(""), css_class, "knb-error-area")
        self.errors: list[BaseException] = [] if errors is None else errors

    @property
    def last(self) -> BaseException | None:
        return self.errors[-1] if self.errors else None

    def show(self, error: BaseException, context: str = "") -> None:
        self.errors.append(error)
        detail = ""
        if not _is_ours(error):
            # An unexpected error: keep the traceback visible, it is a bug report.
            detail = "<details><summary>traceback</summary><pre>{}</pre></details>".format(
                "".join(traceback.format_exception(error)).replace("<", "&lt;")
            )
        self.widget.value = html_from_error(error, context=context) + detail

    def clear(self) -> None:
        self.widget.value = ""

    def guard(self, context: str) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
        """Decorator: run a callback and show any exception here instead of letting the front end swallow it."""

        def wrap(callback: Callable[..., T]) -> Callable[..., T | None]:
            @functools.wraps(callback)
            def guarded(*args: Any, **kwargs: Any) -> T | None:
                try:
                    return callback(*args, **kwargs)
                except Exception as exc:
                    self.show(exc, context)
                    return None

            return guarded

        return wrap


def _is_ours(error: BaseException) -> bool:
    from ..errors import KandinskyNBError

    return isinstance(error, KandinskyNBError)


def run_in_background(make_coroutine: Callable[[], Awaitable[T]], run_sync: Callable[[], T]) -> asyncio.Task[T] | None:
    """Schedule work on the running event loop (the kernel's, in Jupyter) and return its task; with no running loop
    (a plain script) run the synchronous twin now and return None.

    In a Jupyter kernel a widget callback runs on the kernel's asyncio loop, so the task runs while the notebook
    stays responsive: other cells and widget events are handled between its awaits.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        run_sync()
        return None
    return loop.create_task(make_coroutine())  # type: ignore[arg-type]


def session_or_default(session: Any) -> Any:
    """The given Session, or one built from the environment (key -> Runware, else local/demo) on first use."""
    if session is not None:
        return session
    from ..session import Session

    return Session()


def number_box(key: str) -> widgets.Widget:
    """A number box for a limited value, without bounds of its own: a slider clamps what is typed silently (12 becomes
    10), while a value typed here reaches the form as typed and the panel says what is allowed next to it."""
    limit = spec.LIMITS[key]
    kind = widgets.IntText if limit.integer else widgets.FloatText
    start = limit.default if limit.default is not None else limit.minimum
    step = limit.step or (1 if limit.integer else 0.01)
    return kind(value=start, step=step, layout=widgets.Layout(width="76px", min_width="64px"), tooltip=limit.describe())


def limit_slider(key: str, description: str, *, value: float | None = None, readout: bool = True) -> widgets.Widget:
    """A slider whose range, step and default come from ``spec.LIMITS[key]`` (``readout=False`` when a
    :func:`number_box` shows and takes the value)."""
    limit = spec.LIMITS[key]
    assert limit.maximum is not None, f"{key} has no upper bound; a slider needs one"
    start = limit.default if value is None else value
    kind, cast = (widgets.IntSlider, int) if limit.integer else (widgets.FloatSlider, float)
    shown = {} if limit.integer else {"readout_format": ".2f"}
    return kind(
        value=cast(start if start is not None else limit.minimum),
        min=cast(limit.minimum),
        max=cast(limit.maximum),
        step=cast(limit.step or (1 if limit.integer else 0.01)),
        description=description,
        continuous_update=False,
        readout=readout,
        style={"description_width": "initial"},
        tooltip=limit.describe(),
        **shown,
    )


def cost_source_note(source: str, engine: str, demo: bool = False) -> str:
    """What an estimate's figure means, in words: a list-price estimate on an engine that is not the cloud is what
    Runware would charge, not what this engine's run will be logged at."""
    if source != LIST_PRICE:
        return source
    if engine_label(engine, demo) == "runware":
        return "Runware list price"
    return (
        "Runware list price: what the cloud would charge; this engine logs its measured GPU time instead, "
        "and estimates from it once a few runs are logged"
    )


def spent_words(amount: float, engine: str, demo: bool = False) -> str:
    """What a session's spend is, in words: money on the cloud, GPU time on a local engine (worth nothing on demo
    weights, whose images are noise)."""
    label = engine_label(engine, demo)
    if label == "runware":
        return f"spent {format_usd(amount)}"
    if label == "demo":
        return f"{format_usd(amount)} of demo GPU time (nothing charged; images are noise)"
    return f"{format_usd(amount)} of GPU time"
