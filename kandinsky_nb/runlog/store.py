"""The run log: one SQLite database (WAL) plus content-addressed image files, in a folder the user controls.

Layout of the folder (``Session(home=...)``, else ``$KANDINSKY_NB_HOME``, else ``~/.kandinsky_nb``)::

    runs.db            every run (table ``runs``): one row per generated image, one per failed or unanswered
                       request; the scores of those images (table ``metrics``, see :mod:`.metrics`)
    images/ab/<sha256>.<ext>   each image once, with its request parameters embedded in the file

Rows move through ``submitted`` (written BEFORE the request is sent, with its taskUUID and exact request JSON, so a
crash leaves a record that can be resumed) to ``ok``, ``failed``, ``cancelled`` (the caller stopped waiting) or
``unanswered`` (an error left the outcome unknown: a dropped connection, a poll timeout); the last two, like a bare
``submitted``, are looked up by taskUUID before anything is sent again. Several processes may write one
log: every write is one short ``BEGIN IMMEDIATE`` transaction and waits up to ``busy_timeout`` for the lock.

A row is written by one native upsert (``INSERT ... ON CONFLICT (task_uuid, result_index) DO UPDATE ... RETURNING
id``) over the columns the migrations built, read from the database when the log opens: a column added by a new
migration is written without restating the schema here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings, spec
from .._version import __version__
from ..errors import ConfigurationError, MissingDependencyError, RunLogError
from ..types import Generation, ImageInferenceRequest
from . import frame as frames
from . import metrics as scores
from . import query as filters
from .arrow_reader import MODULES as ARROW_MODULES
from .arrow_reader import ArrowReadError, read_tables
from .files import embed_params, write_image_once
from .migrations import migrate
from .query import STATUSES, UNANSWERED, Where

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DB_NAME", "STATUSES", "UNANSWERED", "RunLog", "error_fields", "request_row_fields"]

DB_NAME = "runs.db"
BUSY_TIMEOUT_MS = 30_000
# Upserts with RETURNING (the runs, sweeps and metrics writes) arrived in SQLite 3.35 (2021).
MIN_SQLITE = (3, 35, 0)
# Who reads the rows of df and query: "adbc" (the `fast` extra: the ADBC driver fills Arrow buffers in C, in a process
# of its own: runlog/arrow_reader.py), "sqlite3" (the standard library, in process), or "auto" (adbc for big reads).
READERS = ("auto", "adbc", "sqlite3")
# Rows from which "auto" reads a whole log through the Arrow reader: below it, the reader's process start (about 0.5 s)
# costs more than its faster read saves (benchmarks/RESULTS.md).
ARROW_MIN_ROWS = 200_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def request_row_fields(request: ImageInferenceRequest) -> dict[str, Any]:
    """The promoted columns of a request: effective values, so a model default reads as the number it stands for."""
    wire = request.to_log()  # image inputs as references (hash, size, dimensions), never their bytes
    return {
        "model": request.model,
        "task_uuid": request.taskUUID,
        "number_results": request.effective("numberResults"),
        "prompt": request.positivePrompt,
        "negative_prompt": request.negativePrompt,
        "width": request.width,
        "height": request.height,
        "steps": request.effective("steps"),
        "CFGScale": request.effective("CFGScale"),
        "scheduler": request.effective("scheduler"),
        "seed": request.seed,
        "accelerator_options": _json(wire.get("acceleratorOptions")),
        "lora": _json(wire.get("lora")),
        "request_json": _json(wire),
        "defaulted": _json(defaulted_fields(request)),
    }


def defaulted_fields(request: ImageInferenceRequest) -> list[str]:
    """The request's fields left to the model's default (their columns hold the effective value)."""
    return [
        name
        for name in spec.DEFAULTS
        if name in type(request).model_fields
        and getattr(request, name) is None
        and (name != "strength" or request.seedImage is not None)  # strength means nothing without an image
    ]


def error_fields(error: BaseException) -> dict[str, Any]:
    """Error columns: the class name, the engine's code (or HTTP status), and the message (never holds the key)."""
    code = getattr(error, "code", None)
    if code is None and getattr(error, "status_code", None) is not None:
        code = str(error.status_code)  # type: ignore[attr-defined]
    return {"error_type": type(error).__name__, "error_code": code, "error_message": str(error)}


