"""One small helper that binds widgets to a panel's state object, both ways.

A panel's state is a plain dataclass; its widgets only mirror it. Two directions, one rule each:

- state -> widgets: :meth:`FormBinding.push` writes every bound widget from the state. The change events those writes
  fire are not fed back (that is the one re-entrancy guard, kept here instead of a flag in every panel).
- widget -> state: when a person edits a bound widget, only that widget's field is written, into a copy of the
  state, and the panel's ``edited`` callback receives the new state. Fields the widget does not own (an uploaded
  image loaded from a previous run, say) are never overwritten by what another widget happens to show. The other
  widgets are then pushed, so two views of one field (a slider and its number box) stay in step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import ipywidgets as widgets

__all__ = ["FormBinding"]

S = TypeVar("S")


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _Bound(Generic[S]):
    widget: widgets.Widget
    read: Callable[[S], Any] | None  # state -> widget value (None: the widget is never written, e.g. a file upload)
    write: Callable[[S, Any], None]  # widget value -> state, in place on a copy


class FormBinding(Generic[S]):
    """Widgets bound to fields of a state object.

    ``state_of()`` returns the current state; ``edited(new_state, change)`` receives a copy with a person's edit
    applied (the panel stores it and redraws). ``wrap`` wraps the change handler (a panel's error guard, so a bad
    value shows in the panel instead of vanishing in the front end).
    """

    def __init__(
        self,
        state_of: Callable[[], S],
        edited: Callable[[S, dict[str, Any]], None],
        *,
        wrap: Callable[[Callable[[dict[str, Any]], None]], Callable[[dict[str, Any]], Any]] = _same,
    ) -> None:
        self._state_of = state_of
        self._edited = edited
        self._handler = wrap(self._on_change)
        self._bound: dict[int, _Bound[S]] = {}
        self._holding = 0

    def attribute(
        self,
        widget: widgets.Widget,
        name: str,
        *,
        to_widget: Callable[[Any], Any] = _same,
        from_widget: Callable[[Any], Any] = _same,
    ) -> widgets.Widget:
        """Bind ``widget.value`` to ``state.<name>``, through optional converters (``None`` <-> ``""``, say)."""
        return self.bind(
            widget,
            read=lambda state: to_widget(getattr(state, name)),
            write=lambda state, value: setattr(state, name, from_widget(value)),
        )

    def bind(
        self, widget: widgets.Widget, *, read: Callable[[S], Any] | None, write: Callable[[S, Any], None]
    ) -> widgets.Widget:
        """Bind ``widget.value`` with explicit accessors: ``read(state)`` gives the widget's value (None: never
        pushed), ``write(state, value)`` applies an edit to the state."""
        self._bound[id(widget)] = _Bound(widget, read, write)
        widget.observe(self._handler, names="value")
        return widget

    def forget(self, *bound: widgets.Widget) -> None:
        """Unbind widgets that are going away (rows of a list that is redrawn)."""
        for widget in bound:
            if self._bound.pop(id(widget), None) is not None:
                widget.unobserve(self._handler, names="value")

    def push(self, state: S | None = None) -> None:
        """Write every bound widget from the state (the current one by default) without feeding the writes back."""
        self._push(self._state_of() if state is None else state)

    def _push(self, state: S, skip: widgets.Widget | None = None) -> None:
        with self.holding():
            for bound in list(self._bound.values()):
                if bound.read is not None and bound.widget is not skip:
                    value = bound.read(state)
                    if bound.widget.value != value:
                        bound.widget.value = value

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Within this block, widget changes are the panel's own writes, not edits: they do not reach the state."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._holding:
            return
        bound = self._bound.get(id(change["owner"]))
        if bound is None:
            return
        state = copy.deepcopy(self._state_of())
        bound.write(state, change["new"])
        self._edited(state, change)
        # Other widgets showing the same field (a slider and its number box) follow; the edited one keeps what the
        # person typed, as typed.
        self._push(self._state_of(), skip=bound.widget)
