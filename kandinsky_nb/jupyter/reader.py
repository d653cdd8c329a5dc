"""Read-only queries over the run log, for the server extension and the magics.

The reader never creates, migrates or writes the log: it opens ``runs.db`` with SQLite's ``mode=ro`` URI, one short
connection per query. In WAL mode a reader takes no lock a writer needs, so a sweep running in a kernel keeps logging
at full speed while the sidebar watches it. Every method is synchronous and cheap to call from a worker thread; the
HTTP handlers run them off the event loop.

Filters and pagination are parsed here from plain strings (:class:`RunFilter`), so the HTTP layer stays a thin shell
and every bad value is refused with one error that names the field, the value, what is allowed, and the fix.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import KandinskyNBError, RunLogError
from ..runlog import DB_NAME, MIGRATIONS, STATUSES
from ..runlog.query import MIN_PROMPT_MATCH, Where
from ..runlog.query import where as log_where
from ..session.plan import cell_status

__all__ = [
    "MAX_PAGE_SIZE",
    "SUMMARY_COLUMNS",
    "QueryParameterError",
    "RunFilter",
    "RunLogReader",
    "RunNotFoundError",
    "int_parameter",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# The columns a sidebar row shows; request/response JSON stay out of list pages (they can be large).
SUMMARY_COLUMNS = (
    "id",
    "created_utc",
    "finished_utc",
    "status",
    "engine",
    "demo",
    "prompt",
    "width",
    "height",
    "steps",
    "CFGScale",
    "scheduler",
    "seed",
    "cost_usd",
    "latency_s",
    "sweep_id",
    "sweep_cell",
    "error_type",
    "error_message",
    "image_path",
)
_SUMMARY_SQL = ", ".join(SUMMARY_COLUMNS)
# Columns parsed from JSON text before they reach a caller.
_JSON_COLUMNS = ("request_json", "response_json", "details_json", "accelerator_options", "lora")


class QueryParameterError(KandinskyNBError):
    """A filter or page parameter has a value the run-log API does not accept (an HTTP 400)."""

    def __init__(self, name: str, value: object, allowed: str, fix: str) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{name}={value!r} is not accepted: {name} must be {allowed}. {fix}")


class RunNotFoundError(KandinskyNBError, LookupError):
    """No run (or sweep) with that identity in the log (an HTTP 404)."""


def int_parameter(name: str, raw: str | None, default: int, low: int, high: int | None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"
        raise QueryParameterError(name, raw, bound, f"Send {name}={default} or omit it.")
    return value


def _date_parameter(name: str, raw: str | None) -> str | None:
    """An ISO date or datetime, as the UTC text stored in ``created_utc`` (text order is time order there)."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryParameterError(
            name,
            raw,
            "an ISO 8601 date or datetime (2026-12-01 or 2026-12-01T13:00:00Z)",
            f"Send {name}=2026-12-01, or omit it.",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _bool_parameter(name: str, raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise QueryParameterError(name, raw, "true or false", f"Send {name}=true, {name}=false, or omit it.")


@dataclass(frozen=True)
class RunFilter:
    """Which runs a page lists. Every field is optional; set ones are combined with AND."""

    statuses: tuple[str, ...] = ()
    engine: str | None = None
    sweep: str | None = None
    text: str | None = None
    since: str | None = None
    until: str | None = None
    demo: bool | None = None
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0

    @classmethod
    def from_query(cls, query: Mapping[str, str | None]) -> RunFilter:
        """Parse the API's query parameters (``status`` may list several, comma-separated)."""
        statuses = tuple(s for s in (query.get("status") or "").split(",") if s)
        for status in statuses:
            if status not in STATUSES:
                raise QueryParameterError(
                    "status",
                    status,
                    f"one of {', '.join(STATUSES)} (several: comma-separated)",
                    "Send e.g. status=failed or status=ok,failed, or omit it.",
                )
        text = (query.get("q") or "").strip() or None
        if text is not None and len(text) < MIN_PROMPT_MATCH:
            raise QueryParameterError(
                "q",
                text,
                f"at least {MIN_PROMPT_MATCH} characters (the prompt index matches substrings that long or longer)",
                "Type a longer text, or clear the search.",
            )
        since = _date_parameter("since", query.get("since"))
        until_raw = query.get("until")
        until = _date_parameter("until", until_raw)
        if until is not None and until_raw is not None and len(until_raw) == 10:
            # A bare date means "through that day": the filter is exclusive, so it stops at the next midnight.
            until = (datetime.fromisoformat(until) + timedelta(days=1)).isoformat(timespec="microseconds")
        return cls(
            statuses=statuses,
            engine=query.get("engine") or None,
            sweep=query.get("sweep") or None,
            text=text,
            since=since,
            until=until,
            demo=_bool_parameter("demo", query.get("demo")),
            limit=int_parameter("limit", query.get("limit"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
            offset=int_parameter("offset", query.get("offset"), 0, 0, None),
        )

    def where(self) -> Where:
        """The SQL condition and its named parameters: the run log's own filter builder (each filter answered by an
        index, the prompt text by the trigram index), plus the demo flag the sidebar offers."""
        condition = log_where(
            sweep_id=self.sweep,
            status=self.statuses or None,
            engine=self.engine,
            prompt_contains=self.text,
            since=self.since,
            until=self.until,
        )
        if self.demo is None:
            return condition
        sql = " AND ".join(part for part in (condition.sql, "runs.demo = :demo") if part)
        return Where(sql, {**dict(condition.params), "demo": int(self.demo)})


@dataclass
class RunLogReader:
    """Read-only access to the run log in ``home`` (``home/runs.db`` and the image files beside it).

    ``started_utc``: when "this session" began, for the spend summary (the server's start, by default now).
    """

    home: Path
    started_utc: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()

    @property
    def db_path(self) -> Path:
        return self.home / DB_NAME

    # -- plumbing -------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection, or None while the log does not exist yet (the reader never creates it)."""
        if not self.db_path.is_file():
            yield None
            return
        try:
            # mode=ro: SQLite refuses every write on this connection, and never creates the file.
            connection = sqlite3.connect(f"{self.db_path.as_uri()}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error as exc:
            raise RunLogError(
                f"cannot open the run log at {self.db_path} read-only: {exc}; check its permissions."
            ) from exc
        connection.row_factory = sqlite3.Row
        try:
            yield connection
        except sqlite3.Error as exc:
            raise RunLogError(f"cannot read the run log at {self.db_path}: {exc}; check the file is intact.") from exc
        finally:
            # "with connection:" would only end a transaction; close() really lets the file go.
            connection.close()

    def revision(self) -> str:
        """A token that changes whenever the log changes (stat of the database and its WAL file: no query, so a
        watching sidebar costs the writers nothing)."""
        parts = []
        for suffix in ("", "-wal"):
            path = self.db_path.with_name(DB_NAME + suffix)
            try:
                stat = path.stat()
            except FileNotFoundError:
                parts.append("0")
                continue
            # An empty WAL (a reader's connection creates one) holds no change: it reads the same as none.
            parts.append(f"{stat.st_mtime_ns:x}.{stat.st_size:x}" if stat.st_size else "0")
        return "-".join(parts)

    # -- status -----------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Where the log is, whether it exists, its schema version and size."""
        known = [migration.__name__ for migration in MIGRATIONS]
        reply: dict[str, Any] = {
            "home": str(self.home),
            "db": str(self.db_path),
            "exists": False,
            "read_only": True,
            "runs": 0,
            "latest_id": None,
            "schema": {"applied": [], "version": 0, "known_version": len(known), "current": False},
            "revision": self.revision(),
            "session_started_utc": self.started_utc,
        }
        with self._connect() as db:
            if db is None:
                return reply
            reply["exists"] = True
            has_migrations = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
            ).fetchone()
            applied = (
                [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")] if has_migrations else []
            )
            reply["schema"].update(applied=applied, version=len(applied), current=set(known) <= set(applied))
            if self._has_runs(db):
                count, latest = db.execute("SELECT COUNT(*), MAX(id) FROM runs").fetchone()
                reply.update(runs=count, latest_id=latest)
        return reply

    @staticmethod
    def _has_runs(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone() is not None

    # -- runs -------------------------------------------------------------------------------------------------------
    def runs(self, run_filter: RunFilter) -> dict[str, Any]:
        """One page of runs, newest first, with the total that match and their cost."""
        reply: dict[str, Any] = {
            "total": 0,
            "total_cost_usd": 0.0,
            "limit": run_filter.limit,
            "offset": run_filter.offset,
            "runs": [],
            "revision": self.revision(),
        }
        with self._connect() as db:
            if db is None or not self._has_runs(db):
                return reply
            condition = run_filter.where()
            where = f"WHERE {condition.sql}" if condition.sql else ""
            params = dict(condition.params)
            total, cost = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(cost_usd), 0) FROM runs {where}", params
            ).fetchone()
            # ORDER BY id DESC walks the primary key backwards: the first page of 100k rows costs one short scan.
            rows = db.execute(
                f"SELECT {_SUMMARY_SQL} FROM runs {where} ORDER BY id DESC LIMIT :limit OFFSET :offset",
                {**params, "limit": run_filter.limit, "offset": run_filter.offset},
            ).fetchall()
        reply.update(total=total, total_cost_usd=cost, runs=[_summary(row) for row in rows])
        return reply

    def run(self, run_id: int) -> dict[str, Any]:
        """Every column of one run, its JSON columns parsed (``request`` and ``response`` are the wire objects)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone() if db is not None else None
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id} in {self.db_path}; list the runs to see which exist")
        run = dict(row)
        for column in _JSON_COLUMNS:
            if run.get(column):
                run[column] = json.loads(run[column])
        run["request"] = run.pop("request_json")
        run["response"] = run.pop("response_json")
        run["details"] = run.pop("details_json")
        run["demo"] = bool(run["demo"])
        run["has_image"] = bool(run.pop("image_path"))
        return run

    def image_file(self, run_id: int) -> Path:
        """The image file of a run, only if it lies inside the log's home (a row is data, not a licence to read the
        disk: a path stored as ``../../etc/passwd`` or an absolute path elsewhere is refused)."""
        with self._connect() as db:
            row = (
                db.execute("SELECT image_path FROM runs WHERE id = ?", (run_id,)).fetchone() if db is not None else None
            )
        if row is None or not row["image_path"]:
            raise RunNotFoundError(f"run {run_id} has no image in {self.db_path} (failed, pending, or no such run)")
        path = (self.home / row["image_path"]).resolve()
        if not path.is_relative_to(self.home) or not path.is_file():
            raise RunNotFoundError(f"run {run_id}'s image is not a file inside the log's home {self.home}")
        return path

    # -- sweeps -----------------------------------------------------------------------------------------------------
    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep in the log, newest first: cells per state, images, spend so far."""
        with self._connect() as db:
            if db is None or not self._has_runs(db):
                return []
            rows = db.execute(
                """
                SELECT sweep_id, MIN(created_utc) AS created_utc, MAX(COALESCE(finished_utc, created_utc)) AS last_utc,
                       COUNT(DISTINCT sweep_cell) AS cells, COALESCE(SUM(cost_usd), 0) AS spent_usd,
                       SUM(status = 'ok') AS ok_rows, MAX(id) AS latest_id
                FROM runs WHERE sweep_id IS NOT NULL GROUP BY sweep_id ORDER BY latest_id DESC
                """
            ).fetchall()
            sweeps = []
            for row in rows:
                cells = self._cells(db, row["sweep_id"])
                states: dict[str, int] = {}
                for cell in cells:
                    states[cell["state"]] = states.get(cell["state"], 0) + 1
                sweeps.append(
                    {
                        "name": row["sweep_id"],
                        "created_utc": row["created_utc"],
                        "last_utc": row["last_utc"],
                        "cells": len(cells),
                        "states": states,
                        "images": row["ok_rows"] or 0,
                        "spent_usd": row["spent_usd"],
                    }
                )
        return sweeps

    def sweep(self, name: str) -> dict[str, Any]:
        """One sweep: its definition (axes), each cell's state and latest row, spend so far, failed cells."""
        with self._connect() as db:
            if db is None or not self._has_runs(db):
                raise RunNotFoundError(f"no sweep named {name!r}: the run log at {self.db_path} does not exist yet")
            cells = self._cells(db, name)
            definition_row = None
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sweeps'").fetchone():
                definition_row = db.execute("SELECT definition_json FROM sweeps WHERE name = ?", (name,)).fetchone()
        if not cells and definition_row is None:
            raise RunNotFoundError(f"no sweep named {name!r} in {self.db_path}; list the sweeps to see which exist")
        definition = json.loads(definition_row["definition_json"]) if definition_row else None
        states: dict[str, int] = {}
        for cell in cells:
            states[cell["state"]] = states.get(cell["state"], 0) + 1
        return {
            "name": name,
            "definition": definition,
            "axes": _axes(cells),
            "cells": cells,
            "states": states,
            "spent_usd": sum(cell["spent_usd"] for cell in cells),
            "failed": [cell for cell in cells if cell["state"] == "failed"],
        }

    @staticmethod
    def _cells(db: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
        """Each cell of a sweep with its state, the row that decided it, its attempts and its spend."""
        rows = db.execute(f"SELECT {_SUMMARY_SQL} FROM runs WHERE sweep_id = ? ORDER BY id", (name,)).fetchall()
        by_cell: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_cell.setdefault(row["sweep_cell"] or "", []).append(dict(row))
        cells = []
        for key, cell_rows in by_cell.items():
            # The sweep runner's own rule (any ok row: done; else the last row decides), so this view and a resume
            # always agree on what is left to do.
            state, latest = cell_status(cell_rows)
            try:
                coords = json.loads(key) if key else {}
            except json.JSONDecodeError:
                coords = {"cell": key}
            cells.append(
                {
                    "key": key,
                    "coords": coords,
                    "state": str(state),
                    "run": _summary(latest),
                    "attempts": len(cell_rows),
                    "spent_usd": sum(r["cost_usd"] or 0.0 for r in cell_rows),
                }
            )
        return cells

    # -- cost -------------------------------------------------------------------------------------------------------
    def cost(self, today: date | None = None) -> dict[str, Any]:
        """Spend this session (since the server started), today (UTC) and in all; per engine; the last 30 days."""
        today = today or datetime.now(UTC).date()
        start_of_day = datetime(today.year, today.month, today.day, tzinfo=UTC).isoformat(timespec="microseconds")
        empty = {"runs": 0, "images": 0, "cost_usd": 0.0}
        reply: dict[str, Any] = {
            "session": dict(empty),
            "today": dict(empty),
            "all": dict(empty),
            "by_engine": [],
            "by_day": [],
            "session_started_utc": self.started_utc,
        }
        with self._connect() as db:
            if db is None or not self._has_runs(db):
                return reply
            spend = (
                "COUNT(*) AS runs, COALESCE(SUM(status = 'ok'), 0) AS images, COALESCE(SUM(cost_usd), 0) AS cost_usd"
            )
            reply["all"] = dict(db.execute(f"SELECT {spend} FROM runs").fetchone())
            reply["today"] = dict(
                db.execute(f"SELECT {spend} FROM runs WHERE created_utc >= ?", (start_of_day,)).fetchone()
            )
            reply["session"] = dict(
                db.execute(f"SELECT {spend} FROM runs WHERE created_utc >= ?", (self.started_utc,)).fetchone()
            )
            reply["by_engine"] = [
                dict(r)
                for r in db.execute(f"SELECT engine, demo, {spend} FROM runs GROUP BY engine, demo ORDER BY engine")
            ]
            reply["by_day"] = [
                dict(r)
                for r in db.execute(
                    f"SELECT substr(created_utc, 1, 10) AS day, {spend} FROM runs GROUP BY day ORDER BY day DESC LIMIT 30"
                )
            ]
        return reply


def _summary(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    run = {column: row[column] for column in SUMMARY_COLUMNS if column != "image_path"}
    run["demo"] = bool(run["demo"])
    run["has_image"] = bool(row["image_path"])
    return run


def _axes(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's axes as found in its cells' coordinates, each with its values in first-seen order."""
    axes: dict[str, list[Any]] = {}
    for cell in cells:
        for name, value in cell["coords"].items():
            values = axes.setdefault(name, [])
            if value not in values:
                values.append(value)
    return [{"name": name, "values": values} for name, values in axes.items()]