# A second write of the same (task_uuid, result_index) updates that row in place: it keeps its id and created time.
_KEPT_ON_UPDATE = ("id", "created_utc", "task_uuid", "result_index")


def _runs_upsert_sql(columns: Sequence[str]) -> str:
    """The native upsert of one ``runs`` row over the table's columns as the migrations left them; RETURNING gives the
    row's id whether it was inserted or updated."""
    inserted = [c for c in columns if c != "id"]
    names = ", ".join(f'"{c}"' for c in inserted)
    values = ", ".join(f":{c}" for c in inserted)
    updated = ", ".join(f'"{c}" = excluded."{c}"' for c in inserted if c not in _KEPT_ON_UPDATE)
    # The id is given, not left to AUTOINCREMENT: SQLite draws an AUTOINCREMENT id before it finds the conflict, so
    # every update would burn one and run numbers would skip (#1, #3, #5). Writes hold the database's write lock
    # (BEGIN IMMEDIATE), so MAX(id) + 1 cannot be taken twice; MAX on the primary key reads one b-tree page.
    return (
        f'INSERT INTO runs ("id", {names}) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM runs), {values}) '
        f"ON CONFLICT (task_uuid, result_index) DO UPDATE SET {updated} RETURNING id"
    )


class RunLog:
    """The durable record of every run. ``RunLog(home)`` opens (and creates or migrates) ``home/runs.db``.

    ``reader`` picks who reads :attr:`df` and :meth:`query`: ``"adbc"`` (the ``fast`` extra: the ADBC SQLite driver,
    in a process of its own, fills Arrow buffers in C: about 3x less CPU than the sqlite3 module's one Python object
    per value, after a process start of about 0.5 s), ``"sqlite3"`` (the standard library, in this process), or
    ``"auto"`` (the default: ``"adbc"`` for a whole log of :data:`ARROW_MIN_ROWS` rows or more when the extra is
    installed, else ``"sqlite3"``; ``"auto"`` becomes ``"sqlite3"`` where the extra is missing). Both give the same
    columns, dtypes and values; :attr:`reader` says which one this log uses.

    Scores of the logged images (see :mod:`kandinsky_nb.runlog.metrics`) are stored with :meth:`record_metrics`,
    found still to do with :meth:`missing_metrics`, read with :meth:`metrics` and appear in :attr:`df` as
    ``score_<metric>`` columns.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, reader: str = "auto") -> None:
        self.reader = _chosen_reader(reader)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RunLogError(
                f"the run log needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (for INSERT ... ON CONFLICT ... "
                f"RETURNING); this Python links SQLite {sqlite3.sqlite_version}. Use a Python built with a newer "
                "SQLite (python.org and conda builds of 3.11+ have one)."
            )
        self.home = settings.home_dir(home)
        self.path = self.home / DB_NAME
        self.images_dir = self.home / "images"
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a committed row survives a killed process; only an OS crash may lose the last commits.
            self._db.execute("PRAGMA synchronous = NORMAL")
            migrate(self._db)
            # The columns as the migrations built them: the one statement of the schema is migrations.py.
            table_info = [tuple(row) for row in self._db.execute("PRAGMA table_info(runs)")]
            self._run_columns = tuple(row[1] for row in table_info)
            # Each column's kind (and so its dtype in df) from its declared type, read once.
            self._column_kinds = frames.column_kinds(table_info)
        except sqlite3.Error as exc:
            raise RunLogError(
                f"cannot open the run log at {self.path}: {exc}. Check the folder is writable and on a local disk "
                "(SQLite WAL does not work on network file systems), or pass another home folder."
            ) from exc
        self._upsert_run_sql = _runs_upsert_sql(self._run_columns)
        self._last_written_id: int | None = None

    # -- plumbing ---------------------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: all of its statements or none. BEGIN IMMEDIATE takes the write lock up front,
        so a writer waits (up to ``busy_timeout``) at the start instead of failing half way."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        # After a full disk or an I/O error SQLite may have rolled back already; a failing ROLLBACK
                        # ("cannot rollback") must not hide the error that says what went wrong.
                        with suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise RunLogError(
                        f"the disk is full: cannot write to the run log at {self.path} ({exc}); nothing of this write "
                        "was kept. Free space on that disk, or use a home folder on another one (Session(home=...) or "
                        "KANDINSKY_NB_HOME), and run again."
                    ) from exc
                raise RunLogError(
                    f"cannot write to the run log at {self.path}: {exc}. Another process may hold it longer than "
                    f"{BUSY_TIMEOUT_MS / 1000:.0f} s; retry."
                ) from exc

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return [dict(row) for row in self._db.execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise RunLogError(f"cannot read the run log at {self.path}: {exc}; check the file is intact.") from exc

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own inside one read transaction: in WAL mode a reader never blocks the writers (a sweep
        keeps logging while a panel reloads a 100k-row frame), and every query in it sees the same snapshot."""
        import pandas as pd

        reader = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            reader.execute("BEGIN")
            yield reader
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise RunLogError(f"cannot read the run log at {self.path}: {exc}; check the file is intact.") from exc
        finally:
            reader.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunLog({str(self.home)!r}, rows={len(self)})"

    def schema(self) -> str:
        """The SQL schema the migrations built (for documentation: it cannot drift from the code)."""
        rows = self._query(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
        return ";\n".join(row["sql"].strip() for row in rows) + ";"

    def __len__(self) -> int:
        return self._query("SELECT COUNT(*) AS n FROM runs")[0]["n"]

    # -- writing ----------------------------------------------------------------------------------------------
    def _row(self, request: ImageInferenceRequest, **values: Any) -> dict[str, Any]:
        """A full ``runs`` row for the upsert: every column (NULL unless given), so a rewrite clears stale values."""
        unknown = set(values) - set(self._run_columns)
        if unknown:
            raise RunLogError(
                f"the runs table has no column {sorted(unknown)}; its columns are {list(self._run_columns)}. "
                "Add a migration to migrations.py for a new column."
            )
        row: dict[str, Any] = dict.fromkeys(self._run_columns)
        row.update(request_row_fields(request))
        row.update(created_utc=_now(), result_index=0, toolkit_version=__version__)
        row.update(values)
        row["demo"] = int(bool(row["demo"]))
        return row

    def _upsert_runs(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        with self._transaction() as db:
            ids = [db.execute(self._upsert_run_sql, row).fetchone()[0] for row in rows]
            self._last_written_id = max([*ids, self._last_written_id or 0])
        return ids

    @property
    def last_written_id(self) -> int | None:
        """The highest run id this RunLog has written (None before its first write), known without a query. A new
        row's id is one more than the highest in the database, so it counts the rows every process has logged: a
        measure of the log's growth that a busy writer can read for free."""
        return self._last_written_id

    def record_submitted(
        self,
        request: ImageInferenceRequest,
        *,
        engine: str,
        demo: bool,
        sweep_id: str | None = None,
        sweep_cell: str | None = None,
    ) -> int:
        """Write the ``submitted`` row for a request about to be sent; call BEFORE sending it. Returns the row id."""
        row = self._row(request, status="submitted", engine=engine, demo=demo, sweep_id=sweep_id, sweep_cell=sweep_cell)
        return self._upsert_runs([row])[0]

    def record_generation(
        self, generation: Generation, *, sweep_id: str | None = None, sweep_cell: str | None = None
    ) -> list[int]:
        """Store each image once (content-addressed, parameters embedded) and mark the request's rows ``ok``."""
        request = generation.request
        if not generation.images:
            error = RunLogError("the engine answered without images")
            return [
                self.record_failure(
                    request,
                    error,
                    engine=generation.engine,
                    demo=generation.demo,
                    latency_s=generation.latency_s,
                    sweep_id=sweep_id,
                    sweep_cell=sweep_cell,
                )
            ]
        wire = request.to_log()
        finished = _now()
        rows = []
        # The local engine reports its measured seconds; other engines may report gpu_seconds.
        gpu_seconds = generation.details.get("gpu_seconds")
        if gpu_seconds is None and generation.engine == "local":
            gpu_seconds = generation.details.get("seconds")
        # Loading the model (an engine's first request) is logged apart from the generation it delayed.
        load_s = generation.details.get("load_seconds")
        load_s = float(load_s) if isinstance(load_s, int | float) and load_s > 0 else None
        latency_s = max(generation.latency_s - (load_s or 0.0), 0.0)
        for index, image in enumerate(generation.images):
            seed = image.seed if image.seed is not None else request.seed
            params = {
                **_short_images(wire),
                "seed": seed,
                "engine": generation.engine,
                "demo": generation.demo,
                "resultIndex": index,
                "toolkitVersion": __version__,
            }
            if generation.demo:
                params["note"] = "demo weights: this image is noise"
            path, digest = write_image_once(self.images_dir, embed_params(image.data, params))
            response = generation.response[index] if index < len(generation.response) else image.result.model_dump()
            row = self._row(
                request,
                status="ok",
                finished_utc=finished,
                engine=generation.engine,
                demo=generation.demo,
                result_index=index,
                seed=seed,
                latency_s=latency_s,
                load_s=load_s,
                cost_usd=image.cost,
                gpu_seconds=gpu_seconds / len(generation.images) if isinstance(gpu_seconds, int | float) else None,
                image_path=str(path.relative_to(self.home)),
                image_sha256=digest,
                image_uuid=image.image_uuid,
                image_format=path.suffix.lstrip("."),
                sweep_id=sweep_id,
                sweep_cell=sweep_cell,
                response_json=_json(response),
                details_json=_json(generation.details) if generation.details else None,
            )
            rows.append(row)
        return self._upsert_runs(rows)

    def record_failure(
        self,
        request: ImageInferenceRequest,
        error: BaseException,
        *,
        engine: str,
        demo: bool,
        latency_s: float | None = None,
        sweep_id: str | None = None,
        sweep_cell: str | None = None,
        unanswered: bool = False,
    ) -> int:
        """Mark a request ``failed`` with its error type, code and message (and the wire error, when there is one);
        ``unanswered=True`` records the error but marks the outcome unknown, so a resume looks the task up first."""
        wire_error = getattr(error, "error", None) or getattr(error, "body", None)
        row = self._row(
            request,
            status="unanswered" if unanswered else "failed",
            finished_utc=_now(),
            engine=engine,
            demo=demo,
            latency_s=latency_s,
            sweep_id=sweep_id,
            sweep_cell=sweep_cell,
            response_json=_json(_plain(wire_error)),
            **error_fields(error),
        )
        return self._upsert_runs([row])[0]

    def record_cancelled(self, task_uuid: str) -> None:
        """Mark a request whose answer never arrived because the caller cancelled; a resume looks it up first."""
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'cancelled', finished_utc = ? WHERE task_uuid = ? AND status = 'submitted'",
                (_now(), task_uuid),
            )

    def register_sweep(self, name: str, definition: dict[str, Any]) -> dict[str, Any] | None:
        """Record a sweep's definition under its name; returns the definition stored earlier, if there was one.

        One transaction: of two processes registering one name at once, exactly one stores its definition and the
        other gets it back to compare with its own."""
        with self._transaction() as db:
            stored = db.execute(
                "INSERT INTO sweeps (name, created_utc, definition_json) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, _now(), _json(definition)),
            ).fetchone()
            if stored:
                return None
            earlier = db.execute("SELECT definition_json FROM sweeps WHERE name = ?", (name,)).fetchone()
        return json.loads(earlier["definition_json"])

    def sweep_definition(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT definition_json FROM sweeps WHERE name = ?", (name,))
        return json.loads(rows[0]["definition_json"]) if rows else None

    def record_metrics(self, rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> int:
        """Store scores, all in one transaction (all or none); returns how many were stored.

        Each row: ``run_id`` (a run with an image), ``metric``, ``value`` (float, or None for "could not score"),
        ``scorer_version`` and optionally ``reference`` (default ``''``); a DataFrame with those columns works too.
        The score is filed under the run's image: the same (image, metric, reference, scorer_version) again
        overwrites its value and time and never adds a row. A run without an image raises :class:`RunLogError`.
        Safe from several threads and processes at once (a background scorer beside a running sweep).
        """
        params = scores.upsert_params(rows, _now())
        with self._transaction() as db:
            for row in params:
                if db.execute(scores.UPSERT_SQL, row).fetchone() is None:
                    raise RunLogError(
                        f"run {row['run_id']} has no image to score (no such run, or it failed): score only rows "
                        "with status 'ok' (RunLog.df.query(\"status == 'ok'\")['id'])"
                    )
        return len(params)

    # -- reading ----------------------------------------------------------------------------------------------
    def rows(
        self,
        where: str = "",
        params: Sequence[Any] = (),
        *,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows as dicts, oldest first; ``where`` is an SQL condition with ``?`` placeholders. ``columns``: only these
        columns of each row (every column by default); a fit over a big log reads a few of its ~40 columns."""
        picked = "*"
        if columns is not None:
            unknown = sorted(set(columns) - set(self._run_columns))
            if unknown or not columns:
                raise RunLogError(
                    f"columns={list(columns)!r}: the runs table has no column {unknown}; its columns are "
                    f"{list(self._run_columns)}"
                )
            picked = ", ".join(f'"{name}"' for name in columns)
        sql = f"SELECT {picked} FROM runs" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._query(sql, filters.plain_params(params))

    def get(self, key: int | str) -> list[dict[str, Any]]:
        """The rows of one run: by row id, or every image row of a taskUUID."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            return self.rows("id = ?", (int(key),))
        return self.rows("task_uuid = ?", (key,))

    def sweep_rows(self, sweep_id: str) -> list[dict[str, Any]]:
        """The rows of one sweep, oldest first."""
        return self.rows("sweep_id = ?", (sweep_id,))

    def image_path(self, row: dict[str, Any]) -> Path | None:
        """The absolute path of a row's image file (rows store it relative to the home folder)."""
        relative = row.get("image_path")
        if not relative:
            return None
        path = Path(relative)
        return path if path.is_absolute() else self.home / path

    def missing_metrics(
        self,
        run_ids: Iterable[int],
        metric: str,
        scorer_version: str,
        reference: str | Mapping[int, str] = "",
    ) -> list[int]:
        """Of ``run_ids``, those whose image has no stored ``metric`` by ``scorer_version`` against ``reference``
        (one text for all, or a mapping of run id to reference): the runs still to score, ascending.

        One run per distinct (image, reference): its score covers every run with the same image. Runs without an
        image (failed, unanswered) and unknown ids are left out, as there is nothing to score.
        """
        params = scores.missing_params(run_ids, metric, scorer_version, reference)
        return [row["run_id"] for row in self._query(scores.MISSING_SQL, params)]

    def metrics(
        self,
        run_ids: Iterable[int] | None = None,
        metric: str | Sequence[str] | None = None,
        reference: str | None = None,
        scorer_version: str | None = None,
    ) -> pd.DataFrame:
        """Stored scores in long form, one row per (run, score): ``run_id``, ``image_sha256``, ``metric``,
        ``reference``, ``scorer_version``, ``value``, ``computed_utc``; every filter left as None keeps all."""
        import pandas as pd

        sql, params = scores.long_form_query(run_ids, metric, reference, scorer_version)
        with self._reader() as reader:
            return scores.typed_long_form(pd.read_sql_query(sql, reader, params=params))

    def query(
        self,
        *,
        sweep_id: str | None = None,
        status: str | Iterable[str] | None = None,
        engine: str | None = None,
        prompt: str | None = None,
        prompt_contains: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> pd.DataFrame:
        """The rows that match every filter given, as :attr:`df` shows them (same columns and dtypes), oldest first
        (``newest_first=True``: newest first, so ``limit=20`` gives the latest 20).

        Each filter is answered by an index, so a sweep or a prompt is found without reading the whole table:
        ``sweep_id``; ``status`` (one, or several such as ``UNANSWERED``); ``prompt`` (the exact text) and
        ``prompt_contains`` (a case-insensitive substring of 3 characters or more); ``since``/``until`` (UTC times,
        ``until`` excluded; a time without a zone is read as UTC); ``engine`` narrows what the others found.
        :meth:`query_plan` shows how SQLite runs a query.
        """
        condition = filters.where(
            sweep_id=sweep_id,
            status=status,
            engine=engine,
            prompt=prompt,
            prompt_contains=prompt_contains,
            since=since,
            until=until,
        )
        return self._frame(condition, newest_first=newest_first, limit=_limit(limit))

    def query_plan(self, **options: Any) -> list[str]:
        """How SQLite runs :meth:`query` with these options: the detail lines of ``EXPLAIN QUERY PLAN`` of the rows'
        statement, then of the scores'. A line ``SCAN runs`` means the whole table is read, ``SEARCH runs USING INDEX
        ...`` that an index finds the rows."""
        limit, newest_first = _limit(options.pop("limit", None)), bool(options.pop("newest_first", False))
        condition = filters.where(**options)
        with self._reader() as reader:
            plan = []
            rows_sql = frames.select_sql(self._run_columns, condition.sql, newest_first=newest_first, limit=limit)
            plan += [row[3] for row in reader.execute("EXPLAIN QUERY PLAN " + rows_sql, condition.params)]
            if limit is None:
                scores_sql, params = scores.scores_sql(condition.sql), condition.params
            else:
                scores_sql, params = scores.scores_sql(_IMAGES_IN_JSON), ("[]",)
            plan += [row[3] for row in reader.execute("EXPLAIN QUERY PLAN " + scores_sql, params)]
            return plan

    def dataframe(self, where: str = "", params: Sequence[Any] = ()) -> pd.DataFrame:
        """The rows that an SQL condition over ``runs`` selects (``?`` placeholders, columns as ``runs.<name>``
        where a score column shares the name), as :attr:`df` shows them; :meth:`query` covers the usual filters."""
        return self._frame(Where(where, filters.plain_params(params)))

    @property
    def df(self) -> pd.DataFrame:
        """Every run, as a pandas DataFrame (one row per image or failed request), oldest first.

        Columns keep the dtype their declared type gives them (see :mod:`kandinsky_nb.runlog.frame`): times as
        ``datetime64[us, UTC]``, ``demo`` as bool, nullable integers as ``Int64``; plus an absolute ``image_path``,
        ``size`` (``"1280x768"``), ``size_label``, ``megapixels``, and one float column ``score_<metric>`` per
        stored metric (the newest score of the row's image; NaN where it has none). Built without Python per row:
        no slower than a bare ``pandas.read_sql_query`` of the table (benchmarks/RESULTS.md)."""
        return self._frame(Where())

    def _frame(self, condition: Where, *, newest_first: bool = False, limit: int | None = None) -> pd.DataFrame:
        if self._reads_through_arrow(condition, limit):
            try:
                return self._arrow_frame(condition, newest_first=newest_first)
            except RunLogError as exc:
                if self.reader == "adbc":
                    raise
                # "auto" never loses a read to the faster reader: the sqlite3 reader reads the same frame (and, for a
                # value the schema cannot read, names it as precisely).
                warnings.warn(f"{exc} Read with the sqlite3 reader instead.", RuntimeWarning, stacklevel=3)
        # One read transaction: the rows, the metric names and the scores come from the same snapshot.
        with self._reader() as reader:
            sql = frames.select_sql(self._run_columns, condition.sql, newest_first=newest_first, limit=limit)
            frame = frames.read_frame(reader.execute(sql, condition.params), self._column_kinds, self.home)
            metrics = [row[0] for row in reader.execute(scores.METRIC_NAMES_SQL)]
            if not metrics:
                return frame
            # With a LIMIT the rows are not all of the condition's: score exactly the images read.
            if limit is None:
                rows = reader.execute(scores.scores_sql(condition.sql), condition.params).fetchall()
            else:
                wanted = json.dumps(frame["image_sha256"].dropna().unique().tolist())
                rows = reader.execute(scores.scores_sql(_IMAGES_IN_JSON), (wanted,)).fetchall()
        return scores.with_metric_columns(frame, metrics, scores.score_cells(rows))

    def _reads_through_arrow(self, condition: Where, limit: int | None) -> bool:
        """Whether this read goes to the Arrow reader: always for ``reader="adbc"`` (a LIMIT aside: its scores need
        the images read first); for ``"auto"``, a whole log of :data:`ARROW_MIN_ROWS` rows or more, where the
        reader's process start (about 0.5 s) is repaid."""
        if self.reader == "sqlite3" or limit is not None:
            return False
        if self.reader == "adbc":
            return True
        if condition.sql:
            return False  # a filter answered by an index reads few rows
        # The largest id, not COUNT(*): the last entry of the primary key, read without a scan.
        largest = self._query("SELECT MAX(id) AS n FROM runs")[0]["n"]
        return (largest or 0) >= ARROW_MIN_ROWS

    def _arrow_frame(self, condition: Where, *, newest_first: bool) -> pd.DataFrame:
        """The condition's rows (and their scores) read by the ADBC driver in a process of its own
        (:mod:`kandinsky_nb.runlog.arrow_reader`), in one snapshot, then typed as :func:`frames.read_frame` types them."""
        kinds = self._column_kinds
        # The driver binds a named parameter by its full name (":sweep_id"), the sqlite3 module by the bare one.
        params = condition.params
        if isinstance(params, Mapping):
            params = {f":{name}": value for name, value in params.items()}
        rows_sql = frames.arrow_select_sql(self._run_columns, kinds, condition.sql, newest_first=newest_first)
        queries = [
            (rows_sql, params),
            (scores.METRIC_NAMES_SQL, None),
            (scores.arrow_scores_sql(condition.sql), params),
        ]
        try:
            frame, names, scored = read_tables(
                self.path,
                queries,
                busy_timeout_ms=BUSY_TIMEOUT_MS,
                consume=[lambda batches: frames.frame_from_arrow(batches, kinds, self.home)],
            )
        except ArrowReadError as exc:
            # Only the rows' columns are named by number (query 0): a mismatch elsewhere is reported as it is.
            rows_mismatch = exc.mismatch and exc.query == 0
            mismatch = frames.type_mismatch_error(str(exc), self._run_columns, kinds) if rows_mismatch else None
            raise mismatch or RunLogError(
                f"the Arrow reader could not read the run log at {self.path} ({exc}); check the file is intact, or "
                "open it with RunLog(home, reader='sqlite3')."
            ) from exc
        metrics = [str(name) for name in names.column(0).to_pylist()] if names.num_columns else []
        if not metrics:
            return frame
        return scores.with_metric_columns(frame, metrics, scores.score_cells_of_arrow(scored))

    def to_parquet(self, path: str | os.PathLike[str], frame: pd.DataFrame | None = None) -> Path:
        """Write the log (or ``frame``, any subset of it) to Parquet; needs the ``parquet`` extra (pyarrow)."""
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("Parquet export", "parquet", "pyarrow") from exc
        frame = self.df if frame is None else frame
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
        return out

    def to_csv(self, path: str | os.PathLike[str], frame: pd.DataFrame | None = None) -> Path:
        """Write the log (or ``frame``) to CSV."""
        frame = self.df if frame is None else frame
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        return out

    def export(
        self, path: str | os.PathLike[str], format: str | None = None, frame: pd.DataFrame | None = None
    ) -> Path:
        """Export by format name (``parquet`` or ``csv``), or by the file's extension."""
        kind = (format or Path(path).suffix.lstrip(".")).lower()
        if kind in ("parquet", "pq"):
            return self.to_parquet(path, frame)
        if kind == "csv":
            return self.to_csv(path, frame)
        raise RunLogError(f"cannot export to {kind!r}; use format='parquet' or format='csv'")


def _short_images(wire: dict[str, Any]) -> dict[str, Any]:
    """The wire request with inline image data shortened, so embedded metadata stays small."""
    out = dict(wire)
    for key in ImageInferenceRequest.IMAGE_INPUT_FIELDS:
        value = out.get(key)
        if isinstance(value, str) and len(value) > 256:
            out[key] = value[:48] + f"...<{len(value)} chars>"
        elif isinstance(value, list):
            out[key] = [v[:48] + f"...<{len(v)} chars>" if isinstance(v, str) and len(v) > 256 else v for v in value]
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else str(value)


# The images of the rows a LIMITed query read, passed as one JSON array (no limit on bound variables).
_IMAGES_IN_JSON = "runs.image_sha256 IN (SELECT value FROM json_each(?))"


def _chosen_reader(reader: object) -> str:
    """The reader a RunLog(reader=...) argument stands for: "auto" stays "auto" (big reads through the Arrow reader)
    where the `fast` extra is installed, and is "sqlite3" where it is not."""
    if reader not in READERS:
        raise ConfigurationError(
            f"reader {reader!r} is not a run-log reader; use one of {', '.join(map(repr, READERS))} ('auto' picks "
            "'adbc' when the `fast` extra is installed, else 'sqlite3')"
        )
    if reader == "sqlite3":
        return reader
    # Found, not imported: a log opened only to write (a sweep) never pays for importing pyarrow.
    missing = next((name for name in ARROW_MODULES if importlib.util.find_spec(name) is None), None)
    if missing is None:
        return str(reader)
    if reader == "adbc":
        raise MissingDependencyError("the ADBC run-log reader", "fast", missing)
    return "sqlite3"


def _limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise RunLogError(f"limit {limit!r} is not allowed: pass a whole number of rows (0 or more), or None for all")
    return limit
