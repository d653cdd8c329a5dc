"""Filters over the ``runs`` table as SQL: what :meth:`RunLog.query <kandinsky_nb.runlog.RunLog.query>` runs.

Pure: this module builds an SQL condition and its named parameters and does no I/O. Every filter is answered by an
index (migrations ``m001_runs`` and ``m005_read_indexes``), so picking one sweep or one prompt out of a million rows
reads only the rows it returns:

- ``sweep_id``: the ``runs_sweep`` index;
- ``status``: the ``runs_status`` index;
- ``prompt`` (the exact text) and ``prompt_contains`` (a case-insensitive substring): the ``runs_prompt`` full-text
  index, whose trigram tokenizer finds any substring of 3 characters or more;
- ``since`` / ``until``: the ``runs_created`` index (unless a sweep, status or prompt filter narrows more);
- ``engine``: narrows the rows another filter found (alone it reads every row: it is a handful of distinct values).

The lifecycle of a row (``STATUSES``, ``UNANSWERED``) is stated here, below the store that writes it, so the filters
can check a status without importing the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import RunLogError

__all__ = ["MIN_PROMPT_MATCH", "STATUSES", "UNANSWERED", "Where", "where"]

STATUSES = ("submitted", "ok", "failed", "cancelled", "unanswered")
# Statuses of a request that may have reached the engine without its answer reaching the log: resume them by taskUUID.
# "unanswered" is a request whose error says the outcome is unknown (a dropped connection, a poll timeout).
UNANSWERED = ("submitted", "cancelled", "unanswered")
# The trigram tokenizer indexes runs of 3 characters: a shorter text cannot be looked up, only scanned for.
MIN_PROMPT_MATCH = 3


@dataclass(frozen=True)
class Where:
    """An SQL condition over ``runs`` (``""``: every row) and its parameters (named, or a sequence for ``?`` placeholders)."""

    sql: str = ""
    params: Mapping[str, Any] | Sequence[Any] = field(default_factory=dict)


def plain_params(params: Sequence[Any]) -> list[Any]:
    """Parameters of a caller's SQL condition as SQLite binds them: a numpy scalar (a value taken from a DataFrame,
    such as ``df["seed"].iloc[0]``) as the Python number it holds. The sqlite3 module would bind ``numpy.int64`` as a
    BLOB, which no number equals, and the condition would silently select nothing."""
    return [_python_scalar(value) for value in params]


def _python_scalar(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes | bytearray | memoryview) else value


def where(
    *,
    sweep_id: str | None = None,
    status: str | Iterable[str] | None = None,
    engine: str | None = None,
    prompt: str | None = None,
    prompt_contains: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> Where:
    """The condition that keeps the rows matching every filter given (None: no filter on that column)."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if sweep_id is not None:
        conditions.append("runs.sweep_id = :sweep_id")
        params["sweep_id"] = _text("sweep_id", sweep_id, "a sweep's name, e.g. plan.name")
    if status is not None:
        statuses = _statuses(status)
        names = [f":status_{number}" for number in range(len(statuses))]
        conditions.append(f"runs.status IN ({', '.join(names)})")
        params.update((name[1:], value) for name, value in zip(names, statuses, strict=True))
    if engine is not None:
        conditions.append("runs.engine = :engine")
        params["engine"] = _text("engine", engine, "an engine's name, e.g. 'runware' or 'local'")
    if prompt is not None:
        # The index finds the candidates (the prompt as a phrase); the equality keeps the exact text only.
        conditions.append(_prompt_match("prompt_phrase"))
        conditions.append("runs.prompt = :prompt")
        params["prompt"] = _prompt_text("prompt", prompt)
        params["prompt_phrase"] = _phrase(prompt)
    if prompt_contains is not None:
        conditions.append(_prompt_match("prompt_contains"))
        params["prompt_contains"] = _phrase(_prompt_text("prompt_contains", prompt_contains))
    # A time window is usually a small part of the log (today's runs). Without statistics SQLite guesses a range
    # keeps a quarter of the rows and would scan the table; likelihood() says "few", so it takes runs_created.
    if since is not None:
        conditions.append("likelihood(runs.created_utc >= :since, 0.01)")
        params["since"] = _instant("since", since)
    if until is not None:
        conditions.append("likelihood(runs.created_utc < :until, 0.01)")
        params["until"] = _instant("until", until)
    return Where(" AND ".join(conditions), params)


def _prompt_match(parameter: str) -> str:
    # The rowid of runs_prompt is the id of runs (an external-content index kept in step by triggers).
    return f"runs.id IN (SELECT rowid FROM runs_prompt WHERE runs_prompt MATCH :{parameter})"


def _phrase(text: str) -> str:
    # An FTS5 phrase in double quotes: the text is matched as it is (no query operators), a quote doubled.
    return '"' + text.replace('"', '""') + '"'


def _text(name: str, value: object, example: str) -> str:
    if not isinstance(value, str):
        raise RunLogError(f"{name} {value!r} is not allowed: pass a string ({example}), or None for no filter")
    return value


def _prompt_text(name: str, value: object) -> str:
    text = _text(name, value, "the prompt or a part of it")
    if len(text) < MIN_PROMPT_MATCH:
        raise RunLogError(
            f"{name} {text!r} is shorter than {MIN_PROMPT_MATCH} characters: the prompt index finds texts of "
            f"{MIN_PROMPT_MATCH} characters or more; pass a longer text, or filter RunLog.df in pandas "
            "(df[df['prompt'].str.contains(...)])"
        )
    return text


def _statuses(value: object) -> tuple[str, ...]:
    statuses = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else (value,)
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown or not statuses:
        raise RunLogError(
            f"status {value!r} is not allowed: pass one of {', '.join(STATUSES)} or several of them "
            "(e.g. kandinsky_nb.runlog.UNANSWERED), or None for every status"
        )
    return statuses


def _instant(name: str, value: object) -> str:
    """A time as the log writes it (UTC ISO 8601 with microseconds), so text comparison orders it correctly.
    A time without a zone is read as UTC, the zone of every time in the log."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise RunLogError(
            f"{name} {value!r} is not a time: pass a datetime or an ISO 8601 text such as '2026-11-25T12:00:00+00:00' "
            "(a time without a zone is read as UTC)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
