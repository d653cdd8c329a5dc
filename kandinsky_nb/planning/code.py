"""The Python code that reproduces a logged run: pure text from a run's row.

One builder for every place that offers "copy as code": the Jupyter sidebar's "insert code" action (through the
server extension), ``%knb code`` and the panels' run viewer. It lives below every layer that shows it, so the panels
use it without importing jupyter_server.
"""

from __future__ import annotations

import pprint
from typing import Any

__all__ = ["reproduce_code"]


def _engine_argument(run: dict[str, Any]) -> str:
    # The demo engine logs itself as "local" with demo=1; reopening it needs the name Session knows it by.
    return "demo" if run.get("demo") else str(run["engine"])


def reproduce_code(run: dict[str, Any]) -> str:
    """A cell that sends the run's exact request again on the same engine and shows the result.

    ``run`` is a row with its request parsed (``request``: the wire object, as ``RunLogReader.run`` returns it). The
    taskUUID is dropped (a new task gets a new one, and reusing it would overwrite the original's row in the log); the
    seed is the one the engine used, so a seeded engine regenerates the same pixels even when the original request
    left it random.
    """
    request = {k: v for k, v in (run.get("request") or {}).items() if k not in ("taskUUID", "taskType")}
    if run.get("seed") is not None:
        request["seed"] = run["seed"]
    engine = _engine_argument(run)
    literal = pprint.pformat(request, indent=4, width=100, sort_dicts=False)
    return (
        "import kandinsky_nb as knb\n"
        "\n"
        f"# Reproduces run {run['id']} ({engine} engine, {run.get('created_utc', '')}): the same request, a new taskUUID.\n"
        f"session = knb.Session(engine={engine!r})\n"
        f"request = knb.ImageInferenceRequest(**{literal})\n"
        "generation = session.generate(request=request)\n"
        "generation"
    )
