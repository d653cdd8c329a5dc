"""The run log's Arrow reader: the ADBC SQLite driver, run in a process of its own, hands query results back as Arrow.

Why a process of its own: the driver's PyPI wheel links its own copy of SQLite, and two copies of SQLite in one
process break each other's POSIX locks (sqlite.org/howtocorrupt.html, 2.2.1). Measured here: closing an in-process
ADBC connection deleted the ``-wal`` and ``-shm`` files under the RunLog's open writer, and the next write died of
SIGBUS. In a process of its own the driver is one more ordinary SQLite process reading a WAL database, which SQLite
supports; it opens the file read-only and never writes.

Why the driver at all: it copies each value from SQLite into Arrow buffers in C, where the ``sqlite3`` module makes
one Python object per value (about 55% of the time of a million-row read). Starting the process costs about half a
second, so :class:`~kandinsky_nb.runlog.RunLog` uses it for big reads only (benchmarks/RESULTS.md).

The parent (:func:`read_tables`) sends one job as JSON on the child's stdin: the database path and the queries. The
child runs them in ONE read transaction (one snapshot, as the ``sqlite3`` reader does) and writes one Arrow IPC stream
per query to its stdout, in order. The child is this file run by path, so it imports the driver and pyarrow only, not
the toolkit (a faster start). Nothing here imports the rest of kandinsky_nb.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MODULES", "ArrowReadError", "read_tables"]

# What the reader imports: the `fast` extra.
MODULES = ("adbc_driver_manager", "adbc_driver_sqlite", "pyarrow")
# Rows per Arrow batch the driver builds (and the child streams to the parent as it goes).
BATCH_ROWS = 50_000

Params = Sequence[Any] | Mapping[str, Any] | None


class ArrowReadError(Exception):
    """The child could not read (its message says why). ``query`` is the number of the query that failed, when the
    child said; ``mismatch`` whether the driver met a value of another type than its column's first batch held. The
    caller turns it into the toolkit's own error."""

    def __init__(self, message: str, *, query: int | None = None, mismatch: bool = False) -> None:
        super().__init__(message)
        self.query = query
        self.mismatch = mismatch


# Marks the child's own error line on stderr: a warning printed as it exits must not pass for the reason.
_ERROR_MARK = "kandinsky-nb arrow reader error"


def read_tables(
    database: Path,
    queries: Sequence[tuple[str, Params]],
    *,
    busy_timeout_ms: int = 30_000,
    batch_rows: int | None = None,
    consume: Sequence[Callable[[pa.RecordBatchReader], Any] | None] = (),
) -> list[Any]:
    """The result of each of ``queries`` (SQL, parameters) as an Arrow table, read from ``database`` by the ADBC
    driver in a child process, all in one read transaction. Named parameters are given by their full name
    (``{":sweep_id": ...}``), as the driver binds them. Raises :class:`ArrowReadError` if the child fails.

    ``consume[i]``, where given, takes query i's batches as they arrive and returns what stands for its result in
    place of the table: converting batch k while the child reads batch k + 1 puts the two cores to work at once."""
    import pyarrow as pa

    job = {
        "database": str(Path(database).absolute()),
        "busy_timeout_ms": int(busy_timeout_ms),
        "batch_rows": int(batch_rows or BATCH_ROWS),
        "queries": [
            [sql, params if params is None or isinstance(params, Mapping) else list(params)] for sql, params in queries
        ],
    }
    try:
        sent = json.dumps(job).encode()
    except (TypeError, ValueError) as exc:
        raise ArrowReadError(f"a query parameter cannot be sent to the reader process ({exc})") from exc
    # stderr goes to a file: a child that says much while the parent reads its stdout never blocks on a full pipe.
    with tempfile.TemporaryFile() as said:
        # -P: the child's folder (this package) is not put on its sys.path, so none of our modules shadows another.
        try:
            child = subprocess.Popen(
                [sys.executable, "-P", __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=said
            )
        except OSError as exc:
            raise ArrowReadError(f"cannot start {sys.executable}: {exc}") from exc
        results: list[Any] = []
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(sent)
            child.stdin.close()
            source = pa.PythonFile(child.stdout, mode="r")
            for number in range(len(queries)):
                # Each stream ends with its end-of-stream marker, so the next one starts where it stopped.
                batches = pa.ipc.open_stream(source)
                consumer = consume[number] if number < len(consume) else None
                results.append(consumer(batches) if consumer else batches.read_all())
            child.wait()
        except (pa.ArrowInvalid, OSError) as exc:
            child.kill()
            child.wait()
            raise _failure(said, f"{type(exc).__name__}: {exc}") from exc
        except BaseException:  # KeyboardInterrupt included: never leave the child reading a million rows
            child.kill()
            child.wait()
            raise
        finally:
            if child.stdout is not None:
                child.stdout.close()
        if child.returncode != 0:
            raise _failure(said, f"exit status {child.returncode}")
    return results


def _failure(said: IO[bytes], fallback: str) -> ArrowReadError:
    """The child's own error (its marked line on stderr: query number and reason), else ``fallback``."""
    said.seek(0)
    for line in reversed(said.read().decode("utf-8", "replace").splitlines()):
        if line.startswith(_ERROR_MARK):
            report = json.loads(line[len(_ERROR_MARK) + 1 :])
            reason = str(report["reason"])
            return ArrowReadError(reason, query=report["query"], mismatch="Type mismatch" in reason)
    return ArrowReadError(fallback)


def _serve() -> int:
    """The child: read the job from stdin, write one IPC stream per query to stdout."""
    number = None
    try:
        import adbc_driver_sqlite.dbapi
        import pyarrow as pa

        job = json.loads(sys.stdin.buffer.read())
        out = sys.stdout.buffer
        # A file: URI (spaces, '?' and '#' percent-encoded), read-only: this process never writes the log.
        uri = Path(job["database"]).as_uri() + "?mode=ro"
        # autocommit off: the driver opens a transaction, so every query below reads the same snapshot.
        with adbc_driver_sqlite.dbapi.connect(uri) as db, db.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(job['busy_timeout_ms'])}")
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(int(job["batch_rows"]))})
            for index, (sql, params) in enumerate(job["queries"]):
                number = index  # named in the error report below
                cursor.execute(sql, params)
                batches = cursor.fetch_record_batch()
                with pa.ipc.new_stream(out, batches.schema) as stream:
                    for batch in batches:
                        stream.write_batch(batch)
        out.flush()
    except Exception as exc:  # the parent finds this marked line on stderr and names the query that failed
        report = {"query": number, "reason": f"{type(exc).__name__}: {exc}"}
        print(_ERROR_MARK, json.dumps(report), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
