"""Keyboard shortcuts for the panels: ipywidgets has no key events, so a tiny anywidget listens in the browser.

:class:`SubmitShortcut` is an invisible widget placed inside a panel. In the browser it listens for Ctrl+Enter
(Cmd+Enter on a Mac) pressed anywhere inside that panel (the prompt, a slider, a button) and sends one message to the
kernel, where the panel's action runs (the GeneratePanel's Generate). The key press is stopped there, so JupyterLab
does not also run the notebook cell. The listener is on ``window`` in the capture phase, the first place a key event
reaches, and it acts only on events whose target is inside its own panel, so panels side by side never trigger each
other. Works wherever anywidget does: JupyterLab 4, Notebook 7, Voila.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

__all__ = ["SUBMIT_EVENT", "SubmitShortcut"]

#: The message the browser sends when the shortcut is pressed.
SUBMIT_EVENT = "submit"

_ESM = """
function render({ model, el }) {
  el.style.display = "none";
  const onKeydown = (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.repeat) return;
    const panel = el.closest("." + model.get("scope"));
    if (!panel || !panel.contains(event.target)) return;
    event.preventDefault(); // no new line in the prompt
    event.stopPropagation(); // JupyterLab would run the cell too
    // Stopped here, the focused field never sees the key: blur and refocus it so a number box commits what was typed
    // (they sync on change) before the message that generates.
    const active = document.activeElement;
    if (active && panel.contains(active) && active.blur) {
      active.blur();
      active.focus();
    }
    model.send({ event: SUBMIT_EVENT });
  };
  window.addEventListener("keydown", onKeydown, true);
  return () => window.removeEventListener("keydown", onKeydown, true);
}
export default { render };
""".replace("SUBMIT_EVENT", json.dumps(SUBMIT_EVENT))


class SubmitShortcut(anywidget.AnyWidget):
    """Ctrl/Cmd+Enter inside the element with CSS class ``scope`` (an ancestor of this widget) calls ``action()``.

    ``presses`` counts the shortcuts received, so a test or a person can see that the key reached the kernel."""

    _esm = _ESM
    scope = traitlets.Unicode().tag(sync=True)

    def __init__(self, scope: str, action: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(scope=scope, **kwargs)
        self.presses = 0
        self._action = action
        self.on_msg(self._on_message)

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == SUBMIT_EVENT:
            self.presses += 1
            self._action()
